"""Acceptance tests of the dq_init step on a simulated exposure."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from rampcal.core.dq import PixelFlag
from rampcal.errors import ReferenceFileError
from rampcal.reference import nominal
from rampcal.steps.dq_init import DQInitStep

B = 4
DNU = PixelFlag.DO_NOT_USE
GW = PixelFlag.GW_AFFECTED_DATA


def _guide_window(model) -> tuple[int, int, int, int]:
    gs = model.meta.guide_star
    return gs.window_xstart, gs.window_xstop, gs.window_ystart, gs.window_ystop


def _expected_pixeldq(model, expand: int) -> np.ndarray:
    x0, x1, y0, y1 = _guide_window(model)
    expected = nominal.nominal_maps("WFI01", model.pixeldq.shape)["mask"].copy()
    expected[:, x0:x1] |= GW
    expected[max(y0 - expand, 0) : y1 + expand, max(x0 - expand, 0) : x1 + expand] |= DNU | GW
    return expected


def test_mask_guide_window_and_decoding(sim, chain):
    import roman_datamodels as rdm

    ramp = chain.get("dq_init")
    assert ramp.meta.cal_step.dq_init == "COMPLETE"
    assert ramp.meta.ref_file.mask.startswith("rampcal-default://")
    # the simulated guide window sits in the middle of the frame
    assert _guide_window(ramp) == (248, 264, 56, 72)

    mask = nominal.nominal_maps("WFI01", sim.shape)["mask"]
    dead = (mask & PixelFlag.DEAD) != 0
    assert np.count_nonzero(dead) >= 2
    assert np.all(ramp.pixeldq[dead] & (DNU | PixelFlag.DEAD) == DNU | PixelFlag.DEAD)
    # every other bit is exactly the mask plus the guide-window flags
    np.testing.assert_array_equal(ramp.pixeldq, _expected_pixeldq(ramp, 0))
    assert np.all(ramp.groupdq == 0)

    # decoding: raw + reference_read - data_encoding_offset, exactly
    with rdm.open(sim.path) as raw:
        expected = (
            np.asarray(raw.data, np.float64)
            + np.asarray(raw.reference_read, np.float64)[None]
            - raw.meta.instrument.data_encoding_offset
        )
    np.testing.assert_array_equal(ramp.data, expected.astype(np.float32))
    assert ramp.data.dtype == np.float32
    # decoded science pixels track bias + signal: first resultant within 5 sigma of truth
    t = sim.truth
    sci = sim.clean_pixels() & (t["rate_dn"] < 10)
    resid = ramp.data[0][sci] - t["bias"][sci]
    assert abs(np.median(resid)) < 40  # channel drift offsets are ~20 DN


def test_border_copies(chain):
    ramp = chain.get("dq_init")
    data, dq = np.asarray(ramp.data), np.asarray(ramp.pixeldq)
    np.testing.assert_array_equal(ramp.border_ref_pix_left, data[:, :, :B])
    np.testing.assert_array_equal(ramp.border_ref_pix_right, data[:, :, -B:])
    np.testing.assert_array_equal(ramp.border_ref_pix_top, data[:, :B, :])
    np.testing.assert_array_equal(ramp.border_ref_pix_bottom, data[:, -B:, :])
    np.testing.assert_array_equal(ramp.dq_border_ref_pix_left, dq[:, :B])
    np.testing.assert_array_equal(ramp.dq_border_ref_pix_right, dq[:, -B:])
    np.testing.assert_array_equal(ramp.dq_border_ref_pix_top, dq[:B, :])
    np.testing.assert_array_equal(ramp.dq_border_ref_pix_bottom, dq[-B:, :])
    # the border carries REFERENCE_PIXEL from the mask
    assert np.all(ramp.dq_border_ref_pix_left & PixelFlag.REFERENCE_PIXEL)
    assert np.all(ramp.dq_border_ref_pix_top & PixelFlag.REFERENCE_PIXEL)
    ramp.validate()


def test_expand_gw_flagging(sim):
    ramp = DQInitStep.call(str(sim.path), expand_gw_flagging=3)
    np.testing.assert_array_equal(ramp.pixeldq, _expected_pixeldq(ramp, 3))
    x0, x1, y0, y1 = _guide_window(ramp)
    box = np.zeros(sim.shape, dtype=bool)
    box[y0 - 3 : y1 + 3, x0 - 3 : x1 + 3] = True
    assert np.all(ramp.pixeldq[box] & DNU)
    # columns of the window outside the box: GW_AFFECTED_DATA only (unless masked)
    assert np.all(ramp.pixeldq[:, x0:x1] & GW)
    assert ramp.pixeldq[2, x0] & DNU == 0
    assert ramp.pixeldq[y0 - 4, x0 - 3] & GW == 0


def test_override_mask_wrong_shape(sim, tmp_path):
    from roman_datamodels import datamodels as rdd

    from rampcal.datamodels import save_atomic
    from rampcal.reference.defaults import build_default

    mask = build_default("mask", detector="WFI01", optical_element="F158", shape=(64, 64))
    assert isinstance(mask, rdd.MaskRefModel)
    path = save_atomic(mask, tmp_path / "my_small_mask.asdf")
    with pytest.raises(ReferenceFileError) as info:
        DQInitStep.call(str(sim.path), override_mask=str(path))
    message = str(info.value)
    assert "my_small_mask.asdf" in message
    assert "(64, 64)" in message and str(sim.shape) in message
    assert "\n" not in message


def test_override_mask_from_file(sim, tmp_path):
    from rampcal.datamodels import save_atomic
    from rampcal.reference.defaults import build_default

    mask = build_default("mask", detector="WFI01", optical_element="F158", shape=sim.shape)
    dq = np.zeros(sim.shape, dtype=np.uint32)
    dq[10, 20] = PixelFlag.HOT
    dq[30, 40] = PixelFlag.DEAD | PixelFlag.DO_NOT_USE
    mask.dq = dq
    path = save_atomic(mask, tmp_path / "custom_mask.asdf")
    ramp = DQInitStep.call(str(sim.path), override_mask=str(path))
    assert ramp.meta.cal_step.dq_init == "COMPLETE"
    assert ramp.meta.ref_file.mask.endswith("custom_mask.asdf")
    assert ramp.pixeldq[10, 20] == PixelFlag.HOT
    assert ramp.pixeldq[30, 40] == PixelFlag.DEAD | PixelFlag.DO_NOT_USE
    assert np.count_nonzero(ramp.pixeldq & PixelFlag.DEAD) == 1
    assert np.count_nonzero(ramp.pixeldq & PixelFlag.REFERENCE_PIXEL) == 0


def test_override_mask_not_applicable(sim):
    ramp = DQInitStep.call(str(sim.path), override_mask="N/A")
    assert ramp.meta.cal_step.dq_init == "SKIPPED"
    # no mask bits, but the guide window is still flagged
    assert np.count_nonzero(ramp.pixeldq & (PixelFlag.DEAD | PixelFlag.REFERENCE_PIXEL)) == 0
    x0, x1, y0, y1 = _guide_window(ramp)
    assert np.all(ramp.pixeldq[y0:y1, x0:x1] == DNU | GW)
    ramp.validate()


def test_save_results_leaves_input_unchanged(sim, tmp_path):
    src = tmp_path / "r0001_wfi01_uncal.asdf"
    shutil.copyfile(sim.path, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out_dir = tmp_path / "out"
    ramp = DQInitStep.call(str(src), save_results=True, output_dir=str(out_dir))
    out = out_dir / "r0001_wfi01_dq_init.asdf"
    assert out.is_file()
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert ramp.meta.filename == "r0001_wfi01_dq_init.asdf"

    import roman_datamodels as rdm

    with rdm.open(out) as saved:
        assert type(saved).__name__ == "RampModel"
        assert saved.meta.cal_step.dq_init == "COMPLETE"
        np.testing.assert_array_equal(saved.pixeldq, ramp.pixeldq)
        np.testing.assert_array_equal(saved.data, ramp.data)


def test_streamed_file_equals_model_in_memory(sim):
    import roman_datamodels as rdm

    streamed = DQInitStep.call(str(sim.path))  # the cube is streamed from the file
    with rdm.open(sim.path, lazy_load=False) as raw:
        loaded = DQInitStep.call(raw)  # the cube is already in memory
    for key in ("data", "groupdq", "pixeldq", "amp33", "border_ref_pix_left"):
        np.testing.assert_array_equal(getattr(streamed, key), getattr(loaded, key))
