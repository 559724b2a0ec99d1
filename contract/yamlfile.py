"""Reading a YAML configuration file (a city registry, an edge config, a scenario) so that every
way it can be wrong is one :class:`~contract.errors.ConfigFileError` naming the file, the line
and column, and the problem: unreadable, not UTF-8, bad syntax, or a key given twice.

PyYAML lets a repeated key silently win over the first; in a registry that means a site's
``capacity: 400`` followed by a forgotten ``capacity: 40`` is never noticed, so repeated keys
are refused here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from contract.errors import ConfigFileError

__all__ = ["read_yaml"]

# libyaml's parser when present: 3-4x faster on a province-sized registry. The constructor
# (where keys are checked) is Python in both.
_BASE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: A quoted key longer than this is cut in messages.
_KEY_ECHO = 60


class _DuplicateKeyError(ConstructorError):
    """A mapping that gives one key twice."""


class _StrictLoader(_BASE_LOADER):  # type: ignore[valid-type,misc]
    """The safe loader, refusing a mapping that repeats a key."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        # Before the merge keys (``<<``) are flattened: a key overriding a merged one is
        # YAML's documented way to extend a template, not a mistake.
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            if key in seen:
                shown = repr(key)
                if len(shown) > _KEY_ECHO:
                    shown = shown[:_KEY_ECHO] + "..."
                raise _DuplicateKeyError(
                    None,
                    None,
                    f"duplicate key {shown} (first given at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _decode(raw: bytes, source: str, error: type[ConfigFileError]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise error(
            source,
            f"line {line}, column {column}",
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
        ) from None


def read_yaml(path: str | Path, error: type[ConfigFileError]) -> Any:
    """Parse a YAML file. Any failure raises ``error`` naming the file, the line and column
    where known, and the problem: unreadable, not UTF-8, bad syntax, or a repeated key."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise error(source, "", f"cannot read: {exc.strerror}") from None
    text = _decode(raw, source, error)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = _one_line(exc.problem or "syntax error")
        if exc.context:
            at = exc.context_mark
            context = _one_line(exc.context)
            problem += f" ({context} at line {at.line + 1})" if at else f" ({context})"
        if not isinstance(exc, _DuplicateKeyError):
            problem = f"not valid YAML: {problem}"
        raise error(source, location, problem) from None
    except yaml.YAMLError as exc:
        raise error(source, "", f"not valid YAML: {_one_line(exc)}") from None
