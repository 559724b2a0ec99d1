"""The now-endpoints' answer cache (cloud/api/now_cache.py): an answer is reused only for the
same URL and caller scope, while the state version is the one it was built from, and for at
most its time to live; a failed build leaves nothing behind."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from cloud.api import now_cache
from cloud.api.now_cache import NowCache


class Body(BaseModel):
    n: int


def snap(version: int) -> Any:
    return SimpleNamespace(version=version)


class Builder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Body:
        self.calls += 1
        return Body(n=self.calls)


PUBLIC = ("/v1/beds/summary", "level=kecamatan", frozenset[str]())


def test_the_same_question_at_the_same_version_is_built_once() -> None:
    cache, build = NowCache(ttl_s=60), Builder()
    bodies = [cache.body(PUBLIC, snap(7), build) for _ in range(50)]
    assert (set(bodies), build.calls, cache.built, cache.reused) == ({b'{"n":1}'}, 1, 1, 49)


def test_a_new_state_version_is_answered_afresh() -> None:
    cache, build = NowCache(ttl_s=60), Builder()
    assert cache.body(PUBLIC, snap(7), build) == b'{"n":1}'
    assert cache.body(PUBLIC, snap(8), build) == b'{"n":2}'
    assert cache.body(PUBLIC, snap(8), build) == b'{"n":2}'
    assert build.calls == 2


def test_each_caller_scope_and_query_has_its_own_answer() -> None:
    cache, build = NowCache(ttl_s=60), Builder()
    scoped = ("/v1/beds", "", frozenset({"33.74.07"}))
    other = ("/v1/beds", "", frozenset({"33.74.08"}))
    everyone = ("/v1/beds", "", None)
    assert [cache.body(k, snap(1), build) for k in (scoped, other, everyone, scoped)] == [
        b'{"n":1}',
        b'{"n":2}',
        b'{"n":3}',
        b'{"n":1}',
    ]


def test_an_answer_expires_after_its_time_to_live(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1_000, 1_999, 2_000, 2_001])
    monkeypatch.setattr(now_cache, "now_ms", lambda: next(clock))
    cache, build = NowCache(ttl_s=1), Builder()
    got = [cache.body(PUBLIC, snap(1), build) for _ in range(4)]
    # built at 1 000, reused at 1 999, expired at 2 000 (1 s later), reused at 2 001
    assert got == [b'{"n":1}', b'{"n":1}', b'{"n":2}', b'{"n":2}']


def test_a_zero_time_to_live_builds_every_answer() -> None:
    cache, build = NowCache(ttl_s=0), Builder()
    for _ in range(3):
        cache.body(PUBLIC, snap(1), build)
    assert (build.calls, cache.reused) == (3, 0)


def test_a_failed_build_is_not_cached() -> None:
    cache, build = NowCache(ttl_s=60), Builder()

    def fails() -> Body:
        raise LookupError("no site")

    with pytest.raises(LookupError):
        cache.body(PUBLIC, snap(1), fails)
    assert cache.body(PUBLIC, snap(1), build) == b'{"n":1}'
