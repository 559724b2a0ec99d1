"""Serialized answers of the now-endpoints, reused while the state they were built from is
current.

Why: a now-endpoint's answer is a pure function of the snapshot (``Snapshot.version``), the
request's URL and what the caller may see; rebuilding hundreds of pydantic rows for every one
of fifty clients asking the same question is most of a request's cost (docs/performance.md).
So the first request after a change builds and serializes the answer once; the next ones with
the same URL and caller scope get the same bytes.

What stays true:

- **No stale figures.** An answer is reused only while ``Snapshot.version`` is the one it was
  built from: a reading the API has merged is in the next answer.
- **``generated_at`` and ``stale`` move on.** An answer is also dropped ``PANTAU_NOW_CACHE_S``
  (1 s) after it was built, so ``generated_at`` is at most that old and a figure turns stale
  at most that late (against a stale limit of minutes).
- **Access first.** The cache is asked after the route's ``require`` has authenticated,
  rate-limited and checked the caller; the key holds the caller's region scope, so a scoped
  key never gets an answer built for a wider one.
- Errors (4xx from the route) are never cached: they are raised while building.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from pydantic import BaseModel

from cloud.api.auth import CallerDep
from cloud.api.deps import NowDep
from cloud.api.state import Snapshot
from contract.clock import now_ms

#: Builds a now-answer: its response model, or that model's JSON
Builder = Callable[[], BaseModel | bytes]
#: (path, raw query string, the caller's regions: None for every region)
CacheKey = tuple[str, str, frozenset[str] | None]


@dataclass(frozen=True, slots=True)
class _Entry:
    version: int
    built_ms: int
    body: bytes


class NowCache:
    """Answers by :data:`CacheKey`, valid for one state version and at most ``ttl_s``. Used
    from the event loop only (the now-routes are ``async``), so it needs no lock."""

    def __init__(self, *, ttl_s: float, max_entries: int = 1024) -> None:
        self.ttl_ms = int(ttl_s * 1000)
        self.max_entries = max_entries
        self._entries: dict[CacheKey, _Entry] = {}
        #: answers built (misses) and reused (hits), for tests and the bench
        self.built = 0
        self.reused = 0

    def body(self, key: CacheKey, snap: Snapshot, build: Builder) -> bytes:
        """The serialized answer for ``key`` as of ``snap``: reused when it is current,
        else built by ``build`` (whose exceptions propagate and leave nothing behind). A
        builder returns its response model, or the model's JSON already serialized (routes
        whose rows are many build plain dicts and ``orjson`` them: no model per row)."""
        now = now_ms()
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry.version == snap.version
            and now - entry.built_ms < self.ttl_ms
        ):
            self.reused += 1
            return entry.body
        built = build()
        body = built if isinstance(built, bytes) else built.model_dump_json().encode()
        self.built += 1
        if self.ttl_ms > 0:
            if len(self._entries) >= self.max_entries:
                # Many distinct URLs (query strings are free-form): start over rather than
                # track recency; every entry is at most a second from expiring anyway.
                self._entries.clear()
            self._entries[key] = _Entry(version=snap.version, built_ms=now, body=body)
        return body


@dataclass(frozen=True, slots=True)
class Answer:
    """A now-route's way to answer: ``return answer(lambda: Model(...))``."""

    cache: NowCache
    key: CacheKey
    snap: Snapshot

    def __call__(self, build: Builder) -> Response:
        return Response(self.cache.body(self.key, self.snap, build), media_type="application/json")


async def get_answer(request: Request, caller: CallerDep, snap: NowDep) -> Answer:
    """The cache slot of this request (FastAPI resolves ``caller`` once per request, so this
    reuses the route's own access check)."""
    cache: NowCache = request.app.state.now_cache
    key = (request.url.path, request.url.query, caller.regions)
    return Answer(cache=cache, key=key, snap=snap)


AnswerDep = Annotated[Answer, Depends(get_answer)]
