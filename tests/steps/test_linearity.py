"""Acceptance tests of the linearity step: corrected bright ramps are linear in time."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.core.dq import PixelFlag
from rampcal.core.readpattern import resultant_times
from rampcal.reference import nominal
from rampcal.steps.linearity import LinearityStep

MIN_SIGNAL = 20000.0  # DN of linear signal at the end of the ramp


@pytest.fixture(scope="module")
def bright(sim):
    """(mask of CR-free, never saturated, bright pixels; t̄ of the resultants)."""
    t = sim.truth
    tbar = resultant_times(sim.pattern, float(t["frame_time"])).tbar
    mask = sim.clean_pixels() & (t["rate_dn"] * tbar[-1] > MIN_SIGNAL)
    return mask, np.asarray(tbar, dtype=np.float64)


def _curvature(data: np.ndarray, mask: np.ndarray, tbar: np.ndarray):
    """Quadratic coefficient (DN/s²) of each selected pixel's ramp against t̄."""
    design = np.vander(tbar - tbar.mean(), 3)
    coef, *_ = np.linalg.lstsq(design, np.asarray(data, np.float64)[:, mask], rcond=None)
    return coef[0]


def test_corrected_ramps_are_linear(sim, chain, bright):
    mask, tbar = bright
    assert np.count_nonzero(mask) >= 50
    before = chain.get("wfi18_transient")  # the input of linearity in the chain
    after = chain.get("linearity")
    assert after.meta.cal_step.linearity == "COMPLETE"
    assert after.meta.ref_file.linearity.startswith("rampcal-default://")
    assert after.meta.ref_file.inverselinearity.startswith("rampcal-default://")

    c_before = _curvature(before.data, mask, tbar)
    c_after = _curvature(after.data, mask, tbar)
    # the curvature of the mean ramp is the mean curvature; its error from the scatter
    sem = c_after.std(ddof=1) / np.sqrt(c_after.size)
    assert c_before.mean() < -10 * sem  # strongly curved (about -0.07 DN/s²)
    assert abs(c_after.mean()) < 3 * sem
    assert abs(c_after.mean()) < 0.1 * abs(c_before.mean())
    # per pixel: raw = lin - beta lin² gives a curvature of -beta rate² before correction
    rate = sim.truth["rate_dn"][mask]
    kappa = c_before / rate**2
    np.testing.assert_allclose(kappa.mean(), -nominal.NONLINEARITY_BETA, rtol=0.1)
    # the corrected ramp slope follows the true rate (dark 0.005 DN/s not yet removed)
    slope = np.polyfit(tbar, np.asarray(after.data, np.float64)[:, mask], 1)[0]
    np.testing.assert_allclose(np.median(slope / rate), 1.0, atol=0.01)
    # no new flags on the clean pixels
    assert not np.any(np.asarray(after.groupdq)[:, mask])


def test_nan_coefficients_give_no_lin_corr(sim, chain, bright, tmp_path):
    from rampcal.datamodels import save_atomic
    from rampcal.reference.defaults import build_default

    mask, _ = bright
    ys, xs = np.nonzero(mask)
    targets = [(ys[0], xs[0]), (ys[-1], xs[-1])]
    ref = build_default("linearity", detector="WFI01", optical_element="F158", shape=sim.shape)
    coeffs = np.array(ref.coeffs)
    for y, x in targets:
        coeffs[2, y, x] = np.nan
    ref.coeffs = coeffs
    path = save_atomic(ref, tmp_path / "nan_linearity.asdf")

    ramp = chain.get("wfi18_transient")
    data_in = np.array(ramp.data)
    out = LinearityStep.call(ramp, override_linearity=str(path))
    assert out.meta.cal_step.linearity == "COMPLETE"
    assert out.meta.ref_file.linearity.endswith("nan_linearity.asdf")
    pdq = np.asarray(out.pixeldq)
    assert np.count_nonzero(pdq & PixelFlag.NO_LIN_CORR) == len(targets)
    for y, x in targets:
        assert pdq[y, x] & PixelFlag.NO_LIN_CORR
        np.testing.assert_array_equal(out.data[:, y, x], data_in[:, y, x])
    # every other bright pixel is corrected exactly as with the default file
    reference = np.asarray(chain.get("linearity").data)
    others = mask.copy()
    for y, x in targets:
        others[y, x] = False
    np.testing.assert_array_equal(np.asarray(out.data)[:, others], reference[:, others])
    assert not np.array_equal(reference[:, ~others & mask], data_in[:, ~others & mask])


