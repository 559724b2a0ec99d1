"""Mode (b)'s decode against its limit, in process: the JSON batches of
``bench.ingest_throughput --modes b`` (the synthetic province, 500 readings per message, 4 MiB
windows as a drain closes them) through ``decode_window``, beside ``orjson.loads`` alone (issue
14's limit), msgspec's decode to the batch structs alone (``json_structs.decode_batch``, the
floor of the struct path) and the native column decoder alone (``json_native``, ADR 0034:
the bytes into the window's column buffers) on the very same payloads. ``--no-native``
measures ``decode_window`` with the native decoder switched off (the msgspec path, as
without a C compiler).

    .venv/bin/python -m bench.ingest_json_decode [--rounds 15] [--windows 8] [--profile]
                                                 [--no-native]

Prints CPU microseconds per reading (``time.process_time``; best and median of ``--rounds``,
the three interleaved round by round so a busy machine hits them alike) and the ratio issue 14
asks for (``orjson.loads`` / ``decode_window``, goal >= 75 % for the whole ingester).
``--profile`` adds cProfile's top functions of ``decode_window``. docs/performance.md (mode
(b)) and docs/adr/0030 quote it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import yaml

from bench.ingest_load import gateway_loads, synthetic_province
from bench.ingest_throughput.workload import sample_payloads
from city import load_registry
from cloud.ingest.decode import Message, decode_window, json_native
from cloud.ingest.decode.json_structs import decode_batch
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex

#: readings per message in mode (b) (``bench.ingest_throughput``'s JSON batch)
BATCH = 500


def province_windows(n_windows: int) -> tuple[CityIndex, list[list[Message]]]:
    """The province's index and ``n_windows`` windows of mode (b) messages, each as many
    messages as fit ``IngestSettings.window_max_bytes``."""
    doc = synthetic_province(gateways=16, sensors_per_gateway=500)
    city = Path(tempfile.mkdtemp(prefix="pantau-bench-json-")) / "province.yaml"
    city.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    index = CityIndex.from_registry(load_registry(city))
    loads = gateway_loads(doc, {g["id"]: "unused" for g in doc["gateways"]})
    first = sample_payloads(loads, "json", BATCH, 1)
    per_window = IngestSettings.model_fields["window_max_bytes"].default // len(first[0][1])
    payloads = sample_payloads(loads, "json", BATCH, per_window * n_windows)
    msgs = [
        Message(topic=t, payload=b, received_ms=0, mid=i) for i, (t, b, _) in enumerate(payloads)
    ]
    return index, [msgs[i : i + per_window] for i in range(0, len(msgs), per_window)]


def main() -> None:
    """Measure and print."""
    p = argparse.ArgumentParser(prog="python -m bench.ingest_json_decode", description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--no-native", action="store_true", help="decode_window without it")
    a = p.parse_args()
    if a.no_native:
        json_native.ENABLED = False
    index, windows = province_windows(a.windows)
    payloads = [m.payload for w in windows for m in w]
    readings = BATCH * len(payloads)
    # observation time "now" plus a little, so every reading is judged valid
    now_ms = time.time_ns() // 1_000_000 + 60_000

    def decode() -> None:
        for w in windows:
            out = decode_window(w, index, now_ms)
            if out.rejections or len(out.readings) != BATCH * len(w):
                raise SystemExit(f"bench data was refused: {out.rejections[:1]}")

    def parse() -> None:
        for b in payloads:
            orjson.loads(b)

    def structs() -> None:
        for b in payloads:
            if decode_batch(b) is None:
                raise SystemExit("the struct decoder refused bench data")

    def native() -> None:
        for w in windows:
            cols = json_native.NativeColumns(index=index, messages=w)
            for m, msg in enumerate(w):
                got = cols.decode(msg.payload)
                if got is None:
                    raise SystemExit("the native decoder refused bench data")
                cols.add(m, 0, got.n)

    subjects: dict[str, Callable[[], None]] = {
        "decode_window": decode,
        "orjson.loads alone": parse,
        "msgspec structs alone": structs,
    }
    if json_native.ENABLED:
        subjects["native decode alone"] = native
    print(f"JSON batch decoder: {json_native.DECODER}")
    cpu: dict[str, list[float]] = {name: [] for name in subjects}
    decode()  # warm: topic cache, first allocations
    for _ in range(a.rounds):
        for name, work in subjects.items():
            c0 = time.process_time()
            work()
            cpu[name].append((time.process_time() - c0) * 1e6 / readings)
    print(
        f"mode (b) payloads: {len(windows)} windows of {len(windows[0])} messages x {BATCH} "
        f"readings, {a.rounds} rounds; CPU us per reading, best / median"
    )
    for name, got in cpu.items():
        print(f"  {name:22} {min(got):5.3f} / {statistics.median(got):5.3f}")
    ratio = min(cpu["orjson.loads alone"]) / min(cpu["decode_window"])
    print(f"  orjson.loads / decode_window (best): {ratio:.0%} (issue 14 goal: >= 75 %)")
    if a.profile:
        profile = cProfile.Profile()
        profile.enable()
        decode()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
