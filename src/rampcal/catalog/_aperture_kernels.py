"""Compiled aperture kernels of the source catalog (private to :mod:`rampcal.catalog`).

Per source: exact circular-aperture sums (photutils ``circular_photometry``), the
sigma-clipped local-background annulus (``ApertureStats``), the half-light radius
(``flux_radius``, scipy's ``brentq``) and the windowed centroid (``centroid_win``), with
photutils' pixel selections and floating-point operations. Arrays are numpy order
``(ny, nx)``, pixel centres at integers, 0-based.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rampcal.catalog._detect_kernels import first_above as _first_above
from rampcal.catalog._detect_kernels import first_at_least as _first_at_least
from rampcal.catalog._geometry import overlap

_JIT = {"cache": True, "fastmath": False, "error_model": "numpy"}
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

__all__: list[str] = []


# --------------------------------------------------------------------------- apertures


@numba.njit(**_JIT)
def circular_one(
    data, err, mask, seg, has_err, has_mask, has_segm, label, xc, yc, radii, flux, ferr
):  # pragma: no cover - compiled
    """Exact circular-aperture sums of one source into ``flux``/``ferr`` (m,)."""
    ny, nx = data.shape
    nr = radii.size
    if not (math.isfinite(xc) and math.isfinite(yc)):
        return
    rmax = radii.max()
    fsum = np.zeros(nr)
    vsum = np.zeros(nr)
    count = np.zeros(nr, np.int64)
    i0 = max(0, int(math.floor(xc - rmax + 0.5)))
    i1 = min(nx, int(math.ceil(xc + rmax + 0.5)))
    j0 = max(0, int(math.floor(yc - rmax + 0.5)))
    j1 = min(ny, int(math.ceil(yc + rmax + 0.5)))
    for j in range(j0, j1):
        dy0 = j - 0.5 - yc
        ny_ = 0.0 if dy0 <= 0.0 <= dy0 + 1.0 else min(abs(dy0), abs(dy0 + 1.0))
        fy_ = max(abs(dy0), abs(dy0 + 1.0))
        for i in range(i0, i1):
            if has_mask and mask[j, i]:
                continue
            v = np.float64(data[j, i])
            if not math.isfinite(v):
                continue
            if has_segm:
                other = seg[j, i]
                if other != 0 and other != label:
                    continue
            e2 = np.float64(err[j, i] * err[j, i]) if has_err else 0.0
            dx0 = i - 0.5 - xc
            nx_ = 0.0 if dx0 <= 0.0 <= dx0 + 1.0 else min(abs(dx0), abs(dx0 + 1.0))
            fx_ = max(abs(dx0), abs(dx0 + 1.0))
            near = nx_ * nx_ + ny_ * ny_
            far = fx_ * fx_ + fy_ * fy_
            for k in range(nr):
                r2 = radii[k] * radii[k]
                if near >= r2:
                    continue
                w = 1.0 if far <= r2 else overlap(dx0, dx0 + 1.0, dy0, dy0 + 1.0, radii[k])
                if w > 0.0:
                    fsum[k] += w * v
                    vsum[k] += w * e2
                    count[k] += 1
    for k in range(nr):
        if count[k] > 0:
            flux[k] = fsum[k]
            if has_err:
                ferr[k] = math.sqrt(vsum[k])


@numba.njit(**_JIT)
def circular_kernel(
    data, err, mask, seg, has_err, has_mask, has_segm, labels, x, y, radii, flux, ferr
):  # pragma: no cover - compiled
    """:func:`circular_one` for every source (rows of ``flux``/``ferr``)."""
    for s in range(x.size):
        circular_one(
            data, err, mask, seg, has_err, has_mask, has_segm, labels[s], x[s], y[s], radii,
            flux[s], ferr[s],
        )  # fmt: skip


@numba.njit(**_JIT)
def sort_float32_values(a):  # pragma: no cover - compiled
    """Sort a 1-D float64 array of float32 values (no NaN) in place.

    LSD radix sort of the order-preserving 32-bit keys, one byte per pass (passes
    where every key has the same byte are skipped): no data-dependent branches, a
    few times faster than a comparison sort on the unpredictable values of an
    annulus.
    """
    n = a.size
    f = np.empty(n, np.float32)
    for i in range(n):
        f[i] = a[i]
    bits = f.view(np.uint32)
    keys = np.empty(n, np.uint32)
    for i in range(n):
        k = bits[i]
        keys[i] = ~k if k >> np.uint32(31) else k | np.uint32(0x80000000)
    tmp = np.empty(n, np.uint32)
    count = np.empty(257, np.int64)
    for shift in range(0, 32, 8):
        count[:] = 0
        for i in range(n):
            count[((keys[i] >> np.uint32(shift)) & np.uint32(255)) + 1] += 1
        if count.max() == n:
            continue  # every key has this byte
        for d in range(256):
            count[d + 1] += count[d]
        for i in range(n):
            d = (keys[i] >> np.uint32(shift)) & np.uint32(255)
            tmp[count[d]] = keys[i]
            count[d] += 1
        keys, tmp = tmp, keys
    for i in range(n):
        k = keys[i]
        bits[i] = k ^ np.uint32(0x80000000) if k >> np.uint32(31) else ~k
    for i in range(n):
        a[i] = f[i]


@numba.njit(**_JIT)
def clip_sorted(v, sigma, maxiters):  # pragma: no cover - compiled
    """astropy ``sigma_clip`` (median centre, std scatter) of sorted ``v``: kept [lo, hi)."""
    lo, hi = 0, v.size
    for _ in range(maxiters):
        n = hi - lo
        if n == 0:
            break
        mid = lo + n // 2
        cen = v[mid] if n % 2 == 1 else 0.5 * (v[mid] + v[mid - 1])
        mean = 0.0
        for i in range(lo, hi):
            mean += v[i]
        mean /= n
        var = 0.0
        for i in range(lo, hi):
            var += (v[i] - mean) ** 2
        std = math.sqrt(var / n)
        new_lo = _first_at_least(v, lo, hi, cen - sigma * std)
        new_hi = _first_above(v, lo, hi, cen + sigma * std)
        changed = (new_hi - new_lo) != n
        lo, hi = new_lo, new_hi
        if not changed:
            break
    return lo, hi


@numba.njit(**_JIT)
def annulus_one(
    data, mask, has_mask, xc, yc, r_in, r_out, sigma, maxiters, out
):  # pragma: no cover
    """Clipped median, std and unclipped area of one annulus into ``out`` (3,)."""
    ny, nx = data.shape
    if not (math.isfinite(xc) and math.isfinite(yc)):
        return
    i0 = max(0, int(math.floor(xc - r_out + 0.5)))
    i1 = min(nx, int(math.ceil(xc + r_out + 0.5)))
    j0 = max(0, int(math.floor(yc - r_out + 0.5)))
    j1 = min(ny, int(math.ceil(yc + r_out + 0.5)))
    # whole annulus on the image: the weights of all its pixels sum to its area
    inside = xc - r_out > -0.5 and xc + r_out < nx - 0.5
    inside = inside and yc - r_out > -0.5 and yc + r_out < ny - 0.5
    total = math.pi * (r_out * r_out - r_in * r_in) if inside else 0.0
    excluded = 0.0  # weight of the masked pixels of non-zero weight
    size = max(0, (i1 - i0) * (j1 - j0))
    far2 = (r_out + 0.75) ** 2
    near2 = max(0.0, r_in - 0.75) ** 2
    centre = np.empty(size)
    values = np.empty(size)
    pix_i = np.empty(size, np.int64)
    pix_j = np.empty(size, np.int64)
    nc = 0
    ne = 0
    for j in range(j0, j1):
        dyy = (j - yc) ** 2
        if dyy > far2:
            continue  # d2 ≥ dyy: the whole row is outside
        dy0 = j - 0.5 - yc
        ny_ = 0.0 if dy0 <= 0.0 <= dy0 + 1.0 else min(abs(dy0), abs(dy0 + 1.0))
        fy_ = max(abs(dy0), abs(dy0 + 1.0))
        # columns that can pass the d2 test (a pixel of margin on both sides): the
        # outer disc's chord minus the inner disc's, left part then right part
        half = math.sqrt(far2 - dyy)
        ia = max(i0, int(math.floor(xc - half)) - 1)
        ib = min(i1, int(math.ceil(xc + half)) + 2)
        ha, hb = ib, ib - 1
        if near2 - dyy > 1.0:
            hole = math.sqrt(near2 - dyy)
            ha = max(ia, int(math.ceil(xc - hole + 1.0)))
            hb = min(ib - 1, int(math.floor(xc + hole - 1.0)))
            if ha > hb:
                ha, hb = ib, ib - 1
        for part in range(2):
            lo_i = ia if part == 0 else hb + 1
            hi_i = ha if part == 0 else ib
            for i in range(lo_i, hi_i):
                d2 = (i - xc) ** 2 + dyy
                if d2 > far2 or d2 < near2:
                    continue  # the whole pixel is outside the annulus
                dx0 = i - 0.5 - xc
                nx_ = 0.0 if dx0 <= 0.0 <= dx0 + 1.0 else min(abs(dx0), abs(dx0 + 1.0))
                fx_ = max(abs(dx0), abs(dx0 + 1.0))
                # non-zero exact weight: the pixel reaches into the outer disc and is not
                # entirely inside the inner one
                weighted = (nx_ * nx_ + ny_ * ny_ < r_out * r_out) and (
                    fx_ * fx_ + fy_ * fy_ > r_in * r_in
                )
                in_centre = r_in * r_in <= d2 < r_out * r_out
                if not (weighted or in_centre):
                    continue
                v = np.float64(data[j, i])
                good = math.isfinite(v) and not (has_mask and mask[j, i])
                if weighted and (not inside or not good):
                    w = overlap(dx0, dx0 + 1.0, dy0, dy0 + 1.0, r_out)
                    if r_in > 0.0:
                        w -= overlap(dx0, dx0 + 1.0, dy0, dy0 + 1.0, r_in)
                    if not inside:
                        total += w
                    if not good:
                        excluded += w
                if not good:
                    continue
                if in_centre:
                    centre[nc] = v
                    nc += 1
                if weighted:
                    values[ne] = v
                    pix_i[ne] = i
                    pix_j[ne] = j
                    ne += 1
    if nc == 0:
        return
    c = centre[:nc]
    sort_float32_values(c)
    lo, hi = clip_sorted(c, sigma, maxiters)
    n = hi - lo
    if n > 0:
        mid = lo + n // 2
        out[0] = c[mid] if n % 2 == 1 else 0.5 * (c[mid] + c[mid - 1])
        mean = 0.0
        for i in range(lo, hi):
            mean += c[i]
        mean /= n
        var = 0.0
        for i in range(lo, hi):
            var += (c[i] - mean) ** 2
        out[1] = math.sqrt(var / n)
    e = values[:ne].copy()
    sort_float32_values(e)
    lo, hi = clip_sorted(e, sigma, maxiters)
    for q in range(ne):
        if hi > lo and e[lo] <= values[q] <= e[hi - 1]:
            continue  # kept by the clipping
        dx0 = pix_i[q] - 0.5 - xc
        dy0 = pix_j[q] - 0.5 - yc
        w = overlap(dx0, dx0 + 1.0, dy0, dy0 + 1.0, r_out)
        if r_in > 0.0:
            w -= overlap(dx0, dx0 + 1.0, dy0, dy0 + 1.0, r_in)
        excluded += w
    out[2] = total - excluded


@numba.njit(**_JIT)
def annulus_kernel(
    data, mask, has_mask, x, y, r_in, r_out, sigma, maxiters, out
):  # pragma: no cover
    """:func:`annulus_one` for every position (rows of ``out``)."""
    for s in range(x.size):
        annulus_one(data, mask, has_mask, x[s], y[s], r_in, r_out, sigma, maxiters, out[s])


# --------------------------------------------------------------------------- flux radius, XWIN


@numba.njit(**_JIT)
def _circle_sum(clean, i0, j0, xc, yc, r):  # pragma: no cover - compiled
    """Σ clean · (exact area of each pixel inside the circle (xc, yc, r))."""
    h, w = clean.shape
    r2 = r * r
    total = 0.0
    for jj in range(h):
        dy0 = j0 + jj - 0.5 - yc
        ny_ = 0.0 if dy0 <= 0.0 <= dy0 + 1.0 else min(abs(dy0), abs(dy0 + 1.0))
        fy_ = max(abs(dy0), abs(dy0 + 1.0))
        for ii in range(w):
            v = clean[jj, ii]
            if v == 0.0:
                continue
            dx0 = i0 + ii - 0.5 - xc
            nx_ = 0.0 if dx0 <= 0.0 <= dx0 + 1.0 else min(abs(dx0), abs(dx0 + 1.0))
            if nx_ * nx_ + ny_ * ny_ >= r2:
                continue
            fx_ = max(abs(dx0), abs(dx0 + 1.0))
            if fx_ * fx_ + fy_ * fy_ <= r2:
                total += v
            else:
                total += v * overlap(dx0, dx0 + 1.0, dy0, dy0 + 1.0, r)
    return total


@numba.njit(**_JIT)
def _brentq_flux(clean, i0, j0, xc, yc, norm, xa, xb):  # pragma: no cover - compiled
    """Root of ``1 − circle_sum(r)/norm`` on [xa, xb] by scipy's ``brentq`` algorithm.

    Returns (root, ok); ok is False when the bracket has no sign change (scipy raises).
    """
    xtol = 2e-12
    rtol = 4.0 * 2.220446049250313e-16
    xpre, xcur = xa, xb
    xblk, fblk, spre, scur = 0.0, 0.0, 0.0, 0.0
    fpre = 1.0 - _circle_sum(clean, i0, j0, xc, yc, xpre) / norm
    fcur = 1.0 - _circle_sum(clean, i0, j0, xc, yc, xcur) / norm
    if fpre == 0.0:
        return xpre, True
    if fcur == 0.0:
        return xcur, True
    if (fpre < 0.0) == (fcur < 0.0):
        return math.nan, False
    for _ in range(100):
        if fpre != 0.0 and fcur != 0.0 and (fpre < 0.0) != (fcur < 0.0):
            xblk, fblk = xpre, fpre
            spre = scur = xcur - xpre
        if abs(fblk) < abs(fcur):
            xpre, xcur, xblk = xcur, xblk, xcur
            fpre, fcur, fblk = fcur, fblk, fcur
        delta = (xtol + rtol * abs(xcur)) / 2.0
        sbis = (xblk - xcur) / 2.0
        if fcur == 0.0 or abs(sbis) < delta:
            return xcur, True
        if abs(spre) > delta and abs(fcur) < abs(fpre):
            if xpre == xblk:
                stry = -fcur * (xcur - xpre) / (fcur - fpre)  # interpolate
            else:
                dpre = (fpre - fcur) / (xpre - xcur)  # extrapolate
                dblk = (fblk - fcur) / (xblk - xcur)
                stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            if 2.0 * abs(stry) < min(abs(spre), 3.0 * abs(sbis) - delta):
                spre, scur = scur, stry  # good short step
            else:
                spre = scur = sbis
        else:
            spre = scur = sbis
        xpre, fpre = xcur, fcur
        if abs(scur) > delta:
            xcur += scur
        else:
            xcur += delta if sbis > 0 else -delta
        fcur = 1.0 - _circle_sum(clean, i0, j0, xc, yc, xcur) / norm
    return xcur, True


@numba.njit(**_JIT)
def flux_radius_one(data, mask, seg, label, xc, yc, kf, rmax, fraction):  # pragma: no cover
    """photutils ``flux_radius``: radius enclosing ``fraction`` of ``kf`` (NaN if none)."""
    ny, nx = data.shape
    if not (math.isfinite(xc) and math.isfinite(yc) and math.isfinite(kf)):
        return math.nan
    if not math.isfinite(rmax) or kf == 0.0:
        return math.nan
    i0 = max(0, int(math.floor(xc - rmax + 0.5)))
    i1 = min(nx, int(math.ceil(xc + rmax + 0.5)))
    j0 = max(0, int(math.floor(yc - rmax + 0.5)))
    j1 = min(ny, int(math.ceil(yc + rmax + 0.5)))
    if i0 >= i1 or j0 >= j1:
        return math.nan
    clean = np.zeros((j1 - j0, i1 - i0))
    for j in range(j0, j1):
        for i in range(i0, i1):
            v = np.float64(data[j, i])
            other = seg[j, i]
            if mask[j, i] or not math.isfinite(v) or (other != 0 and other != label):
                continue
            clean[j - j0, i - i0] = v
    norm = kf * fraction
    rmin = 0.1
    step = 0.1 * rmax
    while rmax > rmin:
        root, ok = _brentq_flux(clean, i0, j0, xc, yc, norm, rmin, rmax)
        if ok:
            return root
        rmax -= step
    return math.nan


@numba.njit(**_JIT)
def centroid_win_one(data, mask, seg, label, xc, yc, rhl):  # pragma: no cover - compiled
    """SourceExtractor XWIN/YWIN iteration of photutils ``centroid_win`` (no fallback)."""
    ny, nx = data.shape
    if not math.isfinite(rhl) or math.isnan(xc) or math.isnan(yc):
        return math.nan, math.nan
    sigma = 2.0 * rhl * _FWHM_TO_SIGMA
    inv_2sigma2 = -1.0 / (2.0 * sigma * sigma)
    radius_sq = (4.0 * sigma) ** 2
    half = int(4.0 * sigma + 1.5)
    it = 0
    dcen = 1.0
    while it < 16 and dcen > 0.0001:
        ixmin = int(xc + 0.5) - half
        iymin = int(yc + 0.5) - half
        i0, i1 = max(0, ixmin), min(nx, ixmin + 2 * half + 1)
        j0, j1 = max(0, iymin), min(ny, iymin + 2 * half + 1)
        if i0 >= i1 or j0 >= j1:
            return math.nan, math.nan
        total = 0.0
        sx = 0.0
        sy = 0.0
        for j in range(j0, j1):
            ddy = j - yc
            for i in range(i0, i1):
                other = seg[j, i]
                if mask[j, i] or (other != 0 and other != label):
                    continue
                v = np.float64(data[j, i])
                if not math.isfinite(v):
                    continue
                ddx = i - xc
                rr2 = ddx * ddx + ddy * ddy
                if rr2 > radius_sq:
                    continue
                wv = v * math.exp(rr2 * inv_2sigma2)
                total += wv
                sx += wv * ddx
                sy += wv * ddy
        dx = sx / total if total != 0.0 else math.nan
        dy = sy / total if total != 0.0 else math.nan
        dcen = math.sqrt(dx * dx + dy * dy)
        xc += dx * 2.0
        yc += dy * 2.0
        it += 1
    return xc, yc
