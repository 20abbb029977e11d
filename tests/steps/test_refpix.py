"""Acceptance tests of the refpix step: removal of the simulated channel drifts."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.core.refpix import correct_refpix
from rampcal.simulate.roman import drift_image
from rampcal.steps.refpix import RefPixStep, _load_coefficients

B = 4
NAMES = ("gamma", "zeta", "alpha")


def _demeaned_rms(cube: np.ndarray) -> float:
    """RMS over the science pixels after removing each pixel's mean over resultants."""
    sci = cube[:, B:-B, B:-B]
    return float(np.sqrt(np.mean((sci - sci.mean(axis=0, keepdims=True)) ** 2)))


@pytest.fixture(scope="module")
def drift_setup(sim, chain):
    """(ramp before refpix, its data (float64), injected drift cube, drift RMS)."""
    before = chain.get("saturation")
    data = np.array(before.data, dtype=np.float64)
    nres, _, nx = data.shape
    drift = np.stack([drift_image(sim.truth, i)[:, :nx] for i in range(nres)])
    return before, data, drift, _demeaned_rms(drift)


def _residual_rms(after, data_before: np.ndarray, drift: np.ndarray) -> float:
    """RMS of what is left of the drift: after − (before − drift), per-pixel mean removed."""
    residual = np.asarray(after.data, dtype=np.float64) - (data_before - drift)
    return _demeaned_rms(residual)


def test_drift_removed_tenfold(chain, drift_setup):
    _, data, drift, drift_rms = drift_setup
    after = chain.get("refpix")
    assert after.meta.cal_step.refpix == "COMPLETE"
    assert after.meta.ref_file.refpix.startswith("rampcal-default://")
    assert drift_rms > 10.0  # the simulated drifts are tens of DN
    residual_rms = _residual_rms(after, data, drift)
    assert residual_rms * 10 <= drift_rms, (residual_rms, drift_rms)
    # corrected border copies and the amp33 array are written back
    np.testing.assert_array_equal(after.border_ref_pix_left, after.data[:, :, :B])
    np.testing.assert_array_equal(after.border_ref_pix_right, after.data[:, :, -B:])
    assert after.amp33.dtype == np.uint16
    assert after.data.dtype == np.float32
    after.validate()


def test_remove_trends_off_leaves_the_drift(drift_setup):
    before, data, drift, drift_rms = drift_setup
    out = RefPixStep.call(before.copy(), remove_trends=False)
    assert out.meta.cal_step.refpix == "COMPLETE"
    # the per-channel offsets and trends are the bulk of the drift: most of it stays
    assert _residual_rms(out, data, drift) >= 0.5 * drift_rms


@pytest.mark.parametrize(
    ("switch", "max_fraction"),
    [
        ("remove_offset", 0.1),
        ("cosine_interpolate", 0.15),
        ("fft_interpolate", 0.1),
    ],
)
def test_switches_can_be_turned_off(chain, drift_setup, switch, max_fraction):
    before, data, drift, drift_rms = drift_setup
    out = RefPixStep.call(before.copy(), **{switch: False})
    assert out.meta.cal_step.refpix == "COMPLETE"
    default = np.asarray(chain.get("refpix").data)
    assert not np.array_equal(np.asarray(out.data), default), switch
    # the drift is still mostly removed (amp33 interpolation only refines the common mode)
    assert _residual_rms(out, data, drift) <= max_fraction * drift_rms
    if switch == "remove_offset":
        # without it, the trend fit removes the reference-pixel level (bias) from every
        # pixel: a constant per pixel, so the demeaned residual is unchanged
        shift = np.asarray(out.data, np.float64) - default
        assert _demeaned_rms(shift) < 0.01 * drift_rms
        assert np.median(shift[:, B:-B, B:-B]) < -500.0


