"""Tests of rampcal.core.linearity: read-level round trip, special pixels, INL, clipping,
compact (uniform-plane) coefficients, and bit-for-bit agreement with a plain numpy
implementation of ALGORITHMS.md §6."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.core.dq import GroupFlag, PixelFlag
from rampcal.core.linearity import (
    CLIP_LIMIT,
    CoefficientPlanes,
    InlTable,
    coefficients_from_rows,
    compact_coefficients,
    correct_linearity,
    evaluate_polynomial,
    uncorrectable_pixels,
)
from rampcal.core.readpattern import MA_TABLES
from rampcal.reference.nominal import inverse_linearity_coeffs, linearity_coeffs

RP4 = MA_TABLES[4]
SAT = GroupFlag.SATURATED
NO_LIN = PixelFlag.NO_LIN_CORR


def _per_pixel(coeffs, shape):
    c = np.asarray(coeffs, dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(c[:, None, None], (c.size, *shape)))


def _simulate(flux, bias, pattern):
    """Resultants of a linear ramp seen through the nominal non-linearity.

    Returns (raw resultants, true linear resultants), float32 (N, ny, nx).
    """
    pinv = inverse_linearity_coeffs()
    raw, lin = [], []
    for reads in pattern:
        ell = np.stack([bias + flux * r for r in reads])  # linear reads (DN), float64
        raw.append(evaluate_polynomial(pinv, ell).mean(axis=0))
        lin.append(ell.mean(axis=0))
    return np.array(raw, dtype=np.float32), np.array(lin, dtype=np.float32)


def _setup(shape=(6, 40)):
    ny, nx = shape
    flux = np.linspace(0.0, 1200.0, ny * nx).reshape(shape)  # DN per read; 44 reads < 55000 DN
    bias = np.full(shape, 1000.0)
    raw, truth = _simulate(flux, bias, RP4)
    gdq = np.zeros(raw.shape, dtype=np.uint8)
    pdq = np.zeros(shape, dtype=np.uint32)
    lin = _per_pixel(linearity_coeffs(), shape)
    ilin = _per_pixel(inverse_linearity_coeffs(), shape)
    return raw, truth, gdq, pdq, lin, ilin


def test_read_level_round_trip_is_linear_to_005_dn():
    raw, truth, gdq, pdq, lin, ilin = _setup()
    nonlinear = np.abs(raw - truth).max()
    assert nonlinear > 500.0  # the simulated non-linearity is large
    res = correct_linearity(raw, gdq, pdq, lin, None, RP4, inverse_coeffs=ilin)
    assert res.data is raw
    err = np.abs(raw - truth)
    assert err.max() < 0.05, err.max()
    assert res.n_no_correction == 0 and res.n_clipped == 0
    assert not gdq.any() and not pdq.any()


def test_read_level_beats_per_resultant_polynomial():
    raw, truth, gdq, pdq, lin, ilin = _setup()
    plain = correct_linearity(raw, gdq, pdq, lin, None, RP4, inplace=False).data
    # P_lin(mean of reads) != mean of P_lin(reads): several DN off for multi-read resultants
    assert np.abs(plain - truth).max() > 5.0
    expected = evaluate_polynomial(linearity_coeffs(), raw.astype(np.float64))
    np.testing.assert_allclose(plain, expected, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("ncoeff", range(2, 11))
def test_polynomial_path_every_degree(ncoeff):
    rng = np.random.default_rng(ncoeff)
    shape = (3, 300)  # more than one column block
    coeffs = rng.normal(0, 1, (ncoeff, *shape)).astype(np.float32)
    coeffs[1] += 3.0  # keep c1 away from 0
    data = rng.uniform(-2, 2, (4, *shape)).astype(np.float32)
    gdq = np.zeros(data.shape, dtype=np.uint8)
    pdq = np.zeros(shape, dtype=np.uint32)
    res = correct_linearity(data, gdq, pdq, coeffs, None, inplace=False)
    expected = evaluate_polynomial(coeffs, data.astype(np.float64))
    np.testing.assert_allclose(res.data, expected.astype(np.float32), rtol=2e-6, atol=1e-5)


def test_bad_coefficients_leave_pixels_untouched_and_flagged():
    raw, truth, gdq, pdq, lin, ilin = _setup()
    before = raw.copy()
    lin_dq = np.zeros(pdq.shape, dtype=np.uint32)
    lin[3, 0, 0] = np.nan  # NaN coefficient
    lin[1, 0, 1] = 0.0  # zero linear term
    lin_dq[0, 2] = NO_LIN  # flagged in the reference
    ilin[2, 0, 3] = np.nan  # NaN inverse coefficient
    lin_dq[1, 5] = PixelFlag.HOT  # other reference flags are propagated
    bad = uncorrectable_pixels(lin, lin_dq, ilin)
    assert bad[0, :4].all() and bad.sum() == 4
    res = correct_linearity(raw, gdq, pdq, lin, lin_dq, RP4, inverse_coeffs=ilin)
    np.testing.assert_array_equal(raw[:, 0, :4], before[:, 0, :4])
    np.testing.assert_array_equal(pdq[0, :4], NO_LIN)
    assert pdq[1, 5] == PixelFlag.HOT
    assert res.n_no_correction == 4
    good = ~bad
    assert np.abs(raw - truth)[:, good].max() < 0.05


def test_saturated_resultants_untouched():
    raw, truth, gdq, pdq, lin, ilin = _setup()
    before = raw.copy()
    gdq[6:, :3, :] |= SAT  # resultants 6.. saturated in three rows
    gdq[:, 5, 0] |= SAT  # a fully saturated pixel
    correct_linearity(raw, gdq, pdq, lin, None, RP4, inverse_coeffs=ilin)
    np.testing.assert_array_equal(raw[6:, :3, :], before[6:, :3, :])
    np.testing.assert_array_equal(raw[:, 5, 0], before[:, 5, 0])
    # unsaturated resultants of the partly saturated pixels are still linearised
    assert np.abs(raw[:6, :3, :] - truth[:6, :3, :]).max() < 0.05


def test_clip_and_flag():
    shape = (1, 3)
    data = np.array([[[10.0, 2000.0, -2000.0]]], dtype=np.float32)
    coeffs = np.zeros((2, *shape), dtype=np.float32)
    coeffs[1] = 1000.0
    gdq = np.zeros(data.shape, dtype=np.uint8)
    pdq = np.zeros(shape, dtype=np.uint32)
    res = correct_linearity(data, gdq, pdq, coeffs, None)
    np.testing.assert_array_equal(data[0, 0], [10000.0, CLIP_LIMIT, -CLIP_LIMIT])
    np.testing.assert_array_equal(gdq[0, 0], [0, GroupFlag.DO_NOT_USE, GroupFlag.DO_NOT_USE])
    assert res.n_clipped == 2


def _identity(shape):
    return _per_pixel([0.0, 1.0], shape)


@pytest.mark.parametrize("uniform", [True, False])
def test_inl_matches_np_interp_per_channel(uniform):
    rng = np.random.default_rng(7)
    shape = (3, 16)  # 4 channels of 4 columns
    pattern = [[1], [2], [3], [4]]  # single reads: the corrected read is the observed one
    data = rng.uniform(-500, 3000, (4, *shape)).astype(np.float32)
    if uniform:
        value = np.arange(0, 2600, 100).astype(np.float64)
    else:
        value = np.sort(rng.choice(np.arange(0, 2600), 30, replace=False)).astype(np.float64)
    corr = rng.normal(0, 3, (4, value.size))
    gdq = np.zeros(data.shape, dtype=np.uint8)
    pdq = np.zeros(shape, dtype=np.uint32)
    lin = _identity(shape)
    out = correct_linearity(
        data,
        gdq,
        pdq,
        lin,
        None,
        pattern,
        inverse_coeffs=lin,
        inl=InlTable(value, corr, channel_width=4),
        inplace=False,
    ).data
    chan = np.arange(shape[1]) // 4
    expected = data.astype(np.float64)
    for x in range(shape[1]):
        expected[:, :, x] += np.interp(data[:, :, x].astype(np.float64), value, corr[chan[x]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-3)


def test_inl_linear_table_on_multi_read_resultants():
    # identity polynomials; INL(u) = alpha_c + beta_c * u inside the table range, so
    # the mean over the reconstructed reads is D + alpha_c + beta_c * D exactly.
    shape = (2, 8)
    raw, _, gdq, pdq, _, _ = _setup(shape)
    value = np.array([0.0, 65535.0])
    alpha = np.array([2.0, -3.0])
    beta = np.array([1e-4, 2e-4])
    corr = np.stack([alpha + beta * value[0], alpha + beta * value[1]], axis=1)
    lin = _identity(shape)
    out = correct_linearity(
        raw,
        gdq,
        pdq,
        lin,
        None,
        RP4,
        inverse_coeffs=lin,
        inl=InlTable(value, corr, channel_width=4),
        inplace=False,
    ).data
    chan = np.arange(shape[1]) // 4
    expected = raw * (1 + beta[chan]) + alpha[chan]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=2e-3)


def test_validation():
    raw, _, gdq, pdq, lin, ilin = _setup()
    with pytest.raises(ValueError, match="read_pattern is required"):
        correct_linearity(raw, gdq, pdq, lin, None, inverse_coeffs=ilin)
    with pytest.raises(ValueError, match="coeffs"):
        correct_linearity(raw, gdq, pdq, lin[:, :2], None, RP4)
    with pytest.raises(TypeError, match="float32"):
        correct_linearity(raw.astype(np.float64), gdq, pdq, lin, None, RP4)
    wrong = compact_coefficients(lin)._replace(plane_shape=(1, 1))
    with pytest.raises(ValueError, match="do not fit"):
        correct_linearity(raw, gdq, pdq, wrong, None, RP4)
    no_planes = compact_coefficients(lin)._replace(uniform=np.zeros(lin.shape[0], bool))
    with pytest.raises(ValueError, match="do not fit"):
        correct_linearity(raw, gdq, pdq, no_planes, None, RP4)


def test_threads_do_not_change_the_result():
    import numba

    raw, _, gdq, pdq, lin, ilin = _setup((70, 40))  # several chunks of rows
    outputs = []
    saved = numba.get_num_threads()
    try:
        for n in sorted({1, saved}):
            numba.set_num_threads(n)
            res = correct_linearity(
                raw, gdq, pdq, lin, None, RP4, inverse_coeffs=ilin, inplace=False
            )
            outputs.append(res.data)
    finally:
        numba.set_num_threads(saved)
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])


# ---- compact coefficients ------------------------------------------------------------------


def _bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def _mixed_cube(ny=10, nx=12):
    """Planes: 0 uniform 0, 1 uniform NaN, 2 varies in its last row only, 3 in its first."""
    cube = np.empty((4, ny, nx), dtype=np.float32)
    cube[0] = 0.0
    cube[1] = np.nan
    cube[2] = 2.5
    cube[2, -1, -1] = 2.25
    cube[3] = np.arange(ny * nx, dtype=np.float32).reshape(ny, nx)
    return cube


@pytest.mark.parametrize("rows", [1, 3, 7, 10, 40])
def test_coefficients_from_rows_keeps_only_varying_planes(rows):
    cube = _mixed_cube()
    flat = cube.reshape(-1, cube.shape[-1])
    pieces = (flat[i : i + rows] for i in range(0, flat.shape[0], rows))  # may span planes
    c = coefficients_from_rows(pieces, cube.shape)
    np.testing.assert_array_equal(c.uniform, [True, True, False, False])
    assert c.values[0] == 0 and np.isnan(c.values[1])
    assert c.n_per_pixel == 2 and c.plane_shape == cube.shape[1:]
    np.testing.assert_array_equal(_bits(c.planes[2:]), _bits(cube[2:]))
    np.testing.assert_array_equal(_bits(c.to_array()), _bits(cube))


def test_coefficients_from_rows_all_uniform_holds_no_plane():
    cube = np.broadcast_to(np.float32([1.0, 2.0, -0.0])[:, None, None], (3, 5, 6))
    c = coefficients_from_rows(
        (cube[k, r : r + 2] for k in range(3) for r in (0, 2, 4)), cube.shape
    )
    assert c.planes is None and c.uniform.all() and c.n_per_pixel == 0
    np.testing.assert_array_equal(_bits(c.values), _bits([1.0, 2.0, -0.0]))
    assert c.to_array().shape == (3, 5, 6)


def test_uniformity_is_bitwise():
    cube = np.zeros((2, 3, 4), dtype=np.float32)
    cube[1] = 1.0
    cube[0, 1, 1] = -0.0  # equal to 0.0, but not the same bits: kept per pixel
    c = compact_coefficients(cube)
    np.testing.assert_array_equal(c.uniform, [False, True])
    assert np.signbit(c.to_array()[0, 1, 1])


def test_coefficients_from_rows_validation():
    cube = _mixed_cube()
    flat = cube.reshape(-1, cube.shape[-1])
    with pytest.raises(ValueError, match="end early"):
        coefficients_from_rows([flat[:-1]], cube.shape)
    with pytest.raises(ValueError, match="more coefficient rows"):
        coefficients_from_rows([flat, flat[:1]], cube.shape)
    with pytest.raises(ValueError, match="float32"):
        coefficients_from_rows([flat[:, :-1]], cube.shape)
    with pytest.raises(ValueError, match="ncoeff >= 2"):
        coefficients_from_rows([flat], (1, 40, 12))


def test_compact_coefficients_does_not_copy():
    view = np.broadcast_to(np.float32([0.0, 1.0])[:, None, None], (2, 4096, 4096))
    c = compact_coefficients(view)  # zero strides: recognised without reading 32 M values
    assert c.planes is None and c.uniform.all()
    cube = _mixed_cube()
    c = compact_coefficients(cube)
    assert c.planes is cube  # C-contiguous float32 with per-pixel planes: used as is
    assert compact_coefficients(c) is c


# ---- agreement with a plain implementation ---------------------------------------------------


def _horner(c, v):
    """Σ c[k] v^k in float64 by Horner, in the kernel's order of operations."""
    a = np.broadcast_to(c[-1], np.shape(v)).astype(np.float64)
    for k in range(len(c) - 2, -1, -1):
        a = a * v + c[k]
    return a


