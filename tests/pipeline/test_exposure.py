"""End-to-end tests of the ExposurePipeline on small simulated exposures."""

import json

import numpy as np
import pytest
import roman_datamodels as rdm
from astropy.table import Table

from rampcal.core.dq import PixelFlag
from rampcal.datamodels import save_atomic
from rampcal.demo import slope_accuracy
from rampcal.errors import NoScienceDataError, ReferenceFileError
from rampcal.pipeline.exposure import ExposurePipeline
from rampcal.reference.defaults import build_default
from rampcal.simulate.roman import load_truth, write_exposure

SHAPE = (128, 256)


@pytest.fixture(scope="module")
def exposure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("elp")
    path, truth = write_exposure(folder / "r0001_wfi01_uncal.asdf", shape=SHAPE, seed=11)
    return path, load_truth(truth)


@pytest.fixture(scope="module")
def calibrated(exposure, tmp_path_factory):
    path, truth = exposure
    out = tmp_path_factory.mktemp("elp_out")
    image = ExposurePipeline.call(str(path), save_results=True, output_dir=str(out))
    return image, out, truth


def test_products_written_and_valid(calibrated):
    image, out, _ = calibrated
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "r0001_wfi01_cal.asdf",
        "r0001_wfi01_cat.parquet",
        "r0001_wfi01_segm.asdf",
        "r0001_wfi01_wcs.asdf",
    ]
    with rdm.open(out / "r0001_wfi01_cal.asdf") as cal:
        cal.validate()
        assert cal.data.shape == (SHAPE[0] - 8, SHAPE[1] - 8)
        assert cal.meta.wcs is not None
        assert cal.meta.calibration_software_name == "rampcal"
        assert cal.meta.ref_file.gain.startswith("rampcal-default://")
    with rdm.open(out / "r0001_wfi01_segm.asdf") as segm:
        segm.validate()
    with rdm.open(out / "r0001_wfi01_wcs.asdf") as wcs:
        wcs.validate()
    cat = Table.read(out / "r0001_wfi01_cat.parquet")
    assert len(cat) > 0 and {"x_centroid", "y_centroid"} <= set(cat.colnames)


def test_cal_step_record(calibrated):
    image, _, _ = calibrated
    steps = dict(image.meta.cal_step)
    for key in ("dq_init", "saturation", "refpix", "dark_decay", "linearity", "dark",
                "ramp_fit", "assign_wcs", "photom", "flat_field", "source_catalog"):  # fmt: skip
        assert steps[key] == "COMPLETE", key
    assert steps["wfi18_transient"] == "N/A"
    assert steps["tweakreg"] == "SKIPPED"  # no local reference catalog: offline, not a failure


def test_slopes_match_truth(calibrated):
    image, _, truth = calibrated
    acc = slope_accuracy(image, truth)
    assert acc["n_clean_pixels"] > 0.8 * (SHAPE[0] - 8) * (SHAPE[1] - 8)
    assert abs(acc["pull_median"]) < 0.1
    assert 0.9 < acc["pull_width"] < 1.1
    assert acc["n_jumps_flagged"] > 0.9 * acc["n_cosmic_rays_injected"]


def test_input_untouched(exposure, tmp_path):
    path, _ = exposure
    before = path.read_bytes()
    ExposurePipeline.call(str(path), save_results=True, output_dir=str(tmp_path))
    assert path.read_bytes() == before


def test_override_through_steps_parameters(exposure, tmp_path):
    path, _ = exposure
    gain = build_default("gain", detector="WFI01", optical_element="F158", shape=SHAPE)
    gain.data[:] = 4.0
    gpath = save_atomic(gain, tmp_path / "my_gain.asdf")
    steps = {key: {"skip": True} for key in ("source_catalog", "tweakreg")}
    steps["rampfit"] = {"override_gain": str(gpath)}
    image = ExposurePipeline.call(str(path), steps=steps)
    assert image.meta.ref_file.gain == str(gpath)
    bad = build_default("gain", detector="WFI01", optical_element="F158", shape=(64, 64))
    bpath = save_atomic(bad, tmp_path / "small_gain.asdf")
    steps["rampfit"] = {"override_gain": str(bpath)}
    with pytest.raises(ReferenceFileError, match="shape"):
        ExposurePipeline.call(str(path), steps=steps)


