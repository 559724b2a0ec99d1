"""Device models: what each kind of sensor would count, as pure logic over simulated time.

Every model owns a seeded :class:`random.Random`, does no I/O and never reads the wall clock:
``step(sim_time)`` advances the model to ``sim_time`` (seconds since the epoch, simulated) and
returns the values a reading carries, in :data:`contract.KIND_FIELDS` order. The same seed and
the same sequence of ``sim_time`` values always give the same values.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from contract import BED_GROUPS, KIND_FIELDS, SensorKind, SerialFrame

#: WIB (Asia/Jakarta); models take the site's offset so "09:00" means the site's morning.
WIB_OFFSET_S = 7 * 3600
DAY_S = 86_400
#: Rates change over the day, so a long step is simulated as slices of at most this length.
MAX_SLICE_S = 300.0


class DeviceModel(Protocol):
    """A sensor's counting logic."""

    kind: SensorKind

    def step(self, sim_time: float) -> tuple[int, ...]:
        """Advance to ``sim_time`` and return the values a reading carries now."""
        ...


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw; exact for small means, normal approximation for large ones."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw, always within ``0..n``."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n < 60:
        return sum(1 for _ in range(n) if rng.random() < p)
    mean = n * p
    return min(n, max(0, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))


def _hazard(rate_per_s: float, dt: float) -> float:
    """Probability that an event with constant hazard happens within ``dt``."""
    return 1.0 - math.exp(-rate_per_s * dt) if dt > 0 else 0.0


def local_hour(sim_time: float, utc_offset_s: int) -> float:
    """Hour of the local day (0 <= h < 24) at ``sim_time``."""
    return ((sim_time + utc_offset_s) % DAY_S) / 3600.0


def local_day(sim_time: float, utc_offset_s: int) -> int:
    """Days since the epoch in local time (for daily resets and market days)."""
    return int((sim_time + utc_offset_s) // DAY_S)


def slices(start: float | None, end: float) -> list[tuple[float, float]]:
    """``start..end`` cut into slices of at most :data:`MAX_SLICE_S` (none on the first call)."""
    if start is None or end <= start:
        return []
    count = math.ceil((end - start) / MAX_SLICE_S)
    width = (end - start) / count
    return [(start + i * width, start + (i + 1) * width) for i in range(count)]


def _bump(hour: float, centre: float, width: float) -> float:
    """A smooth peak around ``centre`` (hours), wrapping over midnight."""
    d = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-0.5 * (d / width) ** 2)


