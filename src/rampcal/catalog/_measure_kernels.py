"""Compiled per-source kernels of the source catalog (private to :mod:`rampcal.catalog`).

:func:`measure_kernel` measures every source in one pass over its bounding
box: isophotal moments and shape, segment and Kron photometry, circular apertures,
local-background annulus, half-light radius, windowed centroid, centroid-error sums
and the DAOFIND sharpness/roundness (the aperture parts are in
:mod:`rampcal.catalog._aperture_kernels`). Each quantity follows photutils' definition
(``SourceCatalog``, ``ApertureStats``, ``DAOStarFinder``) operation by operation, in
the same floating-point order where numpy's own order is known (pairwise sums of
:mod:`rampcal.catalog._geometry`, float32 arithmetic where numpy keeps float32,
LAPACK's 2×2 eigenvalues), so the catalog agrees with photutils to the last bit
except where photutils goes through BLAS (the moment matrix products) or LAPACK's
determinant, which agree to ~1e-16 relative. ``tests/catalog/test_measure.py``
compares them.

Arrays are numpy order ``(ny, nx)``, pixel centres at integers, 0-based.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rampcal.catalog._aperture_kernels import (
    annulus_one,
    centroid_win_one,
    circular_one,
    flux_radius_one,
)
from rampcal.catalog._geometry import dlae2, ellipse_weights, pw32, pw64, rint

#: Columns of the ``out`` array of :func:`measure_kernel`.
(
    C_X,
    C_Y,
    C_SEMIMAJOR,
    C_SEMIMINOR,
    C_ORIENT,
    C_CXX,
    C_CXY,
    C_CYY,
    C_FWHM,
    C_ELLIPTICITY,
    C_KRON_RADIUS,
    C_KRON_FLUX,
    C_KRON_ERR,
    C_FLUX,
    C_ERR32,
    C_ERR64,
    C_ALL_MASKED,
    C_RHL,
    C_XWIN,
    C_YWIN,
    C_SUM_D,
    C_VAR_X,
    C_VAR_Y,
    C_DAO_X,
    C_DAO_Y,
    C_SHARP,
    C_ROUND1,
    C_DAO_OK,
    C_BKG_MEDIAN,
    C_BKG_STD,
    C_BKG_AREA,
) = range(31)
N_COLUMNS = 31

#: SourceExtractor's increment of the covariance diagonal for thin sources (photutils).
_DELTA = 1.0 / 12.0
#: Unscaled Kron radius limit and aperture scale of the Kron-radius measurement.
_KRON_MEASURE_SCALE = 6.0
#: ``np.rad2deg`` factor and astropy's degree → radian factor.
_RAD2DEG = 180.0 / math.pi
_DEG2RAD = math.pi / 180.0

__all__: list[str] = []

_JIT = {"cache": True, "fastmath": False, "error_model": "numpy"}


# --------------------------------------------------------------------------- segments


@numba.njit(**_JIT)
def segment_boxes(seg, lut, boxes, count):  # pragma: no cover - compiled
    """Bounding box [ymin, ymax), [xmin, xmax) and pixel count of every label.

    ``lut[label]`` is the row of a label (−1: not measured); ``boxes`` (n, 4) int64 must
    start as (ny, 0, nx, 0) and ``count`` (n,) at 0.
    """
    ny, nx = seg.shape
    for j in range(ny):
        for i in range(nx):
            lab = seg[j, i]
            if lab <= 0 or lab >= lut.size:
                continue
            row = lut[lab]
            if row < 0:
                continue
            count[row] += 1
            if j < boxes[row, 0]:
                boxes[row, 0] = j
            if j + 1 > boxes[row, 1]:
                boxes[row, 1] = j + 1
            if i < boxes[row, 2]:
                boxes[row, 2] = i
            if i + 1 > boxes[row, 3]:
                boxes[row, 3] = i + 1


@numba.njit(**_JIT)
def _moments(det, mask, seg, label, y0, y1, x0, x1, res):  # pragma: no cover - compiled
    """Centroid and normalised central second moments of the smoothed image.

    photutils ``SourceCatalog`` moments: pixels of the segment that are unmasked, finite
    and ≥ 0 in ``det``; column sums first, as the matrix products ``yᵀ · I · x`` do.
    ``res`` ← [x̄, ȳ, cov_xx, cov_xy, cov_yy] (x̄, ȳ in image pixels).
    """
    h = y1 - y0
    w = x1 - x0
    c0 = np.zeros(w)
    c1 = np.zeros(w)
    for jj in range(h):
        for ii in range(w):
            v = _moment_value(det, mask, seg, label, y0 + jj, x0 + ii)
            c0[ii] += v
            c1[ii] += jj * v
    m00 = 0.0
    m01 = 0.0
    m10 = 0.0
    for ii in range(w):
        m00 += c0[ii]
        m01 += c0[ii] * ii
        m10 += c1[ii]
    xcen = m01 / m00
    ycen = m10 / m00
    c1[:] = 0.0
    c2 = np.zeros(w)
    c0[:] = 0.0
    for jj in range(h):
        yc = jj - ycen
        for ii in range(w):
            v = _moment_value(det, mask, seg, label, y0 + jj, x0 + ii)
            c0[ii] += v
            c1[ii] += yc * v
            c2[ii] += yc * yc * v
    mu00 = 0.0
    mu02 = 0.0
    mu11 = 0.0
    mu20 = 0.0
    for ii in range(w):
        xc = ii - xcen
        mu00 += c0[ii]
        mu02 += c0[ii] * (xc * xc)
        mu11 += c1[ii] * xc
        mu20 += c2[ii]
    res[0] = xcen + x0
    res[1] = ycen + y0
    res[2] = mu02 / mu00
    res[3] = mu11 / mu00
    res[4] = mu20 / mu00


@numba.njit(inline="always", **_JIT)
def _moment_value(det, mask, seg, label, j, i):  # pragma: no cover - compiled
    if seg[j, i] != label or mask[j, i]:
        return 0.0
    v = np.float64(det[j, i])
    if not math.isfinite(v) or v < 0.0:
        return 0.0
    return v


@numba.njit(**_JIT)
def _shape(cxx, cxy, cyy, res):  # pragma: no cover - compiled
    """Covariance → photutils' ellipse: res ← [a, b, θ°, cxx, cxy, cyy, fwhm, ellipticity]."""
    d = cxx * cyy - cxy * cxy
    if d < 0.0:
        cxx = cxy = cyy = math.nan
    else:
        while d < _DELTA * _DELTA:  # SourceExtractor's fix of "infinitely thin" sources
            cxx += _DELTA
            cyy += _DELTA
            d = cxx * cyy - cxy * cxy
    if math.isfinite(cxx) and math.isfinite(cxy) and math.isfinite(cyy):
        e1, e2 = dlae2(cxx, cxy, cyy)
        if e1 < 0.0 or e2 < 0.0:
            e1 = e2 = math.nan
    else:
        e1 = e2 = math.nan
    a = math.sqrt(e1)
    b = math.sqrt(e2)
    deg = 0.5 * math.atan2(2.0 * cxy, cxx - cyy) * _RAD2DEG
    deg = deg % 360.0
    t = deg * _DEG2RAD
    ct = math.cos(t)
    st = math.sin(t)
    res[0] = a
    res[1] = b
    res[2] = deg
    res[3] = (ct / a) ** 2 + (st / b) ** 2
    res[4] = 2.0 * ct * st * ((1.0 / a**2) - (1.0 / b**2))
    res[5] = (st / a) ** 2 + (ct / b) ** 2
    res[6] = 2.0 * math.sqrt(math.log(2.0) * (a**2 + b**2))
    res[7] = 1.0 - b / a


