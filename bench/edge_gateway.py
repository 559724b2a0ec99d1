"""Edge gateway benchmark: one real ``pantau edge run`` process under a big gateway's load.

200 sensors x 10 readings/s = 2000 readings/s, spread over ``--ports`` pseudo-terminals (the
agent opens the PTY slaves exactly as USB adapters); a real Mosquitto on a free port. Sensors
are not in step: each of a port's sensors reports at its own moment of the 100 ms
(``--phases 25``; ``--phases 1`` writes every port's frames in one burst per step, which
flattered the serial hub: 2.4 % of a core against 10.4 % before its nap, ADR 0054). The frame
writer runs in this process, so its CPU is not charged to the agent. After ``--warmup`` seconds
the agent's CPU time (utime + stime from ``/proc/<pid>/stat``, all its threads) and RSS
(``VmRSS``, sampled every second) are measured over ``--duration`` seconds, with the readings
the broker delivered to a subscriber in that window.

    .venv/bin/python -m bench.edge_gateway                    # about 45 s
    .venv/bin/python -m bench.edge_gateway --duration 10 --profile /tmp/edge.prof

Goals on this machine: <= 5 % of one core, <= 60 MB RSS, delivered readings/s == offered.
``--profile FILE`` runs the agent under cProfile timed by CPU (``time.thread_time``: its
publisher loop, the main thread) and writes the stats there (``python -m pstats FILE``);
figures from a profiled run are not the benchmark's. Printed, never asserted.

Also printed: CPU per thread, and the limits beside the subject from the same run
(``bench.edge_limits``) - the same byte stream decoded in this process by the frame decoder
alone and by ``PortReader.feed``, and the publisher loop's own work on those readings (batch
window, spool, envelope) - with the agent's CPU as a multiple of each; then the last two again
with the thread asleep for one sensor interval before each step, as the agent's threads sleep
(``limit, woken``): on this virtual machine the same work costs several times more after a
sleep, and the agent's multiple of that is its own overhead.

Measured 2026-11-30 (issue 14, ADR 0036) on the shared 2-core machine (load average 3.3-4.8),
8 PTYs, five pairs alternated with the code before: 2.15-2.35 % of a core (publisher loop
0.65-0.80 %, hub 1.20-1.30 %, MQTT network 0.15-0.20 %) against 2.50-2.65 %, RSS 46 MB.
Quiet figures of record before: 4.79 % and 5.69 % (ADR 0033); issue 4 (quiet): 7.7 %, 46 MB.
Sensors out of step (``--phases 25``, ADR 0054), 17:37-17:39 UTC: 13.08 % before the hub's nap;
3.95 %, 3.25 % and 3.15 % with it. docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.edge_limits import bed_frame, floor_pct, publisher_floor_pct
from bench.host_probe import wakeups_line
from bench.ingest_throughput.procstat import cpu_seconds_of
from contract.topics import Channel, build
from pantau.paths import ROOT
from pantau.services import Mosquitto

#: The agent under cProfile timed by its main thread's CPU clock: a wall-clock profile
#: charges the loop's sleeps and its waits for the GIL to whatever call was running.
_PROFILED = """
import cProfile, runpy, sys, time
out = sys.argv.pop(1)
prof = cProfile.Profile(time.thread_time)
prof.enable()
try:
    runpy.run_module("edge", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    prof.disable()
    prof.dump_stats(out)
"""
GW = "gw-bench"
SITE = "rs-bench"
PASSWORD = "gw-bench-pw"  # noqa: S105 - a throwaway broker user on a temp broker


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far."""
    return cpu_seconds_of(f"/proc/{pid}/stat")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each thread of ``pid``, by thread id (creation order)."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out[int(task.name)] = cpu_seconds_of(task / "stat")
    return out


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sensors:
    """``n`` sensors on ``ports`` PTYs, each reporting every ``interval_s`` with its own seq,
    at one of ``phases`` evenly spaced moments of the interval (1: all at once, one burst per
    port; more: sensors that are not in step, as real ones are not)."""

    def __init__(self, *, n: int, ports: int, interval_s: float, phases: int = 1) -> None:
        self.n = n
        self.interval_s = interval_s
        self.phases = max(1, phases)
        self.pairs = [os.openpty() for _ in range(ports)]
        self.paths = {f"bus{i}": os.ttyname(slave) for i, (_m, slave) in enumerate(self.pairs)}
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensors", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        ports, phases = len(self.pairs), self.phases
        tick = 0  # phases since the start
        t0 = time.monotonic()
        while not self._stop.is_set():
            step, phase = divmod(tick, phases)
            now_ms = time.time_ns() // 1_000_000
            wires: list[list[bytes]] = [[] for _ in range(ports)]
            for i in range(phase, self.n, phases):
                wires[i % ports].append(bed_frame(i, step, now_ms))
            for (master, _slave), wire in zip(self.pairs, wires, strict=True):
                if wire:
                    os.write(master, b"".join(wire))  # blocks if the agent falls behind
                    self.written += len(wire)
            tick += 1
            due = t0 + tick * self.interval_s / phases
            self._stop.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for pair in self.pairs:
            for fd in pair:
                with contextlib.suppress(OSError):
                    os.close(fd)


class Counter:
    """Counts the readings the broker delivers on the gateway's readings topic."""

    def __init__(self, broker: Mosquitto) -> None:
        self.readings = 0
        self.batches = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="pantau-ops",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set("pantau-ops", broker.users["pantau-ops"])
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise SystemExit("the counter could not subscribe")

    def _on_connect(self, c: mqtt.Client, *_a: object) -> None:
        c.subscribe(build(SITE, GW, Channel.READINGS), qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        n = len(orjson.loads(msg.payload)["readings"])
        with self._lock:
            self.readings += n
            self.batches += 1

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.readings, self.batches

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def agent_process(
    broker: Mosquitto, ports: dict[str, str], workdir: Path, profile: Path | None
) -> Iterator[subprocess.Popen[bytes]]:
    broker.add_user(GW, PASSWORD, site=SITE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    env.update(
        PANTAU_GATEWAY_ID=GW,
        PANTAU_SITE_ID=SITE,
        PANTAU_MQTT_URL=broker.url,
        PANTAU_MQTT_PASSWORD=PASSWORD,
        PANTAU_SERIAL_PORTS=orjson.dumps(ports).decode(),
        PANTAU_SPOOL_PATH=str(workdir / "gw.spool"),
        PANTAU_STATUS_INTERVAL_S="5",
    )
    argv = [sys.executable]
    argv += ["-m", "edge"] if profile is None else ["-c", _PROFILED, str(profile)]
    argv += ["run", "--log-level", "WARNING"]
    with (workdir / "agent.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def status(workdir: Path) -> dict[str, object]:
    try:
        doc = orjson.loads((workdir / "gw.spool.status.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    stats = doc.get("stats", {})
    return stats if isinstance(stats, dict) else {}


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="readings/s per sensor")
    parser.add_argument("--ports", type=int, default=8, help="PTYs the sensors share")
    parser.add_argument(
        "--phases",
        type=int,
        default=25,
        help="moments of each interval the sensors report at (1: all in one burst; the "
        "default: each of a port's 25 sensors at its own, as sensors not in step do)",
    )
    parser.add_argument("--warmup", type=float, default=8.0, help="s before measuring")
    parser.add_argument("--duration", type=float, default=30.0, help="s measured")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile output file")
    args = parser.parse_args()
    command = " ".join(["python -m bench.edge_gateway", *sys.argv[1:]])
    offered = args.sensors * args.rate
    print(command)
    print(f"{args.sensors} sensors x {args.rate:g}/s = {offered:.0f} readings/s, {args.ports} PTYs")
    print(wakeups_line())
    workdir = Path(tempfile.mkdtemp(prefix="pantau-edge-bench-"))
    sensors = Sensors(
        n=args.sensors, ports=args.ports, interval_s=1 / args.rate, phases=args.phases
    )
    try:
        with (
            Mosquitto(workdir=workdir / "mosquitto") as broker,
            agent_process(broker, sensors.paths, workdir, args.profile) as proc,
        ):
            counter = Counter(broker)
            deadline = time.monotonic() + 20
            # Opening a tty flushes its input: the sensors talk once every port is open.
            while status(workdir).get("ports_open") != args.ports:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"agent did not open its ports; see {workdir / 'agent.log'}")
                time.sleep(0.1)
            sensors.start()
            time.sleep(args.warmup)
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            threads0 = thread_cpu(proc.pid)
            got0, batches0 = counter.snapshot()
            written0 = sensors.written
            rss: list[float] = []
            while time.monotonic() - wall0 < args.duration:
                rss.append(rss_mb(proc.pid))
                time.sleep(1.0)
            cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
            threads1 = thread_cpu(proc.pid)
            got1, batches1 = counter.snapshot()
            written1 = sensors.written
            final = status(workdir)
            sensors.stop()
            counter.close()
        wall = wall1 - wall0
        cpu_pct = 100 * (cpu1 - cpu0) / wall
        print(f"window            {wall:.1f} s after {args.warmup:g} s warm-up")
        print(f"offered           {(written1 - written0) / wall:8.0f} readings/s")
        delivered, batches = (got1 - got0) / wall, (batches1 - batches0) / wall
        print(f"delivered         {delivered:8.0f} readings/s ({batches:.1f} batches/s)")
        print(f"agent CPU         {cpu_pct:8.2f} % of one core (goal <= 5 %)")
        per_thread = sorted(
            (
                (tid, 100 * (threads1[tid] - threads0.get(tid, 0.0)) / wall)
                for tid in threads1
                if tid != proc.pid
            ),
        )
        main_pct = 100 * (threads1.get(proc.pid, 0.0) - threads0.get(proc.pid, 0.0)) / wall
        print(
            f"  per thread      publisher loop (main) {main_pct:.2f} %; others, oldest first "
            "(clock probe, serial hub, MQTT network): "
            + ", ".join(f"{pct:.2f} %" for _tid, pct in per_thread)
        )
        decode_pct, feed_pct = floor_pct(args.sensors, args.ports, args.rate)
        print(
            f"limit, same bytes {decode_pct:8.2f} % frame decoder alone; "
            f"{feed_pct:.2f} % decoder + per-frame work (health, rules, reading)"
        )
        print(
            f"ratio             {cpu_pct / decode_pct:8.2f}x the decoder alone, "
            f"{cpu_pct / feed_pct:.2f}x decoder + per-frame work"
        )
        spool_pct = publisher_floor_pct(args.sensors, args.ports, args.rate, workdir)
        print(
            f"limit, publisher  {spool_pct:8.2f} % batch window + spool settle/take + envelope "
            f"on those readings (the loop: {main_pct:.2f} %, {main_pct / spool_pct:.2f}x)"
        )
        # The same work woken at the sensors' cadence, asleep between steps as the agent is:
        # on this VM work after a sleep costs several times its tight-loop cost.
        pace = 1 / args.rate
        _d, feed_paced = floor_pct(args.sensors, args.ports, args.rate, rounds=2, pace_s=pace)
        spool_paced = publisher_floor_pct(
            args.sensors, args.ports, args.rate, workdir, rounds=2, pace_s=pace
        )
        paced = feed_paced + spool_paced
        print(
            f"limit, woken      {paced:8.2f} % the same two, each step after {pace * 1000:.0f} ms "
            f"asleep ({feed_paced:.2f} % + {spool_paced:.2f} %): the agent {cpu_pct / paced:.2f}x"
        )
        mean_rss = sum(rss) / len(rss)
        print(f"agent RSS         {max(rss):8.1f} MB max, {mean_rss:.1f} MB mean (goal <= 60 MB)")
        print(
            "agent status      "
            + ", ".join(
                f"{k}={final.get(k)}"
                for k in ("link", "frames", "spool_depth", "seq_gaps", "sensors_silent")
            )
        )
        if args.profile is not None:
            print(f"profile           {args.profile} (python -m pstats)")
    finally:
        sensors.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
