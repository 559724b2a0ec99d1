"""Free beds for the public (``/v1/beds/free``): per kecamatan and per hospital or isolation
centre, the free beds of the ICU, HCU and isolation groups, what the public board shows.

Per-site figures are health-officer detail everywhere else (``/v1/beds/summary?level=site``);
this route is the one deliberate exception (ADR 0015, ADR 0024): it answers only ``free``,
``capacity`` and ``waiting`` per place and group, and how old they are. No ward, no bed type,
no occupied, suspect or confirmed count, and no other group: nothing that describes patients.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from fastapi import APIRouter, Response

from city import SiteKind
from cloud.api.auth import Role, require
from cloud.api.deps import LiveDep, NowDep, SettingsDep
from cloud.api.models import ErrorBody
from cloud.api.models_free import FreeBeds, FreeCount, FreeGroups, FreeKecamatan, FreePlace
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import is_stale, iso_ms, now_iso
from cloud.api.registry_views import bed_types_by_site
from cloud.api.rollups import ALL_BED_TYPES, rollup_rows, sum_rows
from cloud.api.state import LiveState, Snapshot
from contract.beds import BED_GROUPS
from contract.clock import now_ms

router = APIRouter(tags=["beds"], dependencies=[require(Role.PUBLIC)])

#: The groups the public sees, in FreeGroups' field order.
PUBLIC_GROUPS = ("icu", "hcu", "isolation")
PUBLIC_COUNTS = ("free", "capacity", "waiting")
_PLACE_KINDS = (SiteKind.HOSPITAL, SiteKind.ISOLATION_CENTRE)
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}


def _groups(
    live: LiveState, snap: Snapshot, level: str, code: str, bed_types: AbstractSet[int]
) -> FreeGroups:
    out: dict[str, FreeCount | None] = {}
    for group in PUBLIC_GROUPS:
        types = sorted(bed_types & BED_GROUPS[group])
        if not types:  # no ward of the group here: nothing to show, not "0 free"
            out[group] = None
            continue
        sums = sum_rows(snap, rollup_rows(live, snap, level, code, types), PUBLIC_COUNTS)
        out[group] = FreeCount(**(sums or dict.fromkeys(PUBLIC_COUNTS)))
    return FreeGroups(**out)


def _age(
    live: LiveState, snap: Snapshot, level: str, code: str, *, now: int, after: float
) -> dict[str, Any]:
    """How old the place's (or kecamatan's) figures are, from its all-bed-types rollup:
    newest reading shown, stale judged on the oldest (one silent ward makes it stale)."""
    rows = rollup_rows(live, snap, level, code, [ALL_BED_TYPES])
    if not rows:
        return {"observed_at_newest": None, "observed_at_newest_ms": None, "stale": True}
    b = snap.beds
    oldest, newest = int(b.oldest_ms[rows[0]]), int(b.newest_ms[rows[0]])
    return {
        "observed_at_newest": iso_ms(newest),
        "observed_at_newest_ms": newest,
        "stale": is_stale(oldest, now=now, stale_after_s=after),
    }


def free_beds(live: LiveState, snap: Snapshot, *, after: float) -> FreeBeds:
    """Every kecamatan with a hospital or isolation centre, in the registry's order, with
    its places in the registry's order."""
    registry = live.index.registry
    types_at = bed_types_by_site(registry)
    places: dict[str, list[FreePlace]] = {}
    kec_types: dict[str, set[int]] = {}
    now = now_ms()
    for site in registry.sites.values():
        if site.kind not in _PLACE_KINDS:
            continue
        kec = registry.kecamatan_of_kelurahan[site.kelurahan].code
        types = types_at.get(site.id, frozenset())
        kec_types.setdefault(kec, set()).update(types)
        places.setdefault(kec, []).append(
            FreePlace(
                id=site.id,
                name=site.name,
                kind=site.kind.value,
                groups=_groups(live, snap, "site", site.id, types),
                **_age(live, snap, "site", site.id, now=now, after=after),
            )
        )
    items = [
        FreeKecamatan(
            code=kec.code,
            name=kec.name,
            groups=_groups(live, snap, "kecamatan", kec.code, kec_types[kec.code]),
            places=places[kec.code],
            **_age(live, snap, "kecamatan", kec.code, now=now, after=after),
        )
        for kec in registry.city.kecamatan
        if kec.code in places
    ]
    return FreeBeds(stale_after_s=after, generated_at=now_iso(), items=items)


@router.get("/v1/beds/free", response_model=FreeBeds, responses=_ERRORS)
async def beds_free(
    settings: SettingsDep, live: LiveDep, snap: NowDep, answer: AnswerDep
) -> Response:
    """Free ICU, HCU and isolation beds now, per kecamatan and per hospital or isolation
    centre: ``free``, ``capacity`` and ``waiting`` per group (null where the place has no
    ward of the group), the newest reading and ``stale``. Public: this is the bed board's
    data. Per-ward detail and patient counts stay with health officers (``/v1/beds``)."""
    return answer(lambda: free_beds(live, snap, after=settings.stale_after_s))
