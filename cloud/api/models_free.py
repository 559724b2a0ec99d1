"""Response model of the public free-bed board data (``/v1/beds/free``): per kecamatan and per
hospital or isolation centre, free beds of the ICU, HCU and isolation groups, and nothing else
(ADR 0024)."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from cloud.api.models import _List, _Out

_COUNT_EXAMPLE: JsonDict = {"free": 6, "capacity": 24, "waiting": 3}


class FreeCount(_Out):
    """Beds of one group at one place; null figures until its wards have reported."""

    free: int | None
    capacity: int | None
    waiting: int | None = Field(description="patients already waiting for a bed of the group")


class FreeGroups(_Out):
    """The groups a citizen looks for; null where the place has no ward of that group."""

    icu: FreeCount | None
    hcu: FreeCount | None
    isolation: FreeCount | None


class FreePlace(_Out):
    """A hospital or isolation centre: its free beds per group and how old they are."""

    id: str
    name: str
    kind: str = Field(description="hospital or isolation_centre")
    groups: FreeGroups
    observed_at_newest: str | None = Field(description="newest reading of any of its wards")
    observed_at_newest_ms: int | None
    stale: bool = Field(description="no reading yet, or its oldest ward reading is stale")


class FreeKecamatan(_Out):
    """A kecamatan with hospitals or isolation centres: its totals per group, and its places."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "33.74.07",
                    "name": "Semarang Selatan",
                    "groups": {"icu": _COUNT_EXAMPLE, "hcu": None, "isolation": None},
                    "observed_at_newest": "2026-11-29T02:59:00.117Z",
                    "observed_at_newest_ms": 1764385140117,
                    "stale": False,
                    "places": [
                        {
                            "id": "rs-kariadi",
                            "name": "RSUP Dr. Kariadi",
                            "kind": "hospital",
                            "groups": {"icu": _COUNT_EXAMPLE, "hcu": None, "isolation": None},
                            "observed_at_newest": "2026-11-29T02:59:00.117Z",
                            "observed_at_newest_ms": 1764385140117,
                            "stale": False,
                        }
                    ],
                }
            ]
        },
    )

    code: str
    name: str
    groups: FreeGroups
    observed_at_newest: str | None
    observed_at_newest_ms: int | None
    stale: bool
    places: list[FreePlace]


class FreeBeds(_List):
    """Free ICU, HCU and isolation beds now, by kecamatan and place (the public board)."""

    stale_after_s: float
    generated_at: str
    items: list[FreeKecamatan]
