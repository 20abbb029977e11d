"""Acceptance tests of ramp_fit on the full simulated detector-level chain."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.core.dq import GroupFlag, PixelFlag
from rampcal.steps.ramp_fit import RampFitStep

B = 4
ALGORITHMS = ("ols_cas22", "likely")


def _robust(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 × median absolute deviation)."""
    med = float(np.median(values))
    return med, float(1.4826 * np.median(np.abs(values - med)))


def _clean(sim, image) -> np.ndarray:
    """Trimmed (ny−8, nx−8) mask: no CR per truth, never saturated, not DO_NOT_USE."""
    ok = sim.clean_pixels()[B:-B, B:-B]
    return ok & ((np.asarray(image.dq) & PixelFlag.DO_NOT_USE) == 0)


def _pulls(sim, image, mask) -> np.ndarray:
    slope = np.asarray(image.data, np.float64)[mask]
    err = np.asarray(image.err, np.float64)[mask]
    assert np.all(err > 0)
    return (slope - sim.truth["rate_dn"][B:-B, B:-B][mask]) / err


def _detectable_crs(sim, pixeldq: np.ndarray):
    """Truth CRs that make a jump between resultants: (y, x, resultant of the hit).

    Left out: hits in read 1 (already in the first resultant: no jump), hits at or
    after saturation, and hits on DO_NOT_USE pixels (guide-window box, dead pixels).
    """
    t = sim.truth
    y, x, read = t["cr_y"], t["cr_x"], t["cr_read"]
    sat = t["sat_read"][y, x]
    keep = (read > 1) & ((sat == 0) | (read < sat))
    keep &= (pixeldq[y, x] & PixelFlag.DO_NOT_USE) == 0
    return y[keep], x[keep], sim.read_resultant[read[keep]]


def _found_fraction(sim, jump_indices: np.ndarray, pixeldq: np.ndarray) -> tuple[float, int]:
    """Fraction of detectable CRs listed at (resultant g or g+1, y−4, x−4)."""
    listed = {tuple(row) for row in np.asarray(jump_indices, dtype=np.int64).tolist()}
    ys, xs, gs = _detectable_crs(sim, pixeldq)
    found = [
        (g, y - B, x - B) in listed or (g + 1, y - B, x - B) in listed
        for y, x, g in zip(ys.tolist(), xs.tolist(), gs.tolist())
    ]
    return float(np.mean(found)), len(found)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pulls_of_clean_pixels(sim, rampfit_images, algorithm):
    image = rampfit_images[algorithm]
    mask = _clean(sim, image)
    assert np.count_nonzero(mask) > 50000
    median, width = _robust(_pulls(sim, image, mask))
    assert abs(median) < 0.1, median
    assert 0.9 < width < 1.1, width
    # bright clean pixels (stars, > 5 DN/s) are unbiased too
    bright = mask & (sim.truth["rate_dn"][B:-B, B:-B] > 5.0)
    assert np.count_nonzero(bright) > 300
    median_b, width_b = _robust(_pulls(sim, image, bright))
    assert abs(median_b) < 0.2, median_b
    assert 0.8 < width_b < 1.2, width_b


def test_algorithms_agree(sim, rampfit_images):
    a, b = (rampfit_images[alg] for alg in ALGORITHMS)
    mask = _clean(sim, a) & _clean(sim, b)
    diff = np.abs(np.asarray(a.data, np.float64) - np.asarray(b.data, np.float64))[mask]
    err = np.minimum(np.asarray(a.err, np.float64), np.asarray(b.err, np.float64))[mask]
    assert np.mean(diff < 0.5 * err) >= 0.95


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cosmic_rays_in_jump_indices(sim, chain, rampfit_images, algorithm):
    image = rampfit_images[algorithm]
    pixeldq = np.asarray(chain.get("dark").pixeldq)
    fraction, n = _found_fraction(sim, image["jump_indices"], pixeldq)
    assert n > 1000
    assert fraction >= 0.95, fraction
    # the pixel DQ says JUMP_DET where jumps were listed
    ji = np.asarray(image["jump_indices"], dtype=np.int64)
    assert np.all(image.dq[ji[:, 1], ji[:, 2]] & PixelFlag.JUMP_DET)
    # few jumps on pixels that had no cosmic ray
    jumped = np.zeros(image.data.shape, dtype=bool)
    jumped[ji[:, 1], ji[:, 2]] = True
    quiet = _clean(sim, image)
    assert np.count_nonzero(jumped & quiet) < 0.005 * np.count_nonzero(quiet)


