"""``python -m cloud.ingest``: the ingester's command line without the rest of ``pantau``."""

from cloud.ingest.cli import app

app()
