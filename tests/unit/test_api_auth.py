"""The pieces of API access without a server: the token bucket, the key file, region scopes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from city import Registry
from cloud.api.auth_keys import KeyStore, digest, key_id_of
from cloud.api.auth_limits import RateLimiter
from cloud.api.auth_roles import GRANTS, RegionIndex, Role


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_ten_seconds_of_burst_then_refuses_with_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    # 60 a minute: one a second, a burst of 10.
    assert [limiter.take("k", rate_per_min=60) for _ in range(10)] == [0] * 10
    assert limiter.take("k", rate_per_min=60) == 1
    clock.now += 0.5
    assert limiter.take("k", rate_per_min=60) == 1  # half a token back: still 1 s to wait
    clock.now += 0.5
    assert limiter.take("k", rate_per_min=60) == 0
    assert limiter.take("k", rate_per_min=60) == 1


def test_a_slow_rate_waits_whole_seconds_and_refusals_take_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    # 6 a minute: a token every 10 s, a burst of 1.
    assert limiter.take("k", rate_per_min=6) == 0
    assert limiter.take("k", rate_per_min=6) == 10
    clock.now += 4.0
    assert limiter.take("k", rate_per_min=6) == 6
    clock.now += 6.0
    assert limiter.take("k", rate_per_min=6) == 0


def test_callers_have_their_own_buckets_and_the_oldest_is_dropped_first() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock, max_callers=2)
    assert limiter.take("a", rate_per_min=6) == 0
    assert limiter.take("b", rate_per_min=6) == 0
    assert limiter.take("a", rate_per_min=6) == 10
    assert limiter.take("c", rate_per_min=6) == 0  # "b" (least recently used) is dropped
    assert limiter.take("b", rate_per_min=6) == 0  # ...so it starts full again
    assert limiter.take("c", rate_per_min=6) == 10


def test_the_key_file_holds_a_digest_never_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    with KeyStore(path=path) as store:
        record, key = store.create(name="Dinkes", role=Role.HEALTH_OFFICER, regions=("33.74",))
        assert key_id_of(key) == record.id
        assert store.lookup(key) == record
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("keys.sqlite3-*"))
    assert key.encode() not in raw
    rows = sqlite3.connect(path).execute("SELECT id, sha256 FROM api_keys").fetchall()
    assert rows == [(record.id, digest(key))]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_revoked_forged_or_malformed_key_is_unknown(tmp_path: Path) -> None:
    with KeyStore(path=tmp_path / "keys.sqlite3") as store:
        record, key = store.create(name="ops", role=Role.OPS, regions=("33.74.07",))
        other, _ = store.create(name="admin", role=Role.ADMIN)
        forged = f"pantau_{record.id}_{'A' * 43}"
        assert store.lookup(forged) is None
        for bad in ("", "pantau", "pantau__x", f"pantau_{record.id}_", key.upper(), "Bearer"):
            assert store.lookup(bad) is None, bad
        revoked = store.revoke(record.id)
        assert revoked is not None
        assert revoked.revoked_at is not None
        assert store.lookup(key) is None
        assert store.revoke("000000000000") is None
        assert [(k.id, k.active) for k in store.records()] == [(record.id, False), (other.id, True)]


def test_roles_grant_exactly_the_documented_reads() -> None:
    assert {r.value: sorted(g) for r, g in GRANTS.items()} == {
        "public": ["public"],
        "health_officer": ["health_officer", "public"],
        "ops": ["ops", "public"],
        "admin": ["admin", "health_officer", "ops", "public"],
    }


def test_a_region_scope_covers_everything_below_it_and_nothing_beside(city: Registry) -> None:
    index = RegionIndex(registry=city)
    selatan = frozenset({"33.74.07"})
    assert index.ancestors("iso-tegalsari-rw03") == (
        "iso-tegalsari-rw03",
        "33.74.08.1001.03",
        "33.74.08.1001",
        "33.74.08",
        "33.74",
        "33",
    )
    for inside in ("rs-kariadi", "gw-kariadi", "bed-kariadi-icu", "33.74.07.1001", "33.74.07"):
        assert index.inside(inside, selatan), inside
    for outside in ("rs-elisabeth", "33.74.08.1001.03", "33.74", "33", "nowhere"):
        assert not index.inside(outside, selatan), outside
    assert index.inside("nowhere", None)
    assert index.inside("33.74.08", frozenset({"33"}))
    assert index.unknown(["33.74.07", "33.99"]) == ["33.99"]


@pytest.mark.parametrize("key", ["pantau_0123456789ab_secret", "pantau_0123456789ab_x_y"])
def test_the_key_id_is_the_second_part(key: str) -> None:
    assert key_id_of(key) == "0123456789ab"
