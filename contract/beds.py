"""Bed vocabulary shared by registry, ingester and API: SIRANAP bed type codes and BOR bands."""

from __future__ import annotations

from enum import StrEnum

#: Kemenkes RS Online / SIRANAP ``id_tt`` codes (shared/reference/health-and-region-facts.md).
BED_TYPES: dict[int, str] = {
    1: "VVIP / Super VIP",
    2: "VIP",
    3: "Kelas I",
    4: "Kelas II",
    5: "Kelas III",
    6: "ICU tanpa ventilator",
    7: "HCU",
    8: "ICCU/ICVCU tanpa ventilator",
    9: "RICU tanpa ventilator",
    10: "NICU tanpa ventilator",
    11: "PICU tanpa ventilator",
    12: "Isolasi",
    14: "Perinatologi",
    24: "ICU tekanan negatif dengan ventilator",
    25: "ICU tekanan negatif tanpa ventilator",
    26: "ICU tanpa tekanan negatif dengan ventilator",
    27: "ICU tanpa tekanan negatif tanpa ventilator",
    28: "Isolasi tekanan negatif",
    29: "Isolasi tanpa tekanan negatif",
    30: "NICU khusus COVID",
    31: "PICU khusus COVID",
    32: "IGD khusus COVID",
    33: "VK (observasi ruang bersalin) khusus COVID",
    34: "Isolasi perinatologi khusus COVID",
}

#: Coarse groups health officers ask about ("how many ICU beds are free?").
BED_GROUPS: dict[str, frozenset[int]] = {
    "icu": frozenset({6, 8, 9, 10, 11, 24, 25, 26, 27, 30, 31}),
    "hcu": frozenset({7}),
    "isolation": frozenset({12, 28, 29, 34}),
    "general": frozenset({1, 2, 3, 4, 5, 14}),
    "emergency": frozenset({32, 33}),
}


class BorBand(StrEnum):
    """Bed occupancy bands used in Indonesian pandemic policy."""

    NORMAL = "normal"  # below 60 %: within the WHO threshold
    HIGH = "high"  # 60 % and above: counts toward PPKM level assessment
    CRITICAL = "critical"  # 80 % and above


BOR_HIGH = 60.0
BOR_CRITICAL = 80.0


def bor_percent(occupied: int, capacity: int) -> float | None:
    """Bed occupancy rate in percent; None when there are no beds to occupy."""
    return None if capacity <= 0 else occupied * 100.0 / capacity


def bor_band(bor: float | None) -> BorBand | None:
    """The policy band of a BOR value."""
    if bor is None:
        return None
    if bor >= BOR_CRITICAL:
        return BorBand.CRITICAL
    if bor >= BOR_HIGH:
        return BorBand.HIGH
    return BorBand.NORMAL


def bed_group(code: int) -> str | None:
    """The coarse group of a bed type code, if it has one."""
    for name, codes in BED_GROUPS.items():
        if code in codes:
            return name
    return None
