"""The bulk lag histogram counts a column by one comparison per bound between the column's
smallest and largest value; that gives the same bucket counts and sum as the searchsorted
formula it replaced, for any values: NaN (dropped), infinities, values on a bound."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from cloud.ingest.bulk_histogram import BulkHistogram
from cloud.ingest.metrics import LAG_BUCKETS

value = st.one_of(
    st.floats(min_value=-10, max_value=1e6),
    st.sampled_from([float(b) for b in LAG_BUCKETS] + [math.nan, math.inf, -math.inf, 0.0]),
)


@given(windows=st.lists(st.lists(value, max_size=50), max_size=4))
def test_bucket_counts_and_sum_equal_the_searchsorted_formula(
    windows: list[list[float]],
) -> None:
    h = BulkHistogram("lag", "x", buckets=LAG_BUCKETS, registry=CollectorRegistry())
    bounds = np.array([*map(float, LAG_BUCKETS), math.inf])
    counts = np.zeros(len(bounds), dtype=np.int64)
    total = 0.0
    for w in windows:
        with np.errstate(invalid="ignore"):  # inf + -inf: a NaN sum, old and new alike
            h.observe_many(np.array(w, dtype=np.float64))
        kept = np.array(w, dtype=np.float64)
        kept = kept[~np.isnan(kept)]
        if len(kept):
            counts += np.bincount(np.searchsorted(bounds, kept, side="left"), minlength=len(bounds))
            with np.errstate(invalid="ignore"):
                total += float(kept.sum())
    family = next(iter(h.collect()))
    buckets = [s.value for s in family.samples if s.name.endswith("_bucket")]
    assert buckets == np.cumsum(counts).tolist()
    got = next(s.value for s in family.samples if s.name.endswith("_sum"))
    assert got == total or (math.isnan(got) and math.isnan(total))
