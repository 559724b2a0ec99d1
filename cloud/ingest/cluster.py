"""Scale-out state exchange, pure numpy (no I/O): what one ingester tells the other members of
its group about its ``SensorState``, and how it merges what they tell it.

The state of a sensor is its latest reading and its previous one. Merging two states is a
join: per sensor the latest is the newer of both latests, the previous the newest of the rest
that is strictly older. That is commutative, associative and idempotent, so members that
exchange every change they make end up with the state a single ingester would have built
from all readings, whatever the order of delivery. docs/adr/0006-ingester-scale-out.md has
the argument and its one caveat (equal observation times).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cloud.ingest.aggregate import NO_TIME, SensorState
from contract.cluster import StateDelta, max_rows

I64 = npt.NDArray[np.int64]
Rows = tuple[npt.NDArray[np.int32], I64, I64, I64]


def copy_state(state: SensorState) -> SensorState:
    """An independent copy of ``state``."""
    out = SensorState(n_sensors=len(state.ts))
    out.ts[:], out.seq[:], out.values[:] = state.ts, state.seq, state.values
    out.prev_ts[:], out.prev_values[:] = state.prev_ts, state.prev_values
    return out


def changed_sensors(a: SensorState, b: SensorState) -> npt.NDArray[np.intp]:
    """Sensors whose latest or previous reading differs between two states."""
    return np.flatnonzero(
        (a.ts != b.ts)
        | (a.seq != b.seq)
        | (a.prev_ts != b.prev_ts)
        | (a.values != b.values).any(axis=1)
        | (a.prev_values != b.prev_values).any(axis=1)
    )


def deltas_of(
    state: SensorState, sensors: npt.NDArray[np.intp], digest: bytes, *, hello: bool = False
) -> list[StateDelta]:
    """The state of ``sensors`` as deltas, each small enough for one MQTT message. With
    ``hello`` every delta carries the HELLO flag, and there is one even for no sensors."""
    step = max_rows(state.values.shape[1])
    starts = range(0, len(sensors), step) if len(sensors) or not hello else range(1)
    out = []
    for lo in starts:
        rows = sensors[lo : lo + step]
        out.append(
            StateDelta(
                digest=digest,
                sensor=rows.astype(np.uint32),
                ts=state.ts[rows],
                seq=state.seq[rows],
                prev_ts=state.prev_ts[rows],
                values=state.values[rows],
                prev_values=state.prev_values[rows],
                hello=hello,
            )
        )
    return out


def mark_shared(shared: SensorState, state: SensorState, sensors: npt.NDArray[np.intp]) -> None:
    """Record that the other members now know ``state`` of ``sensors``."""
    shared.ts[sensors], shared.seq[sensors] = state.ts[sensors], state.seq[sensors]
    shared.values[sensors] = state.values[sensors]
    shared.prev_ts[sensors] = state.prev_ts[sensors]
    shared.prev_values[sensors] = state.prev_values[sensors]


def fits(delta: StateDelta, *, digest: bytes, n_sensors: int, fields: int) -> bool:
    """True if ``delta`` comes from a member with the same registry as ours."""
    return (
        delta.digest == digest
        and delta.values.shape[1] == fields
        and (len(delta) == 0 or int(delta.sensor.max()) < n_sensors)
    )


def merge_rows(deltas: list[StateDelta], state: SensorState) -> Rows:
    """Rows for ``SensorState.update`` from peer deltas: each sensor's previous reading and its
    latest. Equal observation times are decided by seq (the higher wins), not by arrival, so
    every member reaches the same state whatever order the deltas come in; a peer's latest
    that loses that tie against ``state`` is left out."""
    fields = state.values.shape[1]
    if not deltas:
        empty = np.zeros(0, np.int64)
        return np.zeros(0, np.int32), empty, empty, np.zeros((0, fields), np.int64)
    sensor = np.concatenate([d.sensor for d in deltas]).astype(np.int32)
    ts = np.concatenate([d.ts for d in deltas])
    seq = np.concatenate([d.seq for d in deltas])
    values = np.concatenate([d.values for d in deltas]).reshape(-1, fields)
    prev_ts = np.concatenate([d.prev_ts for d in deltas])
    prev_values = np.concatenate([d.prev_values for d in deltas]).reshape(-1, fields)
    has_prev = prev_ts != NO_TIME
    keep = ~((ts == state.ts[sensor]) & (seq < state.seq[sensor]))
    all_sensor = np.concatenate([sensor[has_prev], sensor[keep]])
    all_ts = np.concatenate([prev_ts[has_prev], ts[keep]])
    all_seq = np.concatenate([np.zeros(int(has_prev.sum()), np.int64), seq[keep]])
    all_values = np.concatenate([prev_values[has_prev], values[keep]])
    # update() breaks equal times by arrival: present rows in (time, seq) order.
    order = np.lexsort((all_seq, all_ts))
    return all_sensor[order], all_ts[order], all_seq[order], all_values[order]


def apply_rows(state: SensorState, shared: SensorState | None, rows: Rows) -> int:
    """Merge rows from :func:`merge_rows` into ``state`` (and into ``shared``, our record of
    what the peers know: what they sent, they know); returns how many sensors' state changed."""
    before = copy_state(state)
    state.update(*rows)
    if shared is not None:
        shared.update(*rows)
    return len(changed_sensors(state, before))
