"""CPU of one ``/write`` request as the ingester sends it, beside the bare socket's.

``python -m bench.influx_write_cost [--requests 40] [--rounds 3] [--lines 5000]``

Mode (d)'s writer threads send raw lines in requests of ``PANTAU_WRITE_CHUNK_LINES`` (5 000)
through ``cloud.influx.InfluxHTTP`` (httpx). On the same bodies, to one real InfluxDB, in
turns, this prints the CPU of this process (``time.process_time``) per request for:

- ``InfluxHTTP.write``: the ingester's path;
- ``http.client``: the standard library's keep-alive connection, about the least a Python
  HTTP/1.1 client can do: the limit beside the subject.

The difference is what the HTTP client costs per request; divided by the lines per request it
is the ingester's CPU per raw reading that the choice of client decides
(docs/adr/0042-writes-stay-on-httpx.md).
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from cloud.influx import InfluxHTTP
from pantau.services import InfluxDB

_SENSORS = 8000


def _body(lines: int, round_no: int, k: int) -> bytes:
    """A raw-like request body of ``lines`` bed points (about 60 bytes a line), new times."""
    base = (round_no * 1_000 + k) * 10_000_000
    return b"\n".join(
        b"bed,sensor=s-%05d occupied=%di,total=40i %d" % (i % _SENSORS, i % 2, base + i)
        for i in range(lines)
    )


def _per_request(send: Callable[[bytes], None], bodies: list[bytes]) -> float:
    started = time.process_time()
    for b in bodies:
        send(b)
    return (time.process_time() - started) * 1e3 / len(bodies)


def main() -> None:
    """Measure and print."""
    p = argparse.ArgumentParser(prog="python -m bench.influx_write_cost", description=__doc__)
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--lines", type=int, default=5000)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pantau-bench-write-"))
    influx = InfluxDB(workdir=tmp / "influxdb")
    influx.start()
    try:
        subject = InfluxHTTP(url=influx.url, database="cost", timeout=60).start()
        subject.ensure_database()
        url = httpx.URL(influx.url)
        conn = http.client.HTTPConnection(url.host, url.port, timeout=60)

        def bare(body: bytes) -> None:
            conn.request("POST", "/write?db=cost&precision=u", body=body)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 204:
                raise SystemExit(f"InfluxDB answered {resp.status}")

        paths: dict[str, Callable[[bytes], None]] = {
            "InfluxHTTP.write (httpx)": lambda b: subject.write(b, precision="u"),
            "http.client": bare,
        }
        best = {name: float("inf") for name in paths}
        for r in range(a.rounds):
            for k, (name, send) in enumerate(paths.items()):
                bodies = [_body(a.lines, r, k * a.requests + i) for i in range(a.requests)]
                ms = _per_request(send, bodies)
                best[name] = min(best[name], ms)
                print(f"round {r}: {name:<26} {ms:6.2f} ms CPU per request", flush=True)
        for name, ms in best.items():
            print(f"best: {name:<26} {ms:6.2f} ms per request, {ms * 1e3 / a.lines:.3f} us a line")
        conn.close()
        subject.close()
    finally:
        influx.stop()


if __name__ == "__main__":
    main()
