"""A site's local time: WIB, WITA or WIT from its province (no daylight saving in Indonesia),
so "today" and ``tglupdate`` are what the people at the site read on their clocks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

#: Kemendagri province codes outside WIB (UTC+7). WITA (UTC+8): Bali, Nusa Tenggara, North,
#: East and South Kalimantan, every Sulawesi province. WIT (UTC+9): Maluku and every Papua
#: province. The rest (Sumatra, Java, West and Central Kalimantan) are WIB.
_WITA = frozenset({"51", "52", "53", "63", "64", "65", "71", "72", "73", "74", "75", "76"})
_WIT = frozenset({"81", "82", "91", "92", "93", "94", "95", "96"})


@dataclass(frozen=True, slots=True)
class LocalZone:
    """An Indonesian time zone: its abbreviation and offset from UTC."""

    name: str
    hours: int

    @property
    def tzinfo(self) -> timezone:
        """The fixed offset as a ``datetime`` time zone."""
        return timezone(timedelta(hours=self.hours), self.name)

    def local(self, ms: int) -> datetime:
        """``ms`` since the epoch as local wall-clock time."""
        return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(self.tzinfo)

    def midnight_ms(self, ms: int) -> int:
        """The local midnight that starts the day ``ms`` falls in, as ms since the epoch."""
        day_ms = 86_400_000
        offset = self.hours * 3_600_000
        return (ms + offset) // day_ms * day_ms - offset


def zone_of_province(code: str) -> LocalZone:
    """WIB, WITA or WIT for a province code (``33`` Jawa Tengah -> WIB)."""
    if code in _WIT:
        return LocalZone("WIT", 9)
    if code in _WITA:
        return LocalZone("WITA", 8)
    return LocalZone("WIB", 7)