@numba.njit(inline="always", **_JIT)
def _aperture_bad(sci, mask, seg, label, j, i):  # pragma: no cover - compiled
    """Excluded from Kron sums: masked, non-finite, or another source's segment."""
    other = seg[j, i]
    return mask[j, i] or not math.isfinite(sci[j, i]) or (other != label and other != 0)


@numba.njit(**_JIT)
def _kron_radius(
    sci, mask, seg, label, xc, yc, a, b, theta, cxx, cxy, cyy, kmin
):  # pragma: no cover
    """photutils' measured (unscaled) first-moment Kron radius in the 6σ ellipse."""
    ny, nx = sci.shape
    ct = math.cos(theta)
    st = math.sin(theta)
    half_w = math.sqrt(a * a * ct * ct + b * b * st * st)
    half_h = math.sqrt(a * a * st * st + b * b * ct * ct)
    ixmin = math.floor(xc - half_w + 0.5)
    ixmax = math.floor(xc + half_w + 0.5) + 1
    iymin = math.floor(yc - half_h + 0.5)
    iymax = math.floor(yc + half_h + 0.5) + 1
    x0 = max(0, ixmin)
    x1 = min(nx, ixmax)
    y0 = max(0, iymin)
    y1 = min(ny, iymax)
    if x0 >= x1 or y0 >= y1:
        return math.nan
    num = np.empty((y1 - y0) * (x1 - x0))
    den = np.empty((y1 - y0) * (x1 - x0))
    n = 0
    ox = xc - x0
    oy = yc - y0
    for j in range(y0, y1):
        yy = (j - y0) - oy
        for i in range(x0, x1):
            if _aperture_bad(sci, mask, seg, label, j, i):
                continue
            xx = (i - x0) - ox
            rr = math.sqrt(max(cxx * xx * xx + cxy * xx * yy + cyy * yy * yy, 0.0))
            if not rr <= _KRON_MEASURE_SCALE:
                continue
            v = np.float64(sci[j, i])
            num[n] = v * rr
            den[n] = v
            n += 1
    fnum = pw64(num, 0, n)
    fden = pw64(den, 0, n)
    if fnum <= 0.0 or fden <= 0.0:
        return kmin
    return fnum / fden