class BedWard:
    """A ward's beds of one type: admissions arrive Poisson (more by day: clinic referrals
    and the emergency department), patients stay an exponential length of stay with most
    discharges after the morning ward round. Arrivals that find the ward full wait for a bed
    (SIRANAP ``antrian``) and may be transferred elsewhere. Some patients are suspect or
    confirmed COVID-19 cases; suspects are later confirmed or cleared."""

    kind = SensorKind.BED

    def __init__(
        self,
        *,
        beds: int,
        rng: random.Random,
        bed_type: int | None = None,
        utc_offset_s: int = WIB_OFFSET_S,
    ) -> None:
        self.capacity = beds
        self._rng = rng
        self._offset = utc_offset_s
        isolation = bed_type in BED_GROUPS["isolation"] or (bed_type or 0) >= 30
        icu = bed_type in BED_GROUPS["icu"]
        self._covid_share = 0.8 if isolation else (0.3 if icu else 0.08)
        los_days = 3.0 if icu or bed_type == 7 else 5.0
        self._mu = 1.0 / (los_days * DAY_S)  # discharge hazard per patient-second
        load = rng.uniform(0.45, 1.02)  # some wards run over capacity and build a waiting list
        self._lam = load * beds * self._mu  # admissions per second on an average hour
        occupied = min(beds, round(beds * rng.uniform(0.4, 0.9)))
        self.confirmed = binomial(rng, occupied, self._covid_share * 0.6)
        self.suspect = binomial(rng, occupied - self.confirmed, self._covid_share * 0.3)
        self.plain = occupied - self.confirmed - self.suspect
        self.waiting = 0
        self._last: float | None = None

    @property
    def occupied(self) -> int:
        """Beds in use."""
        return self.plain + self.suspect + self.confirmed

    def step(self, sim_time: float) -> tuple[int, ...]:
        """Admit, discharge and reclassify patients up to ``sim_time``."""
        for a, b in slices(self._last, sim_time):
            self._advance(b - a, local_hour((a + b) / 2, self._offset))
        self._last = sim_time if self._last is None else max(self._last, sim_time)
        return (self.capacity, self.occupied, self.suspect, self.confirmed, self.waiting)

    def _advance(self, dt: float, hour: float) -> None:
        rng = self._rng
        # Discharges cluster after the 08:00 ward round; admissions follow clinic hours and an
        # evening emergency peak. Both profiles average to about 1 over a day.
        discharge_p = _hazard(self._mu * (0.25 + 3.0 * _bump(hour, 11.0, 1.8)), dt)
        self.plain -= binomial(rng, self.plain, discharge_p)
        self.suspect -= binomial(rng, self.suspect, discharge_p)
        self.confirmed -= binomial(rng, self.confirmed, discharge_p)
        resolved = binomial(rng, self.suspect, _hazard(1.0 / (2 * DAY_S), dt))
        newly_confirmed = binomial(rng, resolved, 0.35)
        self.suspect -= resolved
        self.confirmed += newly_confirmed
        self.plain += resolved - newly_confirmed
        # Patients waiting too long are referred to another hospital.
        self.waiting -= binomial(rng, self.waiting, _hazard(1.0 / (6 * 3600), dt))
        profile = 0.35 + 1.2 * _bump(hour, 11.0, 2.5) + 0.6 * _bump(hour, 20.0, 2.0)
        arrivals = poisson(rng, self._lam * profile * dt)
        free = self.capacity - self.occupied
        from_queue = min(free, self.waiting)
        self.waiting -= from_queue
        admitted = min(free - from_queue, arrivals)
        self.waiting += arrivals - admitted
        for _ in range(from_queue + admitted):
            draw = rng.random()
            if draw < self._covid_share * 0.5:
                self.confirmed += 1
            elif draw < self._covid_share:
                self.suspect += 1
            else:
                self.plain += 1


class GateCounter:
    """A people counter at one gate. Visitors arrive Poisson with a daily profile (markets:
    the early-morning peak, busier on the site's Javanese market day of the five-day
    *pasaran* week; public spaces: the evening and weekend peak) and leave after an
    exponential dwell time. Entries and exits are cumulative since the counter's reset."""

    kind = SensorKind.CROWD

    def __init__(
        self,
        *,
        gate_capacity: int,
        rng: random.Random,
        market: bool,
        utc_offset_s: int = WIB_OFFSET_S,
    ) -> None:
        self._rng = rng
        self._market = market
        self._offset = utc_offset_s
        self._dwell_s = 45 * 60 if market else 70 * 60
        load = rng.uniform(0.6, 1.2)  # peak occupancy relative to the protocol capacity
        self._peak_rate = gate_capacity * load / self._dwell_s
        self._market_day = rng.randrange(5)
        self.entries = 0
        self.exits = 0
        self._last: float | None = None

    def step(self, sim_time: float) -> tuple[int, ...]:
        """Count people entering and leaving up to ``sim_time``."""
        for a, b in slices(self._last, sim_time):
            inside = self.entries - self.exits
            self.exits += binomial(self._rng, inside, _hazard(1.0 / self._dwell_s, b - a))
            self.entries += poisson(self._rng, self._rate((a + b) / 2) * (b - a))
        self._last = sim_time if self._last is None else max(self._last, sim_time)
        return (self.entries, self.exits, self.entries - self.exits)

    def _rate(self, sim_time: float) -> float:
        hour = local_hour(sim_time, self._offset)
        day = local_day(sim_time, self._offset)
        if self._market:
            shape = 0.03 + _bump(hour, 7.0, 1.6) + 0.45 * _bump(hour, 12.0, 2.0)
            shape += 0.5 * _bump(hour, 18.5, 1.3)
            factor = 1.4 if day % 5 == self._market_day else 0.85
        else:
            shape = 0.05 + 0.45 * _bump(hour, 6.5, 1.0) + 0.3 * _bump(hour, 12.0, 2.5)
            shape += _bump(hour, 19.5, 1.8)
            factor = 1.5 if (day + 4) % 7 in (5, 6) else 0.9  # epoch day 0 was a Thursday
        return self._peak_rate * shape * factor


