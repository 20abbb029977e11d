"""Compiled kernels of the detection stage (private to :mod:`rampcal.catalog.detection`).

- mask of unusable pixels;
- sigma-clipped statistics of the background boxes (on sorted values);
- mesh images: a mesh zoomed to full resolution with the bicubic zoom matrices,
  ``clip(A_y · mesh · A_xᵀ)``, with the products evaluated as chains of fused
  multiply-adds in the order of the summation index, as OpenBLAS ``sgemm`` does
  (bit-identical to ``(A_y @ mesh) @ A_x.T`` there, and machine independent);
- the detection image (background subtraction and normalised separable convolution
  in one pass over bands of rows);
- the connected-component labelling against a threshold image.

Arrays are numpy order ``(ny, nx)``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.extending import intrinsic

#: Normal-distribution scale of the median absolute deviation (astropy ``mad_std``).
_MAD_TO_STD = 1.482602218505602
#: Bad columns remembered per image row of a band (beyond: the row is recomputed whole).
_MAX_BAD_COLUMNS = 64

__all__: list[str] = []


# --------------------------------------------------------------------------- mask


@numba.njit(cache=True, fastmath=False)
def mask_kernel(data, err, dq, has_err, has_dq, bad_bits, out):  # pragma: no cover - compiled
    ny, nx = data.shape
    for j in range(ny):
        for i in range(nx):
            bad = not math.isfinite(data[j, i])
            if has_err:
                e = err[j, i]
                bad = bad or not (math.isfinite(e) and e > 0)
            if has_dq:
                bad = bad or (np.uint64(dq[j, i]) & bad_bits) != 0
            out[j, i] = bad


# --------------------------------------------------------------------------- box statistics


@numba.njit(cache=True, fastmath=False, nogil=True)
def gather_box(data, mask, y0, y1, x0, x1, buf):  # pragma: no cover - compiled
    """Copy the unmasked finite values of ``data[y0:y1, x0:x1]`` into ``buf``; count."""
    n = 0
    for j in range(y0, y1):
        for i in range(x0, x1):
            v = data[j, i]
            if not mask[j, i] and math.isfinite(v):
                buf[n] = v
                n += 1
    return n


@numba.njit(cache=True, fastmath=False, nogil=True)
def first_at_least(v, lo, hi, value):  # pragma: no cover - compiled
    """First index in sorted ``v[lo:hi]`` with ``v ≥ value`` (``hi`` if none)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if v[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, fastmath=False, nogil=True)
