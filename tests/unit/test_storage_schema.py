"""One storage schema (cloud/storage_schema.py): the writer writes exactly it, docs/schema.md
documents exactly it, and every Grafana query reads only what it declares."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from city import DEMO_CITY, load_registry
from cloud.ingest.aggregate import SensorState
from cloud.ingest.decode import Readings
from cloud.ingest.freshness_points import freshness_lines
from cloud.ingest.rollup_points import RollupPoints
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from cloud.ingest.writer import PointBuilder
from cloud.storage_schema import DOWNSAMPLED_RP, RAW, RAW_RP, SCHEMA, Measurement
from contract import KIND_CODES, SensorKind
from pantau.grafana.render import generated_files

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_MD = ROOT / "docs" / "schema.md"
NOW = 1_764_000_000_000


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split line protocol on ``sep`` outside backslash escapes and double-quoted strings."""
    parts, cur, quoted, i = [], "", False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    return [*parts, cur]


def _parse(line: str) -> tuple[str, set[str], set[str]]:
    """(measurement, tag keys, field keys) of one line-protocol line."""
    key, fields, _time = _split_unescaped(line, " ")
    measurement, *tags = _split_unescaped(key, ",")
    return (
        measurement,
        {t.split("=", 1)[0] for t in tags},
        {f.split("=", 1)[0] for f in _split_unescaped(fields, ",")},
    )


def _written_lines() -> list[str]:
    """One point of every measurement the ingester writes, for the demo city."""
    index = CityIndex.from_registry(load_registry(DEMO_CITY))
    builder = PointBuilder(index=index)
    values = {
        SensorKind.BED: [10, 5, 1, 1, 0],
        SensorKind.CROWD: [5, 3, 2, 0, 0],
        SensorKind.QUEUE: [10, 4, 2, 0, 0],
    }
    rows: list[tuple[int, int, list[int]]] = []
    for kind, vals in values.items():
        sensors = np.flatnonzero(index.sensor_kind == KIND_CODES[kind])
        rows += [(int(s), KIND_CODES[kind], vals) for s in sensors[:2]]
    n = len(rows)
    readings = Readings(
        message=np.zeros(n, np.int32),
        index=np.arange(n, dtype=np.int32),
        sensor=np.array([r[0] for r in rows], np.int32),
        kind=np.array([r[1] for r in rows], np.int8),
        ts=np.full(n, NOW, np.int64),
        seq=np.arange(n, dtype=np.int64),
        values=np.array([r[2] + [0] * (MAX_FIELDS - 5) for r in rows], np.int64),
    )
    # raw lines are bytes (cloud/ingest/raw_lines.py); the rest of the writer's lines str
    lines = [raw.decode() for raw in builder.raw(readings).lines]
    state = SensorState(n_sensors=index.n_sensors)
    state.update(readings.sensor, readings.ts - 60_000, readings.seq, readings.values)
    state.update(readings.sensor, readings.ts, readings.seq, readings.values)
    lines += RollupPoints(index=index).lines(state, NOW)
    lines += freshness_lines(index, state.ts, NOW)
    lines.append(
        builder.dead_letter(
            reason="schema_violation", gateway="gw-x", topic="t", detail="a b", ts_ms=NOW
        )
    )
    return lines


def test_the_writer_writes_only_the_measurements_tags_and_fields_of_the_schema() -> None:
    seen: dict[str, tuple[set[str], set[str]]] = {}
    for line in _written_lines():
        measurement, tags, fields = _parse(line)
        assert measurement in set(Measurement), line
        series = SCHEMA[Measurement(measurement)]
        assert tags <= set(series.tags), line
        assert fields <= set(series.fields), line
        got = seen.setdefault(measurement, (set(), set()))
        got[0].update(tags)
        got[1].update(fields)
    # Every declared key is written by some point (none is declared and never written).
    for m in (
        *RAW.values(),
        Measurement.BED_ROLLUP,
        Measurement.CROWD_SITE,
        Measurement.REGION_FRESHNESS,
    ):
        assert seen[m] == (set(SCHEMA[m].tags), set(SCHEMA[m].fields)), m
    assert seen[Measurement.DEAD_LETTER] == (
        set(SCHEMA[Measurement.DEAD_LETTER].tags),
        set(SCHEMA[Measurement.DEAD_LETTER].fields),
    )


