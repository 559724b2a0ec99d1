"""Keep freed heap memory at the top of the heap for the next window, instead of handing it
back to the kernel after every window.

A window's numpy columns are fresh arrays of megabytes each (an 8 MiB binary window: about
14 MB). When they are freed, glibc trims the top of the heap back to the kernel, so the next
window's arrays fault every page in again, zero-filled: about 4 200 page faults per window,
a fifth of the window pipeline's CPU (docs/adr/0031). Arrays below ``M_MMAP_THRESHOLD`` come
from the heap (not from a mapping of their own, unmapped when freed), and ``M_TOP_PAD`` makes
glibc keep that much at the top of the heap when it trims, so the same pages serve every
window. The memory kept is what a window needs anyway.

Process-wide, so only the ingester's entry point (``pantau ingest run``) calls it. Elsewhere
(another C library, no ``mallopt``) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

#: glibc's malloc.h: M_TOP_PAD, M_MMAP_THRESHOLD
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
#: Arrays below this come from the heap, not from mmap (a mapping is unmapped when freed, so
#: its pages fault in again): glibc's largest allowed on 64-bit
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: Enough for a window's columns at the default window sizes (32 MiB already was, measured)
HEAP_TOP_PAD_BYTES = 64 * 1024 * 1024


def keep_heap_top(pad_bytes: int = HEAP_TOP_PAD_BYTES) -> bool:
    """Ask the C library to keep ``pad_bytes`` at the top of the heap; True if it agreed."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.info("no mallopt in this C library: freed window memory goes back to the kernel")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Setting either turns off glibc's dynamic mmap threshold, which would otherwise have
    # risen to a window's array sizes by itself: so set the threshold too.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TOP_PAD, pad_bytes)
    )