def first_above(v, lo, hi, value):  # pragma: no cover - compiled
    """First index in sorted ``v[lo:hi]`` with ``v > value`` (``hi`` if none)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if v[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, fastmath=False, nogil=True)
def _median_sorted(s, lo, hi):  # pragma: no cover - compiled
    """Median of sorted ``s[lo:hi]`` in float64 (astropy's ``wirth_median``)."""
    n = hi - lo
    mid = lo + n // 2
    if n % 2 == 1:
        return np.float64(s[mid])
    return 0.5 * (np.float64(s[mid]) + np.float64(s[mid - 1]))


@numba.njit(cache=True, fastmath=False, nogil=True)
def _kth_deviation(s, lo, hi, split, med, k):  # pragma: no cover - compiled
    """k-th smallest (0-based) ``|s_i − med|`` over sorted ``s[lo:hi]``.

    ``split`` is the first index with ``s ≥ med``: the deviations are the two sorted
    runs ``A_t = med − s[split−1−t]`` and ``B_t = s[split+t] − med``; binary search on
    how many of the k+1 smallest come from ``A``.
    """
    na = split - lo
    nb = hi - split
    i_lo = max(0, k + 1 - nb)
    i_hi = min(k + 1, na)
    while True:
        i = (i_lo + i_hi) // 2
        j = k + 1 - i
        if i < na and j > 0 and s[split + j - 1] - med > med - s[split - 1 - i]:
            i_lo = i + 1  # B[j-1] > A[i]: take more from A
        elif i > 0 and j < nb and med - s[split - i] > s[split + j] - med:
            i_hi = i - 1  # A[i-1] > B[j]: take fewer from A
        else:
            value = -1.0
            if i > 0:
                value = med - np.float64(s[split - i])
            if j > 0:
                value = max(value, np.float64(s[split + j - 1]) - med)
            return value


@numba.njit(cache=True, fastmath=False, nogil=True)
def clipped_stats(s, sigma, maxiters):  # pragma: no cover - compiled
    """(median, std, count) of sorted float32 ``s`` after iterative median/MAD clipping.

    Bounds as astropy's C ``sigma_clip`` (float64 median and ``1.4826·MAD``; keep
    ``lower ≤ v ≤ upper``; stop when nothing changes, nothing is left, or after
    ``maxiters`` passes). Median of the kept values as numpy's float32 ``median``
    (mean of the middle pair in float32); std with ddof 0, accumulated in float64.
    """
    lo, hi = 0, s.size
    it = 0
    while hi > lo:
        n = hi - lo
        med = _median_sorted(s, lo, hi)
        split = first_at_least(s, lo, hi, med)
        if n % 2 == 1:
            mad = _kth_deviation(s, lo, hi, split, med, n // 2)
        else:
            mad = 0.5 * (
                _kth_deviation(s, lo, hi, split, med, n // 2)
                + _kth_deviation(s, lo, hi, split, med, n // 2 - 1)
            )
        std = mad * _MAD_TO_STD
        lower, upper = med - sigma * std, med + sigma * std
        new_lo = first_at_least(s, lo, hi, lower)
        new_hi = first_above(s, lo, hi, upper)
        it += 1
        done = (new_hi - new_lo == n) or new_hi <= new_lo or it >= maxiters
        lo, hi = new_lo, max(new_hi, new_lo)
        if done:
            break
    n = hi - lo
    if n == 0:
        return np.nan, np.nan, 0
    mid = lo + n // 2
    if n % 2 == 1:
        median = np.float64(s[mid])
    else:
        median = np.float64((s[mid] + s[mid - 1]) * np.float32(0.5))
    mean = 0.0
    for i in range(lo, hi):
        mean += s[i]
    mean /= n
    var = 0.0
    for i in range(lo, hi):
        var += (s[i] - mean) ** 2
    return median, math.sqrt(var / n), n


# --------------------------------------------------------------------------- mesh images


@intrinsic
def _fma32(typingctx, a, b, c):  # pragma: no cover - compiled
    """Fused multiply-add ``a·b + c`` of float32 values (one rounding)."""
    sig = numba.types.float32(numba.types.float32, numba.types.float32, numba.types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32] * 3))
        return builder.call(fn, args)

    return sig, codegen


@numba.njit(cache=True, fastmath=False)
def _mesh_row(ay, mesh, j, out):  # pragma: no cover - compiled
    """``out = (A_y @ mesh)[j]`` (float32, fused multiply-adds in order)."""
    for b in range(mesh.shape[1]):
        acc = np.float32(0.0)
        for a in range(mesh.shape[0]):
            acc = _fma32(ay[j, a], mesh[a, b], acc)
        out[b] = acc


@numba.njit(cache=True, fastmath=False)
def _mesh_fill_row(ay, mesh, axt, lo, hi, scale, j, tmp, out):  # pragma: no cover - compiled
    """``out[i] = scale · clip((A_y @ mesh)[j] · A_x[i], lo, hi)`` for a whole row.

    ``axt`` is ``A_xᵀ`` (nbx, nx); the chain of fused multiply-adds runs over the mesh
    columns in order for every pixel (vectorised along the row).
    """
    _mesh_row(ay, mesh, j, tmp)
    nx = out.size
    for i in range(nx):
        out[i] = 0.0
    for b in range(tmp.size):
        t = tmp[b]
        for i in range(nx):
            out[i] = _fma32(t, axt[b, i], out[i])
    for i in range(nx):
        out[i] = scale * min(max(out[i], lo), hi)


@numba.njit(cache=True, fastmath=False)
def mesh_image(ay, mesh, axt, lo, hi, scale, data, subtract, out):  # pragma: no cover
    """``out`` = the mesh image, or ``data −`` it when ``subtract``."""
    ny, nx = out.shape
    tmp = np.empty(mesh.shape[1], np.float32)
    row = np.empty(nx, np.float32)
    for j in range(ny):
        _mesh_fill_row(ay, mesh, axt, lo, hi, scale, j, tmp, row)
        if subtract:
            for i in range(nx):
                out[j, i] = data[j, i] - row[i]
        else:
            for i in range(nx):
                out[j, i] = row[i]


# --------------------------------------------------------------------------- detection image


@numba.njit(cache=True, fastmath=False, nogil=True)
def subtract_smooth(
    data, mask, ay, mesh, axt, lo, hi, scale, k1, band, bands, write_sci, sci, out
):  # pragma: no cover - compiled
    """Background subtraction and the normalised separable convolution, band by band.

    ``sci = data − background`` (float32, written when ``write_sci``) and
    ``out = conv(sci·w) / conv(w)`` with ``w`` = 1 on unmasked finite pixels, the
    kernel ``k1 ⊗ k1`` (zero padding), sums in float64; 0 where ``conv(w) ≤ 1e-3``.
    Each band (``bands``: indices of blocks of ``band`` rows) recomputes the ``sci`` rows
    of its halo, so bands are independent (the GIL is released: threads can share the
    bands); the horizontal sums of the last ``len(k1)`` rows stay in a small ring buffer.

    ``conv(w)`` equals its value for an unmasked image except within the kernel radius
    of a masked pixel or an image edge: only those values are summed, the others are
    copied from the unmasked image's sums (the same numbers).
    """
    ny, nx = data.shape
    nk = k1.size
    r = nk // 2
    hd_clean, den_clean = _clean_weights(k1, nx)
    for b in bands:
        j0 = b * band
        j1 = min(ny, j0 + band)
        hnum = np.empty((nk, nx))
        hden = np.empty((nk, nx))
        state = np.zeros(nk, np.int64)  # bad columns in the row; -1: outside or too many
        badcol = np.empty((nk, _MAX_BAD_COLUMNS), np.int64)
        vrow = np.zeros(nx + 2 * r)  # zero-padded row of values and of weights
        wrow = np.zeros(nx + 2 * r)
        tmp = np.empty(mesh.shape[1], np.float32)
        bkg = np.empty(nx, np.float32)
        num = np.empty(nx)
        den = np.empty(nx)
        for jj in range(j1 - j0 + 2 * r):
            j = j0 - r + jj
            slot = jj % nk
            hn = hnum[slot]
            hd = hden[slot]
            if j < 0 or j >= ny:
                state[slot] = -1
                hn[:] = 0.0
                hd[:] = 0.0
            else:
                _mesh_fill_row(ay, mesh, axt, lo, hi, scale, j, tmp, bkg)
                if write_sci and j0 <= j < j1:
                    for i in range(nx):
                        sci[j, i] = data[j, i] - bkg[i]
                nbad = 0.0
                for i in range(nx):
                    v = np.float64(data[j, i] - bkg[i])
                    good = (not mask[j, i]) & math.isfinite(v)
                    vrow[i + r] = v if good else 0.0
                    wrow[i + r] = 1.0 if good else 0.0
                    nbad += 0.0 if good else 1.0
                hn[:] = 0.0
                for k in range(nk):
                    c = k1[k]
                    for i in range(nx):
                        hn[i] += c * vrow[i + k]
                _row_weights(k1, wrow, nbad, hd_clean, hd, badcol[slot], state, slot)
            if jj < 2 * r:
                continue
            # all rows of the window of image row jo are in the ring
            jo = j - r
            first = jj - 2 * r
            num[:] = 0.0
            for k in range(nk):
                c = k1[k]
                h = hnum[(first + k) % nk]
                for i in range(nx):
                    num[i] += c * h[i]
            _window_weights(k1, hden, state, badcol, first, hd_clean, den_clean, den)
            for i in range(nx):
                out[jo, i] = num[i] / den[i] if den[i] > 1e-3 else 0.0


@numba.njit(cache=True, fastmath=False)
def _clean_weights(k1, nx):  # pragma: no cover - compiled
    """Horizontal and 2-D sums of the kernel weights of a fully usable image row/window."""
    nk = k1.size
    r = nk // 2
    ones = np.zeros(nx + 2 * r)
    ones[r : r + nx] = 1.0
    hd = np.zeros(nx)
    for k in range(nk):
        for i in range(nx):
            hd[i] += k1[k] * ones[i + k]
    den = np.zeros(nx)
    for k in range(nk):
        for i in range(nx):
            den[i] += k1[k] * hd[i]
    return hd, den


@numba.njit(cache=True, fastmath=False)
def _row_weights(k1, wrow, nbad, hd_clean, hd, badcol, state, slot):  # pragma: no cover
    """Horizontal sums of the weights of one row (only near its bad pixels if few)."""
    nk = k1.size
    r = nk // 2
    nx = hd.size
    if nbad == 0.0:
        state[slot] = 0
        return
    if nbad > _MAX_BAD_COLUMNS:
        state[slot] = -1
        hd[:] = 0.0
        for k in range(nk):
            c = k1[k]
            for i in range(nx):
                hd[i] += c * wrow[i + k]
        return
    n = 0
    for i in range(nx):
        if wrow[i + r] == 0.0:
            badcol[n] = i
            n += 1
    state[slot] = n
    hd[:] = hd_clean
    for q in range(n):
        for i in range(max(0, badcol[q] - r), min(nx, badcol[q] + r + 1)):
            t = 0.0
            for k in range(nk):
                t += k1[k] * wrow[i + k]
            hd[i] = t


@numba.njit(cache=True, fastmath=False)
def _window_weights(k1, hden, state, badcol, first, hd_clean, den_clean, den):  # pragma: no cover
    """Vertical sums of the row weights of a window (ring rows first … first + nk − 1)."""
    nk = k1.size
    r = nk // 2
    nx = den.size
    whole = False
    for k in range(nk):
        if state[(first + k) % nk] < 0:
            whole = True
    if whole:
        den[:] = 0.0
        for k in range(nk):
            c = k1[k]
            slot = (first + k) % nk
            h = hd_clean if state[slot] == 0 else hden[slot]
            for i in range(nx):
                den[i] += c * h[i]
        return
    den[:] = den_clean
    for kk in range(nk):
        slot_kk = (first + kk) % nk
        for q in range(state[slot_kk]):
            col = badcol[slot_kk, q]
            for i in range(max(0, col - r), min(nx, col + r + 1)):
                t = 0.0
                for k in range(nk):
                    slot = (first + k) % nk
                    t += k1[k] * (hd_clean[i] if state[slot] == 0 else hden[slot, i])
                den[i] = t


# --------------------------------------------------------------------------- segmentation


@numba.njit(cache=True, fastmath=False)
def _find_root(parent, a):  # pragma: no cover - compiled
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@numba.njit(cache=True, fastmath=False)
def label_kernel(
    det, mask, has_mask, thr, use_img, ay, mesh, axt, lo, hi, scale, npixels, out
):  # pragma: no cover - compiled
    """8-connected components of ``det > threshold`` (not masked), ≥ ``npixels`` pixels.

    The threshold is the image ``thr`` (``use_img``) or the mesh image ``scale ·
    clip(A_y · mesh · A_xᵀ, lo, hi)``, compared in float32. ``out`` (int32) must be
    zero. One raster pass with union-find over the pixels above the threshold (only
    they and their labelled neighbours are written), then the kept components are
    numbered 1, 2, … in the order of their first pixel in the raster scan (as
    ``scipy.ndimage.label`` followed by photutils' relabelling).

    Returns (number of components, boxes (n, 4) int64 [ymin, ymax), [xmin, xmax),
    pixel counts (n,) int64).
    """
    ny, nx = det.shape
    parent = np.empty(4096, np.int32)
    pix = np.empty(65536, np.int64)
    tmp = np.empty(mesh.shape[1], np.float32)
    trow = np.empty(nx, np.float32)
    n = 0
    npix = 0
    for j in range(ny):
        if use_img:
            trow[:] = thr[j]
        else:
            _mesh_fill_row(ay, mesh, axt, lo, hi, scale, j, tmp, trow)
        for i in range(nx):
            if not det[j, i] > trow[i] or (has_mask and mask[j, i]):
                continue
            lab = 0
            for q in range(4):  # already visited neighbours: W, NW, N, NE
                jj = j if q == 0 else j - 1
                ii = i - 1 if q < 2 else (i if q == 2 else i + 1)
                if jj < 0 or ii < 0 or ii >= nx:
                    continue
                other = out[jj, ii]
                if other <= 0:
                    continue
                if lab == 0:
                    lab = other
                else:
                    ra, rb = _find_root(parent, lab), _find_root(parent, other)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
            if lab == 0:
                n += 1
                if n >= parent.size:
                    grown = np.empty(2 * parent.size, np.int32)
                    grown[: parent.size] = parent
                    parent = grown
                parent[n] = n
                lab = n
            out[j, i] = lab
            if npix == pix.size:
                grown_pix = np.empty(2 * pix.size, np.int64)
                grown_pix[:npix] = pix
                pix = grown_pix
            pix[npix] = j * nx + i
            npix += 1
    flat = out.reshape(-1)
    size = np.zeros(n + 1, np.int64)
    for p in range(npix):
        root = _find_root(parent, flat[pix[p]])
        flat[pix[p]] = root
        size[root] += 1
    final = np.full(n + 1, -1, np.int32)
    nkept = 0
    for p in range(npix):
        root = flat[pix[p]]
        if final[root] < 0:
            if size[root] >= npixels:
                nkept += 1
                final[root] = nkept
            else:
                final[root] = 0
        flat[pix[p]] = final[root]
    boxes = np.empty((nkept, 4), np.int64)
    boxes[:, 0] = ny
    boxes[:, 1] = 0
    boxes[:, 2] = nx
    boxes[:, 3] = 0
    count = np.zeros(nkept, np.int64)
    for p in range(npix):
        lab = flat[pix[p]]
        if lab == 0:
            continue
        j = pix[p] // nx
        i = pix[p] - j * nx
        k = lab - 1
        count[k] += 1
        boxes[k, 0] = min(boxes[k, 0], j)
        boxes[k, 1] = max(boxes[k, 1], j + 1)
        boxes[k, 2] = min(boxes[k, 2], i)
        boxes[k, 3] = max(boxes[k, 3], i + 1)
    return nkept, boxes, count