def test_output_product(sim, rampfit_images):
    image = rampfit_images["ols_cas22"]
    ny, nx = sim.shape
    image.validate()
    assert type(image).__name__ == "ImageModel"
    assert image.meta.cal_step.ramp_fit == "COMPLETE"
    assert image.meta.ref_file.readnoise.startswith("rampcal-default://")
    assert image.meta.ref_file.gain.startswith("rampcal-default://")
    assert image.data.shape == (ny - 2 * B, nx - 2 * B)
    assert image.data.dtype == np.float32
    assert image.dq.dtype == np.uint32
    for name in ("err", "var_poisson", "var_rnoise", "chisq", "dumo"):
        assert image[name].shape == image.data.shape, name
        assert image[name].dtype == np.float16, name
    ji = np.asarray(image["jump_indices"])
    assert ji.dtype == np.int16 and ji.ndim == 2 and ji.shape[1] == 3
    assert ji[:, 0].max() < len(sim.pattern)
    # err² = var_poisson + var_rnoise (float16 storage)
    err2 = np.asarray(image.err, np.float64) ** 2
    var = np.asarray(image.var_poisson, np.float64) + np.asarray(image.var_rnoise, np.float64)
    good = _clean(sim, image)
    np.testing.assert_allclose(err2[good], var[good], rtol=5e-3)
    # the chain's cal_step record travels into the image
    for key in ("dq_init", "saturation", "refpix", "dark_decay", "linearity", "dark"):
        assert image.meta.cal_step[key] == "COMPLETE", key
    assert image.meta.cal_step.wfi18_transient == "N/A"


@pytest.mark.parametrize("cores", ["none", "1"])
def test_maximum_cores(chain, rampfit_images, cores):
    image = RampFitStep.call(chain.get("dark"), maximum_cores=cores)
    reference = rampfit_images["ols_cas22"]
    np.testing.assert_array_equal(image.data, reference.data)
    np.testing.assert_array_equal(image.err, reference.err)
    np.testing.assert_array_equal(image["jump_indices"], reference["jump_indices"])


def test_ols_after_jump_step(sim, chain):
    from rampcal.steps.jump import JumpStep

    ramp = JumpStep.call(chain.get("dark"))
    assert ramp.meta.cal_step.jump == "COMPLETE"
    image = RampFitStep.call(ramp, algorithm="ols", use_ramp_jump_detection=False)
    assert image.meta.cal_step.ramp_fit == "COMPLETE"
    image.validate()
    pixeldq = np.asarray(chain.get("dark").pixeldq)
    fraction, _ = _found_fraction(sim, image["jump_indices"], pixeldq)
    assert fraction >= 0.9, fraction
    mask = _clean(sim, image)
    median, width = _robust(_pulls(sim, image, mask))
    assert abs(median) < 0.1 and 0.9 < width < 1.1, (median, width)
    # pixels hit by cosmic rays are fitted around their jumps
    hit = sim.cr_pixels[B:-B, B:-B] & (sim.truth["sat_read"][B:-B, B:-B] == 0)
    hit &= (np.asarray(image.dq) & PixelFlag.DO_NOT_USE) == 0
    assert np.mean(np.abs(_pulls(sim, image, hit)) > 5) < 0.02
    # without the jump step the same pixels are ruined
    plain = RampFitStep.call(chain.get("dark"), algorithm="ols", use_ramp_jump_detection=False)
    assert np.mean(np.abs(_pulls(sim, plain, hit)) > 5) > 0.5
    assert not np.any(np.asarray(plain.dq) & PixelFlag.JUMP_DET)