@np.errstate(over="ignore", invalid="ignore")  # the 3e6 DN and NaN test pixels
def _plain_linearity(data, gdq, pdq, lin, lin_dq, pattern, ilin=None):
    """ALGORITHMS.md §6 written out with numpy, pixel arrays at a time (no INL).

    Returns the expected (data, groupdq, pixeldq) as new arrays.
    """
    lin64 = np.asarray(lin, dtype=np.float32).astype(np.float64)
    d = np.asarray(data, dtype=np.float32)
    out = d.copy()
    gdq = gdq.copy()
    sat = (gdq & SAT) != 0
    bad = uncorrectable_pixels(lin, lin_dq, ilin)
    if ilin is None:
        for i in range(d.shape[0]):
            new = _horner(lin64, d[i].astype(np.float64)).astype(np.float32)
            out[i] = np.where(bad | sat[i], d[i], new)
    else:
        ilin64 = np.asarray(ilin, dtype=np.float32).astype(np.float64)
        m = np.array([np.mean(r) for r in pattern])
        d0 = d[0].astype(np.float64)
        l0 = np.where(sat[0], d0, _horner(lin64, d0))
        n_unsat = (~sat).sum(axis=0)
        last = np.minimum(np.maximum(n_unsat - 1, 2) - 1, d.shape[0] - 1)
        dz = np.take_along_axis(d, last[None], axis=0)[0].astype(np.float64)
        sat_z = np.take_along_axis(sat, last[None], axis=0)[0]
        lz = np.where(sat_z, dz, _horner(lin64, dz))
        rate = (lz - l0) / (m[last] - m[0])
        for i, reads in enumerate(pattern):
            total = np.zeros(d0.shape)
            raw_reads = []
            for r in reads:
                w = _horner(ilin64, l0 + rate * (r - m[0]))
                raw_reads.append(w)
                total = total + w
            off = d[i].astype(np.float64) - total / len(reads)
            acc = np.zeros(d0.shape)
            for w in raw_reads:
                acc = acc + _horner(lin64, w + off)
            new = (acc / len(reads)).astype(np.float32)
            out[i] = np.where(bad | sat[i], d[i], new)
    big = np.abs(out) > CLIP_LIMIT
    out[big] = np.sign(out[big]) * CLIP_LIMIT
    gdq[big] |= GroupFlag.DO_NOT_USE
    pdq = pdq | (0 if lin_dq is None else lin_dq) | np.where(bad, NO_LIN, 0).astype(np.uint32)
    return out, gdq, pdq.astype(np.uint32)


