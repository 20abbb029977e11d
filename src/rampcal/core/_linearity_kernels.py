"""Compiled kernels of :mod:`rampcal.core.linearity` (private; use its public wrappers).

A polynomial cube reaches the kernels as a tuple ``(values, uniform, planes)``:
``values`` (ncoeff,) float64 holds the value of each uniform coefficient plane,
``uniform`` (ncoeff,) bool says which planes are uniform, and ``planes``
(ncoeff, ny, nx) float32 is read only at the planes that are not (a (ncoeff, 1, 1)
dummy when all are). When every plane is uniform the polynomial is evaluated with its
coefficients in registers; otherwise the coefficients of each block of ``BLOCK``
columns are gathered into a small float64 buffer ``cb[k, j]``.

The integral non-linearity table reaches them as ``(value, correction, step, channel)``:
the raw-DN grid (float64), the per-channel corrections (nchannel, nvalue) float64, the
grid step (0 if not uniform) and the channel of each column (int64).

:func:`correct_rows` releases the GIL: the caller runs it over chunks of rows in threads.
"""

from __future__ import annotations

import numba
import numpy as np

from rampcal.core.dq import GroupFlag, PixelFlag

#: Corrected values beyond ±CLIP_LIMIT DN are clipped and flagged DO_NOT_USE.
CLIP_LIMIT = 1.0e6
# columns processed together (the per-row float64 buffers stay in L1/L2 cache)
BLOCK = 256

_SAT = np.uint8(GroupFlag.SATURATED)
_DNU = np.uint8(GroupFlag.DO_NOT_USE)
_NO_LIN = np.uint32(PixelFlag.NO_LIN_CORR)


@numba.njit(cache=True, nogil=True)
def same_bits(a, bits):
    """True if every element of the 2-D uint32 array ``a`` equals ``bits``.

    Row by row: an OR of XORs (vectorised) and an early exit after the first row
    that differs.
    """
    ny, nx = a.shape
    for y in range(ny):
        row = a[y]
        diff = np.uint32(0)
        for x in range(nx):
            diff |= row[x] ^ bits
        if diff != 0:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def correct_rows(
    y0,
    y1,
    data,
    gdq,
    pdq,
    lin,
    ilin,
    lin_dq,
    use_dq,
    reads,
    starts,
    read_level,
    inl,
    use_inl,
    row_counts,
):
    """Correct rows ``y0:y1`` of ``data`` in place, block by block (releases the GIL).

    ``reads``/``starts``: the read numbers of resultant ``i`` are
    ``reads[starts[i]:starts[i + 1]]``. ``row_counts[y]`` receives (uncorrected
    pixels, clipped values) of row ``y``.
    """
    nres, _, nx = data.shape
    lin_c, ilin_c = lin[0], ilin[0]
    lin_pp = not lin[1].all()  # a plane varies per pixel: gather block by block
    ilin_pp = read_level and not ilin[1].all()
    # pixels made uncorrectable by a uniform plane: NaN or a zero linear term
    const_bad = _uniform_bad(lin) or (read_level and _uniform_bad(ilin))
    uniform, pp = (lin[1], ilin[1]), (lin_pp, ilin_pp)
    m = np.empty(nres)
    for i in range(nres):
        m[i] = reads[starts[i] : starts[i + 1]].mean()
    bad = np.empty(BLOCK, dtype=np.bool_)
    u = np.empty(BLOCK)
    p = np.empty(BLOCK)
    cl = np.empty((lin_c.size, BLOCK))
    ci = np.empty((ilin_c.size, BLOCK))
    l0 = np.empty(BLOCK)
    rate = np.empty(BLOCK)
    off = np.empty(BLOCK)
    acc = np.empty(BLOCK)
    last = np.empty(BLOCK, dtype=np.int64)
    max_reads = 1
    for i in range(nres):
        max_reads = max(max_reads, starts[i + 1] - starts[i])
    ureads = np.empty((max_reads, BLOCK))
    for y in range(y0, y1):
        n_bad = 0
        for x0 in range(0, nx, BLOCK):
            nb = min(BLOCK, nx - x0)
            if lin_pp:
                _gather(lin, y, x0, nb, cl)
            if ilin_pp:
                _gather(ilin, y, x0, nb, ci)
            nb_bad = _flag_block(
                bad, pdq, lin_dq, use_dq, (cl, ci), uniform, pp, const_bad, y, x0, nb
            )
            n_bad += nb_bad
            if nb_bad == nb:
                continue  # nothing to correct in this block
            if not read_level:  # P_lin applied to each resultant
                for i in range(nres):
                    drow = data[i, y, x0 : x0 + nb]
                    for j in range(nb):
                        u[j] = drow[j]
                    _poly(lin_c, cl, lin_pp, u, p, nb)
                    _store(drow, gdq[i, y, x0 : x0 + nb], bad, p, 1, nb)
                continue
            _ramp_line(data, gdq, lin_c, cl, lin_pp, m, y, x0, nb, l0, rate, last, u, p)
            for i in range(nres):
                s0 = starts[i]
                nr = starts[i + 1] - s0
                drow = data[i, y, x0 : x0 + nb]
                for j in range(nb):
                    off[j] = 0.0
                    acc[j] = 0.0
                # simulated raw reads u_r = P_inv(L0 + rate (r - m0)), summed in off
                _inverse_reads(
                    ilin_c, ci, ilin_pp, l0, rate, reads[s0 : s0 + nr], m[0], ureads, off, nb, u
                )
                for j in range(nb):
                    off[j] = drow[j] - off[j] / nr
                # the reads shifted to average to the observed value (+ INL), linearised
                if use_inl:
                    _linear_reads_inl(lin_c, cl, lin_pp, ureads, nr, off, acc, nb, inl, x0, u, p)
                else:
                    _linear_reads(lin_c, cl, lin_pp, ureads, nr, off, acc, nb, u, p)
                _store(drow, gdq[i, y, x0 : x0 + nb], bad, acc, nr, nb)
        n_clip = 0
        for i in range(nres):
            n_clip += _clip(data[i, y], gdq[i, y])
        row_counts[y, 0] += n_bad
        row_counts[y, 1] += n_clip


