"""Roman WFI reference-pixel correction (ALGORITHMS.md §4).

The detector is read by 32 channels (amplifiers) of ``w = nx / 32`` columns each,
in parallel; odd channels read their columns right to left. A 33rd output ("amp33")
reads ``w`` columns of reference pixels at the same times. Each channel row is
followed by 12 idle read slots ("pad"), so one channel frame is a uniformly sampled
time series of length ``L = ny * (w + 12)`` (573,440 for the full detector).

Procedure (step numbers of ALGORITHMS.md §4), per resultant ("frame") unless stated:

0. pixels flagged ``BAD_REF_PIXEL`` in ``pixeldq`` are set to 0 in every frame;
2. ``remove_offset``: subtract the per-pixel least-squares intercept over frames
   (the mean over frames, the frame index being centred);
4. ``remove_trends``: per channel (33, amp33 included) fit ``m*tau + b`` through
   the top and bottom 4 reference rows (all columns) and subtract it;
5. ``cosine_interpolate``: fill the missing samples and the pads of the amp33 series
   by the normalised convolution with ``w_j = sin(j*pi/32)``, j = 1..32;
6. ``fft_interpolate``: 3 times, replace the amp33 pads by ``irfft(A * rfft(a))``
   with ``A_k = (1 + cos(2*pi*k/L)) / 2``;
7. frequency correction (only with coefficients): for detector channel ``c``,
   ``corr_c = irfft((gamma_c*Lf + zeta_c*Rf + alpha_c*Af) * 2*(L//2 + 1))`` with
   ``Lf = (w+12)/4 * rfft(l/L)``, ``Rf = (w+12)/4 * rfft(r/L)``, ``Af = rfft(a/L)``;
   ``l``/``r`` are the series of the 4 left (channel 0) / right (channel 31)
   reference columns, zero elsewhere, and ``a`` the amp33 series. ``corr_c`` is
   subtracted from every column of channel ``c``, reference columns included;
8. the offset is added back.

Writing the corrected amp33 and border arrays into a model (§4 step 9) is the
step's business; :func:`correct_refpix` returns the corrected amp33 as float32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.fft

from rampcal.core import _refpix_kernels as _k
from rampcal.core.dq import PixelFlag

log = logging.getLogger(__name__)

#: Number of detector channels (amplifiers).
N_CHANNELS = 32
#: Reference rows at the top and at the bottom; reference columns left and right.
N_REF = 4
#: Idle read slots appended to every channel row.
N_PAD = 12
#: Iterations of the FFT interpolation of the amp33 pads.
N_FFT_ITER = 3
#: Taps of the cosine interpolation kernel.
N_COS_TAPS = 32

_FRAME_CHUNK = 4  # at most this many frames per batch (bounds the series and spectra)
_CHANNEL_GROUP = 4  # channels per batched inverse FFT in the general path
_FFT_WORKERS = 2
# amp33 dtypes the kernels read as they are (exactly representable in float32)
_AMP_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.float32)

__all__ = [
    "N_CHANNELS",
    "N_FFT_ITER",
    "N_PAD",
    "N_REF",
    "RefpixResult",
    "correct_refpix",
    "default_refpix_coefficients",
    "refpix_series_length",
]


class RefpixResult(NamedTuple):
    """Outcome of :func:`correct_refpix` (the detector data are corrected in place).

    Attributes
    ----------
    amp33 : ndarray (F, ny, w) float32
        Amp33 reference pixels after offset/trend removal and the interpolation of
        missing (zero) samples, with the offset added back (DN). The frequency
        correction does not change them.
    trend_slope : ndarray (F, 33) float64
        Fitted slope ``m`` per frame and channel (channel 32 = amp33), DN per read
        slot; 0 when ``remove_trends`` is off.
    trend_intercept : ndarray (F, 33) float64
        Fitted value ``b`` at the centre of the frame's read time (DN).
    correction_mean : ndarray (F,) float64
        Mean over all detector pixels of what was subtracted (trend + frequency
        correction), DN.
    correction_rms : ndarray (F,) float64
        RMS over all detector pixels of what was subtracted, DN.
    n_bad_ref_pixels : int
        Number of pixels flagged ``BAD_REF_PIXEL`` (zeroed in every frame).
    fast_path : bool
        True when the coefficients are real and constant over frequency, so that
        the correction was computed directly in the time domain (no FFT).
    """

    amp33: np.ndarray
    trend_slope: np.ndarray
    trend_intercept: np.ndarray
    correction_mean: np.ndarray
    correction_rms: np.ndarray
    n_bad_ref_pixels: int
    fast_path: bool


def refpix_series_length(ny: int, w: int) -> int:
    """Length ``L = ny * (w + 12)`` of one channel frame as a read-time series."""
    return int(ny) * (int(w) + N_PAD)


def default_refpix_coefficients(ny: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Built-in synthetic REFPIX coefficients: ``gamma = zeta = 0``, ``alpha = 1``.

    With these, the frequency correction subtracts the amp33 series (after offset,
    trend and interpolation) from every detector channel, i.e. it removes noise that
    is common to all channels and amp33.

    Parameters
    ----------
    ny : int
        Number of detector rows (4096 for the full frame).
    w : int
        Channel width in columns (128 for the full frame).

    Returns
    -------
    gamma, zeta, alpha : ndarray (32, L//2 + 1) complex128
        ``L = ny * (w + 12)``. Read-only broadcast views (no memory held); take
        ``np.array(x)`` for writable copies.
    """
    shape = (N_CHANNELS, refpix_series_length(ny, w) // 2 + 1)
    zero = np.broadcast_to(np.complex128(0.0), shape)
    one = np.broadcast_to(np.complex128(1.0), shape)
    return zero, zero, one


def correct_refpix(
    data: np.ndarray,
    amp33: np.ndarray,
    pixeldq: np.ndarray | None,
    gamma: np.ndarray | None,
    zeta: np.ndarray | None,
    alpha: np.ndarray | None,
    *,
    remove_offset: bool = True,
    remove_trends: bool = True,
    cosine_interpolate: bool = True,
    fft_interpolate: bool = True,
) -> RefpixResult:
    """Correct detector ramps with the border and amp33 reference pixels, in place.

    Parameters
    ----------
    data : ndarray (F, ny, nx) float32, C-contiguous, writable
        Resultants in DN, reference border included. **Modified in place.**
        ``nx`` must be a multiple of 32 (channel width ``w = nx / 32 >= 4``) and
        ``ny >= 8``.
    amp33 : ndarray (F, ny, w), any real dtype
        Amp33 reference output (DN), e.g. uint16. Not modified.
    pixeldq : ndarray (ny, nx) uint32 or None
        Pixels with ``BAD_REF_PIXEL`` are zeroed in every frame of ``data`` first.
    gamma, zeta, alpha : ndarray (32, L//2 + 1) complex or None
        REFPIX coefficients for the left columns, right columns and amp33, per
        detector channel and rfft frequency, ``L = ny * (w + 12)``. All None skips
        the frequency correction; a single None counts as all zeros.
    remove_offset, remove_trends, cosine_interpolate, fft_interpolate : bool
        Switch the corresponding sub-step (module docstring) off. With
        ``remove_trends=False`` and no coefficients the data are left unchanged
        (apart from step 0).

    Returns
    -------
    RefpixResult
        Corrected amp33 and summary numbers.

    Raises
    ------
    TypeError
        If ``data`` is not a writable C-contiguous native float32 array.
    ValueError
        On inconsistent shapes (a coefficient array that is not ``(32, L//2+1)``).

    Notes
    -----
    Geometry: channel ``c`` covers columns ``c*w .. c*w+w-1``; odd channels are read
    right to left, so read-order column ``k`` of channel ``c`` is detector column
    ``c*w + k`` (even ``c``) or ``c*w + w-1-k`` (odd ``c``); amp33 is not reversed.
    Sample ``(y, k)`` is read at slot ``y*(w+12) + k``; the trend fits use
    ``tau = y*(w+12) + k - (L-1)/2``. Left reference columns are detector columns
    0..3, right ones ``nx-1 .. nx-4`` (read order).

    Missing samples: an entry whose raw value is exactly 0 (a zeroed bad reference
    pixel, a missing amp33 sample) is excluded from the trend fits, is not
    detrended, counts as 0 in the reference series and, for amp33, is refilled by
    the cosine interpolation. The reference implementation instead tests the
    offset-subtracted value for 0, which also drops accidental exact zeros of the
    residual (frequent for integer-valued data with an odd number of resultants,
    where the middle resultant equals the mean) and then leaves their trend in
    place; both rules agree for pixels that are 0 in every frame.

    One frame: the offset of a least-squares line through a single point is
    undefined (the reference computes 0/0 = NaN), and using the frame itself would
    zero every sample and make the whole correction a no-op. With ``F == 1``,
    ``remove_offset`` is therefore skipped (offset 0); the other sub-steps run on
    the raw frame.

    Speed: the apodised-spectrum filter of ``fft_interpolate`` equals the circular
    3-tap filter (1/4, 1/2, 1/4), so it is applied directly on the pads. When every
    coefficient row is one real constant (e.g. :func:`default_refpix_coefficients`),
    ``irfft(c * rfft(x)) = c * x`` and the correction is a time-domain linear
    combination (no FFT). When gamma = zeta = 0 and every channel has the same alpha,
    one inverse FFT per frame serves all channels. Otherwise the 32 corrections per
    frame are inverse real FFTs of the combined spectra, in float32 (as in the
    reference implementation, whose forward transforms are float32); their rounding is
    ~1e-6 of the RMS of the reference series (~1e-5 DN after offset and trend removal).
    The offset is only evaluated (in float64) where the reference series are built, so
    the data are never offset and re-offset in float32.

    Memory: frames are processed in batches of at most 4 and every detector pixel is
    visited once, in place (one pass subtracts trend and correction from all 32
    channels of a row). The extra memory is the float32 amp33 output, the amp33
    offsets and per-batch buffers of a few ``L``-sample series and spectra (~40 MB for
    a full-frame batch of 3 frames; ~100 MB in the general path, which also holds the
    left and right spectra and inverse-transforms 4 channels at a time). Coefficient arrays may
    be read-only broadcast views (one row, or one value, repeated), which are never
    expanded. The results do not depend on the batching, nor on whether an integer
    ``amp33`` is passed as is or as float32.
    """
    cube = _check_data(data)
    nf, ny, nx = cube.shape
    w = nx // N_CHANNELS
    length = refpix_series_length(ny, w)
    amp = _check_amp33(amp33, (nf, ny, w))
    coeffs = _check_coefficients(gamma, zeta, alpha, length // 2 + 1, ny, w)
    n_bad = _zero_bad_reference_pixels(cube, pixeldq)
    if remove_offset and nf == 1:
        log.debug("refpix: single frame, offset removal skipped")
    st = _State.build(
        cube,
        amp,
        coeffs,
        remove_offset=bool(remove_offset) and nf > 1,
        remove_trends=bool(remove_trends),
        cosine_interpolate=bool(cosine_interpolate),
        fft_interpolate=bool(fft_interpolate),
    )
    for f0 in range(0, nf, st.chunk):
        _process_chunk(cube, amp, f0, min(st.chunk, nf - f0), st)

    npix = float(ny * nx)
    mean = st.csum.sum(axis=1) / npix
    rms = np.sqrt(st.csq.sum(axis=1) / npix)
    log.debug(
        "refpix: %d frames, %d bad reference pixels, %s correction, mean %.3g DN",
        nf,
        n_bad,
        "no" if coeffs is None else ("direct" if st.fast else "FFT"),
        float(mean.mean()),
    )
    return RefpixResult(st.amp_out, st.slope, st.icept, mean, rms, n_bad, st.fast)


@dataclass
class _State:
    """Everything the frame batches share: switches, offsets, scales and outputs."""

    period: int
    chunk: int
    use_off: bool
    do_trend: bool
    do_cos: bool
    n_fft: int
    coeffs: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    fast: bool
    shared: np.ndarray | None  # (L//2+1,) complex64 scaled alpha row of every channel
    scale_ref: float  # 2*(L//2+1)/L * (w+12)/4: left/right spectra normalisation
    scale_amp: float  # 2*(L//2+1)/L: amp33 spectrum normalisation
    direct: np.ndarray  # (3, 32) scaled flat coefficients (fast path)
    off_rows: np.ndarray  # (8, nx) offsets of the top/bottom reference rows
    off_cols: np.ndarray  # (ny, 8) offsets of columns 0..3, nx-4..nx-1
    off_amp: np.ndarray  # (ny, w) amp33 offsets
    weights: np.ndarray
    series: np.ndarray  # (chunk, L) buffer: amp33 series of a frame batch (float32 for FFTs)
    ell: np.ndarray  # (chunk, ny, 4) float64 buffer: left reference columns
    rr: np.ndarray  # (chunk, ny, 4) float64 buffer: right reference columns
    slope: np.ndarray
    icept: np.ndarray
    csum: np.ndarray
    csq: np.ndarray
    amp_out: np.ndarray

    @classmethod
    def build(
        cls, cube, amp, coeffs, *, remove_offset, remove_trends, cosine_interpolate, fft_interpolate
    ):
        nf, ny, nx = cube.shape
        w = nx // N_CHANNELS
        period = w + N_PAD
        length = ny * period
        if remove_offset:
            # offsets are only needed where reference series are built (never a full plane)
            rows = np.r_[0:N_REF, ny - N_REF : ny]
            cols = np.r_[0:N_REF, nx - N_REF : nx]
            off_rows = cube[:, rows, :].mean(axis=0, dtype=np.float64)
            off_cols = cube[:, :, cols].mean(axis=0, dtype=np.float64)
            off_amp = amp.mean(axis=0, dtype=np.float64)
        else:
            off_rows = off_cols = off_amp = np.zeros((1, 1))
        fast = coeffs is not None and _coefficients_are_flat(*coeffs)
        shared = None if (coeffs is None or fast) else _shared_alpha(*coeffs)
        scale_amp = 2.0 * (length // 2 + 1) / length  # the reference's 2*(L//2+1), over L
        if shared is not None:
            shared = (shared * scale_amp).astype(np.complex64)
        # equal batches of at most _FRAME_CHUNK frames (e.g. 9 frames: 3 x 3)
        nbatch = -(-nf // max(1, int(_FRAME_CHUNK)))
        chunk = -(-nf // nbatch)
        # the FFT paths transform the float32 series (the reference's forward FFTs are
        # float32); the time-domain path uses the float64 series
        series_dtype = np.float64 if (coeffs is None or fast) else np.float32
        scale_ref = scale_amp * period / N_REF
        direct = np.zeros((3, N_CHANNELS))
        if fast:
            for i, (c, s) in enumerate(zip(coeffs, (scale_ref, scale_ref, scale_amp))):
                direct[i] = c[:, 0].real * s
        return cls(
            period=period,
            chunk=chunk,
            use_off=remove_offset,
            do_trend=remove_trends,
            do_cos=cosine_interpolate,
            n_fft=N_FFT_ITER if fft_interpolate else 0,
            coeffs=coeffs,
            fast=bool(fast),
            shared=shared,
            scale_ref=scale_ref,
            scale_amp=scale_amp,
            direct=direct,
            off_rows=off_rows,
            off_cols=off_cols,
            off_amp=off_amp,
            weights=_k._cosine_weights(N_COS_TAPS),
            series=np.empty((chunk, length), dtype=series_dtype),
            ell=np.zeros((chunk, ny, N_REF)),
            rr=np.zeros((chunk, ny, N_REF)),
            slope=np.zeros((nf, N_CHANNELS + 1)),
            icept=np.zeros((nf, N_CHANNELS + 1)),
            csum=np.zeros((nf, ny)),
            csq=np.zeros((nf, ny)),
            amp_out=np.empty((nf, ny, w), dtype=np.float32),
        )


def _zero_bad_reference_pixels(cube: np.ndarray, pixeldq: np.ndarray | None) -> int:
    """§4 step 0: zero the BAD_REF_PIXEL pixels in every frame; returns their number."""
    if pixeldq is None:
        return 0
    dq = np.asarray(pixeldq)
    if dq.shape != cube.shape[1:]:
        raise ValueError(f"pixeldq must have shape {cube.shape[1:]}, got {dq.shape}")
    if dq.dtype != np.uint32 or not dq.flags.c_contiguous:
        dq = np.ascontiguousarray(dq, dtype=np.uint32)
    return int(_k._zero_flagged(cube, dq, np.uint32(PixelFlag.BAD_REF_PIXEL)))


def _process_chunk(cube: np.ndarray, amp: np.ndarray, f0: int, nfc: int, st: _State) -> None:
    """§4 steps 4-7 for frames ``f0 .. f0+nfc-1`` (in place on ``cube``)."""
    sl = slice(f0, f0 + nfc)
    slope, icept = st.slope[sl], st.icept[sl]
    if st.do_trend:
        off_rows, off_amp = st.off_rows, st.off_amp
        _k._fit_trends(cube, amp, off_rows, off_amp, st.use_off, f0, nfc, st.period, slope, icept)
    ell, rr, series = st.ell[:nfc], st.rr[:nfc], st.series[:nfc]
    if st.coeffs is not None and st.shared is None:
        _k._build_ref_columns(
            cube, st.off_cols, st.use_off, f0, nfc, st.period, slope, icept, ell, rr
        )
    _k._build_amp33_series(
        amp,
        st.off_amp,
        st.use_off,
        f0,
        nfc,
        st.period,
        slope,
        icept,
        st.weights,
        st.do_cos,
        st.n_fft,
        series,
        st.amp_out,
    )
    if st.coeffs is None and not st.do_trend:
        return  # nothing to subtract from the detector pixels
    if st.coeffs is None or st.fast:
        g, z, a = st.direct
        corr = series
    elif st.shared is not None:
        # gamma = zeta = 0 and one alpha for all channels: one inverse FFT per frame
        # (float32 forward transform, as in the general path)
        af = scipy.fft.rfft(series, axis=-1, workers=_FFT_WORKERS)
        af *= st.shared
        corr = scipy.fft.irfft(af, n=series.shape[1], axis=-1, workers=_FFT_WORKERS)
        del af
        g = z = np.zeros(N_CHANNELS)
        a = np.ones(N_CHANNELS)
    else:
        _fft_correction(cube, f0, ell, rr, series, st)
        return
    do_ref = st.coeffs is not None and st.shared is None
    _k._apply_rows(
        cube, f0, nfc, st.period, slope, icept, st.do_trend, ell, rr, corr, g, z, a, do_ref,
        st.csum[sl], st.csq[sl],
    )  # fmt: skip


def _check_data(data: np.ndarray) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise TypeError("data must be a numpy array (it is corrected in place)")
    if data.dtype != np.float32 or not data.dtype.isnative:
        raise TypeError(f"data must be native float32 (corrected in place), got {data.dtype}")
    if not data.flags.c_contiguous or not data.flags.writeable:
        raise TypeError("data must be C-contiguous and writable (it is corrected in place)")
    if data.ndim != 3:
        raise ValueError(f"data must be 3-D (F, ny, nx), got shape {data.shape}")
    nf, ny, nx = data.shape
    if nf < 1:
        raise ValueError("data must hold at least one frame")
    if nx % N_CHANNELS or nx // N_CHANNELS < N_REF:
        raise ValueError(f"data nx={nx} must be a multiple of 32 with at least 4 columns/channel")
    if ny < 2 * N_REF:
        raise ValueError(f"data ny={ny} must be >= 8 (4 top + 4 bottom reference rows)")
    return data


def _check_amp33(amp33: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    amp = np.asarray(amp33)
    if amp.shape != shape:
        raise ValueError(f"amp33 must have shape (F, ny, w) = {shape}, got {amp.shape}")
    if np.iscomplexobj(amp) or not (
        np.issubdtype(amp.dtype, np.integer) or np.issubdtype(amp.dtype, np.floating)
    ):
        raise TypeError(f"amp33 must be real, got dtype {amp.dtype}")
    if amp.dtype in _AMP_DTYPES and amp.dtype.isnative and amp.flags.c_contiguous:
        return amp  # read as is by the kernels (same values as a float32 copy)
    return np.ascontiguousarray(amp, dtype=np.float32)


def _check_coefficients(gamma, zeta, alpha, nk: int, ny: int, w: int):
    if gamma is None and zeta is None and alpha is None:
        return None
    shape = (N_CHANNELS, nk)
    out = []
    for name, c in (("gamma", gamma), ("zeta", zeta), ("alpha", alpha)):
        if c is None:
            out.append(np.broadcast_to(np.complex128(0.0), shape))
            continue
        arr = np.asarray(c)
        if arr.shape != shape:
            raise ValueError(
                f"{name} must have shape (32, L//2+1) = {shape} with L = ny*(w+12) = "
                f"{ny}*({w}+{N_PAD}); got {arr.shape}"
            )
        if arr.dtype != np.complex128:
            arr = _as_complex128(arr)
        out.append(arr)
    return tuple(out)


def _as_complex128(arr: np.ndarray) -> np.ndarray:
    """complex128 version of a coefficient array; broadcast axes stay broadcast."""
    core = arr[tuple(slice(0, 1) if st == 0 else slice(None) for st in arr.strides)]
    return np.broadcast_to(core.astype(np.complex128), arr.shape)


def _is_zero(c: np.ndarray) -> bool:
    """True when every entry is 0 (each broadcast axis is looked at once)."""
    core = c[tuple(slice(0, 1) if st == 0 else slice(None) for st in c.strides)]
    return not np.any(core)


def _coefficients_are_flat(gamma: np.ndarray, zeta: np.ndarray, alpha: np.ndarray) -> bool:
    """True when each coefficient row is one real constant over frequency."""
    for c in (gamma, zeta, alpha):
        if c.strides[0] == 0:
            c = c[:1]  # one row broadcast over the channels: check it once
        if c.strides[1] == 0:  # broadcast rows (default coefficients): check column 0
            col = c[:, 0]
            if not (np.all(col.imag == 0) and np.all(np.isfinite(col.real))):
                return False
        elif not _k._rows_flat_real(c):
            return False
    return True


def _shared_alpha(gamma: np.ndarray, zeta: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """The common alpha row when gamma = zeta = 0 and every channel has the same alpha."""
    if not (_is_zero(gamma) and _is_zero(zeta)):
        return None
    row = alpha[0]
    if alpha.strides[0] == 0 or np.array_equal(alpha, np.broadcast_to(row, alpha.shape)):
        return np.asarray(row)
    return None


def _fft_correction(
    cube: np.ndarray, f0: int, ell: np.ndarray, rr: np.ndarray, series: np.ndarray, st: _State
) -> None:
    """General path: per channel group, combine spectra, inverse FFT, subtract."""
    nfc, ny = ell.shape[:2]
    length = series.shape[1]
    sl = slice(f0, f0 + nfc)
    wk = _FFT_WORKERS
    # float32 forward transforms: the inverse ones are float32 anyway
    lser = np.zeros((nfc, ny, st.period), dtype=np.float32)
    lser[:, :, :N_REF] = ell
    lf = scipy.fft.rfft(lser.reshape(nfc, length), axis=-1, workers=wk)
    lser[:, :, :N_REF] = rr
    rf = scipy.fft.rfft(lser.reshape(nfc, length), axis=-1, workers=wk)
    del lser
    af = scipy.fft.rfft(series, axis=-1, workers=wk)
    gamma, zeta, alpha = st.coeffs
    spec = np.empty((_CHANNEL_GROUP, nfc, lf.shape[1]), dtype=np.complex64)
    for c0 in range(0, N_CHANNELS, _CHANNEL_GROUP):
        _k._combine_spectra(gamma, zeta, alpha, c0, lf, rf, af, st.scale_ref, st.scale_amp, spec)
        corr = scipy.fft.irfft(spec, n=length, axis=-1, workers=wk, overwrite_x=True)
        _k._apply_channels(
            cube,
            f0,
            nfc,
            st.period,
            st.slope[sl],
            st.icept[sl],
            st.do_trend,
            c0,
            corr,
            st.csum[sl],
            st.csq[sl],
        )
