"""Late data's rewrites of past buckets, coalesced: one in flight, rewrites submitted meanwhile
only due, the next write carries every bucket due with its newest lines, and a window's
covering write holds its buckets as new as it saw them (cloud/ingest/past_writes.py,
docs/adr/0045-late-data-rewrites-off-the-consumers-path.md)."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.past_writes import PastWrites
from cloud.ingest.writer import PendingWrite, Refused

pytestmark = pytest.mark.timeout(30)  # a test writer that is never settled must not hang


class _HeldWrite(PendingWrite):
    """A write held until the test settles its future; waiting for a held one records the
    wait and then settles it (so a test sees that the consumer would have waited)."""

    def __init__(self, future: Future[list[Refused]]) -> None:
        super().__init__([future])
        self.future = future
        self.waited = False

    def result(self) -> list[Refused]:
        if not self.future.done():
            self.waited = True
            self.future.set_result([])
        return super().result()


class _Writer:
    def __init__(self) -> None:
        self.lines: list[list[str]] = []
        self.writes: list[_HeldWrite] = []

    def submit(self, lines: list[str]) -> PendingWrite:
        self.lines.append(list(lines))
        self.writes.append(_HeldWrite(Future()))
        return self.writes[-1]


def _past(max_pending_lines: int = 1000) -> tuple[PastWrites, _Writer]:
    writer = _Writer()
    return PastWrites(writer=writer, max_pending_lines=max_pending_lines), writer  # type: ignore[arg-type]


def test_rewrites_during_a_write_are_due_and_the_next_carries_each_bucket_s_newest_lines() -> None:
    past, writer = _past()
    past.submit({60: ["a60 v1"]})
    assert (len(writer.lines), past.covering) == (1, 1)
    past.submit({60: ["a60 v2"], 120: ["a120 v2"]})
    past.submit({60: ["a60 v3"]})
    assert len(writer.lines) == 1  # in flight: only due, and no wait
    assert past.covering == 2
    assert not past.settled(1)
    writer.writes[0].future.set_result([])
    assert past.settled(1)  # polling settled it and started the due one
    assert writer.lines[1] == ["a60 v3", "a120 v2"]  # bucket order, newest set of each
    assert not past.settled(2)
    writer.writes[1].future.set_result([])
    assert past.settled(2)
    assert past.settled(past.covering)  # nothing in flight, nothing due
    assert not any(w.waited for w in writer.writes)


def test_a_failed_rewrite_is_carried_again_unless_a_newer_set_is_due() -> None:
    past, writer = _past()
    past.submit({60: ["a60 v1"], 120: ["a120 v1"]})
    past.submit({120: ["a120 v2"]})
    writer.writes[0].future.set_exception(OSError("InfluxDB went away"))
    with pytest.raises(OSError, match="went away"):
        past.poll()
    assert not past.settled(1)
    past.wait(2)  # starts the write that covers both windows, and waits for it
    assert writer.lines[1] == ["a60 v1", "a120 v2"]
    assert past.settled(2)


def test_a_window_waits_for_the_write_in_flight_only_past_the_pending_bound() -> None:
    past, writer = _past(max_pending_lines=3)
    past.submit({60: ["x", "y"]})
    past.submit({120: ["z"]})  # 3 in flight and due: no wait
    assert not writer.writes[0].waited
    past.submit({180: ["w"]})  # 4: waits for the one in flight, then starts the due ones
    assert writer.writes[0].waited
    assert writer.lines[1] == ["z", "w"]


def test_waiting_for_a_number_nothing_carries_returns() -> None:
    past, writer = _past()
    past.wait(0)
    past.submit({})
    assert (writer.lines, past.covering) == ([], 0)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sets(st.integers(0, 4), max_size=3),  # buckets the window changes
            st.booleans(),  # the write in flight settles before this window
        ),
        min_size=1,
        max_size=15,
    )
)
def test_a_settled_covering_write_leaves_every_bucket_at_least_as_new_as_its_window_saw(
    steps: list[tuple[set[int], bool]],
) -> None:
    """InfluxDB's view (the last lines written per bucket, in settling order) holds, once a
    window's covering write settled, each of its buckets at the version it submitted or a
    newer one; once everything settled, each bucket's newest version."""
    past, writer = _past()
    stored: dict[int, int] = {}
    settled_writes = 0
    windows: list[tuple[int, dict[int, int]]] = []

    def settle_next() -> None:
        nonlocal settled_writes
        writer.writes[settled_writes].future.set_result([])
        for line in writer.lines[settled_writes]:
            bucket, version = map(int, line.split())
            stored[bucket] = version
        settled_writes += 1

    for version, (buckets, settle) in enumerate(steps, start=1):
        if settle and settled_writes < len(writer.writes):
            settle_next()
        past.submit({b: [f"{b} {version}"] for b in buckets})
        windows.append((past.covering, dict.fromkeys(buckets, version)))
        for number, seen in windows:
            if past.settled(number):
                assert all(stored.get(b, 0) >= v for b, v in seen.items())
    while not past.settled(past.covering):
        settle_next()
    newest = {b: v for v, (buckets, _) in enumerate(steps, start=1) for b in buckets}
    assert stored == newest
