"""CPU one /metrics scrape costs the ingester's process: ``prometheus_client.start_http_server``
(a thread per request, gzip for a client that accepts it) against
``cloud.ingest.metrics_server.start_metrics_server`` (one thread, uncompressed).

``python -m bench.metrics_scrape [--scrapes 400] [--rounds 2]``

Each server runs in a child process holding the ingester's metrics (``IngestMetrics``, a
lag histogram with observations). This process scrapes it with one reused httpx client,
which accepts gzip as httpx and Prometheus do. The child's CPU over the scrapes is read from
``/proc``. docs/adr/0035-drain-path-outside-the-decoder.md quotes it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import httpx

from bench.ingest_throughput.procstat import cpu_seconds_of

_CHILD = """
import sys, time
import numpy as np
from prometheus_client import start_http_server
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.metrics_server import start_metrics_server
m = IngestMetrics()
m.observe_lag(np.linspace(0.0, 2.0, 1000))
m.dead_letters.labels(reason="schema").inc()
if sys.argv[1] == "ours":
    server, _ = start_metrics_server(port=0, host="127.0.0.1", registry=m.registry)
else:
    server, _ = start_http_server(0, addr="127.0.0.1", registry=m.registry)
print(server.server_port, flush=True)
time.sleep(3600)
"""
_SERVERS = {"prometheus_client": "theirs", "metrics_server": "ours"}


def measure(which: str, scrapes: int) -> tuple[float, int, str]:
    """Server CPU per scrape (us), the text's size and its Content-Encoding."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, which], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(child.stdout.readline()) if child.stdout is not None else 0
        url = f"http://127.0.0.1:{port}/metrics"
        with httpx.Client() as http:
            for _ in range(20):  # warm: imports, first requests
                http.get(url)
            before = cpu_seconds_of(f"/proc/{child.pid}/stat")
            for _ in range(scrapes):
                resp = http.get(url)
            after = cpu_seconds_of(f"/proc/{child.pid}/stat")
    finally:
        child.kill()
        child.wait()
    return (
        (after - before) / scrapes * 1e6,
        len(resp.content),
        resp.headers.get("content-encoding", "none"),
    )


def main() -> None:
    """Measure both servers, alternating."""
    p = argparse.ArgumentParser(prog="python -m bench.metrics_scrape", description=__doc__)
    p.add_argument("--scrapes", type=int, default=400)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    for _ in range(a.rounds):
        for name, which in _SERVERS.items():
            us, size, encoding = measure(which, a.scrapes)
            print(f"{name:18} {us:7.0f} us CPU per scrape, {size:,} bytes of text, sent {encoding}")


if __name__ == "__main__":
    main()
