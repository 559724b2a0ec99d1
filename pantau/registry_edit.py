"""Add and remove gateways and sensors in a city registry file without losing a comment.

The registry is hand-written YAML with comments that say why (``# a kiosk with its own
Wi-Fi ...``); loading it and dumping it again would drop every one of them and reflow every
line. So the file is edited as text: PyYAML's node tree gives each list item's first and last
line, an item is added as one flow-style line (``- {id: gw-x, site: rs-x}``, the file's own
style) after the last item of its list, and removed by deleting exactly its lines.

A change is a :class:`RegistryChange`: the new text is written to a temporary file next to the
registry and loaded with :func:`city.load_registry` *before* anything else happens, so a change
that would leave the registry invalid is refused and the file is untouched. :meth:`apply`
renames the temporary file over the registry (atomic on one filesystem: a watcher reads the old
file or the new one, never half of one), after checking the file did not change meanwhile.
docs/adr/0017-gateway-lifecycle.md explains the choice.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from city import Registry, load_registry
from contract.errors import RegistryError

__all__ = ["RegistryChange", "add_gateway", "flow_item", "remove_gateway"]


@dataclass(frozen=True, slots=True)
class _Span:
    """Lines ``first..last`` (0-based, inclusive) of one list item, and its dash's column."""

    first: int
    last: int
    dash: int


class RegistryChange:
    """A validated edit of one registry file, waiting to be applied or discarded."""

    def __init__(self, *, path: Path, before: bytes, text: str, registry: Registry) -> None:
        self.path = path
        self.before = before
        self.text = text
        #: The registry as it will be once applied (validated).
        self.registry = registry

    @property
    def _tmp(self) -> Path:
        return self.path.with_name(f".{self.path.name}.pantau-edit")

    def apply(self) -> None:
        """Replace the registry file with the new text, atomically, keeping its mode. Refuses
        (RegistryError) if someone changed the file since the change was planned."""
        try:
            current = self.path.read_bytes()
        except OSError as exc:
            raise RegistryError(str(self.path), "", f"cannot read: {exc.strerror}") from None
        if current != self.before:
            raise RegistryError(
                str(self.path), "", "changed by someone else meanwhile; run the command again"
            )
        tmp = self._tmp
        mode = self.path.stat().st_mode & 0o777
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self.text)
            out.flush()
            # Durable before the rename: after a power cut the registry is old or new.
            os.fsync(out.fileno())
        tmp.replace(self.path)


def _validate(path: Path, before: bytes, text: str) -> RegistryChange:
    """Load ``text`` exactly as the services would; refuse it naming the registry file."""
    tmp = path.with_name(f".{path.name}.pantau-check")
    try:
        tmp.write_text(text, encoding="utf-8")
        registry = load_registry(tmp)
    except RegistryError as exc:
        raise RegistryError(str(path), exc.location, exc.message) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return RegistryChange(path=path, before=before, text=text, registry=registry)


def flow_item(item: dict[str, Any]) -> str:
    """One mapping as a one-line YAML flow mapping, quoted where YAML needs it."""
    text: str = yaml.safe_dump(
        item, default_flow_style=True, allow_unicode=True, sort_keys=False, width=1 << 20
    )
    return text.strip()


def _read(path: Path) -> tuple[bytes, list[str], MappingNode]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RegistryError(str(path), "", f"cannot read: {exc.strerror}") from None
    # The file must be a valid registry to begin with (this also checks UTF-8 and syntax).
    load_registry(path)
    text = raw.decode("utf-8")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, MappingNode):
        raise RegistryError(str(path), "", "the registry must be a mapping")
    return raw, text.splitlines(keepends=True), root


def _sequence(path: Path, root: MappingNode, key: str) -> SequenceNode:
    for key_node, value in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            if isinstance(value, SequenceNode) and not value.flow_style and value.value:
                return value
            break
    raise RegistryError(
        str(path), key, "is not a block list ('- ' items); edit the file by hand instead"
    )


