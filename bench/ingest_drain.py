"""Drain of a pre-filled backlog: how fast 1 and 2 ingester members empty what an outage left
at the broker, beside a trivial paho consumer that only counts and acknowledges.

    .venv/bin/python -m bench.ingest_drain                       # 100 000 single readings
    .venv/bin/python -m bench.ingest_drain --channel json        # 100 000 JSON batches of 100
    .venv/bin/python -m bench.ingest_drain --messages 20000 --members 2

For each case the consumers first subscribe (their persistent sessions exist), stop, and the
backlog is published while they are away (``bench.drain_support.fill_backlog``: the broker has
acknowledged every message before a consumer starts). Then the consumers start, and the clock
runs until they have stored every reading:

- members: real ``python -m cloud.ingest run`` processes, raw storage on, default settings;
  1 member is a lone ingester, 2 share a group (``PANTAU_MQTT_SHARED_GROUP``). "stored" is
  the number of distinct raw readings in InfluxDB (``count()``, polled); readings the members'
  ``pantau_ingest_readings_stored_total`` counted beyond that were stored twice (redelivered).
- baseline: one paho client (MQTT v5, manual acks, QoS 1, Receive Maximum as the ingester's)
  in this process that counts and acknowledges each message and does nothing else: the ceiling
  that the broker and paho's per-message cost put on any Python consumer here.

Time to empty is from starting the processes (interpreter start, bootstrap, subscription
included) to the last reading stored; the rate is readings over the span between the first and
the last stored reading. A case that stops storing for ``--stall`` seconds is reported as a
stall with what it stored. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.drain_support import (
    MEMBER_PREFIX,
    CountingConsumer,
    Member,
    fill_backlog,
    forget,
    member,
    open_accounts,
    stop_members,
    stored,
    until,
    watch,
)
from bench.ingest_load import gateway_loads, synthetic_province
from cloud.influx import InfluxHTTP, ident
from contract import KIND_FIELDS, SensorKind
from contract.topics import Channel
from pantau.services import InfluxDB, Mosquitto, free_port


@dataclass(kw_only=True)
class Result:
    """One drain."""

    name: str
    sent: int
    stored: int
    in_db: int | None
    empty_s: float | None
    rate: float | None


@dataclass(kw_only=True)
class Env:
    """Broker, InfluxDB and province shared by every case."""

    args: argparse.Namespace
    tmp: Path
    doc: dict[str, Any]
    city_file: Path
    passwords: dict[str, str]
    broker: Mosquitto
    influx: InfluxDB

    def fill(self) -> int:
        loads = gateway_loads(self.doc, self.passwords)
        a = self.args
        return fill_backlog(
            self.broker.host,
            self.broker.port,
            loads,
            channel=a.channel,
            messages=a.messages,
            batch=a.batch,
        )

    def forget(self, client_id: str) -> None:
        """End a consumer's session, so later backlogs are not queued for it too."""
        forget(self.broker.host, self.broker.port, client_id, self.passwords["pantau-ingest"])


def influx_count(url: str, db: str) -> int:
    """Raw readings stored in ``db`` (every kind)."""
    total = 0
    with InfluxHTTP(url=url, database=db) as influx:
        for kind in SensorKind:
            first = ident(KIND_FIELDS[kind][0])
            for series in influx.query(f"SELECT count({first}) FROM {ident(kind.value)}"):  # noqa: S608
                total += sum(int(r["count"]) for r in series.rows())
    return total


def drain_members(env: Env, n: int) -> Result:
    """``n`` members (1: a lone ingester) drain a backlog queued while they were stopped."""
    db = f"drain_{n}"
    group = None if n == 1 else f"drain-{n}"
    members: list[Member] = [
        member(
            100 * n + i,
            mqtt_url=env.broker.url,
            password=env.passwords["pantau-ingest"],
            influx_url=env.influx.url,
            db=db,
            city_file=env.city_file,
            workdir=env.tmp,
            metrics_port=free_port(),
            group=group,
        )
        for i in range(n)
    ]
    try:
        for m in members:
            m.start()
        until(lambda: all(m.subscribed() for m in members), 60, "members to subscribe")
        for m in members:
            m.signal(signal.SIGTERM)
        for m in members:
            m.wait(30)
        sent = env.fill()
        t0 = time.monotonic()
        for m in members:
            m.start()
        # Distinct readings in InfluxDB, not the counters: a redelivered window is stored
        # (and counted) twice.
        got, first, last = watch(lambda: influx_count(env.influx.url, db), sent, env.args.stall)
        in_db = influx_count(env.influx.url, db)
        counted = stored(members)
    finally:
        stop_members(members)
    for m in members:
        env.forget(m.client_id)
    name = "1 ingester" if n == 1 else f"{n} members"
    if counted != got:
        name += f" ({counted - got} stored twice)"
    return _result(name, sent, got, in_db, t0, first, last)


