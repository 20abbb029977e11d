"""dq_init kernels: guide-window flagging and decoding of raw L1 resultants (ALGORITHMS.md §2).

L1 ``data`` stores ``clip(R − reference_read + offset, 0, 65535)`` as uint16, with
``R`` the resultant and ``offset`` ``meta.instrument.data_encoding_offset``;
:func:`decode_raw` undoes that in float32 (no uint16 wrap-around).
"""

from __future__ import annotations

import numpy as np

from rampcal.core.dq import PixelFlag

__all__ = ["decode_raw", "flag_guide_window"]


def flag_guide_window(
    pixeldq: np.ndarray,
    xstart: int | None,
    xstop: int | None,
    ystart: int | None,
    ystop: int | None,
    *,
    expand: int = 0,
) -> bool:
    """Flag the pixels affected by the guide window, **in place**.

    Parameters
    ----------
    pixeldq : ndarray (ny, nx) uint32
        Pixel DQ, updated in place.
    xstart, xstop, ystart, ystop : int
        Guide-window bounds (``meta.guide_star.window_*``), 0-based array indices,
        stop exclusive.
    expand : int, optional
        Pixels added on every side of the window for the DO_NOT_USE flagging
        (``expand_gw_flagging``), clipped to the frame.

    Returns
    -------
    bool
        False (and ``pixeldq`` unchanged) if the window is invalid: a missing bound,
        or ``xstart``/``ystart`` outside ``[0, nx)``/``[0, ny)``.

    Notes
    -----
    * ``GW_AFFECTED_DATA`` on every row of the columns ``xstart:xstop`` (the guide
      window is read with the science rows, so its columns are affected);
    * ``DO_NOT_USE | GW_AFFECTED_DATA`` on ``[ystart−e : ystop+e, xstart−e : xstop+e]``.

    The reference implementation assigns the column flag (``=``) on a fresh, all-zero
    pixel DQ; here it is OR-ed, which is the same there and keeps earlier flags.
    Stops are clipped to ``[0, n]`` so that a negative stop cannot wrap around.
    """
    if not isinstance(pixeldq, np.ndarray) or pixeldq.ndim != 2:
        raise ValueError("pixeldq must be a 2-D numpy array")
    if not pixeldq.flags.writeable:
        raise ValueError("pixeldq is read-only")
    ny, nx = pixeldq.shape
    bounds = (xstart, xstop, ystart, ystop)
    if any(b is None for b in bounds):
        return False
    try:
        x0, x1, y0, y1 = (int(b) for b in bounds)
    except (TypeError, ValueError):
        return False
    if not (0 <= x0 < nx and 0 <= y0 < ny):
        return False
    e = int(expand)
    if e < 0:
        raise ValueError(f"expand must be >= 0, got {expand}")
    x1 = min(max(x1, 0), nx)
    y1 = min(max(y1, 0), ny)
    pixeldq[:, x0:x1] |= pixeldq.dtype.type(PixelFlag.GW_AFFECTED_DATA)
    xs, xe = max(x0 - e, 0), min(x1 + e, nx)
    ys, ye = max(y0 - e, 0), min(y1 + e, ny)
    pixeldq[ys:ye, xs:xe] |= pixeldq.dtype.type(PixelFlag.DO_NOT_USE | PixelFlag.GW_AFFECTED_DATA)
    return True


def decode_raw(
    data_u16: np.ndarray,
    reference_read: np.ndarray | None = None,
    offset: float = 0,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode raw L1 resultants to float32 DN: ``data + reference_read − offset``.

    Parameters
    ----------
    data_u16 : ndarray (nresultants, ny, nx) uint16
        L1 ``data`` (or ``amp33``, shape (nresultants, ny, 128)).
    reference_read : ndarray (ny, nx) uint16, optional
        L1 ``reference_read`` (or ``reference_amp33``), added to every resultant.
    offset : float, optional
        ``meta.instrument.data_encoding_offset`` (DN), subtracted (0 if absent).
    out : ndarray (nresultants, ny, nx) float32, optional
        Where to write the result (e.g. a slice of a larger cube).

    Returns
    -------
    ndarray (nresultants, ny, nx) float32
        ``out`` or a new array; exact for 16-bit inputs (all sums are integers < 2**24).
    """
    data = np.asarray(data_u16)
    if data.ndim != 3:
        raise ValueError(f"raw data must be 3-D (nresultants, ny, nx), got shape {data.shape}")
    if out is None:
        out = np.empty(data.shape, dtype=np.float32)
    elif out.shape != data.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {data.shape}")
    if reference_read is None:
        np.subtract(data, np.float32(offset), out=out, dtype=np.float32)
        return out
    ref = np.asarray(reference_read)
    if ref.shape != data.shape[1:]:
        raise ValueError(
            f"reference read has shape {ref.shape}, resultant planes are {data.shape[1:]}"
        )
    for res, dst in zip(data, out, strict=True):  # one plane at a time: no cube temporaries
        np.add(res, ref, out=dst, dtype=np.float32)
        if offset:
            dst -= np.float32(offset)
    return out
