"""Give the memory of consumed parts of a large array back to the operating system.

The ramp fit reads the (nresultants, ny, nx) cube one block of rows at a time. When
the caller will discard the cube afterwards (the exposure pipeline does), the pages of
every fitted block can be returned at once with ``madvise(MADV_DONTNEED)``, so the
process's resident memory falls as fast as the output images grow. The released
bytes read back as zeros: only use this on arrays nobody will read again.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np

__all__ = ["release_pages"]

_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4
_madvise = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        _madvise = _libc.madvise
        _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _madvise.restype = ctypes.c_int
    except (OSError, AttributeError):  # pragma: no cover - unusual libc
        _madvise = None


def release_pages(view: np.ndarray) -> int:
    """Return the whole memory pages inside ``view``'s bytes to the system.

    Parameters
    ----------
    view : ndarray
        A C-contiguous view into an array whose contents are no longer needed. It must
        live in anonymous memory (an ordinary numpy allocation, not a file mapping).

    Returns
    -------
    int
        Bytes released (0 where the platform has no ``madvise``, the view is not
        contiguous or spans no whole page).
    """
    if _madvise is None or not view.flags.c_contiguous or not view.flags.writeable:
        return 0
    base = view
    while base is not None:  # never a file mapping: its pages are the file's
        if isinstance(base, (np.memmap, mmap.mmap)):
            return 0
        base = getattr(base, "base", None)
    start = view.ctypes.data
    stop = start + view.nbytes
    first = -(-start // _PAGE) * _PAGE
    last = stop // _PAGE * _PAGE
    if last <= first:
        return 0
    if _madvise(first, last - first, _MADV_DONTNEED) != 0:
        return 0
    return last - first
