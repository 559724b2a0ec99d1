"""schemathesis against a real ``pantau api run`` (with a key file, over a real InfluxDB holding
the ingester's points): about 300 derandomized cases over every operation of the API's own
OpenAPI document, with an admin key so every route answers; zero 5xx and zero responses
(status, content type, headers, body) that the document does not describe. The longer run is
``bench/api_fuzz.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.api_fuzz import fuzz
from city import DEMO_CITY, load_registry
from cloud.api.auth_keys import KeyStore
from cloud.api.auth_roles import Role
from pantau.services import InfluxDB
from tests.api_access_support import RunningApi, feed, running_api

pytestmark = pytest.mark.integration

BUDGET = 300


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    tmp = tmp_path_factory.mktemp("api-fuzz")
    with InfluxDB(workdir=tmp / "influxdb") as db:
        feed(db, load_registry(DEMO_CITY))
        unlimited = "1000000"
        limits = {
            "PANTAU_API_RATE_PER_MIN": unlimited,
            "PANTAU_API_ANONYMOUS_RATE_PER_MIN": unlimited,
        }
        with running_api(tmp, db, **limits) as running:
            yield running


def test_every_operation_answers_as_documented_and_never_5xx(api: RunningApi) -> None:
    with KeyStore(path=api.keys_db) as store:
        _, key = store.create(name="schemathesis", role=Role.ADMIN)
    report = fuzz(api.url, headers={"Authorization": f"Bearer {key}"}, budget=BUDGET)
    assert report.failures == []
    assert len(report.cases) >= 9
    assert all(n >= 10 for n in report.cases.values()), report.cases
    assert report.total >= BUDGET - len(report.cases)
