"""No module over 400 lines (docs/architecture.md, "Small modules"): a part that grows gets a
folder of modules of one responsibility each."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
#: Where our Python lives: the packages, the benchmarks and the tests.
TREES = (
    "contract",
    "city",
    "edge",
    "cloud",
    "pantau",
    "firmware-sim/firmware_sim",
    "bench",
    "tests",
)


def _lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def _modules() -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for tree in TREES
        for path in (ROOT / tree).rglob("*.py")
        if ".venv" not in path.parts
    )


def test_no_module_is_over_400_lines() -> None:
    too_long = {m: n for m in _modules() if (n := _lines(ROOT / m)) > MAX_LINES}
    assert too_long == {}
