"""What ``pantau demo`` shows: the live view of the city, its banner, and the end of a dead
part's log.

The live view must fit the 80x24 terminal a newcomer opens: ``rich.live`` cuts whatever does
not fit to ``...``, which is how the crowds and queues used to vanish below the bed tables. So
the four tables sit in two columns of 40 characters, each row is one line (long names are
ellipsised, not wrapped), and each table shows at most a fixed number of rows, the most
pressing first (highest BOR, highest load, longest wait), with a "+N more" line pointing at the
API for the rest. A value the API does not have yet (``null`` before the first reading) is shown
as ``—``, never as ``None``.

Rendering is pure (:func:`render` takes a :class:`Snapshot` of the API's answers), so it is
tested on recorded answers at exactly 80x24; :func:`fetch` is the only part that does I/O.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from city import Registry
from contract import SensorKind
from pantau.device_access import env_name
from pantau.stack import LocalStack

GROUPS = ("icu", "hcu", "isolation", "general")
BAND_STYLE = {"normal": "green", "high": "yellow", "critical": "bold red"}
#: Most rows each table shows; with the titles and headers the view is 20 lines at most.
MAX_KECAMATAN = 7
MAX_CROWDS = 5
MAX_QUEUES = 4
COLUMN_WIDTH = 40
#: Log lines shown of a part that died: enough for a traceback's end, not a screenful of noise.
TAIL_LINES = 15
NO_VALUE = "—"
#: The single-reading example of docs/protocol.md, for a direct device's queue sensor.
QUEUE_EXAMPLE_VALUES = '{"issued":12,"served":9,"counters_open":2}'


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """The API's answers the live view is drawn from (each ``None`` if it did not answer)."""

    beds: dict[str, Any] = field(default_factory=dict)  # group -> /v1/beds/summary?level=kota
    kecamatan: Any = None  # /v1/beds/summary?level=kecamatan
    conditions: Any = None  # /v1/conditions
    #: /v1/queues: waits in the queue's own time (PANTAU_QUEUE_TIME_SCALE, the simulator's
    #: speedup in the demo), so 191 people at 12 counters do not read "0 min"
    queues: Any = None


def _get(api: httpx.Client, path: str, **params: str) -> Any:
    try:
        resp = api.get(path, params=params)
    except httpx.HTTPError:
        return None  # the API restarting or busy: the view shows dashes until it answers
    return resp.json() if resp.status_code == 200 else None


def fetch(api: httpx.Client) -> Snapshot:
    """One round of the API's answers for :func:`render`."""
    return Snapshot(
        beds={g: _get(api, "/v1/beds/summary", level="kota", group=g) for g in GROUPS},
        kecamatan=_get(api, "/v1/beds/summary", level="kecamatan"),
        conditions=_get(api, "/v1/conditions"),
        queues=_get(api, "/v1/queues"),
    )


def _items(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        return [row for row in doc["items"] if isinstance(row, dict)]
    return []


def _num(value: Any) -> str:
    return NO_VALUE if value is None else str(value)


def _pct(value: Any, style: str) -> str:
    return NO_VALUE if value is None else f"[{style}]{value:.1f} %[/]"


def _load_style(ratio: float | None) -> str:
    if ratio is None or ratio < 0.8:
        return "green"
    return "yellow" if ratio < 1 else "bold red"


def _table(title: str, columns: Iterable[str]) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        box=None,
        show_edge=False,
        pad_edge=False,
        width=COLUMN_WIDTH - 1,
        header_style="bold",
    )
    for i, col in enumerate(columns):
        if i == 0:
            # The name column gives way: ellipsised on one line, so a row is always one line.
            table.add_column(col, no_wrap=True, overflow="ellipsis", ratio=1)
        else:
            table.add_column(col, justify="right", no_wrap=True)
    return table


