"""schemathesis over a running API's own OpenAPI document: every operation, derandomized, with
the checks that matter (no 5xx; status codes, content types, headers and bodies as documented).
tests/integration/test_api_schemathesis.py runs about 300 cases in the suite; this runs longer:

    .venv/bin/python -m bench.api_fuzz                      # 3000 cases, its own API + InfluxDB
    .venv/bin/python -m bench.api_fuzz --budget 20000
    .venv/bin/python -m bench.api_fuzz --url http://127.0.0.1:8000 --key "$KEY"   # e.g. the demo

Without ``--url`` it starts InfluxDB holding the schema's points for the demo city and a real
``pantau api run`` with a key file, and fuzzes it with an admin key. Prints the cases per
operation, the time taken and every failure; exits 1 on a failure.

Default arguments on the shared 2-core development machine (2026-11-29), the API of 9
operations::

    2997 cases, 9 operations, 123.9 s, 0 failures
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzReport:
    """What a run did: cases sent per operation, and every failure (operation: message)."""

    cases: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.cases.values())


def _run_operation(
    strategy: Any,
    label: str,
    url: str,
    headers: dict[str, str],
    max_examples: int,
    report: FuzzReport,
) -> str | None:
    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        report.cases[label] += 1
        # Sent with httpx: schemathesis's requests transport trips over urllib3-future, which
        # grafana-client's niquests installs in place of urllib3.
        sent = case.as_transport_kwargs(base_url=url, headers=headers)
        response = client.request(
            sent["method"],
            sent["url"],
            params=sent.get("params"),
            headers=sent.get("headers"),
        )
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        with httpx.Client(timeout=30) as client:
            run()
    except Unsatisfiable:
        return f"{label}: no case could be generated"
    except (Failure, FailureGroup) as exc:
        return f"{label}: {exc}"
    return None


def streams(spec: dict[str, Any]) -> set[str]:
    """Operations (``GET /path``) that answer an endless ``text/event-stream``: a case would
    never end, so they are left to their own tests."""
    out = set()
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            for answer in op.get("responses", {}).values():
                if "text/event-stream" in answer.get("content", {}):
                    out.add(f"{method.upper()} {path}")
    return out


def _own_api(budget: int, seed_key: str | None) -> FuzzReport:
    # The test helpers feed InfluxDB exactly as the ingester does; imported here only.
    from city import DEMO_CITY, load_registry  # noqa: PLC0415
    from cloud.api.auth_keys import KeyStore  # noqa: PLC0415
    from cloud.api.auth_roles import Role  # noqa: PLC0415
    from pantau.services import InfluxDB  # noqa: PLC0415
    from tests.api_access_support import feed, running_api  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="pantau-api-fuzz-") as tmp:
        work = Path(tmp)
        with InfluxDB(workdir=work / "influxdb") as db:
            feed(db, load_registry(DEMO_CITY))
            unlimited = "1000000"
            limits = {
                "PANTAU_API_RATE_PER_MIN": unlimited,
                "PANTAU_API_ANONYMOUS_RATE_PER_MIN": unlimited,
            }
            with running_api(work, db, **limits) as api:
                key = seed_key
                if key is None:
                    with KeyStore(path=api.keys_db) as store:
                        _, key = store.create(name="bench.api_fuzz", role=Role.ADMIN)
                return fuzz(api.url, headers={"Authorization": f"Bearer {key}"}, budget=budget)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=3000, help="cases over all operations")
    parser.add_argument("--url", help="an API already running (default: start one)")
    parser.add_argument("--key", help="API key for --url (an admin key reaches every route)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    if args.url:
        headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
        report = fuzz(args.url.rstrip("/"), headers=headers, budget=args.budget)
    else:
        report = _own_api(args.budget, args.key)
    took = time.monotonic() - started
    for label, n in report.cases.items():
        print(f"{label:<40} {n:>6} cases")
    print(
        f"{report.total} cases, {len(report.cases)} operations, {took:.1f} s, "
        f"{len(report.failures)} failures"
    )
    for failure in report.failures:
        print(f"FAILED {failure}")
    return 1 if report.failures else 0


def fuzz(url: str, *, headers: dict[str, str], budget: int) -> FuzzReport:
    """About ``budget`` derandomized cases spread over the operations of ``url``/openapi.json
    (at least 10 each; live streams left out), every case checked with :data:`CHECKS`. A
    failing operation stops at its first (shrunk) failure."""
    spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    skipped = streams(spec)
    report = FuzzReport()
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:
            report.failures.append(f"invalid OpenAPI document: {result.err()}")
    operations = [op for op in operations if op.label not in skipped]
    per_operation = max(10, budget // max(1, len(operations)))
    for operation in operations:
        label = operation.label
        report.cases[label] = 0
        strategy = operation.as_strategy()
        failure = _run_operation(strategy, label, url, headers, per_operation, report)
        if failure is not None:
            report.failures.append(failure)
    return report


if __name__ == "__main__":
    sys.exit(main())
