"""``python -m bench.ingest_throughput``: see the package docstring."""

from bench.ingest_throughput.cli import main

main()
