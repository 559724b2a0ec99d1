"""A changed city registry reaches the running API between requests, without a restart.

A task of the app's lifespan asks a :class:`cloud.registry_watch.RegistryWatch` every
``registry_poll_s`` whether the city file changed (loading and validating it off the event
loop; a bad file is refused there, logged and counted, and the registry in use stays). A new
registry is indexed in a worker thread, then swapped in *on the event loop*, all at once: the
live state carried over to it (:meth:`cloud.api.state.LiveState.reloaded`), the registry,
the live stream's site table and the auth region index. A request pins the live state (and
with it the registry) in its first dependency (cloud/api/deps.py), which also runs on the
loop, so each request reads one registry from start to end: a swap happens between requests,
never inside one.

Then the state is seeded again from InfluxDB: the sensors the new registry adds get their
latest stored readings (the ingester replays their dead letters when it swaps in the same
file), and any ingester delta refused while the two registries differed is covered, because
an ingester stores a reading before it publishes the delta that carries it.
docs/adr/0018-registry-hot-reload.md.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from city import Registry
from cloud.api.live import LiveHub
from cloud.api.state import LiveState
from cloud.api.state_follow import StateFollower
from cloud.influx import InfluxHTTP
from cloud.registry_watch import RegistryWatch
from contract.errors import StorageError

log = logging.getLogger(__name__)


class RegistryFollower:
    """Polls ``watch`` and swaps a new registry into ``app``. Construction does no I/O; run
    :meth:`run` as a task and cancel it to stop."""

    def __init__(
        self,
        *,
        app: FastAPI,
        watch: RegistryWatch,
        influx: InfluxHTTP,
        follower: StateFollower,
        hub: LiveHub,
    ) -> None:
        self.app = app
        self.watch = watch
        self.influx = influx
        self.follower = follower
        self.hub = hub
        #: registries swapped in so far
        self.swaps = 0

    async def run(self) -> None:
        """Look at the file every ``watch.interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.watch.interval_s)
            registry = await asyncio.to_thread(self.watch.poll)
            if registry is not None:
                await self.swap(registry)

    async def swap(self, registry: Registry) -> None:
        """Make ``registry`` the app's (between two requests), then seed the new state."""
        app = self.app
        old: LiveState = app.state.live
        # Indexing a province takes a moment: off the loop. A delta the old state takes
        # meanwhile is not lost: the seed below reads it from InfluxDB.
        live = await asyncio.to_thread(old.reloaded, registry)
        # No await from here to the last assignment: no request starts in between.
        app.state.registry = registry
        app.state.region_index = None  # rebuilt from the new registry on first use (auth.py)
        app.state.live = live
        self.follower.live = live
        self.hub.use_registry(registry)
        self.swaps += 1
        log.info(
            "API now serves the registry of %s: %d sites, %d sensors",
            registry.source,
            len(registry.sites),
            len(registry.sensors),
        )
        try:
            changed = await asyncio.to_thread(live.seed, self.influx)
        except StorageError as exc:
            log.warning("after the registry reload, seeding from InfluxDB failed: %s", exc)
            return
        log.info("seeded %d sensors from InfluxDB after the registry reload", changed)