class Kiosk:
    """A ticket kiosk in front of ``counters`` desks: an M/M/c queue simulated event by event
    (Poisson arrivals, exponential service). Desks open in office hours, some go on break,
    and the last desk stays open until the queue is empty. Ticket numbers restart daily."""

    kind = SensorKind.QUEUE

    def __init__(
        self,
        *,
        counters: int,
        rng: random.Random,
        hospital: bool = False,
        utc_offset_s: int = WIB_OFFSET_S,
    ) -> None:
        self.counters = counters
        self._rng = rng
        self._offset = utc_offset_s
        self._open_h, self._close_h = (7.0, 14.0) if hospital else (8.0, 15.0)
        self._mu = 1.0 / (rng.uniform(4.0, 7.0) * 60)  # services per desk-second
        self._lam = rng.uniform(0.7, 1.1) * counters * self._mu  # peak arrivals per second
        self.issued = 0
        self.served = 0
        self.counters_open = 0
        self._day: int | None = None
        self._last: float | None = None

    @property
    def waiting(self) -> int:
        """Tickets issued and not yet served (in the queue or at a desk)."""
        return self.issued - self.served

    def step(self, sim_time: float) -> tuple[int, ...]:
        """Issue and serve tickets up to ``sim_time``."""
        if self._last is None:
            self._open_desks(sim_time)
        for a, b in slices(self._last, sim_time):
            self._serve(a, b)
        self._last = sim_time if self._last is None else max(self._last, sim_time)
        return (self.issued, self.served, self.counters_open)

    def _open_desks(self, t: float) -> float:
        """Apply the daily reset and the desk schedule at ``t``; returns the arrival rate."""
        day = local_day(t, self._offset)
        if day != self._day and self.waiting == 0:
            self._day, self.issued, self.served = day, 0, 0
        hour = local_hour(t, self._offset)
        self.counters_open = self._desks(hour)
        return self._arrival_rate(hour)

    def _serve(self, start: float, end: float) -> None:
        arrival_rate = self._open_desks(start)
        t = start
        while True:
            service_rate = min(self.waiting, self.counters_open) * self._mu
            total = arrival_rate + service_rate
            if total <= 0:
                return
            t += self._rng.expovariate(total)
            if t > end:
                return
            if self._rng.random() * total < arrival_rate:
                self.issued += 1
            else:
                self.served += 1

    def _desks(self, hour: float) -> int:
        if self._open_h <= hour < self._close_h:
            peak = self._open_h + 1 <= hour < self._open_h + 4
            scheduled = self.counters if peak else math.ceil(self.counters / 2)
            return max(1, scheduled - binomial(self._rng, scheduled, 0.1))
        return 1 if self.waiting > 0 else 0

    def _arrival_rate(self, hour: float) -> float:
        if not self._open_h - 0.5 <= hour < self._close_h - 0.5:
            return 0.0
        return self._lam * (0.3 + 0.9 * _bump(hour, self._open_h + 2.0, 1.5))


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What ``pantau fwsim models`` lists."""

    kind: SensorKind
    name: str
    description: str


MODELS: dict[SensorKind, ModelInfo] = {
    SensorKind.BED: ModelInfo(SensorKind.BED, "BedWard", BedWard.__doc__ or ""),
    SensorKind.CROWD: ModelInfo(SensorKind.CROWD, "GateCounter", GateCounter.__doc__ or ""),
    SensorKind.QUEUE: ModelInfo(SensorKind.QUEUE, "Kiosk", Kiosk.__doc__ or ""),
}


class Firmware:
    """A sensor's firmware: wraps a model and numbers its readings (seq +1 per reading)."""

    def __init__(
        self,
        *,
        sensor: str,
        model: DeviceModel,
        clock: bool = True,
        first_seq: int = 0,
    ) -> None:
        self.sensor = sensor
        self.model = model
        self.clock = clock
        self.next_seq = first_seq

    def read(self, sim_time: float, ts_ms: int) -> SerialFrame:
        """Take one reading at ``sim_time``, stamped ``ts_ms`` (dropped if there is no clock)."""
        values = self.model.step(sim_time)
        if len(values) != len(KIND_FIELDS[self.model.kind]):
            raise AssertionError(f"{self.sensor}: model returned {len(values)} values")
        frame = SerialFrame(
            sensor=self.sensor,
            kind=self.model.kind,
            seq=self.next_seq,
            ts_ms=ts_ms if self.clock else None,
            values=values,
        )
        self.next_seq += 1
        return frame
