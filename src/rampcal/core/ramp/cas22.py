"""Casertano et al. (2022) optimally weighted fit of uneven ramps with jump detection.

This is the ``algorithm='ols_cas22'`` ramp fitter for Roman WFI resultants. The
per-pixel work runs in a compiled, row-parallel kernel
(:mod:`rampcal.core.ramp._cas22_kernel`: tabulated segment coefficients, a vectorised
whole-ramp pass with a proven pre-test of the jump statistics, a per-pixel path only
for pixels with flags or jumps); this module validates the inputs and allocates the
outputs. ``benchmarks/ramp_fit.py`` times it on full 4096 x 4096 cubes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from rampcal.core.dq import GroupFlag
from rampcal.core.ramp._cas22_kernel import _fit_cube, _prepare
from rampcal.core.ramp.result import RampFitResult
from rampcal.core.readpattern import normalize_read_pattern, resultant_times

log = logging.getLogger(__name__)

#: Default jump threshold ``T(α) = intercept − constant · log10(clip(α, 1, 1e4))``.
DEFAULT_THRESHOLD_INTERCEPT = 5.5
DEFAULT_THRESHOLD_CONSTANT = 1.0 / 3.0

#: Jump statistics of :func:`fit_ramps_cas22`: ``"gls"`` (generalised-least-squares
#: test of a jump, the default) and ``"excess_slope"`` (difference slope minus the
#: segment slope, as in the romancal documentation and Sharma et al. 2023).
JUMP_STATISTICS = ("gls", "excess_slope")
DEFAULT_JUMP_STATISTIC = "gls"

__all__ = [
    "DEFAULT_JUMP_STATISTIC",
    "DEFAULT_THRESHOLD_CONSTANT",
    "DEFAULT_THRESHOLD_INTERCEPT",
    "JUMP_STATISTICS",
    "fit_ramps_cas22",
    "jump_indices",
]


def fit_ramps_cas22(
    resultants: np.ndarray,
    groupdq: np.ndarray,
    read_noise: np.ndarray,
    gain: np.ndarray,
    read_pattern: Sequence[Sequence[int]],
    frame_time: float,
    *,
    use_jump_detection: bool = True,
    threshold_intercept: float | None = DEFAULT_THRESHOLD_INTERCEPT,
    threshold_constant: float | None = DEFAULT_THRESHOLD_CONSTANT,
    dark_rate: np.ndarray | None = None,
    jump_statistic: str = DEFAULT_JUMP_STATISTIC,
) -> RampFitResult:
    """Fit count rates to uneven ramps (Casertano 2022), detecting jumps on the way.

    Parameters
    ----------
    resultants : ndarray (nresultants, ny, nx), real
        Resultants in DN (cast to float32). NaN values are treated as flagged.
    groupdq : ndarray (nresultants, ny, nx), integer (values 0..255)
        Resultant DQ. Any non-zero value excludes the resultant from the fit.
        Not modified.
    read_noise : ndarray (ny, nx), real
        Read noise of a single read (DN).
    gain : ndarray (ny, nx), real
        Gain (e/DN).
    read_pattern : list of lists of int
        1-based read numbers averaged into each resultant (MA table).
    frame_time : float
        Time between reads (s); read ``k`` ends at ``k · frame_time``.
    use_jump_detection : bool
        Run the integrated jump detection (Sharma et al. 2023).
    threshold_intercept, threshold_constant : float or None
        Jump threshold ``T(α) = intercept − constant · log10(clip(α, 1, 1e4))`` with
        ``α`` in e/s. ``None`` selects the default (5.5 and 1/3).
    dark_rate : ndarray (ny, nx) or None
        Dark current (DN/s) that was already subtracted from the resultants. It is
        added back (``R_i + d·t̄_i``) before fitting, so that its shot noise enters
        the weights, the jump statistic and the Poisson variance, and subtracted from
        the fitted slope again. Non-finite values count as 0.
    jump_statistic : {"gls", "excess_slope"}
        Statistic of the jump detection (see Notes). ``"gls"`` (default) tests each
        difference, and each pair of adjacent differences, for a jump by generalised
        least squares with the exact covariance of the differences; ``"excess_slope"``
        is the statistic of the romancal documentation (Sharma et al. 2023), which
        misses more cosmic rays in read-noise-limited ramps.

    Returns
    -------
    RampFitResult
        ``slope``, ``err``, ``var_poisson``, ``var_rnoise`` (float32, DN/s and
        (DN/s)², shape (ny, nx)); ``chisq`` all zero (not computed by this method);
        ``groupdq`` a new uint8 cube equal to the input with ``JUMP_DET`` added on
        both resultants of every detected jump pair.

    Notes
    -----
    Everything is computed in electrons (``R·g``, ``σ = σ_r·g``) and converted back
    (slope/g, variances/g²). Per pixel:

    * Segments are maximal runs of resultants with ``groupdq == 0`` and finite data.
      A segment of one resultant gives no fit.
    * Segment fit: ``S_max = max(R_e − R_s, 0)``, ``S = S_max / sqrt(σ² + S_max)``
      selects the exponent ``P`` (0, 0.4, 1, 3, 6, 10 for ``S`` below 5, 10, 20, 50,
      100 and above); ``w_i = (1+P) n_i / (1 + P n_i) · |(t̄_i − t_mid)/t_scale|^P``;
      ``F_k = Σ w_i t̄_i^k``, ``D = F2 F0 − F1²``, ``c_i = (F0 t̄_i − F1) w_i / D``;
      ``α = Σ c_i R_i``, ``V_R = σ² Σ c_i² / n_i``,
      ``V_S = Σ c_i² τ_i + 2 Σ_{j<i} c_i c_j t̄_j``.
    * Jump detection (LIFO stack of segments): each segment gets a one-sided
      statistic ``z`` for every single (i, i+1) and double (i, i+2) difference. The
      largest (the last single difference first, then per ``i`` the larger of its
      single and double; NaN statistics are ignored) above ``T(α)`` flags its pair
      ``(i, i+1)`` as ``JUMP_DET``; the segment is split around the pair and both
      parts go back on the stack; otherwise the fit is accepted.
    * ``jump_statistic="gls"``: the differences ``D_j = R_{j+1} − R_j`` of the
      segment have mean ``α Δt_j`` and a tridiagonal covariance ``C``,
      ``C_jj = σ²(1/n_j + 1/n_{j+1}) + f (τ_{j+1} + τ_j − 2 t̄_j)``,
      ``C_{j,j+1} = −σ²/n_{j+1} + f (t̄_{j+1} − τ_{j+1})``. With
      ``P = C⁻¹ − C⁻¹Δt Δtᵀ C⁻¹ / (Δtᵀ C⁻¹ Δt)``, the single statistic is the
      generalised-least-squares estimate of a jump in ``D_j`` over its standard error,
      ``(P D)_j / √P_jj``; the double statistic the estimate of the total jump in
      ``D_i`` and ``D_{i+1}`` (a jump inside resultant ``i+1``, which drops out) over
      its standard error, from the 2×2 block of ``P``. Each is exactly unit normal
      without a jump when ``f`` is the true rate. ``f`` is the lowest of the segment's
      rates without one double difference, ``min_k (R_e − R_s − (R_{k+2} − R_k)) /
      (t̄_e − t̄_s − (t̄_{k+2} − t̄_k))``, clipped at 0 (the segment slope for fewer than
      three differences): a cosmic ray, in one difference or split over two, is left
      out of at least one of them, so it does not inflate the covariance that tests
      it. Segments with one difference have no statistic. The slope, its variances
      and the threshold ``T(α)`` are those of the Casertano fit in both modes.
    * ``jump_statistic="excess_slope"``:
      ``z = (s_x − α) / sqrt((σ²(1/n_a + 1/n_b) + α·v_s)/Δt² − α/T)`` with the
      difference slope ``s_x``, ``v_s = τ_b + τ_a − 2 t̄_a`` and ``T`` the segment length
      in time. Its denominator ignores that ``α`` contains the difference, and a cosmic
      ray raises ``α`` (by about ``1.5 A/T`` mid-ramp at low flux), which lowers its own
      ``z``: 10–12.5 σ hits are missed in about a quarter of read-noise-limited ramps
      with long resultants (MA table 4). This is the statistic the romancal
      documentation specifies (``jump_statistic="excess_slope"`` reproduces it).
    * Accepted segments are combined with weights ``1/V_R``:
      ``α = Σ w α_k / Σ w``, ``V_R = Σ w² V_R,k / (Σ w)²``, ``V_S`` likewise, and the
      Poisson variance is ``V_S · max(α, 0)`` using the combined slope.

    Degenerate pixels:

    * no segment with two or more resultants (all flagged, a single usable
      resultant, one resultant in the exposure): slope, err and both variances are
      **0** (Casertano/romancal behaviour). :func:`~rampcal.core.ramp.dq_summary.pixel_dq_from_fit`
      flags these ``DO_NOT_USE`` (``err <= 0``); a caller wanting NaN can set it there.
    * gain or read noise not finite or ``<= 0``: slope, err and variances are
      **NaN**, no jump is flagged.

    References
    ----------
    Casertano, S. et al. 2022, STScI Technical Document (optimal weighting of uneven
    ramps); Fixsen, D. J. et al. 2000, PASP 112, 1350 (the P table); Sharma, S. et
    al. 2023, in preparation (jump detection).
    """
    data = np.asarray(resultants)
    if data.ndim != 3:
        raise ValueError(f"resultants must be 3-D (nresultants, ny, nx), got shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise TypeError(f"resultants must be a real array, got dtype {data.dtype}")
    nres, ny, nx = data.shape
    data = np.ascontiguousarray(data, dtype=np.float32)
    dq_in = _as_groupdq(groupdq, data.shape)
    rnoise = _as_plane(read_noise, (ny, nx), "read_noise")
    gain_arr = _as_plane(gain, (ny, nx), "gain")
    has_dark = dark_rate is not None
    dark = _as_plane(dark_rate, (ny, nx), "dark_rate") if has_dark else np.zeros((1, 1), np.float32)
    pattern = normalize_read_pattern(read_pattern, nresultants=nres)
    times = resultant_times(pattern, float(frame_time))
    intercept = DEFAULT_THRESHOLD_INTERCEPT if threshold_intercept is None else threshold_intercept
    constant = DEFAULT_THRESHOLD_CONSTANT if threshold_constant is None else threshold_constant
    if not (np.isfinite(intercept) and np.isfinite(constant)):
        raise ValueError("threshold_intercept and threshold_constant must be finite")
    if jump_statistic not in JUMP_STATISTICS:
        raise ValueError(f"jump_statistic must be one of {JUMP_STATISTICS}, got {jump_statistic!r}")

    tabs, jump, levels = _prepare(
        times.n_reads.astype(np.float64),
        times.tbar,
        times.tau,
        (bool(use_jump_detection), float(intercept), float(constant), jump_statistic == "gls"),
    )
    slope = np.empty((ny, nx), dtype=np.float32)
    err = np.empty_like(slope)
    var_poisson = np.empty_like(slope)
    var_rnoise = np.empty_like(slope)
    dq_out = np.empty_like(dq_in)  # the kernel copies groupdq into it, then adds jumps
    _fit_cube(
        (data, dq_in, dq_out),
        (rnoise, gain_arr, dark),
        has_dark,
        tabs,
        jump,
        levels,
        np.uint8(GroupFlag.JUMP_DET),
        (slope, err, var_poisson, var_rnoise),
    )
    log.debug("ols_cas22 fitted %d x %d pixels with %d resultants", ny, nx, nres)
    chisq = np.zeros_like(slope)
    return RampFitResult(slope, err, var_poisson, var_rnoise, chisq, dq_out)


def jump_indices(groupdq_before: np.ndarray, groupdq_after: np.ndarray) -> np.ndarray:
    """Locations of ``JUMP_DET`` flags present after ramp fitting but not before.

    Parameters
    ----------
    groupdq_before, groupdq_after : ndarray (nresultants, ny, nx), integer
        Resultant DQ given to and returned by :func:`fit_ramps_cas22` (or any fitter).

    Returns
    -------
    ndarray (njumps, 3) int64
        Rows ``(resultant, y, x)`` (0-based, untrimmed coordinates), in C order.
    """
    before = np.asarray(groupdq_before)
    after = np.asarray(groupdq_after)
    if before.shape != after.shape or before.ndim != 3:
        raise ValueError(
            f"groupdq_before {before.shape} and groupdq_after {after.shape} "
            "must have the same 3-D shape"
        )
    flag = int(GroupFlag.JUMP_DET)
    new = ((after & flag) != 0) & ((before & flag) == 0)
    return np.argwhere(new).astype(np.int64, copy=False)


def _as_groupdq(groupdq: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    dq = np.asarray(groupdq)
    if dq.shape != shape:
        raise ValueError(f"groupdq shape {dq.shape} does not match resultants {shape}")
    if dq.dtype == np.uint8:
        return np.ascontiguousarray(dq)
    if not (np.issubdtype(dq.dtype, np.integer) or dq.dtype == np.bool_):
        raise TypeError(f"groupdq must be an integer array, got dtype {dq.dtype}")
    if dq.size and (dq.min() < 0 or dq.max() > 255):
        raise ValueError("groupdq values must fit in uint8 (0..255)")
    return np.ascontiguousarray(dq, dtype=np.uint8)


def _as_plane(array: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.shape != shape:
        raise ValueError(f"{name} shape {arr.shape} does not match the image shape {shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