def _top(
    rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], float], limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The ``limit`` most pressing rows (highest ``key`` first; rows without data last) and
    how many were left out."""
    ranked = sorted(rows, key=key, reverse=True)
    return ranked[:limit], max(0, len(ranked) - limit)


def _note(table: Table, text: str) -> None:
    # A caption, not a row: it gets the table's whole width instead of the first column's.
    table.caption = text
    table.caption_justify = "left"


def _more(table: Table, hidden: int, where: str) -> None:
    if hidden:
        _note(table, f"+{hidden} more: {where}")


def _waiting(table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        _note(table, f"{NO_VALUE} waiting for the first readings")


def beds_table(snapshot: Snapshot) -> Table:
    """Free beds in the city by bed group (ICU, HCU, isolation, general)."""
    table = _table("Free beds (city)", ("type", "beds", "used", "free", "BOR"))
    for group in GROUPS:
        for row in _items(snapshot.beds.get(group)):
            table.add_row(
                group.upper() if group in ("icu", "hcu") else group,
                _num(row.get("capacity")),
                _num(row.get("occupied")),
                f"[bold]{_num(row.get('free'))}[/]",
                _pct(row.get("bor"), BAND_STYLE.get(str(row.get("band")), "")),
            )
    _waiting(table, [r for g in GROUPS for r in _items(snapshot.beds.get(g))])
    return table


def kecamatan_table(snapshot: Snapshot) -> Table:
    """BOR by kecamatan (hospitals and isolation centres), highest first."""
    table = _table("BOR by kecamatan", ("kecamatan", "beds", "free", "BOR"))
    rows = _items(snapshot.kecamatan)
    shown, hidden = _top(rows, lambda r: r.get("bor") or -1.0, MAX_KECAMATAN)
    for row in shown:
        table.add_row(
            _num(row.get("name")),
            _num(row.get("capacity")),
            _num(row.get("free")),
            _pct(row.get("bor"), BAND_STYLE.get(str(row.get("band")), "")),
        )
    _more(table, hidden, "/v1/beds/summary")
    _waiting(table, rows)
    return table


def crowd_table(snapshot: Snapshot) -> Table:
    """People at markets and public spaces against their health-protocol capacity."""
    table = _table("Crowds", ("site", "people", "cap", "load"))
    conditions = snapshot.conditions if isinstance(snapshot.conditions, dict) else {}
    rows = _items(conditions.get("crowd"))
    shown, hidden = _top(rows, lambda r: r.get("ratio") or -1.0, MAX_CROWDS)
    for row in shown:
        ratio = row.get("ratio")
        table.add_row(
            _num(row.get("site_name") or row.get("site")),
            _num(row.get("occupancy")),
            _num(row.get("capacity")),
            _pct(None if ratio is None else ratio * 100, _load_style(ratio)),
        )
    _more(table, hidden, "/v1/conditions")
    _waiting(table, rows)
    return table


def queue_table(snapshot: Snapshot) -> Table:
    """Queues at offices and hospital counters, longest estimated wait first."""
    table = _table("Queues", ("site", "waiting", "desks", "wait"))
    conditions = snapshot.conditions if isinstance(snapshot.conditions, dict) else {}
    source = "/v1/queues" if snapshot.queues is not None else "/v1/conditions"
    rows = (
        _items(snapshot.queues) if snapshot.queues is not None else _items(conditions.get("queues"))
    )
    shown, hidden = _top(rows, lambda r: r.get("wait_s") or -1.0, MAX_QUEUES)
    for row in shown:
        wait = row.get("wait_s")
        table.add_row(
            _num(row.get("site_name") or row.get("site")),
            _num(row.get("waiting")),
            _num(row.get("counters_open")),
            _wait(wait),
        )
    _more(table, hidden, source)
    _waiting(table, rows)
    return table


def _wait(seconds: float | None) -> str:
    if seconds is None:
        return NO_VALUE
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def render(snapshot: Snapshot, *, city_name: str, clock: str) -> RenderableType:
    """The live view: a title line, then beds and crowds on the left, kecamatan and queues on
    the right; at most 20 lines and 80 columns."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=COLUMN_WIDTH - 1)
    grid.add_column(width=COLUMN_WIDTH - 1)
    grid.add_row(beds_table(snapshot), kecamatan_table(snapshot))
    grid.add_row("", "")
    grid.add_row(crowd_table(snapshot), queue_table(snapshot))
    title = Text.assemble(("Pantau", "bold"), f" — {city_name} — {clock}", overflow="ellipsis")
    title.truncate(2 * COLUMN_WIDTH - 1, overflow="ellipsis")
    return Group(title, grid)


def mosquitto_pub_example(
    registry: Registry, *, host: str, port: int, device_access: Path
) -> list[str]:
    """docs/protocol.md's single-reading ``mosquitto_pub`` example aimed at this demo: the
    first direct device with a queue sensor, its topic, and the password variable that
    ``device_access`` (``device-access.env``) defines. Empty if the city has no such device."""
    for gw in sorted(registry.gateways.values(), key=lambda g: g.id):
        if not gw.direct:
            continue
        sensors = [s for s in registry.sensors_of(gateway=gw.id) if s.kind == SensorKind.QUEUE]
        if not sensors:
            continue
        payload = (
            f'{{"v":1,"sensor":"{sensors[0].id}","kind":"queue","seq":1,'
            f'"values":{QUEUE_EXAMPLE_VALUES}}}'
        )
        password = env_name(gw.id, "PASSWORD")
        return [
            f". {shlex.quote(str(device_access))}",
            f"mosquitto_pub -h {host} -p {port} -V mqttv5 -i {gw.id} -u {gw.id}"
            f' -P "${password}" -q 1 -t pantau/v1/{gw.site}/{gw.id}/reading'
            f" -m {shlex.quote(payload)}",
        ]
    return []


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a part's log, or a note that it has none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log at {path})"


@dataclass(frozen=True, kw_only=True)
class DeadPart:
    """A part of the demo that exited, with the end of its own log read while it still
    exists (a temporary data dir goes when the demo stops)."""

    name: str
    code: int
    log_path: Path
    tail: str

    def report(self) -> str:
        """What the demo prints: which part, how it ended, and its last log lines."""
        how = f"killed by signal {-self.code}" if self.code < 0 else f"exit status {self.code}"
        return (
            f"{self.name} stopped ({how}). The last lines of its log, {self.log_path}:\n{self.tail}"
        )


def first_dead(stack: LocalStack) -> DeadPart | None:
    """The first part that is no longer running, in start order: the broker and InfluxDB
    (a dead server makes the parts after it fail too, so it is the one to show), then the
    ingester, the API, the simulator and the gateways."""
    parts: list[tuple[str, subprocess.Popen[bytes] | None, Path]] = [
        (server_name, server.proc, server.log_path)
        for server_name, server in (("mosquitto", stack.mosquitto), ("influxdb", stack.influxdb))
        if server is not None
    ]
    parts += [(child.name, child.proc, child.log_path) for child in stack.children]
    for name, proc, log_path in parts:
        code = None if proc is None else proc.poll()
        if code is not None:
            return DeadPart(name=name, code=code, log_path=log_path, tail=log_tail(log_path))
    return None


__all__ = [
    "DeadPart",
    "Snapshot",
    "beds_table",
    "crowd_table",
    "fetch",
    "first_dead",
    "kecamatan_table",
    "log_tail",
    "mosquitto_pub_example",
    "queue_table",
    "render",
]