def test_all_saturated_pixel(sim, chain):
    from rampcal.steps.dark_current import DarkCurrentStep
    from rampcal.steps.dark_decay import DarkDecayStep
    from rampcal.steps.linearity import LinearityStep
    from rampcal.steps.refpix import RefPixStep
    from rampcal.steps.saturation import SaturationStep

    ramp = chain.get("dq_init")
    data = np.array(ramp.data)
    y, x = 40, 100
    assert sim.truth["sat_read"][y, x] == 0
    data[:, y, x] = 60000.0
    ramp.data = data
    for step in (SaturationStep, RefPixStep, DarkDecayStep, LinearityStep, DarkCurrentStep):
        ramp = step.call(ramp)
    assert np.all(ramp.groupdq[:, y, x] & GroupFlag.SATURATED)
    for algorithm in ALGORITHMS:
        image = RampFitStep.call(ramp.copy(), algorithm=algorithm)
        flags = int(image.dq[y - B, x - B])
        assert flags & PixelFlag.DO_NOT_USE, algorithm
        assert flags & PixelFlag.SATURATED, algorithm
        ji = np.asarray(image["jump_indices"])
        assert not np.all(ji[:, 1:] == (y - B, x - B), axis=1).any()
        # its neighbours are fitted normally
        assert not image.dq[y - B, x - B + 2] & PixelFlag.DO_NOT_USE


def test_steps_chain_through_saved_files(tmp_path, sim):
    """Each step runs on the file the previous one saved (as with strun), to _rampfit."""
    import roman_datamodels as rdm

    from rampcal.steps.dq_init import DQInitStep
    from rampcal.steps.linearity import LinearityStep
    from rampcal.steps.ramp_fit import RampFitStep
    from rampcal.steps.saturation import SaturationStep

    current = str(sim.path)
    for step, suffix in ((DQInitStep, "dq_init"), (SaturationStep, "saturation"),
                         (LinearityStep, "linearity"), (RampFitStep, "rampfit")):  # fmt: skip
        step.call(current, save_results=True, output_dir=str(tmp_path))
        current = str(tmp_path / f"r0001_wfi01_{suffix}.asdf")
        with rdm.open(current) as m:
            assert m.meta.cal_step[step.class_alias] == "COMPLETE"
    with rdm.open(current) as image:
        assert image.data.ndim == 2 and np.isfinite(image.data).mean() > 0.99


@pytest.mark.parametrize("algorithm", ["ols_cas22", "likely", "ols"])
def test_row_blocks_do_not_change_results(chain, algorithm):
    """Fitting 7 rows at a time gives exactly the one-block image, and the jumps found
    are written into the ramp's groupdq."""
    from rampcal.reference import nominal
    from rampcal.steps.ramp_fit import fit_ramp_model

    ramp = chain.get("dark")
    maps = nominal.nominal_maps("WFI01", ramp.pixeldq.shape)
    rn, gain = maps["readnoise"], maps["gain"]
    whole_ramp = ramp.copy()
    whole = fit_ramp_model(whole_ramp, rn, gain, algorithm=algorithm, chunk_rows=100_000)
    blocks = fit_ramp_model(ramp, rn, gain, algorithm=algorithm, chunk_rows=7)
    for key in ("data", "dq", "err", "var_poisson", "var_rnoise", "dumo", "jump_indices"):
        np.testing.assert_array_equal(blocks[key], whole[key], err_msg=key)
    np.testing.assert_array_equal(ramp.groupdq, whole_ramp.groupdq)
    jumps = blocks["jump_indices"]
    if algorithm != "ols":
        assert len(jumps) > 10
        r, y, x = jumps[0].astype(int)
        assert ramp.groupdq[r, y + 4, x + 4] & GroupFlag.JUMP_DET
