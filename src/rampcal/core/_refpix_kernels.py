"""Compiled kernels of the Roman reference-pixel correction (private).

The public wrapper is :func:`rampcal.core.refpix.correct_refpix`; see it for the
mathematics and the geometry. Conventions shared by every kernel:

* ``w`` = channel width (columns), ``period = w + 12`` = padded row length of a
  channel in read order, ``length = ny * period``.
* Channel ``c`` (0..31) read-order column ``k`` is detector column ``c*w + k`` for even
  ``c`` and ``c*w + w - 1 - k`` for odd ``c``; channel 32 is amp33 (never reversed).
* Read-time index ``tau = y * period + k - tmean`` with ``tmean = (length - 1) / 2``.
* An entry is *missing* when its raw value is exactly 0 (zeroed bad reference pixel,
  missing sample); missing entries are excluded from the fits, are not detrended
  and count as 0 in the reference series.
* Offsets (per-pixel means over frames, float64, subtracted when ``use_off``) are
  only needed where the series are built: ``off_rows`` (8, nx) for the top and
  bottom reference rows, ``off_cols`` (ny, 8) for detector columns 0..3 and
  nx-4..nx-1, ``off_amp`` (ny, w) for amp33.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__: list[str] = []

_N_DET = 32
_N_REF = 4
_KBLOCK = 4096


@numba.njit(cache=True, fastmath=False)
def _col(c, k, w):
    """Detector column of read-order column ``k`` of channel ``c`` (0..31)."""
    if c & 1:
        return c * w + w - 1 - k
    return c * w + k


@numba.njit(cache=True, fastmath=False)
def _rows_flat_real(a):
    """True when every row of the 2-D complex array is one real constant."""
    n, m = a.shape
    for i in range(n):
        v = a[i, 0]
        if v.imag != 0.0 or v.real != v.real:
            return False
        for k in range(1, m):
            if a[i, k] != v:
                return False
    return True


@numba.njit(cache=True, fastmath=False, inline="always")
def _trend_sample(data, amp, off_rows, off_amp, use_off, f, r, y, k, c, w):
    """Value and offset of read ``k`` of reference row ``r`` (row ``y``) of channel ``c``."""
    if c == _N_DET:
        return amp[f, y, k], (off_amp[y, k] if use_off else 0.0)
    col = _col(c, k, w)
    return data[f, y, col], (off_rows[r, col] if use_off else 0.0)


@numba.njit(cache=True, fastmath=False)
def _fit_trends(data, amp, off_rows, off_amp, use_off, f0, nf, period, slope, icept):
    """Least-squares line ``z = m*tau + b`` through the top/bottom reference rows.

    For frames ``f0 .. f0+nf-1`` and all 33 channels; writes ``slope[fi, c]`` and
    ``icept[fi, c]`` (0 and 0 without points; 0 and the mean with a single distinct
    ``tau``). Serial: 8 rows per frame are too little work to wake threads for.
    """
    ny = data.shape[1]
    w = amp.shape[2]
    tmean = 0.5 * (ny * period - 1)
    for idx in range(nf * (_N_DET + 1)):
        fi = idx // (_N_DET + 1)
        c = idx % (_N_DET + 1)
        f = f0 + fi
        n = 0
        st = 0.0
        sy = 0.0
        for r in range(2 * _N_REF):
            y = r if r < _N_REF else ny - 2 * _N_REF + r
            for k in range(w):
                x, o = _trend_sample(data, amp, off_rows, off_amp, use_off, f, r, y, k, c, w)
                if x == 0.0:
                    continue
                n += 1
                st += y * period + k - tmean
                sy += np.float64(x) - np.float64(o)
        if n == 0:
            slope[fi, c] = 0.0
            icept[fi, c] = 0.0
            continue
        tbar = st / n
        ybar = sy / n
        stt = 0.0
        sty = 0.0
        for r in range(2 * _N_REF):
            y = r if r < _N_REF else ny - 2 * _N_REF + r
            for k in range(w):
                x, o = _trend_sample(data, amp, off_rows, off_amp, use_off, f, r, y, k, c, w)
                if x == 0.0:
                    continue
                dt = y * period + k - tmean - tbar
                stt += dt * dt
                sty += dt * (np.float64(x) - np.float64(o) - ybar)
        m = sty / stt if stt > 0.0 else 0.0
        slope[fi, c] = m
        icept[fi, c] = ybar - m * tbar


@numba.njit(cache=True, fastmath=False)
def _build_ref_columns(data, off_cols, use_off, f0, nf, period, slope, icept, ell, rr):
    """Detrended left (channel 0) and right (channel 31) read-order columns 0..3.

    ``ell``/``rr`` are (nf, ny, 4) float64; missing entries are 0. Serial (little work).
    """
    ny = data.shape[1]
    w = data.shape[2] // _N_DET
    tmean = 0.5 * (ny * period - 1)
    for idx in range(nf * ny):
        fi = idx // ny
        y = idx % ny
        f = f0 + fi
        for side in range(2):
            c = 0 if side == 0 else _N_DET - 1
            m = slope[fi, c]
            b = icept[fi, c]
            for k in range(_N_REF):
                col = _col(c, k, w)
                x = data[f, y, col]
                v = 0.0
                if x != 0.0:
                    j = k if side == 0 else 2 * _N_REF - 1 - k
                    v = np.float64(x) - (off_cols[y, j] if use_off else 0.0)
                    v -= m * (y * period + k - tmean) + b
                if side == 0:
                    ell[fi, y, k] = v
                else:
                    rr[fi, y, k] = v


@numba.njit(cache=True, fastmath=False, parallel=True)
def _build_amp33_series(
    amp, off_amp, use_off, f0, nf, period, slope, icept, weights, do_cos, n_fft, series, amp_out
):
    """Amp33 time series of frames ``f0..f0+nf-1`` after §4 steps 4-6.

    ``series`` (nf, ny*period) receives the detrended amp33 samples in read order with
    12 pad samples per row; missing samples and pads are filled by the cosine-weighted
    interpolation (``do_cos``) and the pads are then smoothed ``n_fft`` times by the
    apodised-spectrum filter, which is exactly the circular 3-tap filter
    ``(1/4, 1/2, 1/4)``. All of it is computed in float64 and stored in the dtype of
    ``series`` (float64, or float32 for the FFT paths). ``amp_out[f]`` receives the
    series (data positions, float64) plus the offset.
    """
    ny = amp.shape[1]
    w = amp.shape[2]
    length = ny * period
    tmean = 0.5 * (length - 1)
    ntap = weights.shape[0]
    half = (ntap - 1) // 2
    npad = period - w
    for fi in numba.prange(nf):
        f = f0 + fi
        s = np.empty(length)
        m = slope[fi, _N_DET]
        b = icept[fi, _N_DET]
        present = np.zeros(length, dtype=np.bool_)
        for y in range(ny):
            base = y * period
            for k in range(w):
                x = amp[f, y, k]
                if x != 0.0:
                    v = np.float64(x) - (off_amp[y, k] if use_off else 0.0)
                    s[base + k] = v - (m * (base + k - tmean) + b)
                    present[base + k] = True
                else:
                    s[base + k] = 0.0
            for k in range(w, period):
                s[base + k] = 0.0
        if do_cos:
            # 'same'-mode convolution with the 32-tap kernel, evaluated where missing;
            # it only reads present samples, so filling in place is the simultaneous
            # update of all missing ones
            for i in range(length):
                if present[i]:
                    continue
                num = 0.0
                den = 0.0
                for j in range(ntap):
                    p = i + half - j
                    if 0 <= p < length and present[p]:
                        num += weights[j] * s[p]
                        den += weights[j]
                s[i] = num / den if den != 0.0 else 0.0
        if n_fft > 0:
            tmp = np.empty(npad)
            for _ in range(n_fft):
                # rows are independent except through the circular wrap of the last
                # pad into sample 0, which is a data sample and never changes.
                for y in range(ny):
                    base = y * period + w
                    for k in range(npad):
                        i = base + k
                        left = s[i - 1]
                        right = s[i + 1] if i + 1 < length else s[0]
                        tmp[k] = 0.5 * s[i] + 0.25 * (left + right)
                    for k in range(npad):
                        s[base + k] = tmp[k]
        for y in range(ny):
            for k in range(w):
                o = off_amp[y, k] if use_off else 0.0
                amp_out[f, y, k] = s[y * period + k] + o
        out = series[fi]
        for i in range(length):
            out[i] = s[i]


@numba.njit(cache=True, fastmath=False, parallel=True)
def _zero_flagged(data, dq, flag):
    """Set ``data[:, y, x] = 0`` where ``dq[y, x] & flag``; returns the number of such pixels."""
    nf, ny, nx = data.shape
    counts = np.zeros(ny, dtype=np.int64)
    for y in numba.prange(ny):
        n = 0
        for x in range(nx):
            if dq[y, x] & flag:
                n += 1
                for f in range(nf):
                    data[f, y, x] = 0.0
        counts[y] = n
    return counts.sum()


@numba.njit(cache=True, fastmath=False)
def _subtract_run(seg, dc, kk, t0, m, do_trend, lane, lane2):
    """``seg[j] -= dc[j] + (t0 + m*kk[j])`` for every ``j`` (the trend only where
    ``seg[j] != 0``); what is subtracted is added to ``lane[j]``, its square to
    ``lane2[j]``. A plain loop over the whole segment, which LLVM vectorises (a loop
    over part of it, e.g. from 4, compiles ~3x slower).
    """
    for j in range(seg.shape[0]):
        x = seg[j]
        d = dc[j]
        if do_trend and x != 0.0:
            d += t0 + m * kk[j]
        seg[j] = np.float64(x) - d
        lane[j] += d
        lane2[j] += d * d


@numba.njit(cache=True, fastmath=False)
def _subtract_channel_row(row, c, w, t0, m, do_trend, cs, kk, ca, ref_corr, dc, lane, lane2):
    """Subtract ``trend + ca*corr[k] + ref_corr[k] (k < 4)`` from one channel row.

    ``row`` is a detector row (nx,); ``cs`` (w,) float64 holds the channel's correction
    samples and ``kk`` (w,) float64 the read-order column ``k`` of each detector column
    ``c*w + j`` of the channel (``j`` for even ``c``, ``w-1-j`` for odd ``c``, whose
    ``cs`` is reversed accordingly). ``t0`` is the trend at ``k = 0`` and ``m`` its
    step per read slot. ``dc`` (w,) float64 is scratch. What is subtracted is
    accumulated per detector column into ``lane`` (sum) and ``lane2`` (sum of squares).
    """
    for j in range(w):
        dc[j] = ca * cs[j]
    for k in range(_N_REF):
        dc[w - 1 - k if c & 1 else k] += ref_corr[k]
    _subtract_run(row[c * w : c * w + w], dc, kk, t0, m, do_trend, lane, lane2)


@numba.njit(cache=True, fastmath=False)
def _read_columns(w):
    """Read-order column of each detector column of an even (row 0) / odd (row 1) channel."""
    kk = np.empty((2, w))
    for j in range(w):
        kk[0, j] = j
        kk[1, j] = w - 1 - j
    return kk


@numba.njit(cache=True, fastmath=False, parallel=True)
def _apply_rows(
    data, f0, nf, period, slope, icept, do_trend, ell, rr, series, gq, zq, aq, do_ref, csum, csq
):
    """Subtract trend and a time-domain correction from all 32 channels, in place.

    One pass over frames ``f0 .. f0+nf-1``: ``corr_c = aq[c]*series[fi]`` plus, in
    read-order columns 0..3 and only with ``do_ref``, ``gq[c]*ell + zq[c]*rr``
    (coefficients already scaled). ``series`` (nf, >= ny*period) is the amp33 series
    (flat coefficients) or the common correction series (shared alpha). ``csum``/``csq``
    (nf, ny) accumulate the sum and sum of squares of what is subtracted.
    """
    ny = data.shape[1]
    w = data.shape[2] // _N_DET
    tmean = 0.5 * (ny * period - 1)
    kk = _read_columns(w)
    for idx in numba.prange(nf * ny):
        fi = idx // ny
        y = idx % ny
        row = data[f0 + fi, y]
        base = y * period
        cs = np.empty((2, w))  # the series in even- and odd-channel column order
        for k in range(w):
            v = np.float64(series[fi, base + k])
            cs[0, k] = v
            cs[1, w - 1 - k] = v
        ref_corr = np.zeros(_N_REF)
        dc = np.empty(w)
        lane = np.zeros(w)
        lane2 = np.zeros(w)
        for c in range(_N_DET):
            if do_ref:
                for k in range(_N_REF):
                    ref_corr[k] = gq[c] * ell[fi, y, k] + zq[c] * rr[fi, y, k]
            m = slope[fi, c]
            t0 = m * (base - tmean) + icept[fi, c]
            p = c & 1
            _subtract_channel_row(
                row, c, w, t0, m, do_trend, cs[p], kk[p], aq[c], ref_corr, dc, lane, lane2
            )
        csum[fi, y] += lane.sum()
        csq[fi, y] += lane2.sum()


@numba.njit(cache=True, fastmath=False, parallel=True)
def _combine_spectra(gamma, zeta, alpha, c0, lf, rf, af, scale_ref, scale_amp, out):
    """``out[g, fi] = scale*(gamma_c*lf + zeta_c*rf) + scale_amp*alpha_c*af``, c = c0 + g.

    ``lf``/``rf``/``af`` (nf, M) complex, coefficients (32, M) complex128, ``out``
    (ng, nf, M) complex64. Blocked over frequency so every block is reused from cache.
    """
    ng, nf, nk = out.shape
    nblock = (nk + _KBLOCK - 1) // _KBLOCK
    for blk in numba.prange(nblock):
        k0 = blk * _KBLOCK
        k1 = min(nk, k0 + _KBLOCK)
        for g in range(ng):
            c = c0 + g
            for fi in range(nf):
                for k in range(k0, k1):
                    v = scale_ref * (gamma[c, k] * lf[fi, k] + zeta[c, k] * rf[fi, k])
                    v += scale_amp * alpha[c, k] * af[fi, k]
                    out[g, fi, k] = v


@numba.njit(cache=True, fastmath=False, parallel=True)
def _apply_channels(data, f0, nf, period, slope, icept, do_trend, c0, corr, csum, csq):
    """Subtract trend and the FFT correction of channels ``c0 .. c0+ng-1``, in place.

    ``corr`` (ng, nf, ny*period) float32 is the correction time series per channel.
    """
    ng = corr.shape[0]
    ny = data.shape[1]
    w = data.shape[2] // _N_DET
    tmean = 0.5 * (ny * period - 1)
    kk = _read_columns(w)
    for idx in numba.prange(nf * ny):
        fi = idx // ny
        y = idx % ny
        row = data[f0 + fi, y]
        base = y * period
        no_ref = np.zeros(_N_REF)
        cs = np.empty(w)
        dc = np.empty(w)
        lane = np.zeros(w)
        lane2 = np.zeros(w)
        for g in range(ng):
            c = c0 + g
            p = c & 1
            for k in range(w):
                cs[w - 1 - k if p else k] = corr[g, fi, base + k]
            m = slope[fi, c]
            t0 = m * (base - tmean) + icept[fi, c]
            _subtract_channel_row(
                row, c, w, t0, m, do_trend, cs, kk[p], 1.0, no_ref, dc, lane, lane2
            )
        csum[fi, y] += lane.sum()
        csq[fi, y] += lane2.sum()


def _cosine_weights(ntap: int = 32) -> np.ndarray:
    """``w_j = sin(j*pi/ntap)``, j = 1..ntap (float64)."""
    return np.sin(np.arange(1, ntap + 1, dtype=np.float64) * math.pi / ntap)
