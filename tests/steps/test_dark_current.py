"""Acceptance tests of the dark_current step: per-resultant and slope-image orders."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.core.dq import PixelFlag
from rampcal.core.readpattern import resultant_times
from rampcal.reference import nominal
from rampcal.steps.dark_current import DarkCurrentStep
from rampcal.steps.ramp_fit import RampFitStep

B = 4


def _dark_file(sim, tmp_path, name: str, edit) -> str:
    from rampcal.datamodels import save_atomic
    from rampcal.reference.defaults import build_default

    ref = build_default("dark", detector="WFI01", optical_element="F158", shape=sim.shape)
    edit(ref)
    return str(save_atomic(ref, tmp_path / name))


def test_dark_subtracted_from_resultants(sim, chain):
    before = chain.get("linearity")
    after = chain.get("dark")
    assert after.meta.cal_step.dark == "COMPLETE"
    assert after.meta.ref_file.dark.startswith("rampcal-default://")
    dark = nominal.nominal_maps("WFI01", sim.shape)["dark"]
    assert np.count_nonzero(dark > 0.1) >= 5  # hot pixels
    tbar = resultant_times(sim.pattern, float(sim.truth["frame_time"])).tbar
    expected = np.asarray(before.data, np.float64) - dark[None] * tbar[:, None, None]
    np.testing.assert_allclose(after.data, expected, rtol=0, atol=0.01)
    # the rate is kept on the ramp for ramp fitting's Poisson noise
    np.testing.assert_array_equal(after["average_dark_current"], dark)
    assert after["average_dark_current"].dtype == np.float32
    # the dark DQ (HOT) is OR-ed into the pixel DQ
    hot = (nominal.nominal_maps("WFI01", sim.shape)["mask"] & PixelFlag.HOT) != 0
    assert np.all(after.pixeldq[hot] & PixelFlag.HOT)
    after.validate()


@pytest.mark.parametrize("algorithm", ["ols_cas22", "likely"])
def test_resultant_and_slope_orders_agree(sim, chain, algorithm):
    # new order: ramp fit first, then the dark rate off the slope image
    image = RampFitStep.call(chain.get("linearity"), algorithm=algorithm)
    assert "average_dark_current" not in chain.get("linearity")
    slope_in = np.array(image.data, np.float64)
    err_in = np.array(image.err)
    slope_order = DarkCurrentStep.call(image, subtract_from="slope")
    assert slope_order.meta.cal_step.dark == "COMPLETE"
    # old order: dark subtracted from the resultants, then ramp fit
    resultant_order = RampFitStep.call(chain.get("dark"), algorithm=algorithm)
    a = np.asarray(slope_order.data, np.float64)
    b = np.asarray(resultant_order.data, np.float64)
    assert a.shape == (sim.shape[0] - 2 * B, sim.shape[1] - 2 * B)
    # same jumps and flags either way
    np.testing.assert_array_equal(slope_order.dq, resultant_order.dq)
    np.testing.assert_array_equal(resultant_order["jump_indices"], slope_order["jump_indices"])
    usable = (np.asarray(resultant_order.dq) & PixelFlag.DO_NOT_USE) == 0
    assert np.all(np.isfinite(a[usable]) & np.isfinite(b[usable]))
    if algorithm == "ols_cas22":
        # the fitter adds the dark back for its weights and takes it off the slope again:
        # identical up to float32 rounding (one unit in the last place above 1024 DN/s)
        np.testing.assert_allclose(a[usable], b[usable], rtol=3e-7, atol=1e-4)
    else:
        # likely uses the dark in the covariance only: the weights differ very slightly
        err = np.asarray(resultant_order.err, np.float64)[usable]
        assert np.all(np.abs(a - b)[usable] <= 0.01 * err)
        assert np.max(np.abs(a - b)[usable]) < 1e-3
    # the slope image lost exactly the (trimmed) dark rate
    dark = nominal.nominal_maps("WFI01", sim.shape)["dark"][B:-B, B:-B]
    np.testing.assert_allclose(slope_in - a, dark, rtol=0, atol=1e-4)
    # variances are not changed by the dark
    np.testing.assert_array_equal(err_in, slope_order.err)


def test_nan_dark_is_flagged_and_not_applied(sim, chain, tmp_path):
    targets = [(20, 30), (60, 300)]

    def edit(ref):
        slope = np.array(ref.dark_slope)
        for y, x in targets:
            slope[y, x] = np.nan
        ref.dark_slope = slope

    path = _dark_file(sim, tmp_path, "nan_dark.asdf", edit)
    ramp = chain.get("linearity")
    data_in = np.array(ramp.data)
    out = DarkCurrentStep.call(ramp, override_dark=path)
    assert out.meta.ref_file.dark.endswith("nan_dark.asdf")
    pdq = np.asarray(out.pixeldq)
    assert np.count_nonzero(pdq & PixelFlag.UNRELIABLE_DARK) == len(targets)
    for y, x in targets:
        assert pdq[y, x] & PixelFlag.UNRELIABLE_DARK
        np.testing.assert_array_equal(out.data[:, y, x], data_in[:, y, x])
        assert out["average_dark_current"][y, x] == 0.0
    # elsewhere the default correction
    np.testing.assert_array_equal(
        np.asarray(out.data)[:, 10, 10], np.asarray(chain.get("dark").data)[:, 10, 10]
    )

    # slope order: NaN dark leaves the slope alone and flags the pixel
    image = RampFitStep.call(chain.get("linearity"))
    slope_in = np.array(image.data)
    res = DarkCurrentStep.call(image, override_dark=path)
    for y, x in targets:
        assert res.dq[y - B, x - B] & PixelFlag.UNRELIABLE_DARK
        assert res.data[y - B, x - B] == slope_in[y - B, x - B]


def test_legacy_dark_cube(sim, chain, tmp_path):
    """A 3-D dark cube (one plane per resultant) is held as an extra ``data`` node: the
    DARK schema has no such array any more, but roman_datamodels keeps extra nodes."""
    nres = len(sim.pattern)
    cube = np.zeros((nres, *sim.shape), dtype=np.float32)
    cube += 7.0 * np.arange(1, nres + 1, dtype=np.float32)[:, None, None]
    cube[:, 50, 100] = 1000.0
    cube[3, 70, 200] = np.nan

    def edit(ref):
        ref["data"] = cube

    path = _dark_file(sim, tmp_path, "cube_dark.asdf", edit)
    ramp = chain.get("linearity")
    data_in = np.array(ramp.data, dtype=np.float64)
    out = DarkCurrentStep.call(ramp, override_dark=path)
    assert out.meta.cal_step.dark == "COMPLETE"
    expected = data_in - np.nan_to_num(cube, nan=0.0)
    np.testing.assert_allclose(out.data, expected, rtol=0, atol=0.01)
    assert out.pixeldq[70, 200] & PixelFlag.UNRELIABLE_DARK
    assert np.count_nonzero(out.pixeldq & PixelFlag.UNRELIABLE_DARK) == 1

    bad = _dark_file(
        sim, tmp_path, "short_cube.asdf", lambda ref: ref.__setitem__("data", cube[:3])
    )
    from rampcal.errors import ReferenceFileError

    with pytest.raises(ReferenceFileError, match="3 planes"):
        DarkCurrentStep.call(chain.get("linearity"), override_dark=bad)


def test_uniform_dark_is_one_value_and_saves(chain, tmp_path):
    """A uniform DARK is applied from one value; the ramp still saves and reads back."""
    import roman_datamodels as rdm
    from roman_datamodels import datamodels as rdd

    from rampcal.datamodels import save_atomic
    from rampcal.steps.dark_current import DarkCurrentStep

    ramp = chain.get("linearity")
    shape = ramp.pixeldq.shape
    dark = rdd.DarkRefModel.create_fake_data(shape=(2, *shape))
    dark.meta.instrument.detector = "WFI01"
    dark.dark_slope = np.full(shape, 0.25, np.float32)
    dark.dark_slope_error = np.zeros(shape, np.float32)
    dark.dq = np.zeros(shape, np.uint32)
    assert "data" not in dark  # the current format: no 3-D cube
    path = save_atomic(dark, tmp_path / "flat_dark.asdf")
    before = np.array(ramp.data)
    out = DarkCurrentStep.call(ramp, override_dark=str(path))
    assert out["average_dark_current"].strides == (0, 0)  # one value, no plane in memory
    tbar = np.asarray(out.data - before).mean(axis=(1, 2)) / -0.25
    assert np.all(np.diff(tbar) > 0)
    saved = save_atomic(out, tmp_path / "r_darkcurrent.asdf")
    with rdm.open(saved) as back:
        expected = np.full(shape, 0.25, np.float32)
        np.testing.assert_array_equal(back["average_dark_current"], expected)
