"""Tests of rampcal.core.flat: flat-field division and error propagation."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.core.dq import PixelFlag
from rampcal.core.flat import (
    BAD_FLAT_FLAGS,
    apply_flat,
    prepare_flat,
    reconstruct_var_rnoise,
    trim_to_science,
)


def _hand_case():
    data = np.array([[10.0, 20.0], [-4.0, 8.0]], np.float32)
    dq = np.array([[0, 4], [0, 0]], np.uint32)
    vp = np.array([[4.0, 9.0], [1.0, 0.25]], np.float32)
    vr = np.array([[1.0, 2.0], [3.0, 0.75]], np.float32)
    flat = np.array([[2.0, 0.5], [1.0, 4.0]], np.float32)
    flat_err = np.array([[0.1, 0.05], [0.0, 0.2]], np.float32)
    flat_dq = np.array([[0, 0], [PixelFlag.UNRELIABLE_FLAT, 0]], np.uint32)
    return data, dq, vp, vr, flat, flat_err, flat_dq


def test_hand_case_with_var_flat():
    data, dq, vp, vr, f, fe, fdq = _hand_case()
    ff = prepare_flat(f, flat_dq=fdq, flat_err=fe)
    out = apply_flat(
        data, dq, vp, vr, ff, dumo=np.full((2, 2), 2.0, np.float16), include_var_flat=True
    )
    # pixel [0, 0]: S = 10 / 2 = 5; vp = 4/4 = 1; vr = 1/4; vf = 25 * 0.01 / 4 = 0.0625
    assert out.data[0, 0] == 5.0
    assert out.var_poisson[0, 0] == 1.0
    assert out.var_rnoise[0, 0] == 0.25
    assert out.var_flat[0, 0] == pytest.approx(0.0625, rel=1e-6)
    assert out.err[0, 0] == pytest.approx(np.sqrt(1.3125), rel=1e-6)
    # pixel [0, 1]: S = 40; vp = 36; vr = 8; vf = 1600 * 0.0025 / 0.25 = 16
    assert out.data[0, 1] == 40.0
    assert out.var_poisson[0, 1] == 36.0
    assert out.var_rnoise[0, 1] == 8.0
    assert out.var_flat[0, 1] == pytest.approx(16.0, rel=1e-6)
    assert out.err[0, 1] == pytest.approx(np.sqrt(60.0), rel=1e-6)
    # pixel [1, 1]: S = 2; vp = 0.25/16; vf = 4 * 0.04 / 16 = 0.01
    assert out.var_flat[1, 1] == pytest.approx(0.01, rel=1e-6)
    np.testing.assert_array_equal(out.dumo, [[1.0, 4.0], [2.0, 0.5]])
    np.testing.assert_array_equal(out.dq, [[0, 4], [PixelFlag.UNRELIABLE_FLAT, 0]])
    assert out.n_bad_flat == 0
    assert out.data.dtype == np.float32 and out.err.dtype == np.float32


def test_without_var_flat_err_is_quadrature_of_scaled_variances():
    data, dq, vp, vr, f, fe, fdq = _hand_case()
    out = apply_flat(data, dq, vp, vr, prepare_flat(f, flat_err=fe))
    assert out.var_flat is None
    assert out.dumo is None
    np.testing.assert_allclose(out.err, np.sqrt(vp + vr) / f, rtol=1e-6)


def test_inputs_not_modified():
    data, dq, vp, vr, f, fe, fdq = _hand_case()
    copies = [a.copy() for a in (data, dq, vp, vr, f, fe, fdq)]
    ff = prepare_flat(f, flat_dq=fdq, flat_err=fe)
    apply_flat(data, dq, vp, vr, ff, include_var_flat=True)
    for a, b in zip((data, dq, vp, vr, f, fe, fdq), copies):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [np.nan, 0.0, -0.5, np.inf])
def test_bad_flat_values_are_not_applied_and_flagged(bad):
    data = np.full((3, 3), 6.0, np.float32)
    flat = np.full((3, 3), 2.0, np.float32)
    flat[1, 2] = bad
    ff = prepare_flat(flat, flat_err=np.full((3, 3), 0.2, np.float32))
    assert ff.flat[1, 2] == 1.0 and ff.err[1, 2] == 0.0
    var = np.ones((3, 3), np.float32)
    out = apply_flat(data, np.zeros((3, 3), np.uint32), var, var, ff, include_var_flat=True)
    assert out.data[1, 2] == 6.0  # no correction
    assert out.var_flat[1, 2] == 0.0
    assert out.err[1, 2] == pytest.approx(np.sqrt(2.0))
    assert out.dq[1, 2] == BAD_FLAT_FLAGS == PixelFlag.NO_FLAT_FIELD | PixelFlag.DO_NOT_USE
    good = np.ones((3, 3), bool)
    good[1, 2] = False
    assert np.all(out.data[good] == 3.0) and np.all(out.dq[good] == 0)
    assert out.n_bad_flat == 1


def test_non_finite_flat_error_is_flagged_unreliable():
    ff = prepare_flat(np.ones((2, 2), np.float32), flat_err=np.array([[np.nan, 0], [0, 0]]))
    assert ff.err[0, 0] == 0.0
    assert ff.dq[0, 0] == PixelFlag.UNRELIABLE_FLAT
    assert np.all(ff.dq.ravel()[1:] == 0)


def test_float16_variances_accepted():
    data, dq, vp, vr, f, fe, fdq = _hand_case()
    out = apply_flat(data, dq, vp.astype(np.float16), vr.astype(np.float16), prepare_flat(f))
    assert out.var_poisson.dtype == np.float32
    np.testing.assert_allclose(out.var_poisson, vp / f**2, rtol=1e-3)


def test_reconstruct_var_rnoise():
    err = np.array([[3.0, 1.0, np.nan]], np.float16)
    vp = np.array([[4.0, 2.0, 1.0]], np.float16)
    out = reconstruct_var_rnoise(err, vp)
    assert out[0, 0] == 5.0
    assert out[0, 1] == 0.0  # negative difference clipped
    assert np.isnan(out[0, 2])
    out = reconstruct_var_rnoise(err, vp, var_flat=np.array([[1.0, 0.0, 0.0]]))
    assert out[0, 0] == 4.0


def test_reconstructed_rnoise_gives_err_over_flat():
    """err² = vp + vr before the flat ⇒ err_out = err_in / f without var_flat."""
    rng = np.random.default_rng(3)
    vp = rng.uniform(0.01, 1.0, (20, 20)).astype(np.float32)
    vr = rng.uniform(0.01, 1.0, (20, 20)).astype(np.float32)
    err = np.sqrt(vp + vr)
    f = rng.uniform(0.8, 1.2, (20, 20)).astype(np.float32)
    vr_rec = reconstruct_var_rnoise(err, vp)
    out = apply_flat(np.ones((20, 20)), np.zeros((20, 20), np.uint32), vp, vr_rec, prepare_flat(f))
    np.testing.assert_allclose(out.err, err / f, rtol=1e-5)


def test_trim_to_science():
    full = np.arange(16 * 16).reshape(16, 16)
    sci = trim_to_science(full, (8, 8))
    assert sci.shape == (8, 8) and sci[0, 0] == full[4, 4]
    assert trim_to_science(sci, (8, 8)) is sci or np.shares_memory(
        trim_to_science(sci, (8, 8)), sci
    )
    with pytest.raises(ValueError, match="does not fit"):
        trim_to_science(full, (9, 8))
    with pytest.raises(ValueError, match="does not fit"):
        trim_to_science(full, (20, 20))


def test_shape_mismatch_raises():
    ff = prepare_flat(np.ones((2, 2)))
    with pytest.raises(ValueError, match="var_poisson"):
        apply_flat(
            np.ones((2, 2)), np.zeros((2, 2), np.uint32), np.ones((3, 2)), np.ones((2, 2)), ff
        )
    with pytest.raises(ValueError, match="flat_err"):
        prepare_flat(np.ones((2, 2)), flat_err=np.ones((2, 3)))


@pytest.mark.parametrize("value", [1.25, 0.0, np.nan])
def test_uniform_flat_view_matches_full_flat(value):
    """A broadcast (one-value) flat gives exactly what the same flat as a full plane gives,
    also through the row-blocked in-place path with float16 variances."""
    from rampcal.core.flat import apply_flat_inplace

    rng = np.random.default_rng(7)
    shape = (37, 23)
    data = rng.normal(10, 3, shape).astype(np.float32)
    vp = rng.uniform(0.1, 2, shape).astype(np.float16)
    vr = rng.uniform(0.1, 2, shape).astype(np.float16)
    dq = np.zeros(shape, np.uint32)
    full = prepare_flat(np.full(shape, value, np.float32), flat_err=np.full(shape, 0.1))
    view = prepare_flat(
        np.broadcast_to(np.float32(value), shape), flat_err=np.broadcast_to(0.1, shape)
    )
    assert not any(view.flat.strides)
    expected = apply_flat(data, dq, vp, vr, full, include_var_flat=True)
    got = {
        "data": data.copy(), "dq": dq.copy(), "var_poisson": vp.copy(), "var_rnoise": vr.copy(),
        "err": np.empty(shape, np.float16), "var_flat": np.empty(shape, np.float16),
    }  # fmt: skip
    n_bad = apply_flat_inplace(flat=view, chunk_rows=5, **got)
    assert n_bad == expected.n_bad_flat == (0 if value == 1.25 else data.size)
    np.testing.assert_array_equal(got["data"], expected.data)
    np.testing.assert_array_equal(got["dq"], expected.dq)
    for key in ("err", "var_poisson", "var_rnoise", "var_flat"):
        np.testing.assert_array_equal(got[key], getattr(expected, key).astype(np.float16))