# ---- streamed reference files -------------------------------------------------------------


@pytest.fixture(scope="module")
def per_pixel_linearity(sim, tmp_path_factory):
    """A LINEARITY file whose c2 plane varies per pixel and whose dq has two flags."""
    from rampcal.datamodels import save_atomic
    from rampcal.reference.defaults import build_default

    rng = np.random.default_rng(5)
    ref = build_default("linearity", detector="WFI01", optical_element="F158", shape=sim.shape)
    coeffs = np.array(ref.coeffs)
    coeffs[2] *= rng.uniform(0.5, 1.5, sim.shape).astype(np.float32)
    dq = np.zeros(sim.shape, dtype=np.uint32)
    dq[10, 20] = PixelFlag.NO_LIN_CORR
    dq[30, 40] = PixelFlag.HOT
    ref.coeffs = coeffs
    ref.dq = dq
    path = save_atomic(ref, tmp_path_factory.mktemp("lin") / "perpixel_linearity.asdf")
    return path, coeffs, dq


def test_reference_cubes_are_streamed_compactly(sim, chain, per_pixel_linearity):
    from rampcal.datamodels import open_model
    from rampcal.datamodels.blockstream import plane_reader
    from rampcal.reference import resolve
    from rampcal.steps.linearity import load_coefficients, load_flags

    path, coeffs, dq = per_pixel_linearity
    with open_model(path) as ref:  # lazily: nothing read yet
        assert plane_reader(ref, "coeffs") is not None  # the streamed path is the one tested
        c = load_coefficients(ref, "LINEARITY")
        flags = load_flags(ref, "LINEARITY")
    np.testing.assert_array_equal(c.uniform, [k != 2 for k in range(coeffs.shape[0])])
    np.testing.assert_array_equal(c.to_array(), coeffs)
    np.testing.assert_array_equal(flags, dq)
    # the built-in defaults: every plane uniform and no flag, so nothing per pixel is held
    ramp = chain.get("wfi18_transient")
    for reftype in ("linearity", "inverselinearity"):
        with open_model(resolve(ramp, reftype)) as ref:
            c = load_coefficients(ref, reftype.upper())
            assert c.planes is None and c.uniform.all()
            assert load_flags(ref, reftype.upper()) is None


def test_per_pixel_reference_matches_in_memory_correction(sim, chain, per_pixel_linearity):
    from rampcal.core.linearity import correct_linearity
    from rampcal.datamodels import read_pattern_of
    from rampcal.reference.defaults import build_default

    path, coeffs, dq = per_pixel_linearity
    ramp = chain.get("wfi18_transient")
    inverse = build_default(
        "inverselinearity", detector="WFI01", optical_element="F158", shape=sim.shape
    )
    expected = correct_linearity(
        np.array(ramp.data),
        np.array(ramp.groupdq),
        np.array(ramp.pixeldq),
        coeffs,
        dq,
        read_pattern_of(ramp),
        inverse_coeffs=np.array(inverse.coeffs),
    )
    out = LinearityStep.call(ramp, override_linearity=str(path))
    assert out.meta.ref_file.linearity.endswith("perpixel_linearity.asdf")
    np.testing.assert_array_equal(out.data, expected.data)
    np.testing.assert_array_equal(out.groupdq, expected.groupdq)
    np.testing.assert_array_equal(out.pixeldq, expected.pixeldq)
    assert out.pixeldq[10, 20] & PixelFlag.NO_LIN_CORR
    assert out.pixeldq[30, 40] & PixelFlag.HOT
    np.testing.assert_array_equal(out.data[:, 10, 20], ramp.data[:, 10, 20])
    # and the per-pixel c2 plane does change the result
    assert not np.array_equal(out.data, chain.get("linearity").data)


def test_damaged_reference_file_is_a_reference_error(chain, per_pixel_linearity, tmp_path):
    from rampcal.errors import ReferenceFileError

    path, _, _ = per_pixel_linearity
    cut = tmp_path / "cut_linearity.asdf"
    raw = path.read_bytes()
    cut.write_bytes(raw[: int(len(raw) * 0.6)])
    with pytest.raises(ReferenceFileError):
        LinearityStep.call(chain.get("wfi18_transient"), override_linearity=str(cut))
