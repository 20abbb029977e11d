"""Classic polynomial linearity correction of Roman resultants, read by read.

The linearity polynomial ``P_lin`` maps a raw read (DN) to the linear signal; its
inverse ``P_inv`` maps linear signal back to raw. Because a resultant averages
several reads, ``P_lin(mean(reads)) != mean(P_lin(reads))``; the read-level
correction reconstructs the reads of each resultant from a linear ramp, matches them
to the observed mean, and averages their linearised values (ALGORITHMS.md §6).

Coefficient cubes are (ncoeff, ny, nx); a full-detector plane is 64 MiB of float32.
Reference files often hold the same polynomial everywhere, so the cubes are handled as
:class:`CoefficientPlanes`: a uniform plane is kept as one number and only the planes
that really vary per pixel are held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np

from rampcal.core import _linearity_kernels as _k
from rampcal.core.dq import PixelFlag
from rampcal.core.readpattern import normalize_read_pattern

log = logging.getLogger(__name__)

#: Corrected values beyond ±CLIP_LIMIT DN are clipped and flagged DO_NOT_USE.
CLIP_LIMIT = _k.CLIP_LIMIT
#: Width (columns) of one science readout channel of the full 4096-column detector.
CHANNEL_WIDTH = 128

_NO_LIN = np.uint32(PixelFlag.NO_LIN_CORR)
# rows per task of the row kernel (tasks are shared out among the threads as they finish)
_ROWS_PER_TASK = 32

__all__ = [
    "CLIP_LIMIT",
    "CHANNEL_WIDTH",
    "CoefficientPlanes",
    "InlTable",
    "LinearityResult",
    "coefficients_from_rows",
    "compact_coefficients",
    "correct_linearity",
    "evaluate_polynomial",
    "uncorrectable_pixels",
]


class CoefficientPlanes(NamedTuple):
    """Per-pixel polynomial coefficients with every uniform plane held as one number.

    Attributes
    ----------
    values : ndarray (ncoeff,) float32
        Value of each uniform plane (not used where ``uniform`` is False).
    uniform : ndarray (ncoeff,) bool
        Plane ``k`` holds ``values[k]`` at every pixel (bit for bit, NaN included).
    planes : ndarray (ncoeff, ny, nx) float32 or None
        Coefficient ``k`` of pixel ``[y, x]`` is ``planes[k, y, x]`` where ``uniform[k]``
        is False; uniform planes of this array are never read (they may be left
        unwritten, so that they cost no memory). None when every plane is uniform.
    plane_shape : tuple of int
        ``(ny, nx)``.
    """

    values: np.ndarray
    uniform: np.ndarray
    planes: np.ndarray | None
    plane_shape: tuple[int, int]

    @property
    def ncoeff(self) -> int:
        """Number of coefficients (polynomial degree + 1)."""
        return int(self.values.size)

    @property
    def n_per_pixel(self) -> int:
        """Number of planes that vary per pixel (each costs ny·nx·4 bytes)."""
        return int(np.count_nonzero(~self.uniform))

    def to_array(self) -> np.ndarray:
        """The (ncoeff, ny, nx) float32 cube (a broadcast, read-only view if all uniform)."""
        ny, nx = self.plane_shape
        full = np.broadcast_to(self.values[:, None, None], (self.ncoeff, ny, nx))
        if self.planes is None:
            return full
        out = np.array(full)
        out[~self.uniform] = self.planes[~self.uniform]
        return out


class InlTable(NamedTuple):
    """Integral non-linearity (A/D converter) correction, per readout channel.

    Attributes
    ----------
    value : ndarray (nvalue,)
        Increasing raw-DN grid (the reference file stores uint16).
    correction : ndarray (nchannel, nvalue) float64
        Correction (DN) added to a raw read of value ``u`` in channel ``c``:
        ``np.interp(u, value, correction[c])`` (constant beyond the table ends).
        Row ``c`` is ``inl_table.science_channel_{c+1:02d}.correction``.
    channel_width : int
        Columns per channel; column ``x`` belongs to channel ``x // channel_width``
        (128 for the 4096-column detector; 32 channels).
    """

    value: np.ndarray
    correction: np.ndarray
    channel_width: int = CHANNEL_WIDTH


class LinearityResult(NamedTuple):
    """What :func:`correct_linearity` did.

    Attributes
    ----------
    data, groupdq, pixeldq : ndarray
        The corrected arrays (the caller's arrays when ``inplace=True``).
    n_no_correction : int
        Pixels left uncorrected and flagged NO_LIN_CORR.
    n_clipped : int
        Resultants whose corrected |value| exceeded :data:`CLIP_LIMIT`.
    """

    data: np.ndarray
    groupdq: np.ndarray
    pixeldq: np.ndarray
    n_no_correction: int
    n_clipped: int


def evaluate_polynomial(coeffs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-pixel polynomial ``P(v) = Σ_k c_k v^k`` (float64, Horner).

    Parameters
    ----------
    coeffs : ndarray (ncoeff, ...) or (ncoeff,)
        Coefficients in increasing order, per pixel or shared.
    values : ndarray
        Points, broadcastable against ``coeffs[0]``.
    """
    c = np.asarray(coeffs, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(c.shape[1:], v.shape))
    for k in range(c.shape[0] - 1, -1, -1):
        out = out * v + c[k]
    return out


def uncorrectable_pixels(
    coeffs: np.ndarray | CoefficientPlanes,
    lin_dq: np.ndarray | None = None,
    inverse_coeffs: np.ndarray | CoefficientPlanes | None = None,
) -> np.ndarray:
    """Pixels the linearity step leaves uncorrected (and flags NO_LIN_CORR).

    A pixel is uncorrectable if ``lin_dq`` has NO_LIN_CORR, or any coefficient of
    ``coeffs`` (or of ``inverse_coeffs`` when given) is NaN, or a linear term is 0.

    Returns
    -------
    ndarray (ny, nx) bool
    """
    c = _as_array(coeffs)
    bad = np.isnan(c).any(axis=0) | (c[1] == 0)
    if inverse_coeffs is not None:
        ci = _as_array(inverse_coeffs)
        bad |= np.isnan(ci).any(axis=0) | (ci[1] == 0)
    if lin_dq is not None:
        bad |= (np.asarray(lin_dq) & _NO_LIN) != 0
    return bad


def compact_coefficients(coeffs: np.ndarray | CoefficientPlanes) -> CoefficientPlanes:
    """Coefficient cube → :class:`CoefficientPlanes` (uniform planes become scalars).

    Parameters
    ----------
    coeffs : ndarray (ncoeff >= 2, ny, nx), or CoefficientPlanes (returned as is)
        Coefficients in increasing order; converted to native float32. A broadcast view
        (zero strides) is recognised without reading it.

    Returns
    -------
    CoefficientPlanes
        ``planes`` is ``coeffs`` itself (no copy) when it is a C-contiguous native
        float32 array with at least one per-pixel plane.
    """
    if isinstance(coeffs, CoefficientPlanes):
        return coeffs
    arr = np.asarray(coeffs, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] < 2:
        raise ValueError(f"coefficients must have shape (ncoeff >= 2, ny, nx), got {arr.shape}")
    ncoeff, ny, nx = arr.shape
    values = np.zeros(ncoeff, dtype=np.float32)
    uniform = np.ones(ncoeff, dtype=bool)
    if ny and nx:
        for k in range(ncoeff):
            plane = arr[k]
            values[k] = plane[0, 0]
            if plane.strides != (0, 0):
                uniform[k] = _same_bits(plane, values[k])
    planes = None if uniform.all() else np.ascontiguousarray(arr)
    return CoefficientPlanes(values, uniform, planes, (ny, nx))


def coefficients_from_rows(
    pieces: Iterable[np.ndarray], shape: tuple[int, int, int]
) -> CoefficientPlanes:
    """Build :class:`CoefficientPlanes` from a coefficient cube streamed in rows.

    Parameters
    ----------
    pieces : iterable of ndarray (rows, nx) float32
        Consecutive rows of the cube seen as a C-ordered (ncoeff·ny, nx) array (a piece
        may span two planes). Each piece is consumed before the next is requested, so
        it may be a view of a reused buffer.
    shape : tuple of int
        ``(ncoeff, ny, nx)`` of the cube.

    Returns
    -------
    CoefficientPlanes
        Only the planes found to vary are stored: ``planes`` is allocated (without
        being filled) at the first such plane, and its uniform planes are never
        written, so they take no resident memory.

    Raises
    ------
    ValueError
        Pieces of the wrong width or dtype, or too few/many rows.
    """
    ncoeff, ny, nx = (int(n) for n in shape)
    if ncoeff < 2 or ny < 1 or nx < 1:
        raise ValueError(f"coefficients must have shape (ncoeff >= 2, ny, nx), got {shape}")
    values = np.zeros(ncoeff, dtype=np.float32)
    uniform = np.ones(ncoeff, dtype=bool)
    planes = None
    k = row = 0
    for piece in pieces:
        piece = np.asarray(piece)
        if piece.ndim != 2 or piece.shape[1] != nx or piece.dtype != np.float32:
            raise ValueError(
                f"coefficient rows must be ({nx},) float32, got {piece.shape} {piece.dtype}"
            )
        start = 0
        while start < piece.shape[0]:
            if k >= ncoeff:
                raise ValueError(f"more coefficient rows than shape {tuple(shape)} holds")
            n = min(piece.shape[0] - start, ny - row)
            rows = piece[start : start + n]
            if row == 0:
                values[k] = rows[0, 0]
            if uniform[k] and not _same_bits(rows, values[k]):
                uniform[k] = False
                if planes is None:
                    # untouched pages of np.empty are not resident: only varying planes cost
                    planes = np.empty((ncoeff, ny, nx), dtype=np.float32)
                planes[k, :row] = values[k]
            if not uniform[k]:
                planes[k, row : row + n] = rows
            start += n
            row += n
            if row == ny:
                k, row = k + 1, 0
    if k != ncoeff:
        raise ValueError(f"coefficient rows end early: shape {tuple(shape)} not filled")
    return CoefficientPlanes(values, uniform, planes, (ny, nx))


def correct_linearity(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    coeffs: np.ndarray | CoefficientPlanes,
    lin_dq: np.ndarray | None,
    read_pattern: Sequence[Sequence[int]] | None = None,
    *,
    inverse_coeffs: np.ndarray | CoefficientPlanes | None = None,
    inl: InlTable | None = None,
    inplace: bool = True,
) -> LinearityResult:
    """Correct resultants for detector non-linearity.

    Parameters
    ----------
    data : ndarray (nresultants, ny, nx) float32
        Resultants (DN); corrected **in place** when ``inplace=True`` (the default).
    groupdq : ndarray (nresultants, ny, nx) uint8
        Resultant DQ: SATURATED resultants are not corrected; clipped values get
        DO_NOT_USE (in place when ``inplace=True``).
    pixeldq : ndarray (ny, nx) uint32
        Pixel DQ: ``lin_dq`` is OR-ed in, NO_LIN_CORR added for uncorrected pixels.
    coeffs : ndarray (ncoeff, ny, nx) float32, or CoefficientPlanes
        Raw → linear polynomial ``P_lin`` (LINEARITY ``coeffs``), increasing order, ncoeff >= 2.
        Uniform planes are evaluated with shared coefficients (faster); an array is
        passed through :func:`compact_coefficients` first.
    lin_dq : ndarray (ny, nx) uint32 or None
        LINEARITY ``dq`` (None: no flags).
    read_pattern : sequence of sequences of int, optional
        1-based read numbers of each resultant; required with ``inverse_coeffs``.
    inverse_coeffs : ndarray (ncoeff_inv, ny, nx) float32, or CoefficientPlanes, optional
        Linear → raw polynomial ``P_inv`` (INVERSELINEARITY ``coeffs``). When given (and
        there are >= 2 resultants) the read-level correction is used, otherwise
        ``P_lin`` is applied to each resultant.
    inl : InlTable, optional
        Integral non-linearity table, used by the read-level correction only.
    inplace : bool, optional
        If False, work on copies of ``data``, ``groupdq`` and ``pixeldq``.

    Returns
    -------
    LinearityResult

    Notes
    -----
    Read-level correction, per pixel (``m_i`` the mean read number of resultant ``i``,
    ``D_i`` its value):

    1. ``n_u`` = number of non-SATURATED resultants − 1, at least 2; ``z = n_u − 1``
       (the last unsaturated resultant is conservatively left out).
    2. ``L_0 = P_lin(D_0)``, ``L_z = P_lin(D_z)`` (raw values where SATURATED);
       ``rate = (L_z − L_0) / (m_z − m_0)`` (linear DN per read).
    3. For resultant ``i`` and each of its reads ``r``: ``u_r = P_inv(L_0 + rate·(r − m_0))``;
       ``u_r += D_i − mean(u_r)``; ``u_r += INL_c(u_r)`` if a table is given;
       corrected ``D_i = mean_r P_lin(u_r)`` — written only where ``i`` is not SATURATED.

    Uncorrectable pixels (see :func:`uncorrectable_pixels`; the reference implementation
    gives them identity coefficients) are left exactly as observed, INL included.
    Finally values with ``|D| > 1e6`` are clipped to ±1e6 and flagged DO_NOT_USE.
    Polynomials are evaluated in float64 (Horner); results are stored as float32. Uniform
    and per-pixel coefficients give the same values bit for bit.

    Rows are corrected in ``numba.get_num_threads()`` threads; besides the arrays given,
    only a few small per-thread buffers are allocated.
    """
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy array, got {type(data).__name__}")
    if data.ndim != 3:
        raise ValueError(f"data must be 3-D (nresultants, ny, nx), got shape {data.shape}")
    nres, ny, nx = data.shape
    data = _writable(data, np.float32, "data", inplace)
    groupdq = _writable(groupdq, np.uint8, "groupdq", inplace, shape=(nres, ny, nx))
    pixeldq = _writable(pixeldq, np.uint32, "pixeldq", inplace, shape=(ny, nx))
    coeffs = _coefficients(coeffs, (ny, nx), "coeffs")
    use_dq = lin_dq is not None
    if use_dq:
        lin_dq = np.ascontiguousarray(lin_dq, dtype=np.uint32)
        if lin_dq.shape != (ny, nx):
            raise ValueError(f"lin_dq has shape {lin_dq.shape}, data planes are {(ny, nx)}")
    else:
        lin_dq = np.zeros((1, 1), dtype=np.uint32)

    read_level = inverse_coeffs is not None and nres >= 2
    if inverse_coeffs is not None:
        inverse_coeffs = _coefficients(inverse_coeffs, (ny, nx), "inverse_coeffs")
        if read_pattern is None:
            raise ValueError("read_pattern is required for the read-level (inverse) correction")
    if read_pattern is not None:
        pattern = normalize_read_pattern(read_pattern, nresultants=nres)
    else:
        pattern = [[i + 1] for i in range(nres)]
    reads = np.concatenate([np.asarray(r, dtype=np.float64) for r in pattern])
    starts = np.cumsum([0] + [len(r) for r in pattern]).astype(np.int64)
    use_inl = inl is not None and read_level
    if use_inl:
        inl_args = _inl_arrays(inl, nx)
    else:
        inl_args = (np.zeros(1), np.zeros((1, 1)), 0.0, np.zeros(nx, dtype=np.int64))
    if inverse_coeffs is None:
        inverse_coeffs = coeffs  # not read without inverse coefficients; fixes the types

    row_counts = np.zeros((ny, 2), dtype=np.int64)
    _in_row_chunks(
        _k.correct_rows,
        ny,
        data,
        groupdq,
        pixeldq,
        _kernel_args(coeffs),
        _kernel_args(inverse_coeffs),
        lin_dq,
        use_dq,
        reads,
        starts,
        read_level,
        inl_args,
        use_inl,
        row_counts,
    )
    counts = row_counts.sum(axis=0)
    result = LinearityResult(
        data=data,
        groupdq=groupdq,
        pixeldq=pixeldq,
        n_no_correction=int(counts[0]),
        n_clipped=int(counts[1]),
    )
    log.debug(
        "linearity: %d pixels uncorrected (NO_LIN_CORR), %d clipped resultants",
        result.n_no_correction,
        result.n_clipped,
    )
    return result


def _in_row_chunks(kernel, ny: int, *args) -> None:
    """Run ``kernel(y0, y1, *args)`` over chunks of rows in ``numba.get_num_threads()`` threads.

    The kernel releases the GIL. Threads from Python rather than ``prange`` keep the
    compiled code to one copy of the row kernel (a parallel kernel would be optimised
    again with everything it calls inlined: ~10 s more compilation).
    """
    nthreads = max(1, min(numba.get_num_threads(), ny))
    if nthreads == 1:
        kernel(0, ny, *args)
        return
    step = max(1, min(_ROWS_PER_TASK, -(-ny // nthreads)))
    with ThreadPoolExecutor(max_workers=nthreads) as pool:
        jobs = [pool.submit(kernel, y, min(y + step, ny), *args) for y in range(0, ny, step)]
        for job in jobs:
            job.result()


def _inl_arrays(inl: InlTable, nx: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """(value, correction, uniform grid step or 0, channel of each column) for the kernel."""
    value = np.ascontiguousarray(inl.value, dtype=np.float64)
    corr = np.ascontiguousarray(np.atleast_2d(np.asarray(inl.correction, dtype=np.float64)))
    if value.ndim != 1 or corr.shape[1] != value.size or value.size < 1:
        raise ValueError(f"INL table: value {value.shape} and correction {corr.shape} do not match")
    steps = np.diff(value)
    if np.any(steps < 0):
        raise ValueError("INL table values must increase")
    width = int(inl.channel_width)
    if width < 1:
        raise ValueError("INL channel_width must be >= 1")
    channel = np.minimum(np.arange(nx, dtype=np.int64) // width, corr.shape[0] - 1)
    uniform = steps.size > 0 and steps[0] > 0 and bool(np.all(steps == steps[0]))
    return value, corr, float(steps[0]) if uniform else 0.0, channel


def _writable(
    a: np.ndarray, dtype: type, name: str, inplace: bool, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    if not inplace:
        return np.array(a, dtype=dtype)
    if a.dtype != dtype or not a.dtype.isnative:
        raise TypeError(f"{name} must be native {np.dtype(dtype).name} to be updated in place")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return a


def _coefficients(c, plane: tuple[int, int], name: str) -> CoefficientPlanes:
    """Check a coefficient argument against the data planes; arrays are compacted."""
    if not isinstance(c, CoefficientPlanes):
        shape = np.shape(c)
        if len(shape) != 3 or tuple(shape[1:]) != plane or shape[0] < 2:
            raise ValueError(
                f"{name} must have shape (ncoeff >= 2, {plane[0]}, {plane[1]}), got {shape}"
            )
        return compact_coefficients(c)
    n = c.ncoeff
    planes = c.planes
    fits = (
        n >= 2
        and np.shape(c.uniform) == (n,)
        and tuple(c.plane_shape) == plane
        and (
            bool(np.all(c.uniform))
            if planes is None
            else planes.shape == (n, *plane)
            and planes.dtype == np.float32
            and planes.flags.c_contiguous
        )
    )
    if not fits:
        raise ValueError(
            f"{name}: CoefficientPlanes ({n} coefficients, planes "
            f"{None if planes is None else planes.shape}) do not fit data planes {plane}"
        )
    return c


def _kernel_args(c: CoefficientPlanes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values float64, uniform bool, planes float32 C) as the kernels take them."""
    planes = c.planes
    if planes is None:
        planes = np.zeros((c.ncoeff, 1, 1), dtype=np.float32)  # never read
    return (
        np.asarray(c.values, dtype=np.float64),
        np.ascontiguousarray(c.uniform, dtype=np.bool_),
        planes,
    )


def _as_array(c) -> np.ndarray:
    return c.to_array() if isinstance(c, CoefficientPlanes) else np.asarray(c)


def _same_bits(a: np.ndarray, value: np.float32) -> bool:
    """True if every element of the float32 array ``a`` (2-D) has the bits of ``value``."""
    bits = np.asarray(value, dtype=np.float32).reshape(1).view(np.uint32)[0]
    return bool(_k.same_bits(a.view(np.uint32), bits))
