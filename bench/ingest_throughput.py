"""Ingester throughput: readings/s end to end into InfluxDB, lag, memory and CPU, per payload
format, aggregates-only and with every raw reading stored, against a naive baseline.

    .venv/bin/python -m bench.ingest_throughput            # about 5 minutes
    .venv/bin/python -m bench.ingest_throughput --quick    # about 90 s, smoke run

Everything is real and runs on this machine: Mosquitto and InfluxDB (``pantau.services``, free
ports, temp dirs), the ingester as its own process (``python -m cloud.ingest run`` with
``PANTAU_*`` settings, so its RSS and CPU are its own), and load generator processes
(``bench.ingest_load``) publishing pre-encoded payloads at QoS 1 as gateways of a synthetic
province (registry written to a temp file; ``--gateways`` x ``--sensors-per-gateway``).

Each mode runs a fresh ingester (own client id, session expiry 0, own database) in two phases:

1. saturated: the load is kept ahead of what the ingester has stored by what it stored in the
   last ``--backlog`` seconds (credit), so the ingester never waits for input and the backlog
   stays bounded; the stored rate in steady state (after warm-up) is its capacity.
2. paced: an open-loop offered rate of ``--paced-fraction`` of that capacity; the lag here is
   what a healthy, not overloaded ingester adds.

Readings/s come from the ingester's own Prometheus counters: readings stored raw (incremented
after InfluxDB accepted them, before the acks), or in aggregates-only mode the lag histogram's
count (one observation per reading folded into the state whose rollups are then written and
acknowledged), read between the first and last step of the counter in the measured window.
Lag is ``storage time - observation time``: publishers stamp ``ts`` = send time; the time
reading k was stored is read off the stored counter's curve and its send time off the published
curve (messages are handled in order), so every reading of the window counts, with the scrape
period (``--scrape``) as resolution. The
ingester's own lag histogram is printed beside it. Raw modes end by draining and counting the
points in InfluxDB, which must equal the stored counter. RSS peak is the ingester's VmHWM; CPU
is from /proc/<pid>/stat over the measured window (100 % = one core), for every process of the
mode, the bench itself, and ``others``: what processes outside the benchmark took of the
machine meanwhile (a busy machine lowers every figure). Before the modes, the bench measures
what InfluxDB alone stores of raw lines as the ingester formats them (1 and ``--writers``
writers), and of the same points tagged by sensor only: the ceiling of the raw modes.

The naive baseline (``run_naive``) is what one would write first: a paho callback per message
that formats each reading's line (``cloud.influx`` helpers) and does one InfluxDB write per
message before returning (so paho acks after storage). It runs on the same load.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import bisect
import math
import multiprocessing as mp
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import yaml

from bench.ingest_load import (
    LoadJob,
    gateway_loads,
    json_batch_templates,
    run_load,
    synthetic_province,
    topic_for,
)
from city import Registry, load_registry
from cloud.influx import InfluxHTTP, format_line, series_key
from cloud.ingest.decode import Message, decode_window
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from cloud.ingest.writer import PointBuilder
from pantau.services import InfluxDB, Mosquitto, free_port

_CTX = mp.get_context("spawn")
_CLK = os.sysconf("SC_CLK_TCK")
_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN|\+Inf)$")

#: issue 5 goals, readings/s
GOALS = {
    ("reading", False): 60_000,
    ("json", False): 1_000_000,
    ("binary", False): 2_500_000,
    ("json", True): 450_000,
    ("binary", True): 450_000,
}
RSS_GOAL_MB = 300


# ---- metrics and /proc ---------------------------------------------------------------------
class BenchError(Exception):
    """A mode could not be measured (its ingester died or never subscribed)."""


def scrape(url: str, client: httpx.Client | None = None) -> dict[str, float]:
    """Prometheus text exposition as ``{'name{labels}': value}``."""
    out: dict[str, float] = {}
    text = (client.get(url) if client is not None else httpx.get(url, timeout=5)).text
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def stored_of(metrics: dict[str, float], *, raw: bool) -> float:
    """Readings the ingester has handled for good: stored raw (raw mode), or folded into the
    state whose rollups it writes before acknowledging (aggregates-only: the lag histogram
    observes each such reading once, and there is no raw-stored count to read)."""
    names = ["pantau_ingest_readings_acked_total"]
    names += ["pantau_ingest_readings_stored_total"] if raw else []
    names += ["pantau_ingest_lag_seconds_count"]
    for name in names:
        if name in metrics:
            return metrics[name]
    raise BenchError(f"the ingester exports none of {names}")


def dead_letters(metrics: dict[str, float]) -> dict[str, float]:
    """Dead-lettered messages/readings by reason."""
    out = {}
    for key, value in metrics.items():
        m = re.match(r'pantau_ingest_dead_letters_total\{reason="([^"]*)"\}', key)
        if m and value:
            out[m.group(1)] = value
    return out


def histogram_quantiles(
    before: dict[str, float], after: dict[str, float], name: str, qs: tuple[float, ...]
) -> list[float] | None:
    """Upper bucket bounds holding the quantiles ``qs`` of observations between two scrapes."""
    buckets: list[tuple[float, float]] = []
    for key, value in after.items():
        m = re.match(rf'{name}_bucket\{{.*le="([^"]+)".*\}}', key)
        if m:
            buckets.append((float(m.group(1)), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    out = []
    for q in qs:
        out.append(next(le for le, count in buckets if count >= q * total))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or waiting for I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _CLK


def vm_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory line (VmHWM, VmRSS) in kB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---- the naive baseline ----------------------------------------------------------------------
def run_naive(
    *,
    mqtt_port: int,
    password: str,
    influx_url: str,
    database: str,
    city_file: str,
    stored: Synchronized[int],
    ready: Any,
    stop: Any,
) -> None:
    """One paho callback per message, one InfluxDB write per message, ack on return."""
    import orjson  # noqa: PLC0415 - runs in a spawned process
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    registry = load_registry(city_file)
    influx = InfluxHTTP(url=influx_url, database=database, timeout=30).start()
    influx.ensure_database()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        doc = orjson.loads(msg.payload)
        readings = doc.get("readings", [doc])
        lines = []
        for r in readings:
            sensor = registry.sensors[r["sensor"]]
            key = series_key(
                r["kind"], {"sensor": sensor.id, "site": sensor.site, "gateway": sensor.gateway}
            )
            fields = {**r["values"], "seq": r["seq"]}
            lines.append(format_line(key, fields, r["ts"] * 1000 + r["seq"] % 1000))
        influx.write(lines, precision="u")
        stored.value += len(readings)

    def on_connect(client: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        client.subscribe([("pantau/v1/+/+/reading", 1), ("pantau/v1/+/+/readings", 1)])

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="pantau-ingest-1"
    )
    client.username_pw_set("pantau-ingest", password)
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()
    influx.close()


# ---- modes ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Mode:
    """One row of the result table."""

    key: str
    channel: str  # reading | json | binary
    store_raw: bool
    naive: bool = False

    @property
    def title(self) -> str:
        what = {"reading": "(a) single readings", "json": "(b) JSON batches"}.get(
            self.channel, "(c) binary batches"
        )
        if self.naive:
            return f"{what}, naive baseline"
        return f"{what}, {'raw + aggregates' if self.store_raw else 'aggregates only'}"


MODES = (
    Mode(key="a-agg", channel="reading", store_raw=False),
    Mode(key="a-raw", channel="reading", store_raw=True),
    Mode(key="a-naive", channel="reading", store_raw=True, naive=True),
    Mode(key="b-agg", channel="json", store_raw=False),
    Mode(key="b-raw", channel="json", store_raw=True),
    Mode(key="b-naive", channel="json", store_raw=True, naive=True),
    Mode(key="c-agg", channel="binary", store_raw=False),
    Mode(key="c-raw", channel="binary", store_raw=True),
)


@dataclass(kw_only=True)
class Result:
    """What one mode measured."""

    mode: Mode
    note: str = ""
    rate: float = float("nan")
    msg_rate: float = float("nan")
    lag_sat: tuple[float, float] | None = None
    paced_rate: float = float("nan")
    paced_offered: float = float("nan")
    lag: tuple[float, float] | None = None
    hist_lag: list[float] | None = None
    hist_lag_sat: list[float] | None = None
    unacked_max: float = float("nan")
    #: (flush windows/s, readings per window)
    windows_sat: tuple[float, float] | None = None
    windows_paced: tuple[float, float] | None = None
    rss_mb: float = float("nan")
    cpu: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Timing:
    """Seconds of each phase of a mode."""

    warmup: float
    measure: float
    paced_warmup: float
    paced_measure: float
    drain: float


@dataclass(kw_only=True)
class Bench:
    """Services and load shared by every mode."""

    args: argparse.Namespace
    tmp: Path
    registry: Registry
    city_file: Path
    doc: dict[str, Any]
    passwords: dict[str, str]
    broker: Mosquitto
    influx: InfluxDB
    timing: Timing
    supports_store_raw: bool
    supports_parallel: bool
    binary_ok: bool

    # -- load ---------------------------------------------------------------------------
    def start_load(self, channel: str) -> tuple[list[SpawnProcess], list[Any], Any]:
        loads = gateway_loads(self.doc, self.passwords)
        n = self.args.load_procs
        batch = self.args.json_batch if channel == "json" else self.args.binary_batch
        procs, shared = [], []
        stop = _CTX.Event()
        for i in range(n):
            job = LoadJob(
                host="127.0.0.1",
                port=self.broker.port,
                channel=channel,
                batch=batch,
                loads=tuple(loads[i::n]),
            )
            # (allowed, published, acked), in run_load's argument order
            vals = (_CTX.RawValue("q", 0), _CTX.RawValue("q", 0), _CTX.RawValue("q", 0))
            p = _CTX.Process(target=run_load, args=(job, *vals, stop), daemon=True)
            p.start()
            procs.append(p)
            shared.append(vals)
        return procs, shared, stop

    # -- ingester -------------------------------------------------------------------------
    def log_path(self, mode: Mode) -> Path:
        return self.tmp / f"ingest-{mode.key}.log"

    def start_ingester(self, mode: Mode, metrics_port: int) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
        env.update(
            PANTAU_MODE="development",
            PANTAU_MQTT_URL=self.broker.url,
            PANTAU_MQTT_USERNAME="pantau-ingest",
            PANTAU_MQTT_PASSWORD=self.passwords["pantau-ingest"],
            PANTAU_MQTT_CLIENT_ID="pantau-ingest-1",  # the one id its account may use
            PANTAU_MQTT_SESSION_EXPIRY_S="0",
            PANTAU_INFLUX_URL=self.influx.url,
            PANTAU_INFLUX_DB=f"bench_{mode.key.replace('-', '_')}",
            PANTAU_CITY_FILE=str(self.city_file),
            PANTAU_DEAD_LETTER_DIR=str(self.tmp / "dead-letter" / mode.key),
            PANTAU_METRICS_PORT=str(metrics_port),
        )
        if self.supports_store_raw:
            env["PANTAU_STORE_RAW"] = "true" if mode.store_raw else "false"
        if self.supports_parallel and mode.store_raw:
            env["PANTAU_WRITE_PARALLELISM"] = str(self.args.writers)
        log = self.log_path(mode).open("ab")
        argv = [sys.executable, "-m", "cloud.ingest", "run"]
        if self.args.profile is not None:
            # cProfile of the consumer (main) thread; written when SIGTERM ends the run.
            self.args.profile.mkdir(parents=True, exist_ok=True)
            out = self.args.profile / f"ingest-{mode.key}.prof"
            argv[1:3] = ["-m", "cProfile", "-o", str(out), "-m", "cloud.ingest"]
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


@dataclass(kw_only=True)
class Sampler:
    """Keeps the load's credit and records the published and stored curves."""

    bench: Bench
    shared: list[Any]
    metrics_url: str | None
    naive_stored: Any = None
    raw: bool = True
    pids: dict[str, int] = field(default_factory=dict)
    t_pub: list[float] = field(default_factory=list)
    pub: list[int] = field(default_factory=list)
    t_sto: list[float] = field(default_factory=list)
    sto: list[float] = field(default_factory=list)
    last_metrics: dict[str, float] = field(default_factory=dict)
    #: one keep-alive connection for every scrape (a new one each time costs the bench CPU)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5))

    def published(self) -> int:
        return sum(int(published.value) for _, published, _ in self.shared)

    def stored(self) -> float:
        if self.naive_stored is not None:
            return float(self.naive_stored.value)
        if self.metrics_url is None:
            return 0.0
        self.last_metrics = scrape(self.metrics_url, self.http)
        return stored_of(self.last_metrics, raw=self.raw)

    def set_allowed(self, total: float) -> None:
        """Let the load publish up to ``total`` readings in all, the rest shared equally."""
        counts = [int(published.value) for _, published, _ in self.shared]
        share = max(0, int(total) - sum(counts)) // len(self.shared)
        for (allowed, _, _), count in zip(self.shared, counts, strict=True):
            allowed.value = count + share

    def cpu(self) -> dict[str, float]:
        """CPU seconds of each process of the mode, the bench's coordinator and the whole
        machine (``others`` is then what processes outside this benchmark took)."""
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        out["bench"] = cpu_seconds(os.getpid())
        out["others"] = machine_busy_seconds() - sum(out.values())
        return out

    def run(self, seconds: float, *, floor: int, pace: float | None = None) -> None:
        """Feed the load for ``seconds``: by credit (``--backlog`` s of recent stored rate
        ahead of the stored count, at least ``floor``) or at ``pace`` readings/s."""
        start = time.monotonic()
        base = self.published()
        next_scrape = 0.0
        stored = self.sto[-1] if self.sto else 0.0
        while (now := time.monotonic()) - start < seconds:
            if now >= next_scrape:
                stored = self.stored()
                self.t_sto.append(now)
                self.sto.append(stored)
                next_scrape = now + self.bench.args.scrape
            self.t_pub.append(now)
            self.pub.append(self.published())
            if pace is None:
                # In flight: what was stored over the last `backlog` seconds. Same span as
                # multiplier: the estimate cannot run away on one large window's step.
                span = self.bench.args.backlog
                self.set_allowed(stored + max(floor, span * self.recent_rate(span)))
            else:
                self.set_allowed(base + pace * (now - start))
            time.sleep(0.01)

    def drain(self, timeout: float) -> bool:
        """Offer nothing more until everything published is stored (True) or ``timeout``."""
        published = self.published()
        self.set_allowed(published)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            stored = self.stored()
            self.t_sto.append(now)
            self.sto.append(stored)
            self.t_pub.append(now)
            self.pub.append(self.published())
            if stored >= published:
                return True
            time.sleep(self.bench.args.scrape)
        return False

    def recent_rate(self, span: float) -> float:
        if len(self.t_sto) < 2:
            return 0.0
        t1, s1 = self.t_sto[-1], self.sto[-1]
        i = bisect.bisect_left(self.t_sto, t1 - span)
        t0, s0 = self.t_sto[i], self.sto[i]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def window(self, t0: float, t1: float) -> tuple[float, tuple[float, float] | None]:
        """(stored readings/s, lag p50/p99 in s) for the readings stored between t0 and t1."""
        ts, ss = np.array(self.t_sto), np.array(self.sto)
        inside = (ts >= t0) & (ts <= t1)
        if inside.sum() < 2:
            return float("nan"), None
        tw, sw = ts[inside], ss[inside]
        # The counter moves once per flush window: measure between the first and the last
        # step seen, so whole windows are counted over the time they took.
        steps = np.flatnonzero(np.diff(sw) > 0) + 1
        if len(steps) < 2:
            # not even two flush windows ended inside: no rate can be read off the counter
            return float("nan"), None
        a, b = steps[0], steps[-1]
        rate = (sw[b] - sw[a]) / (tw[b] - tw[a])
        if sw[-1] <= sw[0]:
            return rate, None
        k = np.linspace(sw[0] + 1, sw[-1], 2000)
        t_stored = _first_reach(ts, ss, k)
        t_sent = _first_reach(np.array(self.t_pub), np.array(self.pub, dtype=float), k)
        lag = t_stored - t_sent
        return rate, (float(np.percentile(lag, 50)), float(np.percentile(lag, 99)))


