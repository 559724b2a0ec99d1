"""docs/operations.md stays true: every pantau command line in it parses (``--help``), every
benchmark it tells you to run exists, every figure it links to docs/performance.md or
docs/schema.md is written there, and README's Operations section links it."""

from __future__ import annotations

import importlib.util
import re
import shlex

import pytest
from typer.testing import CliRunner

from pantau.cli import app
from pantau.paths import ROOT

DOCS = ROOT / "docs"
GUIDE = (DOCS / "operations.md").read_text(encoding="utf-8")
_FENCED = re.compile(r"```sh\n(.*?)```", re.DOTALL)
_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(((?:performance|schema)\.md)#([a-z0-9-]+)\)")


def _squash(text: str) -> str:
    return " ".join(text.split())


def command_lines() -> list[str]:
    """Every ``pantau ...`` command in the guide: fenced shell lines and inline code spans
    (a span may wrap across lines)."""
    found: list[str] = []
    for block in _FENCED.findall(GUIDE):
        found += [line.strip() for line in block.splitlines()]
    prose = _FENCED.sub("", GUIDE)
    found += [_squash(span) for span in _SPAN.findall(prose)]
    return sorted({line for line in found if line.startswith("pantau ")})


def bench_modules() -> list[str]:
    return sorted(set(re.findall(r"python -m (bench\.[a-z_]+)", GUIDE)))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")


def test_the_guide_names_the_commands_an_operator_runs() -> None:
    """The extraction itself: the guide's commands are found (so the parse test is not empty)."""
    lines = command_lines()
    assert len(lines) >= 12
    assert "pantau edge status /var/lib/pantau-edge/gw.spool.status.json --summary" in lines
    assert "pantau ingest replay --reason unknown_gateway --gateway gw-new" in lines


@pytest.mark.parametrize("line", command_lines())
def test_every_pantau_command_line_in_the_guide_parses(line: str) -> None:
    """Unknown commands and options fail the parse before ``--help`` is honoured."""
    args = shlex.split(line)[1:]
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"{line}\n{result.output}"


@pytest.mark.parametrize("module", bench_modules())
def test_every_benchmark_the_guide_names_exists(module: str) -> None:
    assert importlib.util.find_spec(module) is not None


def test_every_linked_figure_is_written_in_its_source_under_that_heading() -> None:
    links = _LINK.findall(GUIDE)
    assert len(links) >= 15
    wrong: list[str] = []
    for figure, source, anchor in links:
        text = (DOCS / source).read_text(encoding="utf-8")
        headings = [h.strip() for h in re.findall(r"^#+ (.*)$", text, re.MULTILINE)]
        sections = re.split(r"^#+ .*$", text, flags=re.MULTILINE)[1:]
        by_anchor = {_slug(h): _squash(body) for h, body in zip(headings, sections, strict=True)}
        if anchor not in by_anchor:
            wrong.append(f"{source}#{anchor}: no such heading")
        elif _squash(figure) not in by_anchor[anchor]:
            wrong.append(f"{figure!r} is not in {source}#{anchor}")
    assert wrong == []


def test_readme_operations_links_the_guide() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    operations = readme.split("## Operations", 1)[1].split("\n## ", 1)[0]
    assert "(docs/operations.md)" in operations