@numba.njit(cache=True)
def _flag_block(bad, pdq, lin_dq, use_dq, blocks, uniform, pp, const_bad, y, x0, nb):
    """``bad[:nb]`` = uncorrectable pixels of the block; OR their flags into ``pdq``.

    ``blocks``, ``uniform``, ``pp``: gathered coefficients, uniform planes and "has
    per-pixel planes" of (P_lin, P_inv). Returns the number of uncorrectable pixels.
    """
    if not (use_dq or pp[0] or pp[1]):  # one polynomial everywhere, no reference flags
        for j in range(nb):
            bad[j] = const_bad
        if const_bad:
            for j in range(nb):
                pdq[y, x0 + j] |= _NO_LIN
            return nb
        return 0
    n_bad = 0
    for j in range(nb):
        x = x0 + j
        b = const_bad
        if use_dq:
            b |= (lin_dq[y, x] & _NO_LIN) != 0
            pdq[y, x] |= lin_dq[y, x]
        if pp[0]:
            b |= _column_bad(blocks[0], uniform[0], j)
        if pp[1]:
            b |= _column_bad(blocks[1], uniform[1], j)
        bad[j] = b
        n_bad += b
        if b:
            pdq[y, x] |= _NO_LIN
    return n_bad


@numba.njit(cache=True)
def _ramp_line(data, gdq, c, cb, g, m, y, x0, nb, l0, rate, last, u, p):
    """Linear ramp through the first and last-used resultants, linearised.

    ``l0 = P_lin(D_0)`` and ``rate = (P_lin(D_z) - l0) / (m_z - m_0)`` (raw values where
    SATURATED), ``z`` = (unsaturated resultants - 1, at least 2) - 1.
    """
    nres = data.shape[0]
    drow = data[0, y, x0 : x0 + nb]
    grow = gdq[0, y, x0 : x0 + nb]
    for j in range(nb):
        u[j] = drow[j]
    _poly(c, cb, g, u, p, nb)
    for j in range(nb):
        l0[j] = u[j] if (grow[j] & _SAT) != 0 else p[j]
        last[j] = 0
    for i in range(nres):  # number of unsaturated resultants
        grow = gdq[i, y, x0 : x0 + nb]
        for j in range(nb):
            last[j] += (grow[j] & _SAT) == 0
    for j in range(nb):
        last[j] = min(max(last[j] - 1, 2) - 1, nres - 1)
        u[j] = data[last[j], y, x0 + j]
    _poly(c, cb, g, u, p, nb)
    for j in range(nb):
        z = last[j]
        lz = u[j] if (gdq[z, y, x0 + j] & _SAT) != 0 else p[j]
        rate[j] = (lz - l0[j]) / (m[z] - m[0])


@numba.njit(cache=True)
def _store(drow, grow, bad, total, nr, nb):
    """``drow[j] = total[j] / nr`` where neither ``bad`` nor SATURATED (branch-free)."""
    for j in range(nb):
        new = np.float32(total[j] / nr)
        keep = bad[j] | ((grow[j] & _SAT) != 0)
        drow[j] = drow[j] if keep else new