def drain_baseline(env: Env) -> Result:
    """A paho consumer that only counts and acknowledges, on the same backlog."""
    ch = Channel.READING if env.args.channel == "reading" else Channel.READINGS
    consumer = CountingConsumer(
        host=env.broker.host,
        port=env.broker.port,
        client_id="drain-baseline",
        password=env.passwords["pantau-ingest"],
        channel=ch,
    )
    consumer.subscribe()
    sent = env.fill()
    per_msg = sent // env.args.messages
    t0 = time.monotonic()
    consumer.start()
    try:
        got, first, last = watch(lambda: consumer.count * per_msg, sent, env.args.stall)
    finally:
        consumer.stop()
    return _result("paho: count + ack only", sent, got, None, t0, first, last)


def _result(
    name: str, sent: int, got: int, in_db: int | None, t0: float, first: float | None,
    last: float | None,
) -> Result:  # fmt: skip
    empty = last - t0 if got == sent and last is not None else None
    span = (last - first) if first is not None and last is not None else 0.0
    rate = got / span if span > 0 else None
    return Result(name=name, sent=sent, stored=got, in_db=in_db, empty_s=empty, rate=rate)


def report(results: list[Result], args: argparse.Namespace) -> list[str]:
    """The table, and each case's rate as a share of the baseline's."""
    base = next((r.rate for r in results if r.name.startswith("paho")), None)
    what = (
        "single readings"
        if args.channel == "reading"
        else f"{args.channel} batches of {args.batch} readings"
    )
    lines = [
        f"backlog: {args.messages} {what}, "
        f"{args.gateways} gateways x {args.sensors_per_gateway} sensors",
        f"{'consumer':<24} {'stored/sent':>17} {'in InfluxDB':>12} {'empty after':>12} "
        f"{'readings/s':>11} {'vs baseline':>11}",
    ]
    for r in results:
        empty = "STALLED" if r.empty_s is None else f"{r.empty_s:.1f} s"
        rate = "-" if r.rate is None else f"{r.rate:,.0f}"
        ratio = "-" if r.rate is None or not base else f"{r.rate / base:.2f}"
        db = "-" if r.in_db is None else str(r.in_db)
        lines.append(
            f"{r.name:<24} {f'{r.stored}/{r.sent}':>17} {db:>12} {empty:>12} {rate:>11} {ratio:>11}"
        )
    return lines


def main() -> None:
    """Run the cases and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--channel", choices=("reading", "json", "binary"), default="reading")
    p.add_argument("--batch", type=int, default=100, help="readings per batch (json, binary)")
    p.add_argument("--gateways", type=int, default=10)
    p.add_argument("--sensors-per-gateway", type=int, default=100)
    p.add_argument("--members", default="1,2", help="member counts to run, e.g. 1,2")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--stall", type=float, default=30.0, help="s without progress = a stall")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pantau-bench-drain-"))
    doc = synthetic_province(gateways=args.gateways, sensors_per_gateway=args.sensors_per_gateway)
    city_file = tmp / "province.yaml"
    city_file.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    passwords = {u["id"]: secrets.token_urlsafe(12) for u in doc["gateways"]}
    passwords["pantau-ingest"] = secrets.token_urlsafe(12)
    results: list[Result] = []
    with (
        Mosquitto(
            workdir=tmp / "mosquitto", users={"pantau-ingest": passwords["pantau-ingest"]}
        ) as broker,
        InfluxDB(workdir=tmp / "influxdb") as influx,
    ):
        env = Env(
            args=args, tmp=tmp, doc=doc, city_file=city_file, passwords=passwords,
            broker=broker, influx=influx,
        )  # fmt: skip
        consumers = ["drain-baseline"]
        consumers += [
            f"{MEMBER_PREFIX}{100 * int(n) + i}"
            for n in args.members.split(",")
            for i in range(int(n))
        ]
        open_accounts(broker, doc, passwords, consumers)
        if not args.no_baseline:
            results.append(drain_baseline(env))
        for n in (int(x) for x in args.members.split(",")):
            results.append(drain_members(env, n))
            print(report(results, args)[-1], flush=True)
    print("\n".join(report(results, args)))
    print(f"(logs and data in {tmp})")


if __name__ == "__main__":
    main()