def test_override_not_applicable_skips(drift_setup):
    before, data, _, _ = drift_setup
    out = RefPixStep.call(before.copy(), override_refpix="N/A")
    assert out.meta.cal_step.refpix == "SKIPPED"
    np.testing.assert_array_equal(np.asarray(out.data, np.float64), data)


def _refpix_reference(path, shape, *, odd_row=True, seed=21):
    """A REFPIX file: zero gamma, general zeta, alpha rows all equal (but one if odd_row)."""
    from rampcal.datamodels import save_atomic
    from rampcal.reference.defaults import build_default

    ref = build_default("refpix", detector="WFI01", optical_element="F158", shape=shape)
    rng = np.random.default_rng(seed)
    nk = ref.alpha.shape[1]
    freq = np.arange(nk) / nk
    zeta = 0.2 * np.exp(-3.0 * freq) * np.exp(1j * rng.uniform(-1.0, 1.0, (32, 1)) * freq)
    alpha = np.repeat(np.exp(-2.0 * freq)[None, :] + 0j, 32, axis=0)
    if odd_row:
        alpha[17] *= 0.5
    ref.zeta = zeta
    ref.alpha = alpha
    save_atomic(ref, path)
    return {"gamma": np.zeros((32, nk), complex), "zeta": zeta, "alpha": alpha}


def test_coefficients_streamed_from_the_reference_file(tmp_path, sim):
    from rampcal.datamodels import open_model
    from rampcal.datamodels.blockstream import plane_reader

    path = tmp_path / "refpix.asdf"
    truth = _refpix_reference(path, sim.shape)
    ref = open_model(path)
    assert all(plane_reader(ref, name) is not None for name in NAMES)  # streamed, not loaded
    got = {name: _load_coefficients(ref, name) for name in NAMES}
    assert got["gamma"].strides == (0, 0)  # zeros: one broadcast value
    assert got["zeta"].strides[0] != 0 and got["alpha"].strides[0] != 0
    for name in NAMES:
        np.testing.assert_array_equal(got[name], truth[name])
    ref.close()
    # equal rows become a broadcast row; a model already in memory is compacted the same way
    _refpix_reference(path, sim.shape, odd_row=False)
    with open_model(path) as ref:
        streamed = _load_coefficients(ref, "alpha")
        in_memory = {name: np.asarray(ref[name]) for name in NAMES}  # now loaded whole
        assert plane_reader(ref, "alpha") is None
        loaded = _load_coefficients(ref, "alpha")
    for arr in (streamed, loaded):
        assert arr.strides[0] == 0
    np.testing.assert_array_equal(streamed[17], in_memory["alpha"][0])
    np.testing.assert_array_equal(loaded, streamed)


@pytest.mark.parametrize("override", [False, True])
def test_step_equals_core_function_on_loaded_arrays(tmp_path, sim, drift_setup, override):
    # the streamed (compact) coefficients give bit-identical output to the core function
    # called with the whole arrays; default reference and a general one
    from rampcal.datamodels import open_model

    before = drift_setup[0]
    kwargs = {}
    if override:
        path = tmp_path / "refpix_general.asdf"
        _refpix_reference(path, sim.shape)
        kwargs["override_refpix"] = str(path)
    out = RefPixStep.call(before.copy(), **kwargs)
    ref_path = out.meta.ref_file.refpix
    if not override:
        from rampcal.reference.resolve import cache_dir

        ref_path = cache_dir() / ref_path.split("://", 1)[1]
    with open_model(ref_path) as ref:
        coeffs = [np.array(ref[name]) for name in NAMES]
    data = np.array(before.data, dtype=np.float32)
    res = correct_refpix(
        data, np.asarray(before.amp33), np.asarray(before.pixeldq, np.uint32), *coeffs
    )
    assert res.fast_path is False
    np.testing.assert_array_equal(np.asarray(out.data), data)
    amp = np.clip(np.rint(np.abs(res.amp33)), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(np.asarray(out.amp33), amp)
    np.testing.assert_array_equal(out.border_ref_pix_left, data[:, :, :B])
