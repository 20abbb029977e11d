"""dark_current: subtract the dark (ALGORITHMS.md §9; spec "Dark Current").

For a RampModel the DARK ``dark_slope`` (DN/s) is subtracted resultant by resultant
(``R_i −= dark_slope · t̄_i``), which lowers the fitted slope by exactly ``dark_slope``,
and the rate is kept as ``average_dark_current`` so ramp fitting adds its Poisson noise
back (spec: "Dark current" in Ramp Fitting). A legacy 3-D dark cube (one plane per
resultant) is subtracted plane by plane. For an ImageModel (the newer order, chosen in
the pipeline with ``subtract_from='slope'``) the rate is subtracted from the slope image.
"""

from __future__ import annotations

import logging

import numpy as np

from rampcal.core.dark import subtract_dark_cube, subtract_dark_from_resultants, subtract_dark_slope
from rampcal.core.readpattern import resultant_times
from rampcal.datamodels import read_pattern_of, save_atomic
from rampcal.datamodels.blockstream import compact_array, or_into, plane_reader
from rampcal.errors import ReferenceFileError
from rampcal.reference.nominal import REFERENCE_BORDER
from rampcal.steps.base import RampcalStep

log = logging.getLogger(__name__)

__all__ = ["DarkCurrentStep"]


class DarkCurrentStep(RampcalStep):
    """Subtract dark current from ramps (per resultant) or from a slope image."""

    class_alias = "dark"

    spec = """
    subtract_from = option('resultants', 'slope', default='resultants')  # before or after ramp fit
    dark_output = string(default=None)  # save the dark as applied to this file
    suffix = string(default='darkcurrent')  # output file suffix
    """

    reference_file_types = ["dark"]

    def process(self, step_input):
        from roman_datamodels import datamodels as rdd

        model = self.open_model(step_input)
        ref = self.reference_model(model, "dark", expect=rdd.DarkRefModel)
        if ref is None:
            self.record_step(model, "SKIPPED", reason="no DARK reference file")
            return model
        cube = ref.get("data")
        per_resultant = not isinstance(model, rdd.ImageModel)
        per_resultant = per_resultant and (cube is None or np.ndim(cube) != 3)
        # uniform reference arrays (the built-in default) are kept as one value; for the
        # usual per-resultant path the DQ is streamed straight into pixeldq instead
        dark_dq = None
        if "dq" in ref and not per_resultant:
            dark_dq = compact_array(ref, "dq", np.uint32)
        if isinstance(model, rdd.ImageModel):
            result = self._from_slope(model, ref, dark_dq)
        elif cube is not None and np.ndim(cube) == 3:
            data = np.ascontiguousarray(model.data, dtype=np.float32)
            if np.shape(cube)[0] != data.shape[0]:
                raise ReferenceFileError(
                    f"DARK cube has {np.shape(cube)[0]} planes, "
                    f"the exposure {data.shape[0]} resultants"
                )
            result = subtract_dark_cube(
                data, model.pixeldq, np.asarray(cube, dtype=np.float32), dark_dq=dark_dq
            )
            model.data, model.pixeldq = result.data, result.dq
        else:
            streamed = plane_reader(ref, "dark_slope") is not None  # then slope is ours
            slope = compact_array(ref, "dark_slope", np.float32)
            times = resultant_times(read_pattern_of(model), float(model.meta.exposure.frame_time))
            data = np.ascontiguousarray(model.data, dtype=np.float32)
            if "dq" in ref:
                or_into(model.pixeldq, ref, "dq")
            result = subtract_dark_from_resultants(data, model.pixeldq, slope, times.tbar)
            model.data, model.pixeldq = result.data, result.dq
            model["average_dark_current"] = _finite_or_zero(slope, inplace=streamed)
        if self.dark_output:
            save_atomic(ref, self.dark_output)
        self.record_step(model, "COMPLETE")
        log.info("dark_current: subtracted from %s, %d NaN dark pixels flagged",
                 type(model).__name__, result.n_nan)  # fmt: skip
        return model

    @staticmethod
    def _from_slope(model, ref, dark_dq):
        b = REFERENCE_BORDER
        sci = (slice(b, -b), slice(b, -b))
        slope = np.asarray(ref.dark_slope, dtype=np.float32)[sci]
        data = np.ascontiguousarray(model.data, dtype=np.float32)
        result = subtract_dark_slope(
            data, np.asarray(model.dq), slope, dark_dq=None if dark_dq is None else dark_dq[sci]
        )
        model.data, model.dq = result.data, result.dq
        return result


def _finite_or_zero(slope: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """The dark rate with NaN (and inf) as 0; a uniform (broadcast) rate stays one value."""
    if slope.ndim and not any(slope.strides):
        value = slope.flat[0]
        return np.broadcast_to(np.float32(value if np.isfinite(value) else 0), slope.shape)
    out = slope if inplace and slope.flags.writeable else np.array(slope, dtype=np.float32)
    for y0 in range(0, out.shape[0], 256):  # row blocks: no full-plane masks
        block = out[y0 : y0 + 256]
        block[~np.isfinite(block)] = 0.0
    return out
