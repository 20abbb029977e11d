"""Compiled kernels of the Casertano et al. (2022) uneven-ramp fit (private).

The public wrapper is :func:`rampcal.core.ramp.cas22.fit_ramps_cas22`; see it for the
mathematics. Everything here works in electrons and seconds, float64 per pixel.

Where the time goes, and how it is kept short:

* The weights of a segment ``s..e`` depend only on ``(s, e)``, the weighting exponent
  ``P`` (six values) and the read pattern, so the fit coefficients ``c_i``,
  ``Σ c_i²/n_i`` and ``V_S`` are tabulated once per call (:func:`_prepare`, with the
  arithmetic of :func:`_segment_coefficients`); a segment fit is a dot product.
* Most pixels have no flagged resultant: their first segment is the whole ramp. It is
  fitted, and its jump statistics screened, for a block of ``_BLOCK`` pixels at a
  time in loops over ``x`` that vectorise (:func:`_load_block`, :func:`_fast_block`,
  :func:`_store_block`), on a float64 copy of the block.
* A jump statistic ``z = (s_x − α)/√var`` costs two divisions and a square root. A
  pre-test with multiplications only, whose rounding allowance is bounded far above
  its actual rounding error, proves ``z`` below the lowest possible threshold for
  nearly every pair (:func:`_segment_may_jump`, and its per-block form
  :func:`_block_pretest`); the exact statistics (:func:`_find_jump`) are evaluated
  only where it cannot.
* Only pixels with a flagged or non-finite resultant, a jump, or a singular fit take
  the per-pixel path with its stack of segments (:func:`_fit_pixel`); a pixel whose
  whole ramp had a jump resumes from that split.
* Hot functions take flat array arguments (no array views or tuples of arrays per
  pixel), so that no reference counting (atomic, and contended between threads on
  the shared tables) happens per pixel.

Two jump statistics (``jump[_GLS]``):

* ``gls`` (default): the generalised-least-squares test of a jump in one resultant
  difference, or in two adjacent ones (the resultant between them left out), with the
  covariance of the differences at a robust rate (:func:`_gls_rate`); the tridiagonal
  covariance is factorised per pixel (:func:`_gls_solve`). Three stages keep it cheap:
  every statistic squared is at most the generalised χ² of the straight-line fit,
  bounded without any division by fixed factorisations of the read and Poisson
  covariances (:func:`_gls_bound_block`, :func:`_gls_bound`) and compared with a lower
  bound of the pixel's threshold on slope bins (:func:`_threshold_levels`); this
  clears 96–99.6 % of 1 e/s sky pixels (MA table 110–4). The rest of a row is
  gathered and solved vectorised (:func:`_gls_block`, :func:`_gls_flush`), where
  ``v ≤ 0`` or ``v² ≤ t2·p`` clears a statistic ``v/√p`` on the very values the exact
  decision (:func:`_gls_pick`) uses; a jump is fitted by :func:`_refit_jumped`.
* ``excess_slope``: the difference slope minus the segment slope, over an approximate
  standard deviation (:func:`_pair_statistic`), screened by :func:`_segment_may_jump`
  and :func:`_block_pretest`.

Every path evaluates the same floating-point expressions in the same order as the
direct per-pixel formulae, so results do not depend on the path a pixel takes, and
the pre-tests only skip work whose outcome they have proven. Everything is in one
module: numba's cache does not notice changes to jitted callees in other files.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

__all__: list[str] = []

_NAN = np.nan
_ZERO = np.int64(0)

#: Casertano Table 2 exponents ``P``, indexed by ``k = 5 − #{S < 100, 50, 20, 10, 5}``
#: (``S < 5`` → 0, …, ``S ≥ 100`` or NaN → 10).
_POWERS = (0.0, 0.4, 1.0, 3.0, 6.0, 10.0)
_NPOWERS = 6

#: Largest number of resultants for which every segment ``(s, e)`` is tabulated
#: (``N³·6`` float64, 1.5 MB at 32); longer ramps tabulate the whole ramp only.
_MAX_TABLE_RESULTANTS = 32

#: Pixels per block of the vectorised whole-ramp pass.
_BLOCK = 256

#: Pre-test of the jump statistic: relative rounding allowance (about 36 units in the
#: last place, several times the actual bound), and the factor on the squared lowest
#: threshold that absorbs the rounding of the exact square root and division.
_PRETEST_EPS = 4e-15
_PRETEST_SQ = 1.0 - 1e-12
#: The pre-test clears a pair only for variances in this range (no under/overflow).
_PRETEST_VMIN = 1e-280
_PRETEST_VMAX = 1e280

#: gls pre-tests: the threshold of a pixel is bounded below on bins of its slope
#: (edges 10^(k/4) e/s, k = 0..16; bin 0 is α ≤ 1, bin 17 α > 1e4), and the χ² bound
#: must stay below it with this relative margin (far above the rounding of the bound
#: and of the exact statistics). The bound clears a segment only while
#: (α · segment duration)² ≤ _BOUND_DMAX · σ²: a cleared segment has residuals of a few
#: σ, so its differences are below ~1e8 σ and their rounding below ~1e-8 σ.
_ALPHA_EDGES = 10.0 ** (np.arange(17) / 4.0)
_NBINS = 18
_BOUND_MARGIN = 1e-6
_BOUND_DMAX = 1e16
_BOUND_MAX = 1e300

# rows of the (3, N) read-pattern array
_NREADS = 0
_TBAR = 1
_TAU = 2

# pairs[kind, row, i] (2, 9, N): single (i, i+1) and double (i, i+2) differences
_SINGLE = 0
_DOUBLE = 1
_DT = 0  # Δt = t̄_b − t̄_a
_RN = 1  # 1/n_a + 1/n_b
_VS = 2  # τ_b + τ_a − 2 t̄_a
_IDT = 3  # 1/Δt
_IDT2 = 4  # 1/Δt²
_PA = 5  # _RN · _IDT2
_PB = 6  # _VS · _IDT2
_ON = 7  # single only: −1/n_b, read part of Cov(R_b − R_a, R_{b+1} − R_b) / σ²
_OP = 8  # single only: t̄_b − τ_b, its Poisson part per unit rate
_NPAIR = 9

# segv[s, e, k, j]: per-segment scalars of the coefficient tables
_VRC = 0  # Σ c_i²/n_i (read variance / σ²)
_VSC = 1  # V_S
_OK = 2  # 1.0 when the normal equations are regular

# jump options: (use_jump, intercept, constant, t2, idt_max, a_max, b_max, gls)
_T2 = 3  # squared lowest threshold of the pre-test (< 0: no pre-test)
_IDT_MAX = 4  # largest 1/Δt over the pairs of the whole ramp
_A_MAX = 5  # largest _PA
_B_MAX = 6  # largest |_PB|
_GLS = 7  # True: generalised-least-squares statistic; False: excess slope

# rows of the (M, 5, N) LDLᵀ factors ldl[s, row, i] of the read (C_R, σ² = 1) and
# Poisson (C_P, unit rate) covariances of the differences i ≥ s of segments starting at
# resultant s (the factors do not depend on the end), for the gls χ² bound
_LR = 0  # l_i of C_R
_RDR = 1  # 1/d_i of C_R
_LP = 2  # l_i of C_P
_RDP = 3  # 1/d_i of C_P
_LOK = 4  # ldl[0, _LOK, 0]: 1.0 when both are positive definite (else no bound)

# rows of the float64 block scratch fb
_G = 0  # gain
_S2 = 1  # σ² (e²)
_D = 2  # dark (e/s)
_K = 3  # exponent index of the whole ramp
_A = 4  # whole-ramp slope α
_VR = 5  # its read variance
_VSB = 6  # its V_S
_KAP = 7  # κ = −α / (t̄_last − t̄_0)
_MG = 8  # max_i |r_i|
_AP = 9  # pre-test: numerator allowance − α
_S2T = 10  # pre-test: t2·σ²
_AT = 11  # pre-test: t2·α
_KT = 12  # pre-test: t2·(κ − variance allowance)
_J0 = 13  # first jump pair of the whole ramp
_F0 = 14  # gls: robust rate of the covariance (e/s)
_RX = 15  # gls: R_last − R_0
_AG = 16  # gls: generalised-least-squares slope
_IC0 = 17  # gls: 1 / (Δt·C⁻¹Δt)
_T2X = 18  # gls: squared lower bound of the pixel's threshold (< 0: none)
_NFB = 19
# rows of the int64 block scratch ub
_ST = 0  # pixel state
_OR = 1  # OR of the groupdq of its resultants
_CA = 2  # 1 where a whole-ramp statistic may exceed the lowest threshold
_NUB = 3

# rows of the gls work arrays: work[row, j] per pixel, gw[row, j, x] per block
_WL = 0  # l_j: LDLᵀ multiplier of the covariance (C_{j,j+1} / d_j)
_WRD = 1  # 1 / d_j (pivot reciprocal); then p_j = (P)_jj
_WX = 2  # forward-substituted Δt, then x = C⁻¹Δt
_WY = 3  # forward-substituted differences, then y = C⁻¹D, then v = P D
_WS = 4  # S_j = (C⁻¹)_jj
_NW = 5
_WZ1 = 5  # per pixel only: single-difference statistics
_WZ2 = 6  # per pixel only: double-difference statistics
_NWORK = 7
# rows of the block scratch of the χ² bound, wb[row, x]
_BWR = 0  # L⁻¹ r for C_R
_BWP = 1  # L⁻¹ r for C_P
_BAR = 2  # rᵀ C_R⁻¹ r
_BBP = 3  # rᵀ C_P⁻¹ r
_NB = 4

# pixel states (bits)
_CLEAN = 0  # every resultant usable: the whole-ramp pass applies
_BAD_CALIBRATION = 1  # gain or read noise unusable: NaN outputs
_SLOW = 2  # per-pixel path
_JUMPED = 4  # clean, with a jump at pair fb[_J0] of the whole ramp


# --------------------------------------------------------------------------- tables


def _prepare(n_reads, tbar, tau, jump_opts):
    """Read-pattern tables and jump options of one call (plain Python).

    Parameters
    ----------
    n_reads, tbar, tau : ndarray (N,) float64
        Reads per resultant, mean read time and ``τ`` (s).
    jump_opts : (bool, float, float, bool)
        ``(use_jump, intercept, constant, gls)``.

    Returns
    -------
    tabs : tuple
        ``(pattern (3, N), pairs (2, 9, N), coef, segv, coef_full (6, N),
        segv_full (6, 3), ldl (M, 5, N), rtab)`` (see :func:`_segment_tables`,
        :func:`_difference_ldl` and :func:`_rate_table`); cached per read pattern,
        read-only.
    jump : tuple
        ``(use_jump, intercept, constant, t2, idt_max, a_max, b_max, gls)``.
    levels : ndarray (_NBINS,) float64
        Squared lower bounds of the threshold on the slope bins (:func:`_threshold_bins`).
    """
    pattern = np.stack([n_reads, tbar, tau]).astype(np.float64)
    tabs, bounds = _pattern_tables(pattern.tobytes(), pattern.shape[1])
    use_jump, intercept, constant, gls = jump_opts
    t2 = _pretest_level(intercept, constant)
    head = (bool(use_jump), float(intercept), float(constant), t2)
    return tabs, head + bounds + (bool(gls),), _threshold_bins(intercept, constant)


@functools.lru_cache(maxsize=8)
def _pattern_tables(key, nres):
    """The tables of :func:`_prepare` for a read pattern given as the bytes of its
    (3, N) float64 array, and ``(idt_max, a_max, b_max)``."""
    pattern = np.frombuffer(key, dtype=np.float64).reshape(3, nres).copy()
    n, t, ta = pattern
    pairs = np.zeros((2, _NPAIR, nres))
    bounds = [0.0, 0.0, 0.0]
    for kind in (_SINGLE, _DOUBLE):
        pk = pairs[kind]
        i = np.arange(max(nres - kind - 1, 0))
        j = i + kind + 1
        pk[_DT] = 1.0
        pk[_DT, i] = t[j] - t[i]
        pk[_RN, i] = 1.0 / n[j] + 1.0 / n[i]
        pk[_VS, i] = ta[j] + ta[i] - 2.0 * np.minimum(t[j], t[i])
        pk[_IDT] = 1.0 / pk[_DT]
        pk[_IDT2] = 1.0 / (pk[_DT] * pk[_DT])
        pk[_PA] = pk[_RN] * pk[_IDT2]
        pk[_PB] = pk[_VS] * pk[_IDT2]
        if kind == _SINGLE:
            pk[_ON, i] = -1.0 / n[j]
            pk[_OP, i] = t[j] - ta[j]
        if i.size:
            for b, row in enumerate((_IDT, _PA, _PB)):
                bounds[b] = max(bounds[b], float(np.abs(pk[row, i]).max()))
    coef, segv = _segment_tables(pattern, nres <= _MAX_TABLE_RESULTANTS)
    e = 0 if coef.shape[0] == 1 else nres - 1  # where the whole ramp is tabulated
    ldl = _difference_ldl(pairs, nres)
    rtab = _rate_table(pattern, pairs, nres)
    tabs = (pattern, pairs, coef, segv, coef[0, e].copy(), segv[0, e].copy(), ldl, rtab)
    for array in tabs:
        array.flags.writeable = False
    return tabs, tuple(bounds)


def _segment_tables(pattern, all_segments):
    """Coefficient tables of the segments and exponents.

    Returns ``coef`` (M, M, 6, N) and ``segv`` (M, M, 6, 3) float64: for segment
    ``s..e`` and ``P = _POWERS[k]``, ``coef[s, e, k, i]`` is ``c_i`` (zero outside
    ``s..e``) and ``segv[s, e, k]`` holds ``Σ c_i²/n_i``, ``V_S`` and 1.0 if the fit is
    regular (``_VRC, _VSC, _OK``). ``M = N`` when ``all_segments``; otherwise ``M = 1``
    and only the whole ramp is tabulated, at ``[0, 0]``.
    """
    nres = pattern.shape[1]
    m = nres if all_segments else 1
    coef = np.zeros((m, m, _NPOWERS, nres))
    segv = np.zeros((m, m, _NPOWERS, 3))
    if all_segments:
        segments = [(s, e, s, e) for s in range(nres) for e in range(s + 1, nres)]
    else:
        segments = [(0, nres - 1, 0, 0)] if nres > 1 else []
    for s, e, a, b in segments:
        for k, p in enumerate(_POWERS):
            good, v_r, v_s = _segment_coefficients(s, e, p, pattern, coef[a, b, k])
            segv[a, b, k] = (v_r, v_s, 1.0 if good else 0.0)
    return coef, segv


def _difference_ldl(pairs, nres):
    """LDLᵀ factors (M, 5, N) of the difference covariances of segments from each start
    (``M = N``, or 1 — the whole ramp only — beyond _MAX_TABLE_RESULTANTS).

    ``C_R`` (read, σ = 1): diagonal ``1/n_i + 1/n_{i+1}``, off-diagonal ``−1/n_{i+1}``;
    ``C_P`` (Poisson, unit rate): ``τ_{i+1} + τ_i − 2 t̄_i`` and ``t̄_{i+1} − τ_{i+1}``.
    From start ``s``: ``d_s = C_ss``, ``l_i = C_{i,i+1}/d_i``,
    ``d_{i+1} = C_{i+1,i+1} − l_i C_{i,i+1}``. ``ldl[0, _LOK, 0]`` is 1.0 when every
    pivot of the whole ramp is positive (then those of every segment are).
    """
    m = nres - 1
    starts = nres if nres <= _MAX_TABLE_RESULTANTS else 1
    ldl = np.zeros((max(starts, 1), 5, max(nres, 1)))
    ok = m >= 1
    ps = pairs[_SINGLE]
    for s in range(min(max(m, 0), starts)):
        for diag, off, lrow, rrow in ((_RN, _ON, _LR, _RDR), (_VS, _OP, _LP, _RDP)):
            for i in range(s, m):
                d = ps[diag, i] - (ldl[s, lrow, i - 1] * ps[off, i - 1] if i > s else 0.0)
                if not (d > 0.0 and np.isfinite(d)):
                    ok = False
                    break
                ldl[s, rrow, i] = 1.0 / d
                ldl[s, lrow, i] = ps[off, i] / d
    ldl[0, _LOK, 0] = 1.0 if ok else 0.0
    return ldl


def _rate_table(pattern, pairs, nres):
    """``rtab[s, e, i] = 1 / ((t̄_e − t̄_s) − (t̄_{i+2} − t̄_i))`` for ``s ≤ i ≤ e − 2``
    (N ≤ _MAX_TABLE_RESULTANTS; else (1, 1, 1)): the reciprocals of :func:`_gls_rate`,
    bit for bit those that :func:`_gls_rate_block` computes."""
    if nres > _MAX_TABLE_RESULTANTS or nres < 4:
        return np.zeros((1, 1, 1))
    t = pattern[_TBAR]
    rtab = np.zeros((nres, nres, nres))
    for s in range(nres):
        for e in range(s + 3, nres):
            i = np.arange(s, e - 1)
            rtab[s, e, i] = 1.0 / ((t[e] - t[s]) - pairs[_DOUBLE, _DT, i])
    return rtab


def _threshold_bins(intercept, constant):
    """(_NBINS,) squared lower bounds of ``T(α)`` on the slope bins (see _ALPHA_EDGES).

    On a bin ``T`` is monotonic in ``log10 α``, so its minimum is at an edge; a slack
    absorbs the rounding of the logarithm, ``_BOUND_MARGIN`` the rounding of the
    bounds compared with it. -1 where the bound is not positive.
    """
    edges = [math.log10(a) for a in _ALPHA_EDGES]
    lows = [intercept]  # α ≤ 1: the clip gives T = intercept
    for a, b in zip(edges, edges[1:]):
        lows.append(min(intercept - constant * a, intercept - constant * b))
    lows.append(intercept - 4.0 * constant)  # α > 1e4
    slack = 1e-9 * (1.0 + abs(intercept) + 4.0 * abs(constant))
    out = np.full(_NBINS, -1.0)
    for k, low in enumerate(lows):
        low -= slack
        if low > 0.0:
            out[k] = low * low * _PRETEST_SQ * (1.0 - _BOUND_MARGIN)
    out.flags.writeable = False
    return out


def _pretest_level(intercept, constant):
    """``t2`` of the pre-tests: the squared lowest threshold, shrunk; -1 if it is ≤ 0."""
    lowest = min(intercept, intercept - 4.0 * constant)  # log10 of the clip is in [0, 4]
    lowest -= 1e-9 * (1.0 + abs(intercept) + 4.0 * abs(constant))
    if not lowest > 0.0:
        return -1.0
    return lowest * lowest * _PRETEST_SQ


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _segment_coefficients(s, e, p, pattern, c):
    """Fit coefficients of segment ``s..e`` for exponent ``p`` into ``c[s..e]``.

    ``w_i = (1+P) n_i / (1 + P n_i) · |(t̄_i − t_mid)/t_scale|^P``,
    ``c_i = (F0 (t̄_i − t_mid) − F1) w_i / D`` on centred times. Returns
    ``(ok, Σ c_i²/n_i, V_S)``; ``ok`` is False when ``D <= 0`` (then ``c`` is zero).
    """
    t_mid = 0.5 * (pattern[_TBAR, s] + pattern[_TBAR, e])
    t_scale = 0.5 * (pattern[_TBAR, e] - pattern[_TBAR, s])
    if t_scale == 0.0:
        t_scale = 1.0
    f0 = 0.0
    f1 = 0.0
    f2 = 0.0
    for i in range(s, e + 1):
        n = pattern[_NREADS, i]
        dt = pattern[_TBAR, i] - t_mid  # centred times: same c_i, less cancellation in D
        w = n  # P = 0: 0**0 := 1
        if p != 0.0:
            w = (1.0 + p) * n / (1.0 + p * n) * abs(dt / t_scale) ** p
        c[i] = w
        f0 += w
        f1 += w * dt
        f2 += w * dt * dt
    den = f2 * f0 - f1 * f1
    if not den > 0.0:
        for i in range(s, e + 1):
            c[i] = 0.0
        return False, 0.0, 0.0
    vrc = 0.0
    vs = 0.0
    run = 0.0  # sum_{j<i} c_j tbar_j
    for i in range(s, e + 1):
        ci = (f0 * (pattern[_TBAR, i] - t_mid) - f1) * c[i] / den
        c[i] = ci
        vrc += ci * ci / pattern[_NREADS, i]
        vs += ci * ci * pattern[_TAU, i] + 2.0 * ci * run
        run += ci * pattern[_TBAR, i]
    return True, vrc, vs


# --------------------------------------------------------------------------- per pixel


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fit_segment(r, s, e, sigma2, coef, segv, pattern, cbuf):
    """Optimally weighted slope of resultants ``s..e`` (inclusive).

    ``S_max = max(R_e − R_s, 0)`` and ``S = S_max/√(σ² + S_max)`` select the exponent.
    Returns ``(alpha, v_read, v_signal)``: slope (e/s), read variance (e/s)² and the
    Poisson variance per unit flux (s⁻¹·(e/s)² per e/s). NaN for fewer than 2
    resultants; zeros when the normal equations are singular. Segments that are not
    tabulated (long ramps) get their coefficients computed into ``cbuf``.
    """
    if e <= s:
        return _NAN, _NAN, _NAN
    smax = max(r[e] - r[s], 0.0)
    snr = smax / math.sqrt(sigma2 + smax)
    k = 5 - ((snr < 100.0) + (snr < 50.0) + (snr < 20.0) + (snr < 10.0) + (snr < 5.0))
    alpha = 0.0
    if coef.shape[0] > 1 or (s == 0 and e == r.shape[0] - 1):  # tabulated
        a = s if coef.shape[0] > 1 else 0
        b = e if coef.shape[0] > 1 else 0
        if not segv[a, b, k, _OK] > 0.0:
            return 0.0, 0.0, 0.0
        for i in range(s, e + 1):
            alpha += coef[a, b, k, i] * r[i]
        return alpha, segv[a, b, k, _VRC] * sigma2, segv[a, b, k, _VSC]
    good, v_r, v_s = _segment_coefficients(s, e, _POWERS[k], pattern, cbuf)
    if not good:
        return 0.0, 0.0, 0.0
    for i in range(s, e + 1):
        alpha += cbuf[i] * r[i]
    return alpha, v_r * sigma2, v_s


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _pair_statistic(diff, alpha, sigma2, kappa, pairs, kind, i):
    """One-sided jump statistic of pair ``i`` (resultant difference ``diff``).

    ``z = (diff/Δt − α) / √((σ²·r + α·v)/Δt² + κ)``; NaN where the variance is not > 0.
    """
    dt = pairs[kind, _DT, i]
    sx = diff / dt
    var = (sigma2 * pairs[kind, _RN, i] + alpha * pairs[kind, _VS, i]) / (dt * dt) + kappa
    if not var > 0.0:
        return _NAN
    return (sx - alpha) / math.sqrt(var)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _segment_may_jump(r, s, e, alpha, sigma2, kappa, pairs, t2):
    """False only if every jump statistic of segment ``s..e`` is surely ``≤ √t2``.

    :func:`_pair_statistic` with its divisions replaced by products with the
    tabulated reciprocals. Those results differ from the exact ones by a few units in
    the last place of the terms, bounded by ``_PRETEST_EPS`` times their magnitudes:
    with ``num ≤ n_hi`` and ``var ≥ v_lo``, ``n_hi ≤ 0`` or ``n_hi² ≤ t2·v_lo``
    proves ``z ≤ √t2``. NaN and infinities, and variances outside
    ``[_PRETEST_VMIN, _PRETEST_VMAX]``, count as "may exceed".
    """
    for kind in range(2):
        for i in range(s, e - kind):
            sx = (r[i + 1 + kind] - r[i]) * pairs[kind, _IDT, i]
            num = sx - alpha
            xs = sigma2 * pairs[kind, _RN, i] + alpha * pairs[kind, _VS, i]
            xs *= pairs[kind, _IDT2, i]
            var = xs + kappa
            n_hi = num + _PRETEST_EPS * (abs(sx) + abs(num))
            v_lo = var - _PRETEST_EPS * (abs(xs) + abs(var))
            safe = (v_lo > _PRETEST_VMIN) & (v_lo < _PRETEST_VMAX)
            if not (safe & ((n_hi <= 0.0) | (n_hi * n_hi <= t2 * v_lo))):
                return True
    return False


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _find_jump(r, s, e, alpha, sigma2, kappa, pairs, intercept, constant):
    """Largest jump statistic of segment ``s..e`` and whether it passes the threshold.

    The candidates are the single difference of the last pair, then for each earlier
    pair the larger of its single and double difference (NaN ignored); the threshold
    is ``T(α) = intercept − constant · log10(clip(α, 1, 1e4))``. Returns
    ``(is_jump, j0)``: the suspected pair is ``(j0, j0 + 1)``.
    """
    best = -np.inf
    arg = e - 1
    i = e - 1
    z = _pair_statistic(r[i + 1] - r[i], alpha, sigma2, kappa, pairs, _SINGLE, i)
    if z == z:
        best = z
    for i in range(s, e - 1):
        z1 = _pair_statistic(r[i + 1] - r[i], alpha, sigma2, kappa, pairs, _SINGLE, i)
        z2 = _pair_statistic(r[i + 2] - r[i], alpha, sigma2, kappa, pairs, _DOUBLE, i)
        z = z1
        if z2 > z or z != z:  # NaN-ignoring max
            z = z2
        if z > best:
            best = z
            arg = i
    threshold = intercept - constant * math.log10(min(max(alpha, 1.0), 1.0e4))
    return best > threshold, arg


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_rate(r, s, e, alpha, pattern, pairs, rtab):
    """Rate (e/s, ≥ 0) for the covariance of the differences of segment ``s..e``.

    With three or more differences, the lowest of the segment's rates without one
    double difference, ``min_k (R_e − R_s − (R_{k+2} − R_k)) / (t̄_e − t̄_s − Δt2_k)``:
    a cosmic ray, in one difference or split over two, is left out of at least one of
    them. Otherwise the segment slope ``alpha``. Negative or NaN gives 0. ``rtab``
    holds the reciprocals (:func:`_rate_table`) when it is (N, N, N).
    """
    if e - s >= 3:
        rtot = r[e] - r[s]
        span = pattern[_TBAR, e] - pattern[_TBAR, s]
        tabulated = rtab.shape[0] > 1
        f = np.inf
        for i in range(s, e - 1):
            inv = rtab[s, e, i] if tabulated else 1.0 / (span - pairs[_DOUBLE, _DT, i])
            f = min(f, (rtot - (r[i + 2] - r[i])) * inv)
    else:
        f = alpha
    return f if f > 0.0 else 0.0


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_solve(r, s, e, sigma2, f, pairs, work):
    """Generalised-least-squares fit of the differences of segment ``s..e`` (m ≥ 1).

    Differences ``D_j = R_{s+j+1} − R_{s+j}`` (``j = 0..m−1``, ``m = e − s``) with
    ``E[D] = α Δt`` and the tridiagonal covariance ``C`` at rate ``f``:
    ``C_jj = σ² (1/n_a + 1/n_b) + f (τ_b + τ_a − 2 t̄_a)``,
    ``C_{j,j+1} = −σ²/n_b + f (t̄_b − τ_b)``. ``C = L diag(d) Lᵀ`` is factorised
    without pivoting (it is positive definite); ``x = C⁻¹Δt``, ``y = C⁻¹D``,
    ``c0 = Δt·x``, ``(C⁻¹)_jj = S_j = 1/d_j + l_j² S_{j+1}``,
    ``(C⁻¹)_{j,j+1} = −l_j S_{j+1}``, ``P = C⁻¹ − x xᵀ/c0``.

    Leaves ``v = P D`` in ``work[_WY]``, ``P_jj`` in ``work[_WRD]``, and ``l``, ``S``,
    ``x`` in ``work[_WL]``, ``work[_WS]``, ``work[_WX]``; returns ``1/c0``. The same
    expressions, in the same order, as :func:`_gls_block`.
    """
    m = e - s
    cop = 0.0
    for j in range(m):
        i = s + j
        cd = sigma2 * pairs[_SINGLE, _RN, i] + f * pairs[_SINGLE, _VS, i]
        d = r[i + 1] - r[i]
        if j == 0:
            rd = 1.0 / cd
            wx = pairs[_SINGLE, _DT, i]
            wy = d
        else:
            lp = work[_WL, j - 1]
            rd = 1.0 / (cd - lp * cop)
            wx = pairs[_SINGLE, _DT, i] - lp * work[_WX, j - 1]
            wy = d - lp * work[_WY, j - 1]
        work[_WRD, j] = rd
        work[_WX, j] = wx
        work[_WY, j] = wy
        cop = sigma2 * pairs[_SINGLE, _ON, i] + f * pairs[_SINGLE, _OP, i]
        work[_WL, j] = cop * rd  # (unused for j = m−1)
    j = m - 1
    rd = work[_WRD, j]
    xv = work[_WX, j] * rd
    yv = work[_WY, j] * rd
    work[_WX, j] = xv
    work[_WY, j] = yv
    work[_WS, j] = rd
    c0 = pairs[_SINGLE, _DT, s + j] * xv
    b = pairs[_SINGLE, _DT, s + j] * yv
    for j in range(m - 2, -1, -1):
        lj = work[_WL, j]
        rd = work[_WRD, j]
        xv = work[_WX, j] * rd - lj * work[_WX, j + 1]
        yv = work[_WY, j] * rd - lj * work[_WY, j + 1]
        work[_WX, j] = xv
        work[_WY, j] = yv
        work[_WS, j] = rd + lj * lj * work[_WS, j + 1]
        c0 += pairs[_SINGLE, _DT, s + j] * xv
        b += pairs[_SINGLE, _DT, s + j] * yv
    ag = b / c0
    ic0 = 1.0 / c0
    for j in range(m):
        xj = work[_WX, j]
        work[_WY, j] = work[_WY, j] - xj * ag
        work[_WRD, j] = work[_WS, j] - xj * xj * ic0
    return ic0


@numba.njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _gls_double(work, j, ic0):
    """``(num, den2)`` of the double statistic ``num/√den2`` at ``j`` (after
    :func:`_gls_solve`): with ``M`` the 2×2 block of ``P`` at ``j, j+1``,
    ``num = 1ᵀ adj(M) v`` and ``den2 = det M · 1ᵀ adj(M) 1``."""
    v1 = work[_WY, j]
    v2 = work[_WY, j + 1]
    p1 = work[_WRD, j]
    p2 = work[_WRD, j + 1]
    q = -(work[_WL, j] * work[_WS, j + 1]) - work[_WX, j] * work[_WX, j + 1] * ic0
    a1 = p2 - q
    a2 = p1 - q
    num = a1 * v1 + a2 * v2
    den2 = (p1 * p2 - q * q) * (a1 + a2)
    return num, den2


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_statistics(r, s, e, sigma2, f, pairs, work):
    """Every generalised-least-squares jump statistic of segment ``s..e``.

    After :func:`_gls_solve`:

    * single ``j`` (a jump in ``D_j``): ``z = v_j / √P_jj`` (the estimate of the jump
      over its standard error), in ``work[_WZ1, j]`` (``m ≥ 2``);
    * double ``j`` (a jump in ``D_j`` or ``D_{j+1}``, i.e. inside resultant ``s+j+1``,
      which drops out): the estimate of the total jump over its standard error,
      :func:`_gls_double`, in ``work[_WZ2, j]`` (``m ≥ 3``, ``j < m−1``).

    NaN where undefined. For tests and diagnostics: :func:`_find_jump_gls` evaluates
    the same expressions, only those that can matter.
    """
    m = e - s
    for j in range(m):
        work[_WZ1, j] = _NAN
        work[_WZ2, j] = _NAN
    if m < 2:
        return
    ic0 = _gls_solve(r, s, e, sigma2, f, pairs, work)
    for j in range(m):
        v = work[_WY, j]
        p = work[_WRD, j]
        work[_WZ1, j] = v / math.sqrt(p) if p > 0.0 else _NAN
    if m >= 3:
        for j in range(m - 1):
            num, den2 = _gls_double(work, j, ic0)
            work[_WZ2, j] = num / math.sqrt(den2) if den2 > 0.0 else _NAN


@numba.njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _below(num, var, tt):
    """True if ``num/√var ≤ √tt`` is proven by ``num ≤ 0`` or ``num² ≤ tt·var``.

    Only for ``tt > 0`` and ``var`` in ``[_PRETEST_VMIN, _PRETEST_VMAX]``; the products
    are exact to a relative 2⁻⁵², far inside the factor ``_PRETEST_SQ`` in ``tt``.
    """
    safe = (tt > 0.0) & (var > _PRETEST_VMIN) & (var < _PRETEST_VMAX)
    return safe & ((num <= 0.0) | (num * num <= tt * var))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_bound(r, s, e, alpha, sigma2, f, pairs, ldl):
    """χ² bound of :func:`_gls_bound_block` for segment ``s..e`` (factors ``ldl[s]``):
    ``(usable, a b, a f + b σ²)``; every gls statistic is proven ``≤ √tt`` when
    ``usable`` and ``a b ≤ tt (1 − _BOUND_MARGIN) (a f + b σ²)``. Not usable for a
    start without factors (long ramps)."""
    if s >= ldl.shape[0]:
        return False, 0.0, 0.0
    wr = 0.0
    wp = 0.0
    ar = 0.0
    bp = 0.0
    span = 0.0
    for i in range(s, e):
        lr = ldl[s, _LR, i - 1] if i > s else 0.0
        lp = ldl[s, _LP, i - 1] if i > s else 0.0
        d = r[i + 1] - r[i]
        res = d - alpha * pairs[_SINGLE, _DT, i]
        wr = res - lr * wr
        ar += wr * wr * ldl[s, _RDR, i]
        wp = res - lp * wp
        bp += wp * wp * ldl[s, _RDP, i]
        span += pairs[_SINGLE, _DT, i]
    lhs = ar * bp
    ramp = alpha * span
    usable = (ldl[0, _LOK, 0] > 0.0) & (lhs < _BOUND_MAX) & (ramp * ramp <= _BOUND_DMAX * sigma2)
    return usable, lhs, ar * f + bp * sigma2


@numba.njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _lazy_z(num, var, tt):
    """``num/√var`` (NaN unless ``var > 0``), or −inf where :func:`_below` proves it
    ``≤ √tt``."""
    if _below(num, var, tt):
        return -np.inf
    return num / math.sqrt(var) if var > 0.0 else _NAN


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _find_jump_gls(r, s, e, alpha, sigma2, pattern, pairs, ldl, rtab, jump, work):
    """:func:`_find_jump` with the generalised-least-squares statistics.

    Same candidates (last single difference first, then per pair the larger of its
    single and double statistic, NaN ignored), same threshold ``T(α)`` on the segment
    slope ``alpha``. A segment whose statistics the χ² bound (:func:`_gls_bound`) proves
    below the lowest threshold, or then ``≤ T``, is not solved; a statistic proven
    ``≤ T`` (:func:`_below`) is not evaluated: it can neither pass nor be the largest
    of a passing set. Fewer than two differences: no statistic, no jump.
    """
    m = e - s
    if m < 2:
        return False, e - 1
    intercept, constant, t2 = jump[1], jump[2], jump[_T2]
    f = _gls_rate(r, s, e, alpha, pattern, pairs, rtab)
    usable, lhs, q = _gls_bound(r, s, e, alpha, sigma2, f, pairs, ldl)
    if usable & (t2 > 0.0) & (lhs <= t2 * (1.0 - _BOUND_MARGIN) * q):
        return False, e - 1
    threshold = intercept - constant * math.log10(min(max(alpha, 1.0), 1.0e4))
    tt = threshold * threshold * _PRETEST_SQ if threshold > 0.0 else -1.0
    if usable & (tt > 0.0) & (lhs <= tt * (1.0 - _BOUND_MARGIN) * q):
        return False, e - 1
    ic0 = _gls_solve(r, s, e, sigma2, f, pairs, work)
    return _gls_pick(work, m, ic0, threshold, tt, s)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_pick(work, m, ic0, threshold, tt, s):
    """Jump decision of a solved segment (:func:`_gls_solve`, ``m ≥ 2`` differences,
    first resultant ``s``): ``(largest statistic > threshold, j0)``, candidates in the
    order of :func:`_find_jump`. ``tt`` is ``threshold² · _PRETEST_SQ`` (or < 0)."""
    best = -np.inf
    arg = s + m - 1
    z = _lazy_z(work[_WY, m - 1], work[_WRD, m - 1], tt)
    if z == z:
        best = z
    for j in range(m - 1):
        z = _lazy_z(work[_WY, j], work[_WRD, j], tt)
        if m >= 3:
            num, den2 = _gls_double(work, j, ic0)
            z2 = _lazy_z(num, den2, tt)
            if z2 > z or z != z:  # NaN-ignoring max
                z = z2
        if z > best:
            best = z
            arg = s + j
    return best > threshold, arg


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fit_pixel(r, good, sigma2, pattern, pairs, coef, segv, ldl, rtab, jump, stack, cbuf, work):
    """Fit one pixel (resultants already in electrons) with a LIFO stack of segments.

    ``good`` marks the usable resultants on entry (the segments are its maximal runs,
    pushed in time order); both resultants of every detected jump pair are set to
    False in it. ``stack`` is (2, N+1) int64 scratch, ``cbuf`` (N,) and ``work``
    (_NWORK, N) float64 scratch. Returns
    ``(sum_w, sum_w_alpha, sum_w2_vr, sum_w2_vs, njump)`` over the accepted segments,
    with ``w = 1 / V_R`` of each segment.
    """
    use_jump, intercept, constant, t2 = jump[0], jump[1], jump[2], jump[_T2]
    gls = jump[_GLS]
    nres = r.shape[0]
    top = 0
    i = 0
    while i < nres:
        if good[i]:
            j = i
            while j + 1 < nres and good[j + 1]:
                j += 1
            stack[0, top] = i
            stack[1, top] = j
            top += 1
            i = j + 1
        else:
            i += 1
    sw = 0.0
    swa = 0.0
    swr = 0.0
    sws = 0.0
    njump = 0
    while top > 0:
        top -= 1
        s = stack[0, top]
        e = stack[1, top]
        alpha, vr, vs = _fit_segment(r, s, e, sigma2, coef, segv, pattern, cbuf)
        if alpha != alpha:
            continue
        if use_jump and e > s:
            is_jump = False
            j0 = e - 1
            if gls:
                is_jump, j0 = _find_jump_gls(
                    r, s, e, alpha, sigma2, pattern, pairs, ldl, rtab, jump, work
                )
            else:
                kappa = -alpha / (pattern[_TBAR, e] - pattern[_TBAR, s])
                if t2 < 0.0 or _segment_may_jump(r, s, e, alpha, sigma2, kappa, pairs, t2):
                    is_jump, j0 = _find_jump(
                        r, s, e, alpha, sigma2, kappa, pairs, intercept, constant
                    )
            if is_jump:
                good[j0] = False
                good[j0 + 1] = False
                njump += 1
                if j0 > s:
                    stack[0, top] = s
                    stack[1, top] = j0 - 1
                    top += 1
                if j0 + 1 < e:
                    stack[0, top] = j0 + 2
                    stack[1, top] = e
                    top += 1
                continue
        w = 1.0 / vr if vr > 0.0 else 0.0
        sw += w
        swa += w * alpha
        swr += w * w * vr
        sws += w * w * vs
    return sw, swa, swr, sws, njump


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _store(y, x, sw, swa, swr, sws, g, d, out):
    """Combine the accepted segments of a pixel and write its outputs (DN/s units)."""
    slope, err, var_poisson, var_rnoise = out
    if sw > 0.0:
        alpha = swa / sw
        vr = swr / (sw * sw)
        vp = sws / (sw * sw) * max(alpha, 0.0)
        g2 = g * g
        slope[y, x] = (alpha - d) / g
        var_rnoise[y, x] = vr / g2
        var_poisson[y, x] = vp / g2
        err[y, x] = math.sqrt((vr + vp) / g2)
    else:
        slope[y, x] = 0.0
        err[y, x] = 0.0
        var_poisson[y, x] = 0.0
        var_rnoise[y, x] = 0.0


# --------------------------------------------------------------------------- blocks


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _pick(k, c):
    """``c[k]`` for ``k`` in 0..5 as a chain of selects (vectorises; no gather)."""
    v = c[5]
    v = c[4] if k == 4 else v
    v = c[3] if k == 3 else v
    v = c[2] if k == 2 else v
    v = c[1] if k == 1 else v
    return c[0] if k == 0 else v


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _copy_row_dq(y, groupdq, dq_out, flagged):
    """Copy row ``y`` of groupdq to ``dq_out``; ``flagged[x]`` = OR over resultants."""
    nres, _, nx = groupdq.shape
    for x in range(nx):
        flagged[x] = 0
    for i in range(nres):
        for x in range(nx):
            q = groupdq[i, y, x]
            dq_out[i, y, x] = q
            flagged[x] |= q


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _load_block(y, x0, nb, resultants, calib, has_dark, pattern, rb, fb, ub, flagged):
    """Copy the pixels ``x0..x0+nb-1`` of row ``y`` to electrons (float64).

    ``calib = (read_noise, gain, dark)``; ``flagged`` is the OR of the groupdq of the
    row (:func:`_copy_row_dq`). Fills ``rb[i, x] = R_i g + d t̄_i``, the gain, σ², dark
    (e/s), the calibration state and the groupdq OR of each pixel. Every loop runs
    over ``x`` with a single output, so that it vectorises.
    """
    read_noise, gain, dark = calib
    nres = resultants.shape[0]
    for x in range(nb):
        fb[_G, x] = np.float64(gain[y, x0 + x])
    for x in range(nb):
        fb[_S2, x] = (np.float64(read_noise[y, x0 + x]) * fb[_G, x]) ** 2
    if has_dark:
        for x in range(nb):
            d = np.float64(dark[y, x0 + x]) * fb[_G, x]
            fb[_D, x] = d if d - d == 0.0 else 0.0  # non-finite: 0
    else:
        for x in range(nb):
            fb[_D, x] = 0.0
    for x in range(nb):
        g = fb[_G, x]
        rn = np.float64(read_noise[y, x0 + x])
        ok = (g > 0.0) & (rn > 0.0) & (g - g == 0.0) & (rn - rn == 0.0)
        ub[_ST, x] = _CLEAN if ok else _BAD_CALIBRATION
    for x in range(nb):
        ub[_OR, x] = flagged[x0 + x]
    for i in range(nres):
        ti = pattern[_TBAR, i]
        for x in range(nb):
            rb[i, x] = np.float64(resultants[i, y, x0 + x]) * fb[_G, x] + fb[_D, x] * ti


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fast_block(nb, x0, coef, segv, tabs, jump, levels, rb, fb, ub, r, work, gbuf, cand):
    """Whole-ramp fit and jump search of the pixels of a block.

    ``coef`` (6, N) and ``segv`` (6, 3) are the whole-ramp tables, ``tabs`` all the
    tables of :func:`_prepare`. Computed for every pixel (meaningful for the clean
    ones): slope, read variance and ``V_S`` of the whole ramp. A pixel with a flagged
    or non-finite resultant or a singular fit gets the ``_SLOW`` state; one with a
    jump in its whole ramp ``_SLOW | _JUMPED`` and the pair in ``fb[_J0]``. With the
    gls statistic and a positive lowest threshold, the pixels that may have a jump are
    appended to the row's candidates instead (:func:`_gls_pretest`,
    ``gbuf = (wb, buf)``, ``cand`` of them so far; ``levels``: :func:`_threshold_bins`),
    and decided by :func:`_gls_flush`. Returns the number of candidates. ``work``
    (_NWORK, N) is scratch.
    """
    use_jump, intercept, constant, t2 = jump[0], jump[1], jump[2], jump[_T2]
    gls = jump[_GLS]
    pattern, pairs, ldl, rtab = tabs[0], tabs[1], tabs[6], tabs[7]
    nres = rb.shape[0]
    last = nres - 1
    vr6 = (segv[0, 0], segv[1, 0], segv[2, 0], segv[3, 0], segv[4, 0], segv[5, 0])
    vs6 = (segv[0, 1], segv[1, 1], segv[2, 1], segv[3, 1], segv[4, 1], segv[5, 1])
    ok6 = (segv[0, 2], segv[1, 2], segv[2, 2], segv[3, 2], segv[4, 2], segv[5, 2])
    for x in range(nb):
        smax = max(rb[last, x] - rb[0, x], 0.0)
        snr = smax / math.sqrt(fb[_S2, x] + smax)
        k = 5 - ((snr < 100.0) + (snr < 50.0) + (snr < 20.0) + (snr < 10.0) + (snr < 5.0))
        fb[_K, x] = k
        fb[_VR, x] = _pick(k, vr6) * fb[_S2, x]
        fb[_VSB, x] = _pick(k, vs6)
    for x in range(nb):
        fb[_A, x] = 0.0
    for i in range(nres):
        c = (coef[0, i], coef[1, i], coef[2, i], coef[3, i], coef[4, i], coef[5, i])
        for x in range(nb):
            fb[_A, x] += _pick(fb[_K, x], c) * rb[i, x]
    for x in range(nb):
        a = fb[_A, x]
        singular = not _pick(fb[_K, x], ok6) > 0.0
        # a non-finite resultant makes the slope non-finite (0·inf is NaN)
        bad = (ub[_OR, x] != 0) | (a - a != 0.0) | singular
        ub[_ST, x] |= _SLOW * np.int64(bad)
    if not use_jump:
        return cand
    if gls:
        if last < 2:  # a single difference has no statistic
            return cand
        if t2 > 0.0:
            wb, buf = gbuf
            return _gls_pretest(
                nb, x0, last, pattern, pairs, ldl[0], levels, rb, fb, ub, wb, buf, cand
            )
        for x in range(nb):
            ub[_CA, x] = 1
    else:
        span = pattern[_TBAR, last] - pattern[_TBAR, 0]
        for x in range(nb):
            fb[_KAP, x] = -fb[_A, x] / span
        if t2 > 0.0:
            _block_pretest(nb, last, pairs, jump, rb, fb, ub)
        else:
            for x in range(nb):
                ub[_CA, x] = 1
    for x in range(nb):
        if ub[_CA, x] and ub[_ST, x] == _CLEAN:
            for i in range(nres):
                r[i] = rb[i, x]
            if gls:
                is_jump, j0 = _find_jump_gls(
                    r, _ZERO, last, fb[_A, x], fb[_S2, x], pattern, pairs, ldl, rtab, jump, work
                )
            else:
                is_jump, j0 = _find_jump(
                    r, _ZERO, last, fb[_A, x], fb[_S2, x], fb[_KAP, x], pairs, intercept, constant
                )
            if is_jump:
                ub[_ST, x] = _SLOW | _JUMPED
                fb[_J0, x] = j0
    return cand


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _block_pretest(nb, last, pairs, jump, rb, fb, ub):
    """Set ``ub[_CA, x]`` where a whole-ramp jump statistic may exceed the threshold.

    The test of :func:`_segment_may_jump` with rounding allowances that hold for every
    pair of a pixel (from ``max_i |r_i|`` and the largest ``1/Δt``, ``_PA`` and
    ``|_PB|``), folded into per-pixel constants: with ``n_hi = diff/Δt − α + E_n`` and
    ``t2·v_lo = t2·(σ²·A + α·B + κ − E_v)``, a pair is cleared when
    ``t2·v_lo > t2·_PRETEST_VMIN`` and ``max(n_hi, 0)² ≤ t2·v_lo``.
    """
    t2, idt_max, a_max, b_max = jump[_T2], jump[_IDT_MAX], jump[_A_MAX], jump[_B_MAX]
    nres = last + 1
    for x in range(nb):  # (a scalar maximum per pixel is faster than a loop over i)
        m = 0.0
        for i in range(nres):
            v = abs(rb[i, x])
            m = v if v > m else m  # (clean pixels have no NaN)
        fb[_MG, x] = m
    for x in range(nb):
        a = fb[_A, x]
        s2 = fb[_S2, x]
        kap = fb[_KAP, x]
        e_num = _PRETEST_EPS * (2.0 * fb[_MG, x] * idt_max + abs(a))
        var_max = s2 * a_max + abs(a) * b_max + abs(kap)
        fb[_AP, x] = e_num - a
        fb[_S2T, x] = t2 * s2
        fb[_AT, x] = t2 * a
        fb[_KT, x] = t2 * (kap - _PRETEST_EPS * var_max)
        ub[_CA, x] = np.int64(not (var_max < 0.5 * _PRETEST_VMAX))  # also NaN
    wmin = t2 * _PRETEST_VMIN
    for kind in range(2):
        for i in range(last - kind):
            idt = pairs[kind, _IDT, i]
            pa = pairs[kind, _PA, i]
            pb = pairs[kind, _PB, i]
            for x in range(nb):
                n_hi = (rb[i + 1 + kind, x] - rb[i, x]) * idt + fb[_AP, x]
                n_pos = n_hi if not n_hi <= 0.0 else 0.0  # NaN stays
                w = fb[_S2T, x] * pa + fb[_AT, x] * pb + fb[_KT, x]
                clear = (w > wmin) & (n_pos * n_pos <= w)
                ub[_CA, x] |= np.int64(not clear)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_rate_block(nb, last, pattern, pairs, rb, alpha, rtot, f0):
    """:func:`_gls_rate` of the whole ramp of every pixel of a block, into ``f0``.

    ``alpha``, ``rtot`` (scratch) and ``f0`` are rows of the block scratch: loops over
    ``x`` on one-dimensional arrays vectorise, indexing rows of a 2-D array in them
    does not.
    """
    if last >= 3:
        for x in range(nb):
            rtot[x] = rb[last, x] - rb[0, x]
        for x in range(nb):
            f0[x] = np.inf
        span = pattern[_TBAR, last] - pattern[_TBAR, 0]
        for i in range(last - 1):
            inv = 1.0 / (span - pairs[_DOUBLE, _DT, i])
            for x in range(nb):
                f0[x] = min(f0[x], (rtot[x] - (rb[i + 2, x] - rb[i, x])) * inv)
        for x in range(nb):
            f = f0[x]
            f0[x] = f if f > 0.0 else 0.0
    else:
        for x in range(nb):
            f = alpha[x]
            f0[x] = f if f > 0.0 else 0.0


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _threshold_levels(nb, alpha, t2bins, t2x):
    """``t2x[x]``: the squared lower bound of ``T(alpha[x])`` on its slope bin."""
    for x in range(nb):
        t2x[x] = t2bins[0]
    for k in range(1, _NBINS):
        edge = _ALPHA_EDGES[k - 1]
        level = t2bins[k]
        for x in range(nb):
            t2x[x] = level if alpha[x] > edge else t2x[x]


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_bound_block(nb, last, pattern, pairs, ldl0, rb, pix, wb, ca):
    """χ² pre-test of the gls statistics of the whole ramp: ``ca[x]`` = 1 unless every
    statistic of pixel ``x`` is proven ``≤`` its threshold.

    ``pix = (alpha, s2, f0, t2x)`` (rows of the block scratch: segment slope, σ², the
    rate of the covariance, :func:`_gls_rate_block`, and the threshold level,
    :func:`_threshold_levels`), ``wb`` (_NB, _BLOCK) scratch.

    Every gls statistic squared is at most the generalised χ² of the straight-line fit,
    ``min_α rᵀC⁻¹r`` with ``r = D − α Δt``, so at most ``rᵀC⁻¹r`` at the segment slope.
    With ``C = σ² C_R + f C_P`` (both positive definite), ``rᵀC⁻¹r ≤ a b / (a f + b σ²)``
    where ``a = rᵀC_R⁻¹r``, ``b = rᵀC_P⁻¹r`` (``rᵀ(A+B)⁻¹r ≤ λ² rᵀA⁻¹r +
    (1−λ)² rᵀB⁻¹r``, minimised over ``λ``); ``a`` and ``b`` use the fixed factors
    ``ldl0`` (whole ramp), so no division is needed. ``t2x`` includes a relative margin
    ``_BOUND_MARGIN`` for the rounding of the bound and of the exact statistics.
    """
    alpha, s2, f0, t2x = pix
    wr = wb[_BWR]
    wp = wb[_BWP]
    ar = wb[_BAR]
    bp = wb[_BBP]
    for x in range(nb):
        wr[x] = 0.0
    for x in range(nb):
        wp[x] = 0.0
    for x in range(nb):
        ar[x] = 0.0
    for x in range(nb):
        bp[x] = 0.0
    for j in range(last):
        dt = pairs[_SINGLE, _DT, j]
        rdr = ldl0[_RDR, j]
        rdp = ldl0[_RDP, j]
        lr = ldl0[_LR, j - 1] if j > 0 else 0.0
        lp = ldl0[_LP, j - 1] if j > 0 else 0.0
        for x in range(nb):
            res = (rb[j + 1, x] - rb[j, x]) - alpha[x] * dt
            w1 = res - lr * wr[x]
            wr[x] = w1
            ar[x] += w1 * w1 * rdr
            w2 = res - lp * wp[x]
            wp[x] = w2
            bp[x] += w2 * w2 * rdp
    span = pattern[_TBAR, last] - pattern[_TBAR, 0]
    for x in range(nb):
        a = ar[x]
        b = bp[x]
        lhs = a * b
        rhs = t2x[x] * (a * f0[x] + b * s2[x])
        ramp = alpha[x] * span
        clear = (t2x[x] > 0.0) & (lhs < _BOUND_MAX) & (lhs <= rhs)
        clear &= ramp * ramp <= _BOUND_DMAX * s2[x]
        ca[x] = np.int64(not clear)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_block(nb, last, pairs, rb, pix, gw, ca):
    """``ca[x] |= 1`` where a gls statistic of the whole ramp may exceed ``√t2x[x]``.

    ``pix = (s2, f0, t2x, ag, ic0)`` (``ag``, ``ic0`` scratch), ``gw`` (_NW, N, _BLOCK).
    The arithmetic of :func:`_gls_solve` and :func:`_gls_double` for resultants
    ``0..last`` (``last ≥ 2``), vectorised over the pixels, then the test of
    :func:`_below` on every statistic: only the final square roots and divisions of
    the exact path are skipped, on values it computes identically.
    """
    s2, f0, t2x, ag, ic0 = pix
    m = last
    for j in range(m):
        rn = pairs[_SINGLE, _RN, j]
        vs = pairs[_SINGLE, _VS, j]
        dt = pairs[_SINGLE, _DT, j]
        on = pairs[_SINGLE, _ON, j]
        op = pairs[_SINGLE, _OP, j]
        rdj = gw[_WRD, j]
        xj = gw[_WX, j]
        yj = gw[_WY, j]
        lj = gw[_WL, j]
        r0 = rb[j]
        r1 = rb[j + 1]
        if j == 0:
            for x in range(nb):
                rd = 1.0 / (s2[x] * rn + f0[x] * vs)
                rdj[x] = rd
                xj[x] = dt
                yj[x] = r1[x] - r0[x]
                lj[x] = (s2[x] * on + f0[x] * op) * rd
        else:
            onp = pairs[_SINGLE, _ON, j - 1]
            opp = pairs[_SINGLE, _OP, j - 1]
            lp = gw[_WL, j - 1]
            xp = gw[_WX, j - 1]
            yp = gw[_WY, j - 1]
            for x in range(nb):
                cd = s2[x] * rn + f0[x] * vs
                cop = s2[x] * onp + f0[x] * opp
                rd = 1.0 / (cd - lp[x] * cop)
                rdj[x] = rd
                xj[x] = dt - lp[x] * xp[x]
                yj[x] = (r1[x] - r0[x]) - lp[x] * yp[x]
                lj[x] = (s2[x] * on + f0[x] * op) * rd
    j = m - 1
    rdj = gw[_WRD, j]
    xj = gw[_WX, j]
    yj = gw[_WY, j]
    sj = gw[_WS, j]
    dt = pairs[_SINGLE, _DT, j]
    for x in range(nb):
        rd = rdj[x]
        xv = xj[x] * rd
        yv = yj[x] * rd
        xj[x] = xv
        yj[x] = yv
        sj[x] = rd
        ic0[x] = dt * xv  # c0 = Δt·x (summed from the last difference down), then 1/c0
        ag[x] = dt * yv  # Δt·y, then the slope
    for j in range(m - 2, -1, -1):
        lj = gw[_WL, j]
        rdj = gw[_WRD, j]
        xj = gw[_WX, j]
        yj = gw[_WY, j]
        sj = gw[_WS, j]
        xn = gw[_WX, j + 1]
        yn = gw[_WY, j + 1]
        sn = gw[_WS, j + 1]
        dt = pairs[_SINGLE, _DT, j]
        for x in range(nb):
            lv = lj[x]
            rd = rdj[x]
            xv = xj[x] * rd - lv * xn[x]
            yv = yj[x] * rd - lv * yn[x]
            xj[x] = xv
            yj[x] = yv
            sj[x] = rd + lv * lv * sn[x]
            ic0[x] += dt * xv
            ag[x] += dt * yv
    for x in range(nb):
        c0 = ic0[x]
        ag[x] = ag[x] / c0
        ic0[x] = 1.0 / c0
    for j in range(m):
        xj = gw[_WX, j]
        yj = gw[_WY, j]
        sj = gw[_WS, j]
        pj = gw[_WRD, j]
        for x in range(nb):
            xv = xj[x]
            v = yj[x] - xv * ag[x]
            p = sj[x] - xv * xv * ic0[x]
            yj[x] = v
            pj[x] = p
            ca[x] |= np.int64(not _below(v, p, t2x[x]))
    if m < 3:
        return
    for j in range(m - 1):
        v1 = gw[_WY, j]
        v2 = gw[_WY, j + 1]
        p1 = gw[_WRD, j]
        p2 = gw[_WRD, j + 1]
        lj = gw[_WL, j]
        sn = gw[_WS, j + 1]
        xa = gw[_WX, j]
        xb = gw[_WX, j + 1]
        for x in range(nb):
            q = -(lj[x] * sn[x]) - xa[x] * xb[x] * ic0[x]
            a1 = p2[x] - q
            a2 = p1[x] - q
            num = a1 * v1[x] + a2 * v2[x]
            den2 = (p1[x] * p2[x] - q * q) * (a1 + a2)
            ca[x] |= np.int64(not _below(num, den2, t2x[x]))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_pretest(nb, x0, last, pattern, pairs, ldl0, levels, rb, fb, ub, wb, buf, cand):
    """χ² pre-test of the gls statistics on the whole ramp of the pixels of a block.

    Sets ``fb[_F0]``, the rate of the covariance (:func:`_gls_rate_block`). The clean
    pixels that the χ² bound (:func:`_gls_bound_block`) does not clear are appended to
    the row's candidates ``buf = (column, resultants, scalars)`` from index ``cand``
    (which must leave room for ``nb``), for :func:`_gls_flush`. Returns the new count.
    ``ub[_CA]`` is left 0.
    """
    bx, rc, fc = buf
    _gls_rate_block(nb, last, pattern, pairs, rb, fb[_A], fb[_RX], fb[_F0])
    _threshold_levels(nb, fb[_A], levels, fb[_T2X])
    ca = ub[_CA]
    if ldl0[_LOK, 0] > 0.0:
        pix = (fb[_A], fb[_S2], fb[_F0], fb[_T2X])
        _gls_bound_block(nb, last, pattern, pairs, ldl0, rb, pix, wb, ca)
    else:
        for x in range(nb):
            ca[x] = 1
    for x in range(nb):
        if ca[x] and ub[_ST, x] == _CLEAN:
            bx[cand] = x0 + x
            for i in range(last + 1):
                rc[i, cand] = rb[i, x]
            for row in (_S2, _F0, _T2X, _A, _G, _D):
                fc[row, cand] = fb[row, x]
            cand += 1
        ca[x] = 0
    return cand


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gls_flush(nk, jump, pairs, buf, gw, cak, work):
    """Jump decisions of the ``nk`` candidates of a row gathered by :func:`_gls_pretest`.

    :func:`_gls_block` on all of them (vectorised), then for those it does not clear
    the exact decision (:func:`_gls_pick`, as in :func:`_find_jump_gls`) on the same
    solution. On return ``cak[k]`` is ``j0 + 1`` for a candidate with a jump at pair
    ``(j0, j0+1)`` of its whole ramp, else 0.
    """
    intercept, constant = jump[1], jump[2]
    _, rc, fc = buf
    last = rc.shape[0] - 1
    for k in range(nk):
        cak[k] = 0
    pix = (fc[_S2], fc[_F0], fc[_T2X], fc[_AG], fc[_IC0])
    _gls_block(nk, last, pairs, rc, pix, gw, cak)
    for k in range(nk):
        if not cak[k]:
            continue
        cak[k] = 0
        alpha = fc[_A, k]
        threshold = intercept - constant * math.log10(min(max(alpha, 1.0), 1.0e4))
        tt = threshold * threshold * _PRETEST_SQ if threshold > 0.0 else -1.0
        for row in range(_NW):
            for j in range(last):
                work[row, j] = gw[row, j, k]
        is_jump, j0 = _gls_pick(work, last, fc[_IC0, k], threshold, tt, _ZERO)
        if is_jump:
            cak[k] = j0 + 1


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _refit_jumped(y, nk, buf, cak, tabs, jump, scratch, dq_out, jump_flag, out):
    """Fit the candidates of row ``y`` with a jump in the whole ramp (``cak[k] = j0+1``,
    :func:`_gls_flush`) from the two parts around the pair (:func:`_fit_pixel`); set
    their jump flags in ``dq_out`` and overwrite their outputs.
    ``scratch = (r, good, stack, cbuf, work)`` of :func:`_fit_pixel`."""
    pattern, pairs, coef, segv, ldl, rtab = tabs[0], tabs[1], tabs[2], tabs[3], tabs[6], tabs[7]
    r, good, stack, cbuf, work = scratch
    bx, rc, fc = buf
    nres = rc.shape[0]
    for k in range(nk):
        if cak[k] == 0:
            continue
        j0 = cak[k] - 1
        for i in range(nres):
            r[i] = rc[i, k]
            good[i] = True  # a clean pixel: every resultant usable
        good[j0] = False
        good[j0 + 1] = False
        sw, swa, swr, sws, _ = _fit_pixel(
            r, good, fc[_S2, k], pattern, pairs, coef, segv, ldl, rtab, jump, stack, cbuf, work
        )
        x = bx[k]
        for i in range(nres):
            if not good[i]:
                dq_out[i, y, x] |= jump_flag
        _store(y, x, sw, swa, swr, sws, fc[_G, k], fc[_D, k], out)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _store_block(y, x0, nb, fb, out):
    """Outputs of every pixel of a block as one accepted whole-ramp segment.

    Same arithmetic as :func:`_fit_pixel` then :func:`_store`; the pixels that are not
    clean are overwritten afterwards.
    """
    slope, err, var_poisson, var_rnoise = out
    for x in range(nb):
        v_r = fb[_VR, x]
        w = 1.0 / v_r if v_r > 0.0 else 0.0
        sw = 0.0 + w
        swa = 0.0 + w * fb[_A, x]
        swr = 0.0 + w * w * v_r
        sws = 0.0 + w * w * fb[_VSB, x]
        g = fb[_G, x]
        a = swa / sw
        vr = swr / (sw * sw)
        vp = sws / (sw * sw) * max(a, 0.0)
        g2 = g * g
        pos = sw > 0.0
        slope[y, x0 + x] = (a - fb[_D, x]) / g if pos else 0.0
        var_rnoise[y, x0 + x] = vr / g2 if pos else 0.0
        var_poisson[y, x0 + x] = vp / g2 if pos else 0.0
        err[y, x0 + x] = math.sqrt((vr + vp) / g2) if pos else 0.0


# --------------------------------------------------------------------------- driver


@numba.njit(cache=True, fastmath=False, error_model="numpy", parallel=True)
def _fit_cube(data, calib, has_dark, tabs, jump, levels, jump_flag, out):
    """Fit every pixel of a cube; outputs written in place (DN/s units). Rows in parallel.

    ``data = (resultants (N, ny, nx) float32, groupdq uint8, dq_out uint8)``,
    ``calib = (read_noise, gain, dark)`` float32, ``tabs``, ``jump`` and ``levels`` from
    :func:`_prepare`, ``out = (slope, err, var_poisson, var_rnoise)`` (ny, nx)
    float32; ``dq_out`` receives ``groupdq`` with ``jump_flag`` added on jump pairs.
    """
    for y in numba.prange(data[0].shape[1]):
        _fit_row(np.int64(y), data, calib, has_dark, tabs, jump, levels, jump_flag, out)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fit_row(y, data, calib, has_dark, tabs, jump, levels, jump_flag, out):
    """Fit the pixels of row ``y``, a block of ``_BLOCK`` pixels at a time."""
    resultants, groupdq, dq_out = data
    pattern, pairs, coef, segv, coef_full, segv_full, ldl, rtab = tabs
    slope, err, var_poisson, var_rnoise = out
    nres, _, nx = resultants.shape
    fast = nres >= 2
    rb = np.empty((nres, _BLOCK))
    fb = np.empty((_NFB, _BLOCK))
    ub = np.empty((_NUB, _BLOCK), dtype=np.int64)
    r = np.empty(nres)
    good = np.empty(nres, dtype=np.bool_)
    stack = np.empty((2, nres + 1), dtype=np.int64)
    cbuf = np.empty(nres)
    work = np.empty((_NWORK, nres))
    # gls: candidates of the whole row, decided a block's worth at a time
    gls = fast and jump[0] and jump[_GLS] and nres >= 3 and jump[_T2] > 0.0
    cap = _BLOCK if gls else 1
    wb = np.empty((_NB, cap))
    buf = (np.empty(cap, dtype=np.int64), np.empty((nres, cap)), np.empty((_NFB, cap)))
    cak = np.empty(cap, dtype=np.int64)
    gw = np.empty((_NW, nres, cap))
    pscratch = (r, good, stack, cbuf, work)
    cand = _ZERO  # (int64 constants: no second, literal-typed compilation)
    flagged = np.empty(nx, dtype=np.uint8)
    _copy_row_dq(y, groupdq, dq_out, flagged)
    for x0 in range(0, nx, _BLOCK):
        nb = min(_BLOCK, nx - x0)
        _load_block(y, x0, nb, resultants, calib, has_dark, pattern, rb, fb, ub, flagged)
        if fast:
            if gls and cand + nb > cap:
                _gls_flush(cand, jump, pairs, buf, gw, cak, work)
                _refit_jumped(y, cand, buf, cak, tabs, jump, pscratch, dq_out, jump_flag, out)
                cand = _ZERO
            gbuf = (wb, buf)
            cand = _fast_block(
                nb, x0, coef_full, segv_full, tabs, jump, levels, rb, fb, ub, r, work, gbuf, cand
            )
            _store_block(y, x0, nb, fb, out)
        for x in range(nb):
            st = ub[_ST, x]
            if st == _CLEAN and fast:
                continue
            if st & _BAD_CALIBRATION:
                slope[y, x0 + x] = np.nan
                err[y, x0 + x] = np.nan
                var_poisson[y, x0 + x] = np.nan
                var_rnoise[y, x0 + x] = np.nan
                continue
            for i in range(nres):
                r[i] = rb[i, x]
                v = resultants[i, y, x0 + x]
                good[i] = groupdq[i, y, x0 + x] == 0 and math.isfinite(v)
            if st & _JUMPED:  # resume after the whole ramp's jump: its two parts
                j0 = np.int64(fb[_J0, x])
                good[j0] = False
                good[j0 + 1] = False
            sw, swa, swr, sws, njump = _fit_pixel(
                r, good, fb[_S2, x], pattern, pairs, coef, segv, ldl, rtab, jump, stack, cbuf, work
            )
            if njump > 0 or st & _JUMPED:
                for i in range(nres):
                    v = resultants[i, y, x0 + x]
                    if groupdq[i, y, x0 + x] == 0 and math.isfinite(v) and not good[i]:
                        dq_out[i, y, x0 + x] |= jump_flag
            _store(y, x0 + x, sw, swa, swr, sws, fb[_G, x], fb[_D, x], out)
    if cand > 0:
        _gls_flush(cand, jump, pairs, buf, gw, cak, work)
        _refit_jumped(y, cand, buf, cak, tabs, jump, pscratch, dq_out, jump_flag, out)
