"""The paced phase: lag at a healthy load.

A lone ingester takes an open-loop offered rate of ``--paced-fraction`` of the rate it drained
at; the lag is what it adds when it is not overloaded. Lag is ``storage time - observation
time``: the load processes (``bench.load_publisher.run_load``) stamp ``ts`` = send time; the
time reading k was stored is read off the stored counter's curve and its send time off the
published curve (messages are handled in order), so every reading of the window counts, with
the scrape period (``--scrape``) as resolution. The ingester's own lag histogram is printed
beside it.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from bench.drain_support import Member, stop_members, until
from bench.ingest_throughput.env import Bench
from bench.ingest_throughput.procstat import histogram_quantiles, scrape, stored_of
from bench.ingest_throughput.workload import Workload
from bench.load_publisher import LoadJob, run_load

_CTX = mp.get_context("spawn")


@dataclass(kw_only=True)
class Paced:
    """What the paced phase measured."""

    offered: float
    stored_rate: float = float("nan")
    lag: tuple[float, float] | None = None
    hist: list[float] | None = None
    drained: bool = False


@dataclass(kw_only=True)
class Curves:
    """Published and stored counts over time, sampled by the coordinator."""

    t_pub: list[float] = field(default_factory=list)
    pub: list[int] = field(default_factory=list)
    t_sto: list[float] = field(default_factory=list)
    sto: list[float] = field(default_factory=list)

    def window(self, t0: float, t1: float) -> tuple[float, tuple[float, float] | None]:
        """(stored readings/s, lag p50/p99 in s) for the readings stored between t0 and t1."""
        ts, ss = np.array(self.t_sto), np.array(self.sto)
        inside = (ts >= t0) & (ts <= t1)
        tw, sw = ts[inside], ss[inside]
        # The counter moves once per flush window: measure between the first and the last
        # step seen, so whole windows are counted over the time they took.
        steps = np.flatnonzero(np.diff(sw) > 0) + 1
        if len(steps) < 2:
            return float("nan"), None
        a, b = steps[0], steps[-1]
        rate = (sw[b] - sw[a]) / (tw[b] - tw[a])
        k = np.linspace(sw[0] + 1, sw[-1], 2000)
        lag = _first_reach(ts, ss, k) - _first_reach(
            np.array(self.t_pub), np.array(self.pub, dtype=float), k
        )
        return rate, (float(np.percentile(lag, 50)), float(np.percentile(lag, 99)))


def _first_reach(t: npt.NDArray[Any], c: npt.NDArray[Any], k: npt.NDArray[Any]) -> Any:
    """When a non-decreasing count ``c`` (sampled at times ``t``) reached each ``k``: linear
    between the last sample below ``k`` and the first at or above it."""
    j = np.clip(np.searchsorted(c, k, side="left"), 1, len(c) - 1)
    c0, c1 = c[j - 1], c[j]
    frac = np.clip((k - c0) / np.maximum(c1 - c0, 1), 0.0, 1.0)
    return t[j - 1] + frac * (t[j] - t[j - 1])


def paced(bench: Bench, w: Workload, rate: float) -> Paced:
    """Offer ``--paced-fraction`` x ``rate`` to a lone ingester for ``--paced`` seconds (after
    2 s of warm-up) and measure the lag."""
    a = bench.args
    res = Paced(offered=a.paced_fraction * rate)
    (m,) = bench.members(w, 1, f"paced_{w.key.replace('-', '_')}")
    url = f"http://127.0.0.1:{m.metrics_port}/metrics"
    procs: list[Any] = []
    stop = _CTX.Event()
    shared: list[tuple[Any, Any, Any]] = []
    try:
        m.start()
        until(m.subscribed, 90, "paced ingester to subscribe")
        loads = bench.loads()
        for i in range(a.load_procs):
            job = LoadJob(
                host=bench.broker.host, port=bench.broker.port, channel=w.channel,
                batch=bench.batch(w.channel), loads=tuple(loads[i :: a.load_procs]),
            )  # fmt: skip
            vals = (_CTX.RawValue("q", 0), _CTX.RawValue("q", 0), _CTX.RawValue("q", 0))
            p = _CTX.Process(target=run_load, args=(job, *vals, stop), daemon=True)
            p.start()
            procs.append(p)
            shared.append(vals)
        _run(bench, w, m, url, shared, res, 2.0 + a.paced)
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        stop_members([m])
        bench.forget(m.client_id)
    return res


def _run(
    bench: Bench, w: Workload, m: Member, url: str, shared: list[Any], res: Paced, seconds: float
) -> None:
    curves = Curves()
    http = httpx.Client(timeout=5)
    per_proc = res.offered / len(shared)
    t_start = time.monotonic()
    next_scrape = 0.0
    marks: dict[str, tuple[float, dict[str, float]]] = {}
    last: dict[str, float] = {}
    try:
        while (now := time.monotonic()) - t_start < seconds:
            for allowed, _, _ in shared:
                allowed.value = int(per_proc * (now - t_start))
            if now >= next_scrape:
                last = scrape(url, http)
                curves.t_sto.append(now)
                curves.sto.append(stored_of(last, raw=w.store_raw))
                next_scrape = now + bench.args.scrape
                if "t0" not in marks and now - t_start >= 2.0:
                    marks["t0"] = (now, last)
            curves.t_pub.append(now)
            curves.pub.append(sum(int(p.value) for _, p, _ in shared))
            time.sleep(0.01)
        t1 = time.monotonic()
        t0, m0 = marks.get("t0", (t_start, {}))
        res.stored_rate, res.lag = curves.window(t0, t1)
        res.hist = histogram_quantiles(m0, last, "pantau_ingest_lag_seconds", (0.5, 0.99))
        published = curves.pub[-1]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not res.drained:
            res.drained = stored_of(scrape(url, http), raw=w.store_raw) >= published
            time.sleep(0.05)
    finally:
        http.close()