@numba.njit(**_JIT)
def _kron_flux(sci, err, mask, seg, label, xc, yc, a, b, theta, res):  # pragma: no cover
    """Flux and error in the elliptical Kron aperture (exact overlap), into res[0:2]."""
    ny, nx = sci.shape
    ct = math.cos(theta)
    st = math.sin(theta)
    x_ext = math.sqrt((a * ct) ** 2 + (b * st) ** 2)
    y_ext = math.sqrt((a * st) ** 2 + (b * ct) ** 2)
    ixmin = math.floor(xc - x_ext + 0.5)
    ixmax = math.floor(xc + x_ext + 1.5)
    iymin = math.floor(yc - y_ext + 0.5)
    iymax = math.floor(yc + y_ext + 1.5)
    gx = ixmax - ixmin
    gy = iymax - iymin
    x0 = max(0, ixmin)
    x1 = min(nx, ixmax)
    y0 = max(0, iymin)
    y1 = min(ny, iymax)
    if x0 >= x1 or y0 >= y1:
        return
    weights = np.empty((gy, gx))
    ellipse_weights(
        (ixmin - 0.5) - xc, (ixmax - 0.5) - xc, (iymin - 0.5) - yc, (iymax - 0.5) - yc,
        gx, gy, a, b, theta, weights,
    )  # fmt: skip
    fv = np.empty((y1 - y0) * (x1 - x0))
    ev = np.empty((y1 - y0) * (x1 - x0))
    n = 0
    for j in range(y0, y1):
        for i in range(x0, x1):
            w = weights[j - iymin, i - ixmin]
            if not w > 0.0 or _aperture_bad(sci, mask, seg, label, j, i):
                continue
            e = err[j, i]
            fv[n] = w * np.float64(sci[j, i])
            ev[n] = w * np.float64(e * e)
            n += 1
    if n > 0:
        res[0] = pw64(fv, 0, n)
        res[1] = math.sqrt(pw64(ev, 0, n))