def _random_case(ncoeff, ninv, rng, shape=(3, 300)):
    """Data with saturation, flagged/NaN/huge pixels; small random polynomials."""
    pattern = [[1], [2, 3], [4, 5, 6, 7, 8], [9, 10, 11], [12]]
    n = len(pattern)
    data = (rng.uniform(0, 60, shape) * np.arange(1, n + 1)[:, None, None]).astype(np.float32)
    data[:, 0, 7] = np.nan
    data[2:, 1, 9] = 3e6  # clipped after correction
    gdq = np.zeros(data.shape, dtype=np.uint8)
    gdq[3:, 0, ::5] |= SAT
    gdq[:, 2, ::17] |= SAT
    pdq = np.zeros(shape, dtype=np.uint32)
    lin_dq = np.zeros(shape, dtype=np.uint32)
    lin_dq[1, ::23] = NO_LIN
    lin_dq[2, ::29] = PixelFlag.HOT

    def poly(k):
        c = np.zeros(k, dtype=np.float32)
        c[0] = 0.5
        c[1] = 1.0
        c[2:] = rng.normal(0, 1, k - 2) * 10.0 ** -(2.0 * np.arange(2, k) + 1)
        return c

    return data, gdq, pdq, lin_dq, pattern, poly(ncoeff), poly(ninv)


