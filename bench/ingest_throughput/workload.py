"""The cases the bench measures (issue 14's modes) and the backlog each one drains.

A workload is one payload format and storage mode, the backlog it drains (``messages`` at
``scale`` 1) and the limit it is held against; goals are the issue's, as ratios from one run.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.ingest_load import GatewayLoad, backlog_payloads

#: Aggregates-only and raw modes are judged against these limits (see ``limits`` and
#: ``influx_limit``); INFLUX_RAW (InfluxDB on the raw lines alone) is shown beside INFLUX.
CONSUMER, ORJSON, BINARY, INFLUX = "consumer", "orjson", "binary", "influx"
INFLUX_RAW = "influx_raw"
#: every line again with the payloads' decode beside it: the bound of any ingester (shown)
INFLUX_DECODE = "influx_decode"
RSS_GOAL_MB = 300
#: issue 5's raw rates, readings/s: (d) must reach twice these
ISSUE5_RAW = {"json": 77_008, "binary": 118_683}


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One row group of the table."""

    key: str
    title: str
    channel: str  # reading | json | binary
    store_raw: bool
    #: backlog at --scale 1: messages (a batch is one message)
    messages: int
    #: ingester processes to drain it with (scale-out members when more than one)
    members: tuple[int, ...] = (1,)
    limit: str = CONSUMER
    #: goal: subject rate per process >= goal_ratio x the limit's rate
    goal_ratio: float | None = None
    #: goal: subject rate >= this many readings/s
    goal_rate: float | None = None

    def goal_text(self) -> str:
        """The issue's goal in words."""
        parts = []
        if self.goal_ratio is not None:
            per = " per process" if self.limit == CONSUMER else ""
            parts.append(f">= {self.goal_ratio:.0%} of {LIMIT_NAMES[self.limit]}{per}")
        if self.goal_rate is not None:
            parts.append(f">= {self.goal_rate / 1e6:g} M/s" if self.goal_rate >= 1e6 else
                         f">= {self.goal_rate / 1e3:,.0f} k/s")  # fmt: skip
        return " and ".join(parts)


LIMIT_NAMES = {
    CONSUMER: "paho count + ack",
    ORJSON: "orjson.loads alone",
    BINARY: "binary decode alone",
    INFLUX: "InfluxDB, every line",
    INFLUX_RAW: "InfluxDB, raw lines",
    INFLUX_DECODE: "InfluxDB + decode",
}

WORKLOADS = (
    Workload(
        key="a", title="(a) single readings, aggregates only", channel="reading",
        store_raw=False, messages=60_000, members=(1, 2), limit=CONSUMER, goal_ratio=0.80,
    ),
    Workload(
        key="b", title="(b) JSON batches, aggregates only", channel="json", store_raw=False,
        messages=4_000, limit=ORJSON, goal_ratio=0.75,
    ),
    Workload(
        key="c", title="(c) binary batches, aggregates only", channel="binary",
        store_raw=False, messages=3_000, limit=BINARY, goal_rate=2_500_000,
    ),
    Workload(
        key="d-json", title="(d) JSON batches, raw stored, 2 writers", channel="json",
        store_raw=True, messages=1_000, limit=INFLUX, goal_ratio=0.80,
        goal_rate=2 * ISSUE5_RAW["json"],
    ),
    Workload(
        key="d-binary", title="(d) binary batches, raw stored, 2 writers", channel="binary",
        store_raw=True, messages=400, limit=INFLUX, goal_ratio=0.80,
        goal_rate=2 * ISSUE5_RAW["binary"],
    ),
)  # fmt: skip


def sample_payloads(
    loads: list[GatewayLoad], channel: str, batch: int, messages: int
) -> list[tuple[str, bytes, int]]:
    """(topic, payload, readings) of the first ``messages`` messages a backlog of ``channel``
    holds, built as ``bench.drain_support.fill_backlog`` builds them (round-robin over the
    gateways, the same templates), observed 1 ms apart as a backlog published at about a
    thousand messages a second is: with one time for all, every window after the first would
    leave the rollups unchanged, and the InfluxDB limit would write none of them."""
    return backlog_payloads(loads, channel, batch, messages, step_ms=1)