@numba.njit(**_JIT)
def _segment_sums(sci, err, mask, seg, label, y0, y1, x0, x1, out):  # pragma: no cover
    """Segment flux and error (photutils order), centroid-error sums; all-masked flag."""
    w = x1 - x0
    vals = np.empty((y1 - y0) * w, np.float32)
    errs = np.empty((y1 - y0) * w, np.float32)
    n = 0
    sum_d = 0.0
    var_x = 0.0
    var_y = 0.0
    xc = out[C_X]
    yc = out[C_Y]
    for j in range(y0, y1):
        for i in range(x0, x1):
            if seg[j, i] != label or mask[j, i]:
                continue
            v = sci[j, i]
            e = err[j, i]
            var = np.float64(e * e)
            sum_d += v
            var_x += var * (i - xc) ** 2
            var_y += var * (j - yc) ** 2
            if not math.isfinite(v):
                continue
            vals[n] = v
            errs[n] = e
            n += 1
    out[C_SUM_D] = sum_d
    out[C_VAR_X] = var_x
    out[C_VAR_Y] = var_y
    out[C_ALL_MASKED] = 1.0 if n == 0 else 0.0
    if n == 0:
        return
    # photutils sums with np.add.reduceat (first value + pairwise sum of the rest): the
    # data in float64, the squared errors in float32 (float64 when one source of the
    # catalog is fully masked)
    v64 = np.empty(n)
    sq = np.empty(n, np.float32)
    s64 = np.empty(n)
    for k in range(n):
        v64[k] = vals[k]
        sq[k] = errs[k] * errs[k]
        s64[k] = np.float64(errs[k]) * np.float64(errs[k])
    out[C_FLUX] = v64[0] + pw64(v64, 1, n - 1)
    out[C_ERR32] = np.float32(math.sqrt(np.float64(sq[0] + pw32(sq, 1, n - 1))))
    out[C_ERR64] = math.sqrt(s64[0] + pw64(s64, 1, n - 1))


# --------------------------------------------------------------------------- DAOFIND


@numba.njit(inline="always", **_JIT)
def _dao_pixel(sci, mask, j, i):  # pragma: no cover - compiled
    """DAOFIND's image: masked and off-image pixels are 0."""
    ny, nx = sci.shape
    if j < 0 or i < 0 or j >= ny or i >= nx or mask[j, i]:
        return np.float32(0.0)
    return sci[j, i]


@numba.njit(**_JIT)
def _marginal(cut, axis, vec, wts, sc, size):  # pragma: no cover - compiled
    """photutils' marginal Gaussian fit along ``axis`` (0: y, 1: x): (shift, height)."""
    ky, kx = cut.shape
    wt_sum, kern_sum, kern2_sum = sc[0], sc[1], sc[2]
    dkern_dx_sum, dkern_dx2_sum, kern_dkern_dx_sum, sigma2 = sc[3], sc[4], sc[5], sc[6]
    data_sum = 0.0
    data_kern_sum = 0.0
    data_dkern_dx_sum = 0.0
    data_dx_sum = 0.0
    for k in range(size):
        d1 = 0.0
        if axis == 1:
            for a in range(ky):
                d1 += np.float64(cut[a, k]) * wts[a, k]
        else:
            for b in range(kx):
                d1 += np.float64(cut[k, b]) * wts[k, b]
        data_sum += d1 * vec[0, k]
        data_kern_sum += d1 * vec[1, k] * vec[0, k]
        data_dkern_dx_sum += d1 * vec[2, k] * vec[0, k]
        data_dx_sum += d1 * vec[3, k] * vec[0, k]
    hx_numer = data_kern_sum - (data_sum * kern_sum) / wt_sum
    hx_denom = kern2_sum - (kern_sum * kern_sum / wt_sum)
    hx = hx_numer / hx_denom
    dx = (kern_dkern_dx_sum - (data_dkern_dx_sum - dkern_dx_sum * data_sum)) / (
        hx * dkern_dx2_sum / sigma2
    )
    dx2 = data_dx_sum / data_sum
    hsize = size / 2.0
    if abs(dx) > hsize:
        dx = 0.0 if data_sum == 0.0 else dx2
    if abs(dx) > hsize:
        dx = 0.0
    if hx_numer <= 0.0 or hx_denom <= 0.0:
        return math.nan, math.nan
    return dx, hx


