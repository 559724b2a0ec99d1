"""With the heap kept (``cloud/ingest/allocator.py``, as ``pantau ingest run`` starts), windows
of fresh numpy columns reuse the pages the previous window freed: no page faults after the
first window, where glibc's defaults fault every page of every window in again."""

from __future__ import annotations

import subprocess
import sys

#: one 8 MiB binary window's columns (220 000 readings), filled, with numpy temporaries
_SNIPPET = """
import resource, sys
import numpy as np
from cloud.ingest.allocator import keep_heap_top
if sys.argv[1] == "keep":
    assert keep_heap_top()
def window():
    cols = [np.empty(220_000 * 5, np.int64), np.empty(220_000, np.int64),
            np.empty(220_000, np.int64), np.empty(220_000, np.int32)]
    for c in cols:
        c.fill(1)
    return sum(int(c[-1]) for c in cols + [c * 2 for c in cols])
window()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    window()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _SNIPPET, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


def test_kept_heap_serves_ten_windows_without_a_page_fault() -> None:
    # a window allocates about 14 MB (3 400 pages) of columns and as much in temporaries
    assert _faults("default") >= 10_000  # glibc trims: most pages fault in every window
    assert _faults("keep") == 0