def _is_blank_or_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _span(path: Path, lines: list[str], label: str, item: Node) -> _Span:
    first = item.start_mark.line
    end = item.end_mark
    last = end.line - 1 if end.column == 0 else end.line
    # A block mapping ends where the next item starts: comments before that belong to it.
    while last > first and _is_blank_or_comment(lines[last]):
        last -= 1
    head = lines[first][: item.start_mark.column]
    if head.strip() != "-":
        raise RegistryError(
            str(path), label, "shares its line with other text; edit the file by hand instead"
        )
    return _Span(first=first, last=last, dash=head.index("-"))


def _field(item: Node, name: str) -> str | None:
    """The scalar value of key ``name`` of a mapping item, as written."""
    if isinstance(item, MappingNode):
        for key_node, value in item.value:
            if isinstance(key_node, ScalarNode) and key_node.value == name:
                return str(value.value) if isinstance(value, ScalarNode) else None
    return None


def _with_newline(lines: list[str]) -> list[str]:
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines


def add_gateway(
    path: Path, gateway: dict[str, Any], sensors: list[dict[str, Any]], *, note: str = ""
) -> RegistryChange:
    """Plan adding ``gateway`` (a ``gateways`` entry) and ``sensors`` (``sensors`` entries),
    each as one line after the last item of its list; ``note`` becomes a comment above the
    sensors. Raises :class:`RegistryError` if the result would not be a valid registry."""
    raw, lines, root = _read(path)
    lines = _with_newline(lines)
    inserts: list[tuple[int, list[str]]] = []
    gateways = _sequence(path, root, "gateways")
    last_gw = _span(path, lines, f"gateways[{len(gateways.value) - 1}]", gateways.value[-1])
    inserts.append((last_gw.last + 1, [f"{' ' * last_gw.dash}- {flow_item(gateway)}\n"]))
    if sensors:
        seq = _sequence(path, root, "sensors")
        last = _span(path, lines, f"sensors[{len(seq.value) - 1}]", seq.value[-1])
        pad = " " * last.dash
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        block = [f"{pad}# {note or gateway['id']} (pantau gateway add, {stamp})\n"]
        block += [f"{pad}- {flow_item(s)}\n" for s in sensors]
        inserts.append((last.last + 1, block))
    # From the bottom up, so earlier insertion points stay valid.
    for at, new in sorted(inserts, key=lambda x: x[0], reverse=True):
        lines[at:at] = new
    return _validate(path, raw, "".join(lines))


def remove_gateway(path: Path, gateway_id: str, *, remove_sensors: bool) -> RegistryChange:
    """Plan removing the gateway ``gateway_id`` and, with ``remove_sensors``, every sensor
    attached to it. Without it, a gateway that still has sensors is refused (the registry would
    be invalid), as is an id the file does not hold."""
    raw, lines, root = _read(path)
    doomed: list[_Span] = []
    for key in ("gateways", "sensors"):
        seq = _sequence(path, root, key)
        # A gateway entry by its id; a sensor entry by the gateway it names.
        field = "id" if key == "gateways" else "gateway"
        if key == "sensors" and not remove_sensors:
            continue
        doomed += [
            _span(path, lines, f"{key}[{i}]", item)
            for i, item in enumerate(seq.value)
            if _field(item, field) == gateway_id
        ]
        if key == "gateways" and not doomed:
            raise RegistryError(str(path), "gateways", f"no gateway {gateway_id!r}")
    gone = {n for span in doomed for n in range(span.first, span.last + 1)}
    gone |= _orphaned_comments(lines, gone)
    kept = [line for n, line in enumerate(lines) if n not in gone]
    return _validate(path, raw, "".join(kept))


def _orphaned_comments(lines: list[str], gone: set[int]) -> set[int]:
    """Comment lines that headed only removed items (``# RSUD Tugurejo`` above its sensors):
    a run of comments directly above a removed item whose next surviving line is not a list
    item (another comment, a blank line, the next key, the end)."""
    orphans: set[int] = set()
    n = 0
    while n < len(lines):
        if n in gone or not lines[n].lstrip().startswith("#"):
            n += 1
            continue
        start = n
        while n < len(lines) and n not in gone and lines[n].lstrip().startswith("#"):
            n += 1
        if n not in gone:
            continue  # the comments head a surviving line
        after = n
        while after in gone:
            after += 1
        if after == len(lines) or not lines[after].lstrip().startswith("- "):
            orphans.update(range(start, n))
    return orphans