@numba.njit(**_JIT)
def _dao_one(
    sci, mask, ix, iy, fo_dy, fo_dx, fo_w, kmask, npix, vec, wts, sc, res
):  # pragma: no cover
    """DAOFIND at the pixel (ix, iy): res ← [x, y, sharpness, roundness1, ok]."""
    ny, nx = sci.shape
    ky, kx = kmask.shape
    ry = (ky - 1) // 2
    rx = (kx - 1) // 2
    cut = np.empty((ky, kx), np.float32)
    conv = np.empty((ky, kx), np.float32)
    for a in range(ky):
        for b in range(kx):
            j = iy + a - ry
            i = ix + b - rx
            if j < 0 or i < 0 or j >= ny or i >= nx:
                cut[a, b] = 0.0
                conv[a, b] = 0.0
                continue
            cut[a, b] = _dao_pixel(sci, mask, j, i)
            tmp = 0.0  # scipy.ndimage.convolve: float64 sum over the footprint, float32 out
            for k in range(fo_w.size):
                tmp += np.float64(_dao_pixel(sci, mask, j + fo_dy[k], i + fo_dx[k])) * fo_w[k]
            conv[a, b] = np.float32(tmp)
    peak = cut[ry, rx]
    masked = np.empty(ky * kx)
    for a in range(ky):
        for b in range(kx):
            masked[a * kx + b] = np.float64(cut[a, b]) * kmask[a, b]
    data_mean = (pw64(masked, 0, ky * kx) - np.float64(peak)) / (npix - 1)
    sharp = (np.float64(peak) - data_mean) / np.float64(conv[ry, rx])
    conv[ry, rx] = 0.0
    q1 = np.float32(0.0)
    for a in range(0, ry + 1):
        for b in range(rx + 1, kx):
            q1 += conv[a, b]
    q2 = np.float32(0.0)
    for a in range(0, ry):
        for b in range(0, rx + 1):
            q2 += conv[a, b]
    q3 = np.float32(0.0)
    for a in range(ry, ky):
        for b in range(0, rx):
            q3 += conv[a, b]
    q4 = np.float32(0.0)
    for a in range(ry + 1, ky):
        for b in range(rx, kx):
            q4 += conv[a, b]
    sum2 = ((-q1 + q2) - q3) + q4
    absconv = np.empty(ky * kx, np.float32)
    for a in range(ky):
        for b in range(kx):
            absconv[a * kx + b] = abs(conv[a, b])
    sum4 = pw32(absconv, 0, ky * kx)
    round1 = np.float32(np.float32(2.0) * sum2) / sum4
    dx, hx = _marginal(cut, 1, vec[1], wts[1], sc[1], kx)
    dy, hy = _marginal(cut, 0, vec[0], wts[0], sc[0], ky)
    x = ix + dx
    y = iy + dy
    round2 = 2.0 * (hx - hy) / (hx + hy)
    ok = True
    for v in (x, y, hx, hy, sharp, np.float64(round1), round2, np.float64(peak)):
        if not math.isfinite(v):
            ok = False
    res[0] = x
    res[1] = y
    res[2] = sharp
    res[3] = round1
    res[4] = 1.0 if ok else 0.0


# --------------------------------------------------------------------------- all sources


@numba.njit(nogil=True, **_JIT)
def measure_kernel(
    sci, err, mask, det, seg, labels, boxes, radii, params, dao_int, dao_w, dao_kmask,
    dao_vec, dao_wts, dao_sc, rows, out, aper_flux, aper_err,
):  # fmt: skip  # pragma: no cover - compiled
    """Measure the sources ``rows`` (one row of ``out``/``aper_*`` each; columns ``C_*``).

    ``params`` = [kron scale, kron min, kron min circular radius, annulus r_in, r_out,
    annulus sigma, annulus maxiters]; ``dao_int`` = [n_pixels, footprint dy…, dx…] of
    the DAOFIND kernel whose flipped non-zero weights are ``dao_w``. Releases the GIL:
    disjoint ``rows`` can be measured in parallel threads.
    """
    nfo = dao_w.size
    fo_dy = dao_int[1 : 1 + nfo]
    fo_dx = dao_int[1 + nfo : 1 + 2 * nfo]
    for s in rows:
        _measure_one(
            sci, err, mask, det, seg, labels[s], boxes[s], radii, params, dao_int[0], fo_dy,
            fo_dx, dao_w, dao_kmask, dao_vec, dao_wts, dao_sc, out[s], aper_flux[s], aper_err[s],
        )  # fmt: skip


