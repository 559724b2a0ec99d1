"""Types of the native line formatter (``_rawlines.c``, ADR 0039; rollup rows, ADR 0050)."""

import numpy as np
import numpy.typing as npt

def format_lines(
    keys: bytes,
    key_starts: npt.NDArray[np.int64],
    key_rows: npt.NDArray[np.int64],
    prefixes: tuple[bytes, ...],
    values: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    floats: npt.NDArray[np.float64] = ...,
    float_prefix: bytes = ...,
    /,
) -> tuple[bytes, bytes]: ...