def _doc_tables() -> dict[str, tuple[set[str], set[str]]]:
    """measurement -> (tag keys, field keys) from docs/schema.md's `| measurement | tags |
    fields |` tables. Backticked names outside parentheses are keys; inside parentheses they
    are values or remarks; a dotted name is a reference (``contract.STAT_TYPES``)."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    in_table = False
    for line in SCHEMA_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith("| measurement | tags | fields |"):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0].strip("`")

        def keys(cell: str) -> set[str]:
            bare = re.sub(r"\([^()]*\)", "", cell)
            return {k for k in re.findall(r"`([^`]+)`", bare) if "." not in k}

        out[name] = (keys(cells[1]), keys(cells[2]))
    return out


def test_docs_schema_md_lists_exactly_the_schema() -> None:
    documented = _doc_tables()
    assert set(documented) == {m.value for m in Measurement}
    for m, series in SCHEMA.items():
        assert documented[m.value] == (set(series.tags), set(series.fields)), m


def test_docs_schema_md_names_the_retention_policies() -> None:
    text = SCHEMA_MD.read_text(encoding="utf-8")
    assert f"| `{RAW_RP}` (default) |" in text
    assert f"| `{DOWNSAMPLED_RP}` |" in text


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _grafana_queries() -> list[str]:
    queries: list[str] = []
    for path, text in generated_files().items():
        doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        queries += [s for s in _strings(doc) if re.search(r"\bFROM\b", s)]
    return queries


#: an innermost SELECT: no nested SELECT between it and its FROM
_INNER = re.compile(r"SELECT ((?:(?!SELECT|FROM).)*) FROM \"(\w+)\"", re.S)


def test_every_grafana_query_reads_a_measurement_and_fields_of_the_schema() -> None:
    queries = _grafana_queries()
    assert len(queries) > 20
    for q in queries:
        for name in re.findall(r"FROM \"(\w+)\"", q):
            assert name in {m.value for m in Measurement}, q
        for select, name in _INNER.findall(q):
            series = SCHEMA[Measurement(name)]
            if series.open_fields:
                continue
            fields = set(re.findall(r"\w+\(\"(\w+)\"\)", select))
            assert fields <= set(series.fields), q


@pytest.mark.parametrize("kind", list(SensorKind))
def test_every_sensor_kind_has_its_raw_measurement(kind: SensorKind) -> None:
    assert RAW[kind].value == kind.value


def test_raw_lines_carry_only_the_sensor_tag_and_what_the_device_sent() -> None:
    """ADR 0028: a raw point's series key is its measurement and sensor; its fields are the
    device's values and seq, nothing derived (no free beds, no queue length)."""
    raw = [line for line in _written_lines() if _parse(line)[0] in set(RAW.values())]
    assert len(raw) == 6
    by_kind: dict[str, set[str]] = {}
    for line in raw:
        measurement, tags, fields = _parse(line)
        assert tags == {"sensor"}, line
        by_kind.setdefault(measurement, set()).update(fields)
    assert by_kind == {
        "bed": {"capacity", "occupied", "suspect", "confirmed", "waiting", "seq"},
        "crowd": {"entries", "exits", "occupancy", "seq"},
        "queue": {"issued", "served", "counters_open", "seq"},
    }
    bed = next(line for line in raw if line.startswith("bed,"))
    sensor = bed.split(" ", 1)[0].split("=", 1)[1]
    # 10 beds, 5 occupied, 1 suspect, 1 confirmed, 0 waiting: the values as sent, in order
    fields = "capacity=10i,occupied=5i,suspect=1i,confirmed=1i,waiting=0i,seq=0i"
    assert bed == f"bed,sensor={sensor} {fields} {NOW * 1000}"