@numba.njit(**_JIT)
def _measure_one(
    sci, err, mask, det, seg, label, box, radii, params, npix, fo_dy, fo_dx, fo_w, kmask,
    dao_vec, dao_wts, dao_sc, row, aflux, aerr,
):  # fmt: skip  # pragma: no cover - compiled
    kscale, kmin, kcirc = params[0], params[1], params[2]
    y0, y1, x0, x1 = box[0], box[1], box[2], box[3]
    for c in range(row.size):
        row[c] = math.nan
    mom = np.empty(5)
    _moments(det, mask, seg, label, y0, y1, x0, x1, mom)
    xc, yc = mom[0], mom[1]
    row[C_X] = xc
    row[C_Y] = yc
    sh = np.empty(8)
    _shape(mom[2], mom[3], mom[4], sh)
    a, b = sh[0], sh[1]
    row[C_SEMIMAJOR] = a
    row[C_SEMIMINOR] = b
    row[C_ORIENT] = sh[2]
    row[C_CXX] = sh[3]
    row[C_CXY] = sh[4]
    row[C_CYY] = sh[5]
    row[C_FWHM] = sh[6]
    row[C_ELLIPTICITY] = sh[7]
    _segment_sums(sci, err, mask, seg, label, y0, y1, x0, x1, row)
    all_masked = row[C_ALL_MASKED] != 0.0
    theta = sh[2] * _DEG2RAD
    finite = math.isfinite(xc) and math.isfinite(yc) and math.isfinite(theta)
    # Kron radius (unscaled) measured in the 6σ moment ellipse, then photutils' limits
    kr = math.nan
    a6 = a * _KRON_MEASURE_SCALE
    b6 = b * _KRON_MEASURE_SCALE
    measurable = not all_masked and finite and math.isfinite(a6) and math.isfinite(b6)
    if measurable and not (a6 == 0.0 and b6 == 0.0):
        kr = _kron_radius(sci, mask, seg, label, xc, yc, a6, b6, theta, sh[3], sh[4], sh[5], kmin)
    if kr > _KRON_MEASURE_SCALE:
        kr = math.nan
    if kr < kmin:
        kr = kmin
    if kscale * kr * math.sqrt(a * b) <= kcirc:
        kr = 0.0
    row[C_KRON_RADIUS] = kr
    ak = a * (kr * kscale)
    bk = b * (kr * kscale)
    kres = np.full(2, math.nan)
    measurable = not all_masked and finite and math.isfinite(ak) and math.isfinite(bk)
    if measurable and not (ak == 0.0 and bk == 0.0):
        _kron_flux(sci, err, mask, seg, label, xc, yc, ak, bk, theta, kres)
    row[C_KRON_FLUX] = kres[0]
    row[C_KRON_ERR] = kres[1]
    # half-light radius up to the circular Kron radius, then the windowed centroid
    rmax = a * kr * kscale
    if rmax == 0.0:
        rmax = kcirc
    rhl = flux_radius_one(sci, mask, seg, label, xc, yc, kres[0], rmax, 0.5)
    row[C_RHL] = rhl
    if math.isfinite(rhl) and rhl < 0.5:
        rhl = 0.5
    row[C_XWIN], row[C_YWIN] = centroid_win_one(sci, mask, seg, label, xc, yc, rhl)
    circular_one(sci, err, mask, seg, True, True, True, label, xc, yc, radii, aflux, aerr)
    ann = np.full(3, math.nan)
    annulus_one(sci, mask, True, xc, yc, params[3], params[4], params[5], int(params[6]), ann)
    row[C_BKG_MEDIAN] = ann[0]
    row[C_BKG_STD] = ann[1]
    row[C_BKG_AREA] = ann[2]
    if math.isfinite(xc) and math.isfinite(yc):
        dao = np.empty(5)
        _dao_one(
            sci, mask, rint(xc), rint(yc), fo_dy, fo_dx, fo_w, kmask, npix, dao_vec,
            dao_wts, dao_sc, dao,
        )  # fmt: skip
        row[C_DAO_X] = dao[0]
        row[C_DAO_Y] = dao[1]
        row[C_SHARP] = dao[2]
        row[C_ROUND1] = dao[3]
        row[C_DAO_OK] = dao[4]
    else:
        row[C_DAO_OK] = 0.0
