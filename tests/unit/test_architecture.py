"""The import rules of docs/architecture.md, enforced on the source tree.

Read from the source with `ast` rather than by importing, so a forbidden import is caught even in
a module no test happens to load.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The ingester modules the API may import too (docs/architecture.md).
INGEST_MATH = frozenset(
    {
        "cloud.ingest.topology",
        "cloud.ingest.wards",
        "cloud.ingest.aggregate",
        "cloud.ingest.cluster",
        "cloud.ingest.seed",
        "cloud.ingest.remap",
    }
)
# part -> the parts it may import (its own modules always). Keep in step with
# docs/architecture.md's table; a new part goes into both in the same change.
PARTS: dict[str, frozenset[str]] = {
    "contract": frozenset(),
    "city": frozenset({"contract"}),
    "edge": frozenset({"contract"}),
    "firmware_sim": frozenset({"contract", "city"}),
    "cloud.influx": frozenset({"contract"}),
    # measurement, tag and field names and retention policies: written, queried, charted
    "cloud.storage_schema": frozenset({"contract"}),
    # noticing a changed city file, for the ingester and the API alike (ADR 0018)
    "cloud.registry_watch": frozenset({"contract", "city"}),
    # The ingester's state and math without I/O: the API follows the ingesters' state and
    # derives its answers with exactly these modules (one formula, one module).
    "cloud.ingest.topology": frozenset({"contract", "city"}),
    # wards names aggregate's SensorState for typing only (aggregate imports wards at run time)
    "cloud.ingest.wards": frozenset(
        {"contract", "city", "cloud.ingest.topology", "cloud.ingest.aggregate"}
    ),
    "cloud.ingest.aggregate": frozenset(
        {"contract", "city", "cloud.ingest.topology", "cloud.ingest.wards"}
    ),
    "cloud.ingest.cluster": frozenset({"contract", "cloud.ingest.aggregate"}),
    "cloud.ingest.seed": frozenset(
        {
            "contract",
            "city",
            "cloud.influx",
            "cloud.storage_schema",
            "cloud.ingest.topology",
            "cloud.ingest.aggregate",
        }
    ),
    "cloud.ingest": frozenset(
        {
            "contract",
            "city",
            "cloud.influx",
            "cloud.storage_schema",
            "cloud.registry_watch",
            *INGEST_MATH,
        }
    ),
    "cloud.api": frozenset(
        {
            "contract",
            "city",
            "cloud.influx",
            "cloud.storage_schema",
            "cloud.registry_watch",
            *INGEST_MATH,
        }
    ),
    "cloud.ingest.remap": frozenset(
        {"contract", "city", "cloud.ingest.topology", "cloud.ingest.aggregate"}
    ),
    "pantau": frozenset(
        {
            "contract",
            "city",
            "edge",
            "firmware_sim",
            "cloud.influx",
            "cloud.storage_schema",
            "cloud.registry_watch",
            "cloud.ingest",
            "cloud.api",
            *INGEST_MATH,
        }
    ),
}
SOURCE_DIRS = {"firmware_sim": ROOT / "firmware-sim" / "firmware_sim"}
# Third-party packages contract/ may import at module level, per module: a gateway agent that
# speaks JSON imports contract and must not pay for numpy.
CONTRACT_THIRD_PARTY = {"pydantic", "orjson"}
# module -> the one further library it may load: the binary formats need numpy; every
# deployable reads its YAML files through one reader that refuses repeated keys.
CONTRACT_EXTRA = {
    "contract.binary": "numpy",
    "contract.cluster": "numpy",
    "contract.yamlfile": "yaml",
    # every deployable's settings read secret files alike (SecretFileSettings)
    "contract.secrets": "pydantic_settings",
}


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement of ours: who imports what, and where."""

    module: str
    target: str
    line: int


