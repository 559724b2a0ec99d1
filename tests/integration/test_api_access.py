"""The whole role x region x endpoint matrix, against a real ``pantau api run`` with a key file.

The routes are read from the app itself, so a route added later is in the matrix by itself,
and a route that does not declare its access (``require(...)``, cloud/api/auth.py) fails
``test_every_route_declares_its_access``. What each role may read is written out here, not
imported, so a change of policy has to change this table too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from city import DEMO_CITY, load_registry
from cloud.api import ApiSettings, create_app
from cloud.api.auth import Requirement, api_routes, requirement_of
from cloud.api.auth_keys import KeyStore
from cloud.api.auth_roles import Role
from pantau.services import InfluxDB
from tests.api_access_support import RunningApi, feed, running_api

pytestmark = pytest.mark.integration

CITY = load_registry(DEMO_CITY)
APP = create_app(ApiSettings(api_keys_db=Path("/nonexistent/keys.sqlite3")))
ROUTES = sorted(
    ((r.path_format, m) for r in api_routes(APP) for m in (r.methods or ()) if m != "HEAD"),
)
#: Route -> its declaration (None: undeclared, which fails below).
DECLARED: dict[str, Requirement | None] = {
    r.path_format: requirement_of(r) for r in api_routes(APP)
}

#: What each caller may read, by the role a route requires (the policy, written out).
MAY: dict[str, set[str]] = {
    "anonymous": {"public"},
    "public": {"public"},
    "health_officer": {"public", "health_officer"},
    "ops": {"public", "ops"},
    "admin": {"public", "health_officer", "ops", "admin"},
}
#: rs-kariadi (the sample site) is in kecamatan Semarang Selatan, 33.74.07.
IN_SCOPE, OUT_OF_SCOPE = "33.74.07", "33.74.08"
#: Caller name -> (role, the regions of its key); None: no key at all.
CALLERS: dict[str, tuple[Role, tuple[str, ...]] | None] = {
    "anonymous": None,
    "public": (Role.PUBLIC, ()),
    f"health_officer@{IN_SCOPE}": (Role.HEALTH_OFFICER, (IN_SCOPE,)),
    f"health_officer@{OUT_OF_SCOPE}": (Role.HEALTH_OFFICER, (OUT_OF_SCOPE,)),
    f"ops@{IN_SCOPE}": (Role.OPS, (IN_SCOPE,)),
    f"ops@{OUT_OF_SCOPE}": (Role.OPS, (OUT_OF_SCOPE,)),
    "admin": (Role.ADMIN, ()),
}
#: A value for every path or region parameter a route may name, all inside IN_SCOPE. A new
#: route with a parameter not listed here fails the matrix until one is added.
SAMPLES: dict[str, str] = {
    "site_id": "rs-kariadi",
    "site": "rs-kariadi",
    "gateway_id": "gw-kariadi",
    "gateway": "gw-kariadi",
    "sensor_id": "bed-kariadi-icu",
    "sensor": "bed-kariadi-icu",
    "hospital_id": "rs-kariadi",
    "kecamatan": IN_SCOPE,
    "kelurahan": "33.74.07.1001",
    "region": IN_SCOPE,
    "code": IN_SCOPE,
    "asset": "board.css",  # a file of the public board, not a region
}
#: Query parameters a route cannot answer without (not region parameters): always sent.
ALWAYS: dict[str, dict[str, str]] = {"/v1/crowds/history": {"site": "pasar-johar"}}
#: Routes whose region parameter is required below the kota level: only asked with it.
REGION_REQUIRED = frozenset({"/v1/beds/history"})
#: Levels for a route that declares a detail (``level``) parameter: one public, one fine.
LEVELS = ("kecamatan", "kelurahan")
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Case:
    """One request of the matrix: a route, how its region/detail parameters are set."""

    method: str
    path: str
    need: Requirement | None
    names_region: bool  # the request names a region or site (path or query)
    level: str | None = None

    @property
    def id(self) -> str:
        extra = "+regions" if self.names_region else ""
        extra += f"+level={self.level}" if self.level else ""
        return f"{self.method} {self.path}{extra}"

    def url(self) -> tuple[str, dict[str, str]]:
        missing = [p for p in _PATH_PARAM.findall(self.path) if p not in SAMPLES]
        assert not missing, f"{self.path}: add a sample value for {missing} to SAMPLES"
        path = _PATH_PARAM.sub(lambda m: SAMPLES[m.group(1)], self.path)
        params: dict[str, str] = dict(ALWAYS.get(self.path, {}))
        if self.need is not None and self.names_region:
            for name in self.need.region:
                if f"{{{name}}}" not in self.path:
                    assert name in SAMPLES, f"{self.path}: add a sample for {name!r} to SAMPLES"
                    # A region code names a region at the level asked for.
                    at_level = name == "code" and self.level in SAMPLES
                    params[name] = SAMPLES[self.level] if at_level else SAMPLES[name]  # type: ignore[index]
        if self.need is not None and self.need.level and self.level:
            params[self.need.level] = self.level
        return path, params

    def required_role(self) -> str:
        assert self.need is not None
        if self.level in {"site", "rw", "kelurahan"} and self.need.role is Role.PUBLIC:
            return "health_officer"
        return self.need.role.value


def _cases() -> list[Case]:
    out = []
    for path, method in ROUTES:
        need = DECLARED.get(path)
        in_path = bool(_PATH_PARAM.search(path))
        query_regions = need is not None and any(f"{{{n}}}" not in path for n in need.region)
        naming = [True, False] if query_regions else [in_path]
        if path in REGION_REQUIRED:
            naming = [True]
        levels: tuple[str | None, ...] = LEVELS if need is not None and need.level else (None,)
        out += [Case(method, path, need, n, lv) for n in naming for lv in levels]
    return out


CASES = _cases()


@pytest.mark.parametrize(("path", "method"), ROUTES, ids=[f"{m} {p}" for p, m in ROUTES])
def test_every_route_declares_its_access(path: str, method: str) -> None:
    assert DECLARED[path] is not None, (
        f"{method} {path} declares no access: add require(Role....) (cloud/api/auth.py)"
    )


def test_the_matrix_covers_every_route_and_role() -> None:
    assert {c.path for c in CASES} == {p for p, _ in ROUTES}
    assert len(ROUTES) >= 9
    assert {r[0] for r in CALLERS.values() if r} == set(Role)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningApi, dict[str, str]]]:
    """The API as a process with one key per caller of CALLERS (rate limits out of the way)."""
    tmp = tmp_path_factory.mktemp("api-access")
    with InfluxDB(workdir=tmp / "influxdb") as db:
        feed(db, CITY)
        limits = {
            "PANTAU_API_RATE_PER_MIN": "1000000",
            "PANTAU_API_ANONYMOUS_RATE_PER_MIN": "1000000",
        }
        with running_api(tmp, db, **limits) as running:
            keys: dict[str, str] = {}
            with KeyStore(path=running.keys_db) as store:
                for name, spec in CALLERS.items():
                    if spec is not None:
                        _, keys[name] = store.create(name=name, role=spec[0], regions=spec[1])
            yield running, keys


def _get(api: RunningApi, key: str | None, path: str, params: dict[str, str]) -> tuple[int, Any]:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "GET", f"{api.url}{path}", params=params, headers=headers, timeout=10
    ) as resp:
        # A live stream never ends: its status and headers are the answer.
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.status_code, resp.read() and resp.json()
        return resp.status_code, None


def _scope_of(item: dict[str, Any]) -> str | None:
    """The most precise region code an item names (its kelurahan, or its code)."""
    for key in ("kelurahan", "code"):
        if isinstance(item.get(key), str):
            return str(item[key])
    site = item.get("site")
    if isinstance(site, str) and site in CITY.sites:
        return CITY.sites[site].kelurahan
    return None


def _expected(case: Case, caller: str) -> int:
    role = "anonymous" if CALLERS[caller] is None else caller.split("@", maxsplit=1)[0]
    needed = case.required_role()
    if needed not in MAY[role]:
        return 401 if role == "anonymous" else 403
    if needed != "public" and caller.endswith(f"@{OUT_OF_SCOPE}") and case.names_region:
        return 403
    return 200


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_role_x_region_x_endpoint(
    api: tuple[RunningApi, dict[str, str]], case: Case, caller: str
) -> None:
    """Each caller gets exactly 200, 401 or 403 as the policy says; a region-scoped key that
    gets 200 for restricted data sees nothing outside its regions."""
    running, keys = api
    path, params = case.url()
    status, body = _get(running, keys.get(caller), path, params)
    assert status == _expected(case, caller), (caller, path, params, body)
    if status != 200 or case.required_role() == "public" or "@" not in caller:
        return
    scope = caller.split("@")[1]
    items = body.get("items", []) if isinstance(body, dict) else []
    outside = [s for s in map(_scope_of, items) if s is not None and not s.startswith(scope)]
    assert outside == [], f"{caller} read {outside} through {path}"


def test_a_scoped_health_officer_lists_only_its_wards(
    api: tuple[RunningApi, dict[str, str]],
) -> None:
    running, keys = api
    mine = _get(running, keys[f"health_officer@{IN_SCOPE}"], "/v1/beds", {})[1]
    theirs = _get(running, keys[f"health_officer@{OUT_OF_SCOPE}"], "/v1/beds", {})[1]
    admin = _get(running, keys["admin"], "/v1/beds", {})[1]
    wards_in = {w["sensor"] for w in admin["items"] if w["kecamatan"] == IN_SCOPE}
    wards_out = {w["sensor"] for w in admin["items"] if w["kecamatan"] == OUT_OF_SCOPE}
    assert {w["sensor"] for w in mine["items"]} == wards_in
    assert {w["sensor"] for w in theirs["items"]} == wards_out
    # The demo city: RSUP Dr. Kariadi's 5 wards in 33.74.07; RS St. Elisabeth's 3 and the
    # Tegal Sari isolation centre's 1 in 33.74.08.
    assert (mine["count"], theirs["count"]) == (5, 4)


def test_public_summaries_are_whole_but_fine_levels_are_scoped(
    api: tuple[RunningApi, dict[str, str]],
) -> None:
    running, keys = api
    key = keys[f"health_officer@{IN_SCOPE}"]
    kec = _get(running, key, "/v1/beds/summary", {"level": "kecamatan"})[1]
    kel = _get(running, key, "/v1/beds/summary", {"level": "kelurahan"})[1]
    assert kec["count"] == 5  # every kecamatan with bed sensors, as for anyone
    assert [r["code"] for r in kel["items"]] == ["33.74.07.1001"]


def test_an_unknown_or_malformed_key_is_401_not_public(
    api: tuple[RunningApi, dict[str, str]],
) -> None:
    running, keys = api
    forged = keys["admin"][:-4] + "AAAA"
    for headers in (
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Basic {keys['admin']}"},
    ):
        resp = httpx.get(f"{running.url}/v1/regions", headers=headers, timeout=10)
        assert (resp.status_code, resp.headers["www-authenticate"]) == (401, "Bearer"), headers
        assert keys["admin"] not in resp.text


@pytest.mark.parametrize("levels", [("kecamatan", "kelurahan"), ("kelurahan", "kecamatan")])
def test_a_fine_level_given_twice_still_needs_a_health_officer(
    api: tuple[RunningApi, dict[str, str]], levels: tuple[str, str]
) -> None:
    running, keys = api
    query = "&".join(f"level={lv}" for lv in levels)
    for caller, status in (("anonymous", 401), ("public", 403)):
        headers = {"Authorization": f"Bearer {keys[caller]}"} if caller in keys else {}
        resp = httpx.get(f"{running.url}/v1/beds/summary?{query}", headers=headers, timeout=10)
        assert resp.status_code == status, (caller, resp.text)


def _keys_in(doc: Any) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in _keys_in(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in _keys_in(v)}
    return set()


def test_the_public_free_beds_route_carries_no_ward_or_patient_detail(
    api: tuple[RunningApi, dict[str, str]],
) -> None:
    """ADR 0024: /v1/beds/free is per place, so it is the one public route below kecamatan
    level; it holds free, capacity and waiting per group, never wards or patient counts."""
    running, _ = api
    status, body = _get(running, None, "/v1/beds/free", {})
    assert status == 200
    assert ("/v1/beds/free", "GET") in ROUTES
    assert DECLARED["/v1/beds/free"] == Requirement(role=Role.PUBLIC)
    assert (
        _keys_in(body) & {"occupied", "suspect", "confirmed", "ward", "sensor", "bed_type"} == set()
    )
    groups = {g for kec in body["items"] for p in kec["places"] for g in p["groups"]}
    assert groups == {"icu", "hcu", "isolation"}
    # The demo city: 5 kecamatan with 8 hospitals and isolation centres.
    assert (body["count"], sum(len(k["places"]) for k in body["items"])) == (5, 8)
