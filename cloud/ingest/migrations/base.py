"""Ordered, numbered migration steps and the loop that applies the missing ones."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from contract.errors import PantauError

log = logging.getLogger(__name__)

T = TypeVar("T")


class MigrationError(PantauError):
    """A store cannot be brought to this release's version (e.g. it is newer)."""

    def __init__(self, store: str, message: str) -> None:
        self.store = store
        super().__init__(f"{store}: {message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step(Generic[T]):
    """Brings a store from ``version - 1`` to ``version``. ``apply`` must be safe to run again
    after a crash part-way: the marker is written only after it returns."""

    version: int
    name: str
    apply: Callable[[T], None]


@dataclass(slots=True)
class Applied:
    """What :func:`run_steps` found and did for one store."""

    store: str
    before: int
    after: int
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for logs and ``pantau migrate``."""
        if not self.steps:
            return f"{self.store}: version {self.after}, up to date"
        return f"{self.store}: version {self.before} -> {self.after} ({'; '.join(self.steps)})"


def run_steps(
    *,
    store: str,
    target: T,
    current: int,
    steps: Sequence[Step[T]],
    latest: int,
    stamp: Callable[[T, int], None],
) -> Applied:
    """Apply every step above ``current`` in order, stamping the version after each one, so a
    crash resumes at the step it interrupted. A store newer than ``latest`` (this release's
    version) is refused: an older release must not write into a layout it does not know."""
    versions = [s.version for s in steps]
    if versions != sorted(set(versions)):
        raise MigrationError(store, f"steps are not in strictly increasing order: {versions}")
    if current > latest:
        raise MigrationError(
            store,
            f"data is at version {current}, newer than this release knows ({latest}): "
            "run the release that wrote it (or newer); downgrades are not supported",
        )
    out = Applied(store=store, before=current, after=current)
    for step in steps:
        if step.version <= current:
            continue
        log.info("%s: migrating to version %d (%s)", store, step.version, step.name)
        step.apply(target)
        stamp(target, step.version)
        out.after = step.version
        out.steps.append(f"{step.version}: {step.name}")
    return out