def part_of(module: str) -> str | None:
    """The part a dotted module name belongs to (`cloud.ingest.writer` -> `cloud.ingest`)."""
    for part in sorted(PARTS, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    if module == "cloud":
        return "cloud"
    return None


def _modules() -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for top in ("contract", "city", "edge", "firmware_sim", "cloud", "pantau"):
        base = SOURCE_DIRS.get(top, ROOT / top)
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((".".join([top, *parts]), path))
    return found


def _runtime_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """Absolute imports executed when the module loads (not those inside functions)."""
    names: list[tuple[str, int]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                names.extend((alias.name, node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.append((node.module, node.lineno))
            elif isinstance(node, ast.If):
                # `if TYPE_CHECKING:` imports do not load at run time.
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return names


def _all_imports() -> list[Import]:
    out: list[Import] = []
    for module, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out.extend(Import(module, a.name, node.lineno) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.append(Import(module, node.module, node.lineno))
    return out


def forbidden(imports: list[Import]) -> list[str]:
    """Every import of one of our parts that the importing part may not make."""
    bad: list[str] = []
    for imp in imports:
        source, target = part_of(imp.module), part_of(imp.target)
        if source is None or target is None or source == target:
            continue
        if target not in PARTS.get(source, frozenset()):
            bad.append(f"{imp.module}:{imp.line} imports {imp.target} ({source} -> {target})")
    return bad


def test_every_part_imports_only_what_docs_architecture_allows() -> None:
    assert forbidden(_all_imports()) == []


def test_the_rule_check_catches_a_forbidden_import() -> None:
    """The checker itself: an edge module importing the ingester is reported."""
    imports = [
        Import("edge.agent", "cloud.ingest.writer", 3),
        Import("cloud.api.main", "cloud.influx", 4),
        Import("cloud.api.routes.beds", "cloud.ingest", 5),
    ]
    assert forbidden(imports) == [
        "edge.agent:3 imports cloud.ingest.writer (edge -> cloud.ingest)",
        "cloud.api.routes.beds:5 imports cloud.ingest (cloud.api -> cloud.ingest)",
    ]


def test_contract_loads_only_stdlib_pydantic_and_orjson_but_where_allowed() -> None:
    stdlib = {name.split(".")[0] for name in _stdlib()}
    bad: list[str] = []
    for module, path in _modules():
        if part_of(module) != "contract":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, line in _runtime_imports(tree):
            top = name.split(".")[0]
            if top in stdlib or top == "contract" or top in CONTRACT_THIRD_PARTY:
                continue
            if CONTRACT_EXTRA.get(module) == top:
                continue
            bad.append(f"{module}:{line} imports {name}")
    assert bad == []


def _stdlib() -> frozenset[str]:
    return frozenset(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize("module", ["contract", "edge"])
def test_importing_contract_or_edge_does_not_load_numpy(module: str) -> None:
    """A JSON gateway agent stays light: checked in a fresh interpreter."""
    code = f"import sys, {module}; print('numpy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


#: What the ingester's I/O-free modules must never load: the MQTT client, the HTTP client, the
#: metrics library (the API imports these modules; a benchmark of the math must not pay for I/O).
INGEST_IO_LIBRARIES = ("paho", "httpx", "prometheus_client")


# `seed` reads InfluxDB (httpx) by design: it is the one of INGEST_MATH with I/O.
@pytest.mark.parametrize("module", sorted(INGEST_MATH - {"cloud.ingest.seed"}))
def test_the_ingesters_math_imports_without_mqtt_http_or_metrics(module: str) -> None:
    """Checked in a fresh interpreter: ``cloud/ingest/__init__.py`` loads nothing eagerly."""
    code = f"import sys, {module}; print(sorted(set({INGEST_IO_LIBRARIES!r}) & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def test_every_part_is_a_package_in_pyproject() -> None:
    """A package missing from pyproject imports from a checkout, but not once installed."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        module
        for module, path in _modules()
        if path.name == "__init__.py" and not re.search(r"tests?$", module)
    }
    assert on_disk - listed == set()
