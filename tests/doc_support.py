"""The documents tests check, and the worked examples pulled out of them."""

from __future__ import annotations

import re

from pantau.paths import ROOT

PROTOCOL = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
_DUMP = re.compile(r"<!-- binary: (\w+) -->\n```text\n(.*?)\n```", re.DOTALL)
#: one dump line: decimal offset, up to 8 hex bytes, then the note
_LINE = re.compile(r"^\s*(\d+)  ((?:[0-9A-F]{2} ?){1,8})(?:\s+.*)?$")


def dump_names() -> list[str]:
    """Names of the annotated binary dumps in docs/protocol.md, in order."""
    return [name for name, _ in _DUMP.findall(PROTOCOL)]


def dump(name: str) -> bytes:
    """The bytes of the dump ``name``, checking that every line's offset is where it starts."""
    text = dict(_DUMP.findall(PROTOCOL))[name]
    out = bytearray()
    for line in text.splitlines():
        match = _LINE.match(line)
        assert match is not None, f"not a dump line: {line!r}"
        assert int(match[1]) == len(out), f"offset {match[1]} but the line starts at {len(out)}"
        out += bytes.fromhex(match[2])
    return bytes(out)