@numba.njit(cache=True)
def _clip(drow, grow):
    """Clip ``|drow| > CLIP_LIMIT`` to ±CLIP_LIMIT and flag it DO_NOT_USE; return the count."""
    n = 0
    for x in range(drow.size):  # vectorised test first: clipping is rare
        d = drow[x]
        n += (d > CLIP_LIMIT) | (d < -CLIP_LIMIT)
    if n:
        for x in range(drow.size):
            d = drow[x]
            if d > CLIP_LIMIT or d < -CLIP_LIMIT:
                drow[x] = np.float32(CLIP_LIMIT if d > 0 else -CLIP_LIMIT)
                grow[x] |= _DNU
    return n


@numba.njit(cache=True)
def _uniform_bad(poly):
    """True if a uniform plane makes every pixel uncorrectable (NaN, or c1 == 0)."""
    values, uniform = poly[0], poly[1]
    for k in range(values.size):
        if uniform[k] and np.isnan(values[k]):
            return True
    return bool(uniform[1] and values[1] == 0)


@numba.njit(cache=True)
def _column_bad(cb, uniform, j):
    """Per-pixel planes of column ``j`` of a gathered block: NaN, or c1 == 0."""
    bad = not uniform[1] and cb[1, j] == 0
    for k in range(cb.shape[0]):
        bad |= not uniform[k] and np.isnan(cb[k, j])
    return bad


@numba.njit(cache=True)
def _gather(poly, y, x0, nb, out):
    """``out[k, :nb]`` = coefficient ``k`` of pixels ``(y, x0:x0+nb)``, as float64."""
    values, uniform, planes = poly
    for k in range(values.size):
        if uniform[k]:
            v = values[k]
            for j in range(nb):
                out[k, j] = v
        else:
            for j in range(nb):
                out[k, j] = planes[k, y, x0 + j]


# ---- polynomial evaluation ---------------------------------------------------------------
# A polynomial is given by ``c`` (its uniform values), ``cb`` (the gathered block: ``cb[k, j]``
# is coefficient k of column j) and ``g`` (use ``cb``; else every coefficient is uniform and
# ``c`` is used). The two loops over the reads of a resultant keep the Horner accumulator of
# each column in a register; the loop over the columns is vectorised only when the loop over
# the coefficients is unrolled, i.e. when their number is a compile-time constant, so the
# dispatchers pass the uniform values as a tuple (in the per-pixel case only its length is
# used) for 2 to 8 coefficients, and use the column-vector form of :func:`_poly` otherwise.
# Horner's order of operations is the same in every form: all give the same float64 values.


@numba.njit(cache=True)
def _poly(c, cb, g, u, out, nb):
    """``out[j] = P(u[j])`` for ``j < nb`` (Horner, column-vector form; ``out`` is not ``u``)."""
    n = c.size
    if g:
        for j in range(nb):
            out[j] = cb[n - 1, j]
        for k in range(n - 2, -1, -1):
            for j in range(nb):
                out[j] = out[j] * u[j] + cb[k, j]
    else:
        for j in range(nb):
            out[j] = c[n - 1]
        for k in range(n - 2, -1, -1):
            ck = c[k]
            for j in range(nb):
                out[j] = out[j] * u[j] + ck


@numba.njit(inline="always")
def _horner(t, v):
    """``Σ_k t[k] v^k`` (Horner) for a tuple of coefficients ``t``."""
    n = len(t)
    a = t[n - 1]
    for k in range(n - 2, -1, -1):
        a = a * v + t[k]
    return a


@numba.njit(inline="always")
def _horner_at(t, cb, j, v):
    """``Σ_k cb[k, j] v^k`` (Horner) over the first ``len(t)`` coefficients of column ``j``."""
    n = len(t)
    a = cb[n - 1, j]
    for k in range(n - 2, -1, -1):
        a = a * v + cb[k, j]
    return a


@numba.njit(cache=True)
def _inverse_reads(c, cb, g, l0, rate, reads, m0, ureads, total, nb, u):
    """``ureads[k, :nb] = P_inv(l0 + rate (reads[k] - m0))``, each added to ``total``."""
    n = c.size
    if n == 2:
        t2 = (c[0], c[1])
        _inverse_reads_n(t2, cb, g, l0, rate, reads, m0, ureads, total, nb)
    elif n == 3:
        t3 = (c[0], c[1], c[2])
        _inverse_reads_n(t3, cb, g, l0, rate, reads, m0, ureads, total, nb)
    elif n == 4:
        t4 = (c[0], c[1], c[2], c[3])
        _inverse_reads_n(t4, cb, g, l0, rate, reads, m0, ureads, total, nb)
    elif n == 5:
        t5 = (c[0], c[1], c[2], c[3], c[4])
        _inverse_reads_n(t5, cb, g, l0, rate, reads, m0, ureads, total, nb)
    elif n == 6:
        t6 = (c[0], c[1], c[2], c[3], c[4], c[5])
        _inverse_reads_n(t6, cb, g, l0, rate, reads, m0, ureads, total, nb)
    elif n == 7:
        t7 = (c[0], c[1], c[2], c[3], c[4], c[5], c[6])
        _inverse_reads_n(t7, cb, g, l0, rate, reads, m0, ureads, total, nb)
    elif n == 8:
        t8 = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])
        _inverse_reads_n(t8, cb, g, l0, rate, reads, m0, ureads, total, nb)
    else:
        for k in range(reads.size):
            dr = reads[k] - m0
            for j in range(nb):
                u[j] = l0[j] + rate[j] * dr
            uk = ureads[k]
            _poly(c, cb, g, u, uk, nb)
            for j in range(nb):
                total[j] += uk[j]


