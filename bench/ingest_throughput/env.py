"""The services and the synthetic province every case of the bench shares."""

from __future__ import annotations

import argparse
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.drain_support import Member, fill_backlog, forget, member, open_accounts
from bench.ingest_load import GatewayLoad, gateway_loads, synthetic_province
from bench.ingest_throughput.workload import Workload
from city import Registry, load_registry
from pantau.services import InfluxDB, Mosquitto, free_port


@dataclass(kw_only=True)
class Bench:
    """Broker, InfluxDB, registry and passwords of one bench run; ``args`` its command line."""

    args: argparse.Namespace
    tmp: Path
    doc: dict[str, Any]
    registry: Registry
    city_file: Path
    passwords: dict[str, str]
    broker: Mosquitto
    influx: InfluxDB
    _next_member: int = 0

    def loads(self) -> list[GatewayLoad]:
        """One publisher load per gateway."""
        return gateway_loads(self.doc, self.passwords)

    def batch(self, channel: str) -> int:
        """Readings per message of ``channel``."""
        if channel == "reading":
            return 1
        return int(self.args.json_batch if channel == "json" else self.args.binary_batch)

    def messages(self, w: Workload) -> int:
        """The backlog of ``w`` at this run's scale, at least one message per gateway."""
        return max(len(self.doc["gateways"]), int(w.messages * self.args.scale))

    def fill(self, w: Workload) -> int:
        """Publish ``w``'s backlog; the readings sent once the broker acknowledged all."""
        return fill_backlog(
            self.broker.host,
            self.broker.port,
            self.loads(),
            channel=w.channel,
            messages=self.messages(w),
            batch=self.batch(w.channel),
        )

    def consumer_account(self, client_id: str) -> None:
        """A broker account of the ingester role bound to ``client_id``."""
        open_accounts(self.broker, {"gateways": []}, self.passwords, [client_id])

    def forget(self, client_id: str) -> None:
        """End ``client_id``'s session, so later backlogs are not queued for it too."""
        forget(self.broker.host, self.broker.port, client_id, self.passwords["pantau-ingest"])

    def members(self, w: Workload, n: int, db: str) -> list[Member]:
        """``n`` ingester processes (a lone ingester, or a shared group) for ``w``, each with
        its own account, metrics port and log; not started."""
        settings = {"store_raw": "true" if w.store_raw else "false"}
        if w.store_raw:
            settings["write_parallelism"] = str(self.args.writers)
            settings["write_chunk_lines"] = str(self.args.chunk_lines)
        out = []
        for _ in range(n):
            index = self._next_member
            self._next_member += 1
            m = member(
                index,
                mqtt_url=self.broker.url,
                password=self.passwords["pantau-ingest"],
                influx_url=self.influx.url,
                db=db,
                city_file=self.city_file,
                workdir=self.tmp,
                metrics_port=free_port(),
                group=None if n == 1 else f"bench-{w.key}-{n}",
                **settings,
            )
            self.consumer_account(m.client_id)
            out.append(m)
        return out


def open_bench(args: argparse.Namespace, tmp: Path) -> Bench:
    """Write the province, start Mosquitto and InfluxDB (stopped by :func:`close_bench`)."""
    doc = synthetic_province(gateways=args.gateways, sensors_per_gateway=args.sensors_per_gateway)
    city_file = tmp / "province.yaml"
    city_file.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    registry = load_registry(city_file)
    passwords = {g["id"]: secrets.token_urlsafe(12) for g in doc["gateways"]}
    passwords["pantau-ingest"] = secrets.token_urlsafe(12)
    broker = Mosquitto(
        workdir=tmp / "mosquitto", users={"pantau-ingest": passwords["pantau-ingest"]}
    )
    influx = InfluxDB(workdir=tmp / "influxdb")
    broker.start()
    try:
        influx.start()
    except BaseException:
        broker.stop()
        raise
    bench = Bench(
        args=args, tmp=tmp, doc=doc, registry=registry, city_file=city_file,
        passwords=passwords, broker=broker, influx=influx,
    )  # fmt: skip
    # gateways publish with the replay role: a backlog's channel varies by case
    open_accounts(broker, doc, passwords, [])
    return bench


def close_bench(bench: Bench) -> None:
    """Stop the services."""
    for server in (bench.broker, bench.influx):
        server.stop()
