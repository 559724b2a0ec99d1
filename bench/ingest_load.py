"""Load for the ingester benchmarks: a synthetic province and pre-encoded payloads, built so
that the ingester, not the load generator, is what runs out of CPU.

Synthetic province. ``synthetic_province`` builds a registry (validated by ``city.registry``)
with ``gateways`` sites, each with one gateway of ``sensors_per_gateway`` sensors: hospitals
(bed wards of every SIRANAP type plus queue kiosks), RW isolation centres, markets and public
spaces (crowd gates plus kiosks) and public offices (kiosks). A gateway here stands for a site's
integration gateway; big gateways let one MQTT connection carry whole batches of distinct
sensors, so every reading of a batch is a distinct raw point.

Payloads are encoded once, through the contract (``contract.encode`` of ``Batch`` /
``SingleReading``; ``contract.binary.encode_binary_batch``). Per send only the observation time
(= send time, so the lag is measurable) and the sequence numbers change: JSON templates carry
fixed-width placeholder numbers that one ``bytes.replace`` each swaps for the real ones (same
width, so the MQTT packet header is precomputed too); binary templates are patched in place
through numpy views of their ``ts`` and ``seq`` columns. Each sensor's ``seq`` grows by one per
reading, so raw points (time = ms x 1000 + seq mod 1000 us) never overwrite each other, and the
batch ``seq`` grows per gateway, so dedup on (gateway, batch seq) never drops bench data.

The publisher that sends these payloads is ``bench.load_publisher``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from contract import KIND_CODES, KIND_FIELDS, Batch, Reading, SensorKind, SingleReading, topics
from contract import encode as encode_message
from contract.beds import BED_TYPES
from contract.topics import Channel

#: Placeholders in JSON templates; same digit count as a 2020s epoch-ms and as ``_SEQ_BASE``.
TS_TOKEN = 7777777777777
SEQ_TOKEN = 888888888
#: Sequence numbers are _SEQ_BASE + n: always 9 digits, like SEQ_TOKEN.
_SEQ_BASE = 100_000_000
_BED_TYPES = sorted(BED_TYPES)
_SITE_CYCLE = ("hospital", "hospital", "market", "isolation_centre", "public_space", "office")

Channels = ("reading", "json", "binary")


def synthetic_province(*, gateways: int, sensors_per_gateway: int) -> dict[str, Any]:
    """A registry document (``city.Registry.from_doc`` input): one site and gateway per
    ``gateways``, each with ``sensors_per_gateway`` sensors, spread over 8 kecamatan."""
    kecamatan = []
    kelurahan_codes: list[str] = []
    for k in range(8):
        code = f"33.99.{k + 1:02d}"
        kels = []
        for j in range(3):
            kel = f"{code}.{1001 + j}"
            kelurahan_codes.append(kel)
            kels.append({"code": kel, "name": f"Kel. Sintetis {k + 1}-{j + 1}", "rw": ["01"]})
        kecamatan.append({"code": code, "name": f"Kec. Sintetis {k + 1}", "kelurahan": kels})
    sites: list[dict[str, Any]] = []
    gws: list[dict[str, Any]] = []
    sensors: list[dict[str, Any]] = []
    for g in range(gateways):
        kind = _SITE_CYCLE[g % len(_SITE_CYCLE)]
        site: dict[str, Any] = {
            "id": f"site{g:03d}",
            "name": f"Situs {g}, {kind.replace('_', ' ')}",
            "kind": kind,
            "kelurahan": kelurahan_codes[g % len(kelurahan_codes)],
        }
        if kind == "isolation_centre":
            site["rw"] = "01"
        if kind in ("market", "public_space"):
            site["capacity"] = 50 * sensors_per_gateway
        sites.append(site)
        gw = f"gw{g:03d}"
        # direct: mode (a) publishes single readings from these gateways, which the ingester
        # takes only from direct devices; batches (modes b, c) are taken from any gateway.
        gws.append({"id": gw, "site": site["id"], "direct": True})
        for i in range(sensors_per_gateway):
            sid = f"g{g:03d}s{i:04d}"
            base = {"id": sid, "site": site["id"], "gateway": gw}
            kiosk = i % 10 == 9 and kind in ("hospital", "market")
            if kind == "office" or kiosk:
                sensors.append({**base, "kind": "queue", "counters": 2 + i % 5})
            elif kind in ("hospital", "isolation_centre"):
                bed_type = 12 if kind == "isolation_centre" else _BED_TYPES[i % len(_BED_TYPES)]
                beds = 8 + i % 40
                sensors.append(
                    {**base, "kind": "bed", "ward": f"Bangsal {i}", "bed_type": bed_type}
                    | {"beds": beds}
                )
            else:
                sensors.append({**base, "kind": "crowd", "gate": f"Pintu {i}"})
    return {
        "city": {
            "code": "33.99",
            "name": "Provinsi Sintetis (bench)",
            "province": {"code": "33", "name": "Jawa Tengah"},
            "timezone": "Asia/Jakarta",
            "kecamatan": kecamatan,
        },
        "sites": sites,
        "gateways": gws,
        "sensors": sensors,
    }


def sensor_values(sensor: dict[str, Any]) -> dict[str, int]:
    """Valid values for a sensor of the synthetic province (they do not change: the bench
    measures transport and storage, and aggregation cost does not depend on the numbers)."""
    kind = SensorKind(sensor["kind"])
    if kind is SensorKind.BED:
        beds = int(sensor["beds"])
        occupied = beds * 3 // 4
        return {
            "capacity": beds,
            "occupied": occupied,
            "suspect": occupied // 4,
            "confirmed": occupied // 3,
            "waiting": 2,
        }
    if kind is SensorKind.CROWD:
        return {"entries": 5210, "exits": 4980, "occupancy": 230}
    return {"issued": 340, "served": 301, "counters_open": int(sensor["counters"])}


@dataclass(frozen=True, kw_only=True)
class GatewayLoad:
    """What one publisher connection sends: as which gateway, to which topics, which sensors."""

    gateway: str
    site: str
    password: str
    #: (sensor id, kind value, values) in registry order
    sensors: tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...]


def gateway_loads(doc: dict[str, Any], passwords: dict[str, str]) -> list[GatewayLoad]:
    """One :class:`GatewayLoad` per gateway of a registry document."""
    by_gw: dict[str, list[tuple[str, str, tuple[tuple[str, int], ...]]]] = {}
    for s in doc["sensors"]:
        values = tuple(sensor_values(s).items())
        by_gw.setdefault(s["gateway"], []).append((s["id"], s["kind"], values))
    return [
        GatewayLoad(
            gateway=g["id"],
            site=g["site"],
            password=passwords[g["id"]],
            sensors=tuple(by_gw[g["id"]]),
        )
        for g in doc["gateways"]
    ]


# ---- payload templates ---------------------------------------------------------------------
class Template:
    """A payload that becomes a fresh, valid message with :meth:`fill`."""

    readings: int

    def fill(self, ts_ms: int, n: int) -> bytes:
        """The payload for the gateway's ``n``-th message, observed at ``ts_ms``."""
        raise NotImplementedError


