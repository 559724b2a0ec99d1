"""Decode-only throughput of the ingester: readings/s through ``decode_window`` (parse, envelope,
vectorised validation), no MQTT and no InfluxDB.

    .venv/bin/python -m bench.ingest_decode [--seconds 2] [--gc-off]

Prints CPU microseconds per reading (median and best round; the rate that is on one free core)
per payload form: JSON batches of 100, 500 and 1 000 readings per message, with ``orjson.loads``
alone on the same payloads beside them (issue 14's limit for mode (b)), binary batches of
1 000 and 5 000. Windows hold 5 000 messages or 100 000 readings (whichever is
fewer), like a busy ingester's. Readings are valid and spread over the demo city's gateways.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import orjson

from city import DEMO_CITY, load_registry
from cloud.ingest.decode import Message, decode_window
from cloud.ingest.topology import CityIndex
from contract import KIND_CODES, KIND_FIELDS, Channel, SensorKind, encode_binary_batch, topics

NOW = 1_795_000_000_000
_VALUES = {
    SensorKind.BED: (24, 20, 3, 5, 2),
    SensorKind.CROWD: (900, 700, 200),
    SensorKind.QUEUE: (40, 31, 2),
}


def _gateways(index: CityIndex) -> list[tuple[str, str, list[tuple[str, SensorKind]]]]:
    reg = index.registry
    out = []
    for gw in reg.doc.gateways:
        sensors = [(s.id, s.kind) for s in reg.doc.sensors if s.gateway == gw.id]
        if sensors:
            out.append((gw.id, gw.site, sensors))
    return out


def json_messages(index: CityIndex, per_msg: int, n_msgs: int) -> list[Message]:
    """``n_msgs`` JSON batches of ``per_msg`` valid readings, round-robin over gateways."""
    out = []
    gws = _gateways(index)
    for m in range(n_msgs):
        gw, site, sensors = gws[m % len(gws)]
        readings = []
        for i in range(per_msg):
            sid, kind = sensors[i % len(sensors)]
            values = dict(zip(KIND_FIELDS[kind], _VALUES[kind], strict=True))
            ts = NOW - 60_000 + i
            # as the edge agent encodes them (contract.encode of a Batch): clock included
            readings.append(
                {"sensor": sid, "kind": kind.value, "ts": ts, "seq": i, "values": values,
                 "clock": "sensor"}
            )  # fmt: skip
        doc = {"v": 1, "gw": gw, "seq": m, "sent": NOW, "readings": readings}
        topic = topics.build(site, gw, Channel.READINGS)
        out.append(Message(topic=topic, payload=orjson.dumps(doc), received_ms=NOW, mid=m))
    return out


def binary_messages(index: CityIndex, per_msg: int, n_msgs: int) -> list[Message]:
    """``n_msgs`` binary batches of ``per_msg`` valid readings, round-robin over gateways."""
    out = []
    gws = _gateways(index)
    for m in range(n_msgs):
        gw, site, sensors = gws[m % len(gws)]
        idx = [i % len(sensors) for i in range(per_msg)]
        payload = encode_binary_batch(
            gw=gw,
            seq=m,
            sent=NOW,
            sensors=[s for s, _ in sensors],
            kinds=[KIND_CODES[k] for _, k in sensors],
            sensor=idx,
            ts=[NOW - 60_000 + i for i in range(per_msg)],
            reading_seq=list(range(per_msg)),
            values=[_VALUES[sensors[j][1]] for j in idx],
        )
        topic = topics.build(site, gw, Channel.READINGS)
        out.append(Message(topic=topic, payload=payload, received_ms=NOW, mid=m))
    return out


def _cpu_us(work: Callable[[], int], seconds: float, *, gc_off: bool = False) -> list[float]:
    """CPU microseconds per reading of ``work`` (which returns its readings), once per round
    for about ``seconds`` (at least 3 rounds). CPU time, not wall time: on a shared machine a
    rate mostly measures the other processes, the CPU a round costs far less so."""
    per_reading: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(per_reading) < 3:
        if gc_off:
            gc.disable()
        try:
            c0 = time.process_time()
            n = work()
            per_reading.append((time.process_time() - c0) * 1e6 / n)
        finally:
            gc.enable()
    return per_reading


def measure(
    index: CityIndex, window: list[Message], seconds: float, *, gc_off: bool = False
) -> tuple[float, float]:
    """(median, best) CPU us per reading of ``decode_window`` over repeated windows."""

    def work() -> int:
        out = decode_window(window, index, NOW)
        if out.rejections:
            raise SystemExit(f"bench data was refused: {out.rejections[0]}")
        return len(out.readings)

    got = _cpu_us(work, seconds, gc_off=gc_off)
    return statistics.median(got), min(got)


def parse_only(window: list[Message], per_msg: int, seconds: float) -> tuple[float, float]:
    """(median, best) CPU us per reading of just ``orjson.loads`` over the window's payloads,
    each document dropped at once (as ``bench.ingest_throughput``'s limit does)."""
    payloads = [m.payload for m in window]

    def work() -> int:
        for p in payloads:
            orjson.loads(p)
        return len(payloads) * per_msg

    got = _cpu_us(work, seconds)
    return statistics.median(got), min(got)


def main() -> None:
    """Print decode-only CPU per reading (and the rate it means on one free core) per form."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per form")
    parser.add_argument(
        "--gc-off",
        action="store_true",
        help="also decode with the cyclic GC switched off: what a gc.disable would still save",
    )
    args = parser.parse_args()
    index = CityIndex.from_registry(load_registry(DEMO_CITY))
    forms: list[tuple[str, Callable[[CityIndex, int, int], list[Message]], int]] = [
        ("json", json_messages, 100),
        ("json", json_messages, 500),  # bench.ingest_throughput's mode (b) batch
        ("json", json_messages, 1000),
        ("binary", binary_messages, 1000),
        ("binary", binary_messages, 5000),
    ]
    print(f"decode-only, demo city, {args.seconds:.1f} s per form, CPU us/reading (M/s a core)")
    for name, make, per_msg in forms:
        n_msgs = max(1, min(5000, 100_000 // per_msg))
        window = make(index, per_msg, n_msgs)
        median, best = measure(index, window, args.seconds)
        print(
            f"  {name:6} {per_msg:5} readings/msg, {n_msgs:4} msgs/window: "
            f"{median:5.2f} us median ({1 / median:5.2f} M/s), {best:5.2f} best"
        )
        if args.gc_off:
            off, _ = measure(index, window, args.seconds, gc_off=True)
            print(f"  {'':6} {'':5} with the cyclic GC off:        {off:5.2f} us median")
        if name == "json":  # the limit: parsing alone, nothing validated or columnised
            parse, parse_best = parse_only(window, per_msg, args.seconds)
            print(
                f"  {'':6} {'':5} orjson.loads alone:            {parse:5.2f} us median "
                f"({1 / parse:5.2f} M/s), {parse_best:5.2f} best; "
                f"decode is {parse / median:.0%} of it (best: {parse_best / best:.0%})"
            )


if __name__ == "__main__":
    main()