@pytest.mark.parametrize("per_pixel", [False, True])
@pytest.mark.parametrize(("ncoeff", "ninv"), [(2, 2), (3, 6), (6, 3), (8, 5), (10, 9)])
def test_read_level_matches_plain_implementation_bit_for_bit(ncoeff, ninv, per_pixel):
    rng = np.random.default_rng(100 * ncoeff + ninv)
    data, gdq, pdq, lin_dq, pattern, lc, ic = _random_case(ncoeff, ninv, rng)
    shape = data.shape[1:]
    lin, ilin = _per_pixel(lc, shape), _per_pixel(ic, shape)
    if per_pixel:  # genuinely different per pixel, with some unusable ones
        lin[1] *= rng.uniform(0.9, 1.1, shape).astype(np.float32)
        ilin[0] += rng.normal(0, 1e-3, shape).astype(np.float32)
        lin[-1, 2, 3] = np.nan
        ilin[1, 0, 4] = 0.0
    expected = _plain_linearity(data, gdq, pdq, lin, lin_dq, pattern, ilin)
    res = correct_linearity(
        data, gdq, pdq, lin, lin_dq, pattern, inverse_coeffs=ilin, inplace=False
    )
    assert compact_coefficients(lin).uniform.all() != per_pixel
    np.testing.assert_array_equal(res.data, expected[0])
    np.testing.assert_array_equal(res.groupdq, expected[1])
    np.testing.assert_array_equal(res.pixeldq, expected[2])
    assert res.n_clipped == np.count_nonzero(expected[1] & GroupFlag.DO_NOT_USE)
    assert res.n_no_correction == np.count_nonzero(expected[2] & NO_LIN)


