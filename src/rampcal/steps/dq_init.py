"""dq_init: raw exposure → RampModel, guide-window flags, MASK propagation (ALGORITHMS.md §2)."""

from __future__ import annotations

import logging
import os

import numpy as np

from rampcal.core.dq_init import flag_guide_window
from rampcal.datamodels import copy_border_reference_pixels, open_model, raw_to_ramp
from rampcal.datamodels.blockstream import compact_array
from rampcal.steps.base import RampcalStep

log = logging.getLogger(__name__)

__all__ = ["DQInitStep"]


class DQInitStep(RampcalStep):
    """Convert a raw exposure to a ramp and initialise its data-quality arrays."""

    class_alias = "dq_init"

    spec = """
    expand_gw_flagging = integer(default=0, min=0)  # pixels to grow the guide-window DO_NOT_USE box
    suffix = string(default='dq_init')  # output file suffix
    """

    reference_file_types = ["mask"]

    def process(self, step_input):
        from roman_datamodels import datamodels as rdd

        if isinstance(step_input, (str, os.PathLike)):
            # headers only: raw_to_ramp streams the cube from the file plane by plane
            model = open_model(step_input, lazy_load=True)
        else:
            model = self.open_model(step_input)
        if isinstance(model, rdd.ScienceRawModel):
            ramp = raw_to_ramp(model, copy_border=False)
            if model is not step_input:
                model.close()  # release the decompressed raw cube now
            del model
        elif isinstance(model, rdd.RampModel):
            ramp = model
        else:
            from rampcal.errors import InputFileError

            raise InputFileError(
                f"dq_init needs a raw exposure (_uncal) or a RampModel, got {type(model).__name__}",
                path=model.meta.get("filename"),
            )

        gs = ramp.meta.guide_star
        flagged = flag_guide_window(
            ramp.pixeldq,
            gs.get("window_xstart"),
            gs.get("window_xstop"),
            gs.get("window_ystart"),
            gs.get("window_ystop"),
            expand=self.expand_gw_flagging,
        )
        if not flagged:
            log.info("invalid or missing guide window: no GW_AFFECTED_DATA flags")

        mask = self.reference_model(ramp, "mask", expect=rdd.MaskRefModel)
        if mask is None:
            self.record_step(ramp, "SKIPPED", reason="no MASK reference file")
        else:
            mask_dq = compact_array(mask, "dq", np.uint32)  # the fast block reader
            np.bitwise_or(ramp.pixeldq, mask_dq, out=ramp.pixeldq)
            self.record_step(ramp, "COMPLETE")
        copy_border_reference_pixels(ramp)
        n_bad = int(np.count_nonzero(ramp.pixeldq & 1))
        log.info("dq_init: %d resultants, %d DO_NOT_USE pixels", ramp.data.shape[0], n_bad)
        return ramp
