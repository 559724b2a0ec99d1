"""Is the ingester ready? Read from its own /metrics, so a healthcheck needs no secret.

"Ready" is what a deployment waits for before it sends traffic: the broker session is up with
every subscription granted (``pantau_ingest_subscribed`` 1: readings queue for us from here on)
and InfluxDB takes our writes (``pantau_ingest_write_retrying`` 0). A port that merely answers
proves neither: the metrics server starts before the broker or InfluxDB are reached.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

SUBSCRIBED = "pantau_ingest_subscribed"
WRITE_RETRYING = "pantau_ingest_write_retrying"


def gauges(text: str) -> dict[str, float]:
    """Name -> value of every unlabelled sample in a Prometheus text exposition."""
    return {
        sample.name: float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def readiness_problem(url: str, *, timeout_s: float = 3.0) -> str | None:
    """None when the ingester whose metrics are at ``url`` is ready; else why not, in words."""
    try:
        resp = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"no metrics at {url} ({type(exc).__name__}): is the ingester running?"
    if resp.status_code != 200:
        return f"metrics at {url} answered {resp.status_code}"
    values = gauges(resp.text)
    if values.get(SUBSCRIBED) != 1.0:
        return "not subscribed at the broker yet (or the connection is down)"
    if values.get(WRITE_RETRYING, 0.0) != 0.0:
        return "InfluxDB writes are failing and being retried"
    return None