def _first_reach(t: npt.NDArray[Any], c: npt.NDArray[Any], k: npt.NDArray[Any]) -> Any:
    """When a non-decreasing count ``c`` (sampled at times ``t``) reached each ``k``: linear
    between the last sample below ``k`` and the first at or above it."""
    j = np.clip(np.searchsorted(c, k, side="left"), 1, len(c) - 1)
    c0, c1 = c[j - 1], c[j]
    frac = np.clip((k - c0) / np.maximum(c1 - c0, 1), 0.0, 1.0)
    return t[j - 1] + frac * (t[j] - t[j - 1])


def _wait_ingester(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise BenchError(f"ingester exited with {proc.returncode}: " + " | ".join(tail))
        if _metrics_ready(url):
            return
        time.sleep(0.05)
    raise BenchError(f"ingester did not subscribe within {timeout:.0f} s (log {log})")


def _metrics_ready(url: str) -> bool:
    try:
        return scrape(url).get("pantau_ingest_subscribed") == 1.0
    except httpx.HTTPError:
        return False


def _floor(mode: Mode, bench: Bench) -> int:
    if mode.channel == "reading":
        return 20_000
    batch = bench.args.json_batch if mode.channel == "json" else bench.args.binary_batch
    return 40 * int(batch)


def run_mode(bench: Bench, mode: Mode) -> Result:
    """Start an ingester (or the naive consumer), load it, measure, tear down."""
    res = Result(mode=mode)
    if mode.channel == "binary" and not bench.binary_ok:
        res.note = "n/a: contract/binary.py not present"
        return res
    if not mode.naive and not mode.store_raw and not bench.supports_store_raw:
        res.note = "n/a: ingester has no store_raw setting yet (raw is always stored)"
        return res
    tm = bench.timing
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    ingester: subprocess.Popen[bytes] | None = None
    naive: SpawnProcess | None = None
    naive_stop = None
    naive_stored = None
    db = f"bench_{mode.key.replace('-', '_')}"
    if mode.naive:
        naive_stored = _CTX.RawValue("q", 0)
        ready, naive_stop = _CTX.Event(), _CTX.Event()
        naive = _CTX.Process(
            target=run_naive,
            kwargs={
                "mqtt_port": bench.broker.port,
                "password": bench.passwords["pantau-ingest"],
                "influx_url": bench.influx.url,
                "database": db,
                "city_file": str(bench.city_file),
                "stored": naive_stored,
                "ready": ready,
                "stop": naive_stop,
            },
            daemon=True,
        )
        naive.start()
        if not ready.wait(30):
            raise BenchError("naive consumer did not subscribe in 30 s")
        pid = naive.pid or 0
    else:
        ingester = bench.start_ingester(mode, metrics_port)
        _wait_ingester(ingester, metrics_url, bench.log_path(mode), 60)
        pid = ingester.pid
    procs, shared, stop = bench.start_load(mode.channel)
    sampler = Sampler(
        bench=bench,
        shared=shared,
        metrics_url=None if mode.naive else metrics_url,
        naive_stored=naive_stored,
        raw=mode.store_raw,
    )
    sampler.pids = {
        "ingester": pid,
        "broker": _pid(bench.broker.proc),
        "influxd": _pid(bench.influx.proc),
    }
    for i, p in enumerate(procs):
        sampler.pids[f"load{i}"] = p.pid or 0
    try:
        floor = _floor(mode, bench)
        sampler.run(tm.warmup, floor=floor)
        cpu0, t0 = sampler.cpu(), time.monotonic()
        m0 = dict(sampler.last_metrics)
        sampler.run(tm.measure, floor=floor)
        t1, cpu1 = time.monotonic(), sampler.cpu()
        m1 = dict(sampler.last_metrics)
        res.rate, res.lag_sat = sampler.window(t0, t1)
        res.hist_lag_sat = histogram_quantiles(m0, m1, "pantau_ingest_lag_seconds", (0.5, 0.99))
        res.cpu = {k: (cpu1[k] - cpu0[k]) / (t1 - t0) for k in cpu1}
        if not mode.naive:
            msgs = m1.get("pantau_ingest_messages_total", 0) - m0.get(
                "pantau_ingest_messages_total", 0
            )
            res.msg_rate = msgs / (t1 - t0)
            res.windows_sat = _windows(m0, m1, t1 - t0)
            dead = dead_letters(m1)
            if dead:
                res.lines.append(f"dead letters: {dead}  (the load should have none)")
        if not mode.naive and tm.paced_measure > 0 and res.rate > 0:
            # The saturated phase's backlog must be gone, or the paced lag would include it.
            sampler.drain(tm.drain)
            pace = bench.args.paced_fraction * res.rate
            res.paced_offered = pace
            sampler.run(tm.paced_warmup, floor=floor, pace=pace)
            t2 = time.monotonic()
            m2 = dict(sampler.last_metrics)
            sampler.run(tm.paced_measure, floor=floor, pace=pace)
            t3 = time.monotonic()
            res.paced_rate, res.lag = sampler.window(t2, t3)
            res.windows_paced = _windows(m2, sampler.last_metrics, t3 - t2)
            res.hist_lag = histogram_quantiles(
                m2, sampler.last_metrics, "pantau_ingest_lag_seconds", (0.5, 0.99)
            )
        # stop offering; drain what is in flight
        drained = sampler.drain(tm.drain) if not mode.naive else False
        stop.set()
        for p in procs:
            p.join(10)
        published = sampler.published()
        if not mode.naive:
            stored = sampler.stored()
            done = "all" if drained and stored >= published else f"{stored:,.0f} of"
            res.lines.append(f"drain: {done} {published:,} published readings stored")
            if mode.store_raw:
                with InfluxHTTP(url=bench.influx.url, database=db, timeout=120) as client:
                    series = client.query("SELECT count(seq) FROM bed, crowd, queue")
                points = sum(int(s.values[0][1]) for s in series if s.values)
                same = "=" if points == int(stored) else "!="
                res.lines.append(
                    f"InfluxDB holds {points:,} raw points {same} {stored:,.0f} counted stored"
                )
        res.rss_mb = vm_kb(pid, "VmHWM") / 1024
        res.unacked_max = sampler.last_metrics.get("pantau_ingest_unacked_messages_max", math.nan)
    finally:
        sampler.http.close()
        stop.set()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        if ingester is not None:
            os.killpg(ingester.pid, signal.SIGTERM)
            try:
                ingester.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(ingester.pid, signal.SIGKILL)
                ingester.wait()
        if naive is not None and naive_stop is not None:
            naive_stop.set()
            naive.join(10)
            if naive.is_alive():
                naive.kill()
    return res


def _windows(m0: dict[str, float], m1: dict[str, float], seconds: float) -> tuple[float, float]:
    """(flush windows per s, readings per window) between two scrapes."""
    n = m1.get("pantau_ingest_windows_total", 0.0) - m0.get("pantau_ingest_windows_total", 0.0)
    r = m1.get("pantau_ingest_readings_total", 0.0) - m0.get("pantau_ingest_readings_total", 0.0)
    return n / seconds, (r / n if n else math.nan)


def _pid(proc: subprocess.Popen[bytes] | None) -> int:
    return proc.pid if proc is not None else 0


# ---- what InfluxDB alone takes ---------------------------------------------------------------
def raw_chunks(
    bench: Bench, lines_wanted: int, *, slim: bool = False, chunk: int = 5000
) -> list[bytes]:
    """Bodies of ``chunk`` raw lines each, exactly as the ingester formats them (its own
    decoder and PointBuilder), every point distinct. ``slim``: the same points tagged with the
    sensor id only (what the registry can add at query time is left out)."""
    loads = gateway_loads(bench.doc, bench.passwords)
    index = CityIndex.from_registry(bench.registry)
    builder = PointBuilder(index=index)
    if slim:
        builder.raw_keys = [
            series_key(s.kind.value, {"sensor": s.id}) for s in bench.registry.doc.sensors
        ]
    tmpls = [json_batch_templates(ld, bench.args.json_batch)[0] for ld in loads]
    now = time.time_ns() // 1_000_000
    base = now - 600_000  # ten minutes ago: inside any retention, never "future"
    lines: list[str] = []
    n = 0
    while len(lines) < lines_wanted:
        msgs = [
            Message(topic=topic_for("json", ld), payload=t.fill(base + n, n), received_ms=now)
            for ld, t in zip(loads, tmpls, strict=True)
        ]
        lines += builder.raw(decode_window(msgs, index, now).readings).lines
        n += 1
    return ["\n".join(lines[i : i + chunk]).encode() for i in range(0, len(lines), chunk)]


def store_ceiling(
    bench: Bench, writers: int, seconds: float, chunks: list[bytes], db: str = "bench_ceiling"
) -> float:
    """Points/s InfluxDB stores from ``writers`` threads sending pre-formatted raw chunks
    (nothing else running): the ceiling of any raw mode."""
    clients = [InfluxHTTP(url=bench.influx.url, database=db, timeout=60) for _ in range(writers)]
    for c in clients:
        c.start()
    clients[0].ensure_database()
    for body in chunks[:2]:  # every series exists before the clock starts
        clients[0].write(body, precision="u")
    todo = iter(chunks[2:])
    lock = threading.Lock()
    done = [0]
    deadline = time.monotonic() + seconds

    def work(client: InfluxHTTP) -> None:
        while time.monotonic() < deadline:
            with lock:
                body = next(todo, None)
            if body is None:
                return
            client.write(body, precision="u")
            with lock:
                done[0] += body.count(b"\n") + 1

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    for c in clients:
        c.close()
    return done[0] / elapsed


# ---- report --------------------------------------------------------------------------------
def _fmt_rate(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.0f}"


def _fmt_lag(lag: tuple[float, float] | None) -> str:
    return "n/a" if lag is None else f"{lag[0] * 1000:,.0f} / {lag[1] * 1000:,.0f} ms"


def _fmt_windows(w: tuple[float, float]) -> str:
    return f"{w[0]:.1f}/s of {_fmt_rate(w[1])} readings"


def _fmt_hist(q: list[float] | None) -> str:
    if not q:
        return ""
    return f" (ingester histogram: p50 <= {q[0] * 1000:,.0f}, p99 <= {q[1] * 1000:,.0f} ms)"


def describe(res: Result, bench: Bench) -> list[str]:
    """The detailed lines of one mode."""
    m = res.mode
    out = [f"[{m.key}] {m.title}"]
    if res.note:
        return [*out, f"  {res.note}"]
    writers = ""
    if m.store_raw and not m.naive:
        writers = f", {bench.args.writers} writers" if bench.supports_parallel else ", 1 writer"
    # 'others' is a difference of counters read microseconds apart: a tiny negative is 0
    cpu = ", ".join(f"{k} {max(v, 0.0) * 100:.0f}%" for k, v in res.cpu.items())
    msgs = "" if math.isnan(res.msg_rate) else f" ({res.msg_rate:,.0f} msgs/s)"
    if math.isnan(res.rate):
        msgs += " (fewer than 2 flush windows ended in the measured window: run longer)"
    out.append(
        f"  saturated{writers}: {_fmt_rate(res.rate)} readings/s stored{msgs}; "
        f"lag p50/p99 {_fmt_lag(res.lag_sat)}{_fmt_hist(res.hist_lag_sat)} "
        f"(backlog held at ~{bench.args.backlog:g} s of stored rate)"
    )
    out.append(f"  CPU over the measured window (100% = one core): {cpu}")
    if res.windows_sat:
        out.append(f"  flush windows: {_fmt_windows(res.windows_sat)} saturated")
    if not math.isnan(res.paced_offered):
        out.append(
            f"  paced at {_fmt_rate(res.paced_offered)} readings/s "
            f"({bench.args.paced_fraction:.0%}): {_fmt_rate(res.paced_rate)} stored/s, "
            f"lag p50/p99 {_fmt_lag(res.lag)}{_fmt_hist(res.hist_lag)}"
        )
        if res.windows_paced:
            out.append(f"  flush windows: {_fmt_windows(res.windows_paced)} paced")
    who = "consumer" if m.naive else "ingester"
    depth = ""
    if not math.isnan(res.unacked_max):
        depth = f"; unacknowledged messages held, max {res.unacked_max:,.0f}"
    out.append(f"  {who} RSS peak {res.rss_mb:,.0f} MB{depth}")
    out += [f"  {line}" for line in res.lines]
    return out


def summary(results: list[Result], paced_fraction: float) -> list[str]:
    """The table against the issue's goals."""
    naive = {r.mode.channel: r.rate for r in results if r.mode.naive}
    rows = [
        f"{'mode':<38}{'readings/s':>11}  {'goal':<19}{'lag p50/p99':<22}{'RSS MB':>7}  x naive",
    ]
    for r in results:
        if r.note:
            rows.append(f"{r.mode.title:<38}{r.note}")
            continue
        goal = GOALS.get((r.mode.channel, r.mode.store_raw))
        goal_s = ""
        if goal is not None and not r.mode.naive:
            share = "" if math.isnan(r.rate) else f" ({r.rate / goal:.0%})"
            amount = f"{goal / 1e6:g} M" if goal >= 1_000_000 else f"{goal / 1e3:g} k"
            goal_s = f">= {amount}{share}"
        base = naive.get(r.mode.channel)
        ratio = ""
        if base and not r.mode.naive and not math.isnan(r.rate):
            ratio = f"{r.rate / base:,.1f}x"
        # paced lag where there is one; a saturated lag mostly measures the bench's backlog
        lag = _fmt_lag(r.lag) if r.lag is not None else _fmt_lag(r.lag_sat) + " sat"
        rows.append(
            f"{r.mode.title:<38}{_fmt_rate(r.rate):>11}  {goal_s:<19}{lag:<22}"
            f"{r.rss_mb:>7,.0f}  {ratio}"
        )
    rows.append(
        f"readings/s: saturated; lag: paced at {paced_fraction:.0%} of it, 'sat' = saturated. "
        f"Goals: >= 10x naive, RSS <= {RSS_GOAL_MB} MB. Measured, never asserted."
    )
    return rows


def _revision() -> str:
    """The commit the figures belong to, marked when the tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def main() -> None:
    """Run every mode and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (~1 minute)")
    parser.add_argument("--gateways", type=int, default=None, help="16 (--quick: 8)")
    parser.add_argument("--sensors-per-gateway", type=int, default=500)
    parser.add_argument("--json-batch", type=int, default=500, help="readings per JSON batch")
    parser.add_argument("--binary-batch", type=int, default=2000, help="readings per binary batch")
    parser.add_argument("--load-procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--writers", type=int, default=2, help="PANTAU_WRITE_PARALLELISM (raw)")
    parser.add_argument("--paced-fraction", type=float, default=0.7)
    parser.add_argument(
        "--backlog", type=float, default=3.0, help="saturated: s of stored rate kept in flight"
    )
    parser.add_argument("--scrape", type=float, default=0.025, help="s between metric scrapes")
    parser.add_argument("--modes", default="", help="comma-separated keys, e.g. b-agg,b-naive")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--no-ceiling", action="store_true", help="skip measuring InfluxDB alone first"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="write a cProfile of each ingester here"
    )
    args = parser.parse_args()
    timing = (
        Timing(warmup=1.5, measure=2.5, paced_warmup=0, paced_measure=0, drain=4)
        if args.quick
        else Timing(warmup=3, measure=8, paced_warmup=2, paced_measure=5, drain=15)
    )
    if args.gateways is None:
        args.gateways = 8 if args.quick else 16
    modes = [m for m in MODES if not args.modes or m.key in args.modes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="pantau-bench-ingest-"))
    doc = synthetic_province(gateways=args.gateways, sensors_per_gateway=args.sensors_per_gateway)
    city_file = tmp / "province.yaml"
    city_file.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    registry = load_registry(city_file)
    passwords = {u: secrets.token_urlsafe(12) for u in ("pantau-ingest", *registry.gateways)}
    fields = IngestSettings.model_fields
    try:
        import contract.binary  # noqa: F401, PLC0415

        binary_ok = True
    except ImportError:
        binary_ok = False
    broker = Mosquitto(workdir=tmp / "mosquitto", users=dict(passwords), registry=registry)
    influx = InfluxDB(workdir=tmp / "influxdb")
    results: list[Result] = []
    started = time.monotonic()
    try:
        broker.start()
        influx.start()
        bench = Bench(
            args=args,
            tmp=tmp,
            registry=registry,
            city_file=city_file,
            doc=doc,
            passwords=passwords,
            broker=broker,
            influx=influx,
            timing=timing,
            supports_store_raw="store_raw" in fields,
            supports_parallel="write_parallelism" in fields,
            binary_ok=binary_ok,
        )
        print(
            f"pantau ingester benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} cores, commit {_revision()}\n"
            f"command: python -m bench.ingest_throughput {' '.join(sys.argv[1:])}\n"
            f"synthetic province: {len(registry.gateways)} gateways x "
            f"{args.sensors_per_gateway} sensors = {len(registry.sensors):,} sensors, "
            f"{len(registry.sites)} sites; JSON batch {args.json_batch}, binary batch "
            f"{args.binary_batch} readings; {args.load_procs} load processes\n"
            f"phases: saturated {timing.warmup:g}+{timing.measure:g} s, paced "
            f"{timing.paced_warmup:g}+{timing.paced_measure:g} s (warm-up+measured); "
            f"lag resolution ~{args.scrape * 1000:.0f} ms\n",
            flush=True,
        )
        if not args.no_ceiling:
            seconds = 1.5 if args.quick else 4.0
            chunks = raw_chunks(bench, int(seconds * 200_000))
            one = store_ceiling(bench, 1, seconds, chunks[: len(chunks) // 2])
            more = store_ceiling(bench, args.writers, seconds, chunks[len(chunks) // 2 :])
            slim = raw_chunks(bench, int(seconds * 150_000), slim=True)
            slim_rate = store_ceiling(bench, args.writers, seconds, slim, db="bench_ceiling_slim")
            print(
                f"InfluxDB alone, raw points as the ingester formats them "
                f"({len(chunks[0]) // 5000} bytes/line, 5,000 lines/write): "
                f"{one:,.0f} points/s from 1 writer, {more:,.0f} from {args.writers}; "
                f"the same points tagged by sensor only ({len(slim[0]) // 5000} bytes/line): "
                f"{slim_rate:,.0f} from {args.writers}\n",
                flush=True,
            )
            del chunks, slim
        for mode in modes:
            try:
                res = run_mode(bench, mode)
            except BenchError as exc:
                res = Result(mode=mode, note=f"failed: {exc}")
            results.append(res)
            print("\n".join(describe(res, bench)), flush=True)
        print()
        print("\n".join(summary(results, args.paced_fraction)))
        print(f"total {time.monotonic() - started:.0f} s")
    finally:
        for server in (broker, influx):
            server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
