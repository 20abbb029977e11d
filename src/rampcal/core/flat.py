"""Flat-field correction of L2 rate images with error propagation (ALGORITHMS.md §11, §7.4).

Arrays are 2-D ``(ny, nx)`` science-frame images in DN/s (variances in (DN/s)²);
nothing here reads files or data models.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from rampcal.core.dq import PixelFlag

log = logging.getLogger(__name__)

#: DQ bits set where the flat cannot be applied (NaN, infinite, zero or negative).
BAD_FLAT_FLAGS = PixelFlag.NO_FLAT_FIELD | PixelFlag.DO_NOT_USE

__all__ = [
    "BAD_FLAT_FLAGS",
    "FlatField",
    "FlatFielded",
    "apply_flat",
    "apply_flat_inplace",
    "prepare_flat",
    "reconstruct_var_rnoise",
    "trim_to_science",
]


class FlatField(NamedTuple):
    """A flat ready to apply (all float32/uint32, shape ``(ny, nx)``).

    Attributes
    ----------
    flat : ndarray, float32
        Flat values; 1 where the reference value was unusable.
    err : ndarray, float32
        1-σ uncertainty of the flat; 0 where unusable or unknown.
    dq : ndarray, uint32
        Reference DQ, plus ``NO_FLAT_FIELD | DO_NOT_USE`` where the flat value was
        unusable and ``UNRELIABLE_FLAT`` where its uncertainty was not finite.
    """

    flat: np.ndarray
    err: np.ndarray
    dq: np.ndarray


class FlatFielded(NamedTuple):
    """Flat-fielded arrays (float32 unless stated; shape ``(ny, nx)``).

    Attributes
    ----------
    data : ndarray
        ``data / flat`` (DN/s).
    dq : ndarray, uint32
        ``dq | flat.dq``.
    err : ndarray
        ``sqrt(var_poisson + var_rnoise [+ var_flat])`` (DN/s).
    var_poisson, var_rnoise : ndarray
        Input variances divided by ``flat²``.
    var_flat : ndarray or None
        ``data_corr² · flat_err² / flat²`` when requested, else None.
    dumo : ndarray or None
        ``dumo / flat`` when a ``dumo`` array was given.
    n_bad_flat : int
        Number of pixels where the flat was unusable (left uncorrected).
    """

    data: np.ndarray
    dq: np.ndarray
    err: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    var_flat: np.ndarray | None
    dumo: np.ndarray | None
    n_bad_flat: int


def trim_to_science(array: np.ndarray, science_shape: tuple[int, int]) -> np.ndarray:
    """Cut a reference array to the science area.

    Parameters
    ----------
    array : ndarray, shape (..., NY, NX)
        Either already science-sized (returned as is) or full frame with an equal
        border on each side (e.g. 4096² for a 4088² science image).
    science_shape : (ny, nx)

    Returns
    -------
    ndarray, shape (..., ny, nx)
        A view of ``array``.

    Raises
    ------
    ValueError
        If the shapes cannot be matched with a symmetric border.
    """
    arr = np.asarray(array)
    ny, nx = (int(s) for s in science_shape)
    fy, fx = arr.shape[-2:]
    if (fy, fx) == (ny, nx):
        return arr
    by, bx = fy - ny, fx - nx
    if by < 0 or by != bx or by % 2:
        raise ValueError(
            f"reference array of shape {(fy, fx)} does not fit a science image of shape "
            f"{(ny, nx)} (need equal shapes or a symmetric border)"
        )
    b = by // 2
    return arr[..., b : fy - b, b : fx - b]


def prepare_flat(
    flat: np.ndarray,
    *,
    flat_dq: np.ndarray | None = None,
    flat_err: np.ndarray | None = None,
) -> FlatField:
    """Check a flat and neutralise its unusable values.

    Parameters
    ----------
    flat : ndarray, shape (ny, nx)
        Flat-field values (dimensionless, ~1).
    flat_dq : ndarray of uint32, shape (ny, nx), optional
        Reference DQ (0 when absent).
    flat_err : ndarray, shape (ny, nx), optional
        1-σ uncertainty of the flat (0 when absent).

    Returns
    -------
    FlatField
        Where ``flat`` is NaN, infinite, 0 or negative the value becomes 1 (no
        correction) and ``NO_FLAT_FIELD | DO_NOT_USE`` is set; non-finite errors
        become 0 with ``UNRELIABLE_FLAT``.
    """
    flat = np.asarray(flat)
    if flat.ndim != 2:
        raise ValueError(f"flat must be 2-D, got shape {flat.shape}")
    shape = flat.shape
    for name, arr in (("flat_dq", flat_dq), ("flat_err", flat_err)):
        if arr is not None and np.shape(arr) != shape:
            raise ValueError(f"{name} has shape {np.shape(arr)}, flat has {shape}")
    if all(a is None or _is_uniform_view(a) for a in (flat, flat_dq, flat_err)):
        # one value each (e.g. a broadcast default flat): neutralise it once, keep views
        one = prepare_flat(
            flat[:1, :1].copy(),
            flat_dq=None if flat_dq is None else np.asarray(flat_dq)[:1, :1].copy(),
            flat_err=None if flat_err is None else np.asarray(flat_err)[:1, :1].copy(),
        )
        return FlatField(*(np.broadcast_to(a, shape) for a in one))
    values = np.array(flat, dtype=np.float32)
    dq = np.zeros(shape, np.uint32) if flat_dq is None else np.array(flat_dq, dtype=np.uint32)
    err = np.zeros(shape, np.float32) if flat_err is None else np.array(flat_err, np.float32)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(values) & (values > 0))
    values[bad] = 1.0
    err[bad] = 0.0
    dq[bad] |= BAD_FLAT_FLAGS
    bad_err = ~np.isfinite(err)
    err[bad_err] = 0.0
    dq[bad_err] |= PixelFlag.UNRELIABLE_FLAT
    return FlatField(flat=values, err=err, dq=dq)


def _is_uniform_view(array) -> bool:
    """True for a broadcast view of one value (every stride 0)."""
    return isinstance(array, np.ndarray) and array.size > 0 and not any(array.strides)


def apply_flat(
    data: np.ndarray,
    dq: np.ndarray,
    var_poisson: np.ndarray,
    var_rnoise: np.ndarray,
    flat: FlatField,
    *,
    dumo: np.ndarray | None = None,
    include_var_flat: bool = False,
) -> FlatFielded:
    """Divide a rate image by a flat and propagate the variances.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Rate image (DN/s).
    dq : ndarray of uint32, shape (ny, nx)
        Pixel DQ of the image.
    var_poisson, var_rnoise : ndarray, shape (ny, nx)
        Variances of ``data`` ((DN/s)²); any float dtype (float16 accepted).
    flat : FlatField
        From :func:`prepare_flat`, same shape.
    dumo : ndarray, shape (ny, nx), optional
        Uniform-weight slope difference (DN/s), divided by the flat too.
    include_var_flat : bool
        Compute ``var_flat`` and include it in ``err``.

    Returns
    -------
    FlatFielded
        New arrays; the inputs are not modified.

    Notes
    -----
    With ``f`` the flat and ``σ_f`` its error: ``S' = S / f``,
    ``V_P' = V_P / f²``, ``V_R' = V_R / f²``, ``V_F = S'² σ_f² / f²`` and
    ``err = sqrt(V_P' + V_R' [+ V_F])``.
    """
    data32 = np.array(data, dtype=np.float32)
    shape = data32.shape
    out = {
        "dq": np.array(dq, dtype=np.uint32),
        "var_poisson": np.array(var_poisson, dtype=np.float32),
        "var_rnoise": np.array(var_rnoise, dtype=np.float32),
        "err": np.empty(shape, np.float32),
        "var_flat": np.empty(shape, np.float32) if include_var_flat else None,
        "dumo": None if dumo is None else np.array(dumo, dtype=np.float32),
    }
    n_bad = apply_flat_inplace(data32, flat=flat, **out)
    return FlatFielded(data=data32, n_bad_flat=n_bad, **out)


def apply_flat_inplace(
    data: np.ndarray,
    dq: np.ndarray,
    var_poisson: np.ndarray,
    var_rnoise: np.ndarray,
    err: np.ndarray,
    flat: FlatField,
    *,
    dumo: np.ndarray | None = None,
    var_flat: np.ndarray | None = None,
    chunk_rows: int = 256,
) -> int:
    """Flat-field an image **in place**, a block of rows at a time.

    The same arithmetic as :func:`apply_flat`, done in float32 on blocks of
    ``chunk_rows`` rows and written back into the given arrays in their own dtypes
    (float16 variances of a Roman L2 image included, clipped into float16 range), so
    the extra memory is a few blocks whatever the image size.

    Parameters
    ----------
    data, dq, var_poisson, var_rnoise, err : ndarray, shape (ny, nx)
        Image arrays, all updated in place (``err`` is overwritten).
    flat : FlatField
        From :func:`prepare_flat` (full planes or broadcast views).
    dumo : ndarray, optional
        Divided by the flat too, in place.
    var_flat : ndarray, optional
        Where to write ``var_flat``; when given, ``err`` includes it.

    Returns
    -------
    int
        Number of pixels without flat correction (``NO_FLAT_FIELD``).
    """
    shape = np.shape(data)
    if len(shape) != 2:
        raise ValueError(f"data must be 2-D, got shape {shape}")
    arrays = {"dq": dq, "var_poisson": var_poisson, "var_rnoise": var_rnoise, "err": err}
    arrays.update(flat=flat.flat, dumo=dumo, var_flat=var_flat)
    for name, arr in arrays.items():
        if arr is not None and np.shape(arr) != shape:
            raise ValueError(f"{name} has shape {np.shape(arr)}, data has {shape}")
    n_bad = 0
    no_flat = np.uint32(PixelFlag.NO_FLAT_FIELD)
    for y0 in range(0, shape[0], max(1, int(chunk_rows))):
        rows = slice(y0, y0 + max(1, int(chunk_rows)))
        f = np.asarray(flat.flat[rows], dtype=np.float32)
        f2 = np.square(f, dtype=np.float32)
        block = np.asarray(data[rows], dtype=np.float32) / f
        data[rows] = block
        vp = np.asarray(var_poisson[rows], dtype=np.float32) / f2
        vr = np.asarray(var_rnoise[rows], dtype=np.float32) / f2
        _store(var_poisson, rows, vp)
        _store(var_rnoise, rows, vr)
        total = vp + vr
        if var_flat is not None:
            vf = np.square(block)
            vf *= np.square(np.asarray(flat.err[rows], dtype=np.float32))
            vf /= f2
            _store(var_flat, rows, vf)
            total += vf
        np.sqrt(total, out=total)
        _store(err, rows, total)
        if dumo is not None:
            _store(dumo, rows, np.asarray(dumo[rows], dtype=np.float32) / f)
        fdq = flat.dq[rows]
        dq[rows] |= fdq
        n_bad += int(np.count_nonzero(fdq & no_flat))
    log.debug("flat_field: %d pixels without flat correction", n_bad)
    return n_bad


def _store(target: np.ndarray, rows: slice, values: np.ndarray) -> None:
    """Write float32 ``values`` into ``target[rows]``, clipped into float16 range if needed."""
    if target.dtype == np.float16:
        np.clip(values, -65504.0, 65504.0, out=values)
    target[rows] = values


def reconstruct_var_rnoise(
    err: np.ndarray,
    var_poisson: np.ndarray,
    *,
    var_flat: np.ndarray | None = None,
) -> np.ndarray:
    """Read-noise variance of an image that did not store it (ALGORITHMS.md §7.4).

    Parameters
    ----------
    err : ndarray, shape (ny, nx)
        Total 1-σ error (DN/s).
    var_poisson : ndarray, shape (ny, nx)
        Poisson variance ((DN/s)²).
    var_flat : ndarray, shape (ny, nx), optional
        Flat-field variance, when ``err`` already includes it.

    Returns
    -------
    ndarray, float32
        ``max(err² − var_poisson − var_flat, 0)``; NaN stays NaN.
    """
    err32 = np.asarray(err, dtype=np.float32)
    out = np.square(err32) - np.asarray(var_poisson, dtype=np.float32)
    if var_flat is not None:
        out -= np.asarray(var_flat, dtype=np.float32)
    np.maximum(out, 0.0, out=out)  # NaN propagates through maximum
    return out
