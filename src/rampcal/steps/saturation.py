"""saturation: flag saturated resultants (ALGORITHMS.md §3; spec "Saturation Detection")."""

from __future__ import annotations

import logging

import numpy as np

from rampcal.core.saturation import flag_saturation
from rampcal.datamodels import read_pattern_of
from rampcal.datamodels.blockstream import compact_array
from rampcal.steps.base import RampcalStep

log = logging.getLogger(__name__)

__all__ = ["SaturationStep"]


class SaturationStep(RampcalStep):
    """Flag SATURATED / diluted-saturation / A/D-floor resultants from the SATURATION file."""

    class_alias = "saturation"

    spec = """
    n_pix_grow_sat = integer(default=0, min=0)  # grow saturation flags by this many pixels
    backup = integer(default=0, min=0)  # back saturation up into earlier multi-read resultants
    suffix = string(default='saturation')  # output file suffix
    """

    reference_file_types = ["saturation"]

    def process(self, step_input):
        from roman_datamodels import datamodels as rdd

        model = self.open_model(step_input)
        ref = self.reference_model(model, "saturation", expect=rdd.SaturationRefModel)
        if ref is None:
            self.record_step(model, "SKIPPED", reason="no SATURATION reference file")
            return model
        read_pattern = read_pattern_of(model)
        data = np.asarray(model.data, dtype=np.float32)
        result = flag_saturation(
            data,
            model.groupdq,
            model.pixeldq,
            compact_array(ref, "data", np.float32),  # uniform planes: one value
            compact_array(ref, "dq", np.uint32),
            read_pattern,
            n_pix_grow_sat=self.n_pix_grow_sat,
            backup=self.backup,
        )
        model.groupdq = result.groupdq
        model.pixeldq = result.pixeldq
        self.record_step(model, "COMPLETE")
        log.info(
            "saturation: %d saturated, %d diluted, %d A/D floor, %d NO_SAT_CHECK",
            result.n_saturated,
            result.n_diluted,
            result.n_ad_floor,
            result.n_no_sat_check,
        )
        return model
