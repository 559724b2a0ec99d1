"""Ingester capacity, measured by draining a pre-filled backlog, against the limits of this
machine measured on the very same backlog in the same run (issue 14).

    .venv/bin/python -m bench.ingest_throughput            # every workload, a few minutes
    .venv/bin/python -m bench.ingest_throughput --quick    # a quarter of the backlogs, no paced
    .venv/bin/python -m bench.ingest_throughput --modes a,d-json --keep

Load generators that publish while the ingester runs share the two cores with it, so a
saturated figure partly measures the publishers. Here the backlog is published into the
ingester's persistent session while it is stopped (``bench.drain_support.fill_backlog``), then
it starts and the drain is timed (``runner``). Beside it, on the same payloads (``limits``): a
trivial paho consumer that only counts and acknowledges, ``orjson.loads`` alone, the binary
decode alone, InfluxDB alone on the same raw lines (``influx_limit``; beside it the bound of an
ingester that only decodes, ``decode_gate``). A paced phase at 70 % of the drained rate
measures the lag a healthy ingester adds (``paced``). ``report`` prints subject rate, limit
rate, ratio, the issue's goal, pass or miss, the exactness check and the ingester's peak RSS.

Modules: ``workload`` (the cases and their backlogs), ``env`` (services, province, members),
``limits``, ``influx_limit``, ``decode_gate``, ``replay``, ``runner``, ``paced``, ``report``,
``procstat`` (/metrics and /proc), ``cli``.
Figures are printed, never asserted.
"""

from bench.ingest_throughput.cli import main

__all__ = ["main"]