@numba.njit(cache=True)
def _inverse_reads_n(t, cb, g, l0, rate, reads, m0, ureads, total, nb):
    for k in range(reads.size):
        dr = reads[k] - m0
        uk = ureads[k]
        if g:
            for j in range(nb):
                w = _horner_at(t, cb, j, l0[j] + rate[j] * dr)
                uk[j] = w
                total[j] += w
        else:
            for j in range(nb):
                w = _horner(t, l0[j] + rate[j] * dr)
                uk[j] = w
                total[j] += w


@numba.njit(cache=True)
def _linear_reads(c, cb, g, ureads, nr, off, total, nb, u, p):
    """``total[:nb] += Σ_k P_lin(ureads[k, :nb] + off)`` over the ``nr`` reads."""
    n = c.size
    if n == 2:
        t2 = (c[0], c[1])
        _linear_reads_n(t2, cb, g, ureads, nr, off, total, nb)
    elif n == 3:
        t3 = (c[0], c[1], c[2])
        _linear_reads_n(t3, cb, g, ureads, nr, off, total, nb)
    elif n == 4:
        t4 = (c[0], c[1], c[2], c[3])
        _linear_reads_n(t4, cb, g, ureads, nr, off, total, nb)
    elif n == 5:
        t5 = (c[0], c[1], c[2], c[3], c[4])
        _linear_reads_n(t5, cb, g, ureads, nr, off, total, nb)
    elif n == 6:
        t6 = (c[0], c[1], c[2], c[3], c[4], c[5])
        _linear_reads_n(t6, cb, g, ureads, nr, off, total, nb)
    elif n == 7:
        t7 = (c[0], c[1], c[2], c[3], c[4], c[5], c[6])
        _linear_reads_n(t7, cb, g, ureads, nr, off, total, nb)
    elif n == 8:
        t8 = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])
        _linear_reads_n(t8, cb, g, ureads, nr, off, total, nb)
    else:
        for k in range(nr):
            uk = ureads[k]
            for j in range(nb):
                u[j] = uk[j] + off[j]
            _poly(c, cb, g, u, p, nb)
            for j in range(nb):
                total[j] += p[j]


@numba.njit(cache=True)
def _linear_reads_n(t, cb, g, ureads, nr, off, total, nb):
    for k in range(nr):
        uk = ureads[k]
        if g:
            for j in range(nb):
                total[j] += _horner_at(t, cb, j, uk[j] + off[j])
        else:
            for j in range(nb):
                total[j] += _horner(t, uk[j] + off[j])


@numba.njit(cache=True)
def _linear_reads_inl(c, cb, g, ureads, nr, off, total, nb, inl, x0, u, p):
    """:func:`_linear_reads` with the INL correction ``u += INL_c(u)`` of each read."""
    value, corr, step, channel = inl
    for k in range(nr):
        uk = ureads[k]
        for j in range(nb):
            v = uk[j] + off[j]
            u[j] = v + _interp(v, value, corr, channel[x0 + j], step)
        _poly(c, cb, g, u, p, nb)
        for j in range(nb):
            total[j] += p[j]


@numba.njit(cache=True, inline="always")
def _interp(u, xp, fp, c, step):
    """``np.interp(u, xp, fp[c])`` for one value (constant beyond the ends).

    ``step > 0``: ``xp`` is uniformly spaced by ``step`` (direct index); otherwise
    binary search.
    """
    n = xp.size
    if u != u:
        return u
    if u <= xp[0]:
        return fp[c, 0]
    if u >= xp[n - 1]:
        return fp[c, n - 1]
    if step > 0:
        lo = min(int((u - xp[0]) / step), n - 2)
        hi = lo + 1
    else:
        lo = 0
        hi = n - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if xp[mid] <= u:
                lo = mid
            else:
                hi = mid
    dx = xp[hi] - xp[lo]
    if dx == 0.0:
        return fp[c, hi]
    return fp[c, lo] + (fp[c, hi] - fp[c, lo]) * (u - xp[lo]) / dx