@pytest.mark.parametrize("per_pixel", [False, True])
@pytest.mark.parametrize("ncoeff", [2, 5, 9])
def test_polynomial_path_matches_plain_implementation(ncoeff, per_pixel):
    rng = np.random.default_rng(ncoeff)
    data, gdq, pdq, lin_dq, pattern, lc, _ = _random_case(ncoeff, 2, rng)
    lin = _per_pixel(lc, data.shape[1:])
    if per_pixel:
        lin[0] += rng.normal(0, 1, lin[0].shape).astype(np.float32)
    assert compact_coefficients(lin).uniform.all() != per_pixel
    expected = _plain_linearity(data, gdq, pdq, lin, lin_dq, pattern)
    res = correct_linearity(data, gdq, pdq, lin, lin_dq, pattern, inplace=False)
    np.testing.assert_array_equal(res.data, expected[0])
    np.testing.assert_array_equal(res.groupdq, expected[1])
    np.testing.assert_array_equal(res.pixeldq, expected[2])


@pytest.mark.parametrize("inl", [False, True])
def test_shared_and_per_pixel_coefficients_agree_exactly(inl):
    """The same polynomial given as scalars, as a mixed cube, or as full planes."""
    rng = np.random.default_rng(11)
    raw, _, gdq, pdq, lin, ilin = _setup((4, 300))
    gdq[7:, 1] |= SAT
    table = None
    if inl:
        value = np.arange(0.0, 65536.0, 4096.0)
        table = InlTable(value, rng.normal(0, 2, (3, value.size)), channel_width=128)
    lin_dq = np.zeros(pdq.shape, dtype=np.uint32)
    outputs = []
    for form in ("scalar", "mixed", "full"):
        c, ci = compact_coefficients(lin[:, :1, :1]), compact_coefficients(ilin[:, :1, :1])
        c = CoefficientPlanes(c.values, c.uniform, None, lin.shape[1:])
        ci = CoefficientPlanes(ci.values, ci.uniform, None, ilin.shape[1:])
        if form == "mixed":  # one per-pixel plane (equal everywhere, but not known to be)
            planes = np.empty(lin.shape, dtype=np.float32)
            planes[2] = lin[2]
            c = c._replace(uniform=np.array([k != 2 for k in range(c.ncoeff)]), planes=planes)
        elif form == "full":
            c = c._replace(uniform=np.zeros(c.ncoeff, bool), planes=lin.copy())
            ci = ci._replace(uniform=np.zeros(ci.ncoeff, bool), planes=ilin.copy())
        res = correct_linearity(
            raw, gdq, pdq, c, lin_dq, RP4, inverse_coeffs=ci, inl=table, inplace=False
        )
        outputs.append(res)
    for res in outputs[1:]:
        np.testing.assert_array_equal(res.data, outputs[0].data)
        np.testing.assert_array_equal(res.groupdq, outputs[0].groupdq)
        np.testing.assert_array_equal(res.pixeldq, outputs[0].pixeldq)
    # lin_dq=None is the same as an all-zero dq
    none = correct_linearity(
        raw, gdq, pdq, lin, None, RP4, inverse_coeffs=ilin, inl=table, inplace=False
    )
    np.testing.assert_array_equal(none.data, outputs[0].data)


@pytest.mark.parametrize("plane", ["nan", "zero_c1", "inverse_nan"])
def test_uniform_bad_plane_leaves_every_pixel_uncorrected(plane):
    raw, _, gdq, pdq, lin, ilin = _setup((3, 20))
    before = raw.copy()
    if plane == "nan":
        lin[4] = np.nan
    elif plane == "zero_c1":
        lin[1] = 0.0
    else:
        ilin[2] = np.nan
    res = correct_linearity(raw, gdq, pdq, lin, None, RP4, inverse_coeffs=ilin)
    np.testing.assert_array_equal(raw, before)
    np.testing.assert_array_equal(pdq, NO_LIN)
    assert res.n_no_correction == pdq.size