def test_dark_after_ramp_fit_gives_same_slopes(exposure):
    path, _ = exposure
    skip = {key: {"skip": True} for key in ("source_catalog", "tweakreg", "flatfield", "photom")}
    before = ExposurePipeline.call(str(path), steps=skip)
    after = ExposurePipeline.call(
        str(path), steps={**skip, "dark_current": {"subtract_from": "slope"}}
    )
    good = (before.dq & PixelFlag.DO_NOT_USE) == 0
    np.testing.assert_allclose(after.data[good], before.data[good], atol=2e-3, rtol=1e-4)
    assert after.meta.cal_step.dark == "COMPLETE"


def test_two_point_jump_path(exposure):
    path, truth = exposure
    steps = {key: {"skip": True} for key in ("source_catalog", "tweakreg")}
    steps["rampfit"] = {"use_ramp_jump_detection": False, "algorithm": "ols"}
    image = ExposurePipeline.call(str(path), steps=steps)
    assert image.meta.cal_step.jump == "COMPLETE"
    assert len(image["jump_indices"]) > 0.8 * len(truth["cr_y"])
    acc = slope_accuracy(image, truth)
    assert abs(acc["pull_median"]) < 0.15 and 0.85 < acc["pull_width"] < 1.2


def test_save_calibrated_ramp(exposure, tmp_path):
    path, _ = exposure
    steps = {key: {"skip": True} for key in ("source_catalog", "tweakreg")}
    ExposurePipeline.call(
        str(path), save_results=True, output_dir=str(tmp_path), save_calibrated_ramp=True,
        steps=steps,
    )  # fmt: skip
    with rdm.open(tmp_path / "r0001_wfi01_ramp.asdf") as ramp:
        assert type(ramp).__name__ == "RampModel"
        assert ramp.meta.cal_step.dark == "COMPLETE"
        dark = np.asarray(ramp.average_dark_current)
        assert dark.shape == ramp.data.shape[1:] and np.median(dark) > 0
    # later products keep the exposure's name (the _ramp suffix is replaced, not kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "r0001_wfi01_cal.asdf", "r0001_wfi01_ramp.asdf", "r0001_wfi01_wcs.asdf",
    ]  # fmt: skip


def test_fully_saturated_exposure(tmp_path, raw_factory):
    raw = raw_factory((64, 64), [[1], [2, 3], [4]], value=60000, offset=0, reference_read=None)
    path = save_atomic(raw, tmp_path / "sat_uncal.asdf")
    image = ExposurePipeline.call(str(path))
    assert np.all(image.data == 0) and np.all(image.err == 0) and np.all(image.var_poisson == 0)
    assert np.all(image.dq & PixelFlag.SATURATED)
    steps = dict(image.meta.cal_step)
    assert steps["saturation"] == "COMPLETE"
    for key in ("refpix", "linearity", "dark", "ramp_fit", "assign_wcs", "flat_field", "photom",
                "source_catalog", "tweakreg"):  # fmt: skip
        assert steps[key] == "SKIPPED", key
    image.validate()


def test_spectral_exposures_stop_after_assign_wcs(tmp_path):
    path, _ = write_exposure(
        tmp_path / "prism_uncal.asdf", shape=(64, 128), seed=3, exposure_type="WFI_SPECTRAL",
        optical_element="PRISM",
    )  # fmt: skip
    image = ExposurePipeline.call(str(path))
    steps = dict(image.meta.cal_step)
    assert steps["ramp_fit"] == "COMPLETE" and steps["assign_wcs"] == "COMPLETE"
    for key in ("flat_field", "photom", "source_catalog", "tweakreg"):
        assert steps[key] == "SKIPPED", key


def test_association_of_two_exposures(tmp_path):
    names = []
    for i in range(2):
        p, _ = write_exposure(tmp_path / f"r000{i}_wfi01_uncal.asdf", shape=(64, 128), seed=20 + i)
        names.append(p.name)
    asn = {"asn_id": "a1", "products": [{"name": "p", "members": [
        {"expname": n, "exptype": "science"} for n in names]}]}  # fmt: skip
    (tmp_path / "asn.json").write_text(json.dumps(asn))
    out = tmp_path / "out"
    results = ExposurePipeline.call(
        str(tmp_path / "asn.json"), save_results=True, output_dir=str(out),
        steps={"source_catalog": {"skip": True}},
    )  # fmt: skip
    assert len(results) == 2
    assert (out / "r0000_wfi01_cal.asdf").exists() and (out / "r0001_wfi01_cal.asdf").exists()


def test_association_without_science_members(tmp_path):
    (tmp_path / "asn.json").write_text(json.dumps({"products": [{"members": []}]}))
    with pytest.raises(NoScienceDataError) as info:
        ExposurePipeline.call(str(tmp_path / "asn.json"))
    assert info.value.exit_status == 64