@dataclass(kw_only=True)
class JsonTemplate(Template):
    """JSON with TS_TOKEN/SEQ_TOKEN placeholders (see the module docstring)."""

    raw: bytes
    readings: int

    def fill(self, ts_ms: int, n: int) -> bytes:
        seq = b"%d" % (_SEQ_BASE + n)
        return self.raw.replace(b"7777777777777", b"%d" % ts_ms).replace(b"888888888", seq)


@dataclass(kw_only=True)
class BinaryTemplate(Template):
    """A binary batch patched in place through views of its ts and seq columns."""

    buf: bytearray
    ts: npt.NDArray[np.int64]
    seq: npt.NDArray[Any]
    #: per reading: how many earlier readings of the same sensor the batch holds
    repeat: npt.NDArray[np.int64]
    #: readings of one sensor per batch
    per_sensor: int
    sent: npt.NDArray[np.int64]
    batch_seq: npt.NDArray[np.uint64]
    readings: int

    def fill(self, ts_ms: int, n: int) -> bytes:
        self.ts[:] = ts_ms
        self.seq[:] = n * self.per_sensor + self.repeat
        self.sent[0] = ts_ms
        self.batch_seq[0] = n
        return bytes(self.buf)


def _reading(sensor: tuple[str, str, tuple[tuple[str, int], ...]]) -> Reading:
    sid, kind, values = sensor
    return Reading(
        sensor=sid, kind=SensorKind(kind), ts=TS_TOKEN, seq=SEQ_TOKEN, values=dict(values)
    )


