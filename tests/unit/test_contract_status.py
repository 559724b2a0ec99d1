"""Gateway status is a contract: known stats with types, the rest dropped and counted, every
field as strict as a reading's, and the edge agent's own status fully inside it."""

from __future__ import annotations

import queue
import re
from typing import Any

import pytest
from pydantic import ValidationError

from contract import STAT_TYPES, Batch, GatewayStatus, SingleReading, StatType, known_stats
from contract.serial_frame import FrameStats
from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.serial_reader import PortReader, serial_opener
from edge.spool import LANES, DropReason, MemoryOutbox
from pantau.paths import ROOT

BASE: dict[str, Any] = {"v": 1, "gw": "gw-kariadi", "state": "online", "ts": 1_764_000_000_000}


def test_every_stat_the_edge_agent_reports_is_a_known_stat_and_survives_validation() -> None:
    """The edge keeps working unchanged: nothing in its status is dropped by the contract."""
    settings = EdgeSettings(
        gateway_id="gw-kariadi",
        site_id="rs-kariadi",
        mqtt_password="edge-test-password",  # noqa: S106 - a test value
        serial_ports={"bus0": "loop://"},
    )
    outbox = MemoryOutbox()
    outbox.open()
    status = EdgeAgent(settings=settings, outbox=outbox).status()
    reader = PortReader(
        label="bus0", url="loop://", opener=serial_opener(baudrate=9600), out=queue.Queue()
    )
    reported = {**status.stats, **reader.stats()}
    # The contract lists exactly what the edge reports: nothing dropped, nothing invented.
    assert set(reported) == set(STAT_TYPES)
    # 6 decoder counters + rejected/opens/open_failures from each reader; 45 from the agent,
    # its link (why it was lost, why the latest attempt failed) and its spool.
    assert len(reader.stats()) == len(FrameStats.__dataclass_fields__) + 3 == 9
    assert len(status.stats) == 45
    assert len(STAT_TYPES) == 54
    again = GatewayStatus.model_validate_json(status.model_dump_json())
    assert again.stats == status.stats


def test_unknown_stats_are_dropped_and_counted_never_kept() -> None:
    stats = {f"made_up_{i}": i for i in range(5000)} | {"frames": 7, "bad\nkey\\": 1}
    kept, dropped = known_stats(stats)
    assert kept == {"frames": 7}
    assert dropped == 5001
    status = GatewayStatus.model_validate({**BASE, "stats": stats})
    assert status.stats == {"frames": 7}


def test_a_whole_seconds_stat_is_kept_as_a_float_so_its_field_type_never_changes() -> None:
    status = GatewayStatus.model_validate({**BASE, "stats": {"link_for_s": 3, "frames": 2}})
    assert status.stats == {"link_for_s": 3.0, "frames": 2}
    assert type(status.stats["link_for_s"]) is float
    assert type(status.stats["frames"]) is int


@pytest.mark.parametrize(
    "change",
    [
        {"ts": "1"},  # a numeric string is not a time
        {"ts": 1.0},
        {"ts": True},
        {"ts": -1},
        {"v": True},
        {"v": 1.0},
        {"gw": "gw kariadi"},
        {"stats": []},
        {"stats": {"frames": "12"}},
        {"stats": {"frames": 1.5}},
        {"stats": {"frames": -1}},
        {"stats": {"frames": True}},
        {"stats": {"frames": 2**63}},
        {"stats": {"link_for_s": -0.5}},
        {"stats": {"link": 3}},
        {"sensors_last_seen": {"bed icu": 1}},
        {"sensors_last_seen": {"bed-icu": "1"}},
        {"sensor_seq_gaps": {"bed-icu": -2}},
        {"sensors_silent": ["a\nb"]},
        {"clock_offset_ms": "5"},
        {"extra": 1},
    ],
    ids=repr,
)
def test_each_status_field_is_validated_like_a_reading(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GatewayStatus.model_validate({**BASE, **change})


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_version_one_is_the_integer_one_only_in_every_message(version: object) -> None:
    """JSON true and 1.0 compare equal to 1 in Python; neither is version 1."""
    values = {"entries": 5, "exits": 1, "occupancy": 4}
    single = {"sensor": "s-1", "kind": "crowd", "values": values}
    reading = {**single, "ts": 1_764_000_000_000, "seq": 0}
    batch = {"gw": "gw-1", "seq": 0, "sent": 1_764_000_000_000, "readings": [reading]}
    for model, doc in ((GatewayStatus, BASE), (SingleReading, single), (Batch, batch)):
        assert model.model_validate({**doc, "v": 1}).v == 1
        with pytest.raises(ValidationError):
            model.model_validate({**doc, "v": version})


def test_the_protocol_document_lists_exactly_the_known_stats_with_their_types() -> None:
    """docs/protocol.md's stats table names every stat (``<lane>``/``<why>``, where used, stand
    for the spool's lanes and drop reasons) under its type, and nothing else."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    lanes = [kind.value for kind in LANES]
    whys = [why.value for why in DropReason]
    start = text.index("| stats | type | meaning |")
    rows = text[start : text.index("\n\n", start)].splitlines()[2:]
    documented: dict[str, StatType] = {}
    for row in rows:
        names, kind, _meaning = row.strip("|").split("|")
        stat_type = next(t for t in StatType if kind.strip().startswith(t.value))
        for token in re.findall(r"`([^`]+)`", names):
            expanded = [token]
            for slot, choices in (("<lane>", lanes), ("<why>", whys)):
                expanded = [e.replace(slot, c) for e in expanded for c in choices]
            documented.update(dict.fromkeys(expanded, stat_type))
    assert documented == dict(STAT_TYPES)
