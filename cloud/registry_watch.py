"""Noticing that the city registry file changed, and loading the new one only if it is good.

Both deployables that hold the registry in memory (the ingester and the read API) use one
:class:`RegistryWatch`: it looks at the file's ``(inode, size, mtime)`` at most every
``interval_s`` (or at once after :meth:`RegistryWatch.request`, the ingester's SIGHUP), and when
the stamp moved it loads and validates the whole file with :func:`city.load_registry`. A file
that does not load is refused with one log line naming the file, the place in it and the
problem (``RegistryError``'s own words), counted in ``pantau_registry_reload_failures_total``,
and the registry in use stays. The stamp of a refused file is remembered, so a broken file is
reported once, not once per poll; the next write to it is looked at again.

Polling a stat rather than an inotify watch: the file is replaced atomically (tmp + rename, as
``pantau gateway add`` and editors with safe-write do), which an inotify watch on the old inode
misses, and a stat every few seconds costs nothing next to a window of readings. The caller
decides *when* a new registry is swapped in (the ingester between windows, the API between
requests); this module says *that* there is one, and loads it off the caller's hot loop (the
ingester: :meth:`RegistryWatch.start` with a background thread, then :meth:`RegistryWatch.take`;
the API: :meth:`RegistryWatch.poll` in a worker thread). docs/adr/0018-registry-hot-reload.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from city import Registry, load_registry
from contract.errors import RegistryError

log = logging.getLogger(__name__)

__all__ = ["FileStamp", "RegistryWatch"]

#: Background mode: how often the watching thread checks its stop event and the interval.
_WAKE_S = 0.5


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What identifies one version of a file without reading it. A rename-over gives a new
    inode; an in-place rewrite a new mtime (and usually size)."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        """The file's stamp now; None if it cannot be stat'ed (missing, no permission)."""
        try:
            st = path.stat()
        except OSError:
            return None
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


class RegistryWatch:
    """Watches ``path`` for a new, valid registry. Construction does no I/O; :meth:`start`
    takes the stamp of the file in use (call it *before* loading that file, so a change made
    while it loads is not missed). Thread-safe: :meth:`request` may be called from a signal
    handler or another thread; :meth:`poll` from one thread at a time."""

    def __init__(
        self,
        *,
        path: Path,
        interval_s: float,
        metrics: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        #: 0 turns the periodic look off (a SIGHUP still reloads)
        self.interval_s = interval_s
        self._clock = clock
        self._stamp: FileStamp | None = None
        self._next_look = 0.0
        self._requested = threading.Event()
        self._poll_lock = threading.Lock()
        #: background mode: wakes the watching thread early (request), and what it loaded
        self._wake = threading.Event()
        self._ready_lock = threading.Lock()
        self._ready: Registry | None = None
        #: successful reloads / refused files, also in the prometheus counters below
        self.reloads = 0
        self.failures = 0
        self._reloads = Counter(
            "pantau_registry_reloads",
            "Registry files loaded and swapped in without a restart",
            registry=metrics,
        )
        self._failures = Counter(
            "pantau_registry_reload_failures",
            "Changed registry files refused (invalid); the registry in use was kept",
            registry=metrics,
        )

    def start(self, *, background: threading.Event | None = None) -> None:
        """Remember the stamp of the file as it is now: what is loaded next is current.

        With ``background`` (a stop event), a daemon thread polls until that event is set and
        keeps the newest valid registry for :meth:`take`: a province-sized file takes seconds
        to parse and validate, which the ingester's consumer loop must not wait for."""
        self._stamp = FileStamp.of(self.path)
        self._next_look = self._clock() + self.interval_s
        if background is not None:
            thread = threading.Thread(
                target=self._watch, args=(background,), name="registry-watch", daemon=True
            )
            thread.start()

    def _watch(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(_WAKE_S)
            self._wake.clear()
            registry = self.poll()  # cheap unless due (a stat) or changed (a load)
            if registry is not None:
                with self._ready_lock:
                    self._ready = registry  # a newer one replaces one not taken yet

    def take(self) -> Registry | None:
        """Background mode: the registry loaded since the last call, if any (once)."""
        with self._ready_lock:
            registry, self._ready = self._ready, None
        return registry

    def request(self) -> None:
        """Look at the file on the next :meth:`poll`, and load it even if its stamp did not
        move (SIGHUP: the operator says it changed). Safe in a signal handler."""
        self._requested.set()
        self._wake.set()

    def poll(self) -> Registry | None:
        """The new registry if the file changed and is valid; None if it did not change, is
        not due to be looked at, or was refused (logged and counted, the old one stays)."""
        with self._poll_lock:
            forced = self._requested.is_set()
            now = self._clock()
            if not forced and (self.interval_s <= 0 or now < self._next_look):
                return None
            self._requested.clear()
            self._next_look = now + self.interval_s
            stamp = FileStamp.of(self.path)
            if stamp == self._stamp and not forced:
                return None
            self._stamp = stamp
            try:
                registry = load_registry(self.path)
            except RegistryError as exc:
                refused: RegistryError | None = exc
            else:
                refused = None
            if refused is not None:
                # One line, no traceback: RegistryError names the file, the place and the problem.
                log.error("registry reload refused, keeping the registry in use: %s", refused)
                self.failures += 1
                self._failures.inc()
                return None
            log.info(
                "registry reloaded from %s: %d sites, %d gateways, %d sensors",
                self.path,
                len(registry.sites),
                len(registry.gateways),
                len(registry.sensors),
            )
            self.reloads += 1
            self._reloads.inc()
            return registry