def json_batch_templates(load: GatewayLoad, batch: int) -> list[Template]:
    """Batches of ``batch`` distinct sensors (the gateway must have at least that many)."""
    if batch > len(load.sensors):
        raise ValueError(f"batch {batch} > {len(load.sensors)} sensors of {load.gateway}")
    out: list[Template] = []
    for lo in range(0, len(load.sensors) - batch + 1, batch):
        doc = Batch(
            gw=load.gateway,
            seq=SEQ_TOKEN,
            sent=TS_TOKEN,
            readings=[_reading(s) for s in load.sensors[lo : lo + batch]],
        )
        out.append(JsonTemplate(raw=encode_message(doc), readings=batch))
    return out


def single_templates(load: GatewayLoad) -> list[Template]:
    """One SingleReading per sensor of the gateway."""
    out: list[Template] = []
    for sid, kind, values in load.sensors:
        msg = SingleReading(
            sensor=sid, kind=SensorKind(kind), ts=TS_TOKEN, seq=SEQ_TOKEN, values=dict(values)
        )
        out.append(JsonTemplate(raw=encode_message(msg), readings=1))
    return out


def binary_batch_templates(load: GatewayLoad, batch: int) -> list[Template]:
    """One binary batch of ``batch`` readings cycling over the gateway's sensors (a sensor may
    appear several times; each appearance gets its own seq)."""
    from contract.binary import decode_binary_batch, encode_binary_batch  # noqa: PLC0415

    n_sensors = len(load.sensors)
    idx = np.arange(batch) % n_sensors
    per_sensor = -(-batch // n_sensors)
    repeat = (np.arange(batch) // n_sensors).astype(np.int64)
    width = max(len(f) for f in KIND_FIELDS.values())
    values = np.zeros((n_sensors, width), dtype=np.int64)
    for i, (_, _, vals) in enumerate(load.sensors):
        values[i, : len(vals)] = [v for _, v in vals]
    raw = encode_binary_batch(
        gw=load.gateway,
        seq=0,
        sent=TS_TOKEN,
        sensors=[s[0] for s in load.sensors],
        kinds=[KIND_CODES[SensorKind(s[1])] for s in load.sensors],
        sensor=idx,
        ts=np.full(batch, TS_TOKEN, dtype=np.int64),
        # the widest value the bench will write, so the encoder picks a column wide enough
        reading_seq=np.full(batch, 2**31, dtype=np.int64),
        values=values[idx],
    )
    view = decode_binary_batch(raw)
    base = np.frombuffer(raw, dtype=np.uint8).ctypes.data
    buf = bytearray(raw)

    def column(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.frombuffer(buf, dtype=arr.dtype, count=len(arr), offset=arr.ctypes.data - base)

    # 'sent' and the batch seq sit in the fixed header right after the gateway id.
    head = 8 + len(load.gateway.encode())
    return [
        BinaryTemplate(
            buf=buf,
            ts=column(view.ts),
            seq=column(view.seq_col),
            repeat=repeat,
            per_sensor=per_sensor,
            sent=np.frombuffer(buf, dtype="<i8", count=1, offset=head + 8),
            batch_seq=np.frombuffer(buf, dtype="<u8", count=1, offset=head),
            readings=batch,
        )
    ]


def templates_for(channel: str, load: GatewayLoad, batch: int) -> list[Template]:
    """Templates for one gateway: ``reading`` (single readings), ``json`` or ``binary``."""
    if channel == "reading":
        return single_templates(load)
    if channel == "json":
        return json_batch_templates(load, batch)
    return binary_batch_templates(load, batch)


def topic_for(channel: str, load: GatewayLoad) -> str:
    """The topic a gateway publishes ``channel`` payloads on."""
    ch = Channel.READING if channel == "reading" else Channel.READINGS
    return topics.build(load.site, load.gateway, ch)


def backlog_payloads(
    loads: list[GatewayLoad], channel: str, batch: int, messages: int, *, step_ms: float
) -> list[tuple[str, bytes, int]]:
    """(topic, payload, readings) of a backlog of ``messages`` as ``fill_backlog`` publishes
    it (round-robin over the gateways, seqs growing per gateway), message ``n`` observed
    ``n * step_ms`` after the first and the last one now."""
    tmpls = [templates_for(channel, ld, batch) for ld in loads]
    topics_s = [topic_for(channel, ld) for ld in loads]
    first = time.time_ns() // 1_000_000 - int(messages * step_ms)
    out = []
    for n in range(messages):
        i, k = n % len(loads), n // len(loads)
        t = tmpls[i][k % len(tmpls[i])]
        out.append((topics_s[i], t.fill(first + int(n * step_ms), k), t.readings))
    return out
