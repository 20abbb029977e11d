"""ExposurePipeline: raw exposure(s) → calibrated, aligned L2 images, catalogs and WCS files.

Step keys match the reference implementation's exposure pipeline, so parameter files
and ``--steps.<key>.<param>`` options work unchanged.
"""

from __future__ import annotations

import logging

import numpy as np

from rampcal.core.dq import GroupFlag, PixelFlag
from rampcal.datamodels import new_image_model
from rampcal.datamodels.association import expand_inputs
from rampcal.errors import NoScienceDataError
from rampcal.reference.nominal import REFERENCE_BORDER
from rampcal.steps.assign_wcs import AssignWcsStep
from rampcal.steps.base import RampcalPipeline
from rampcal.steps.dark_current import DarkCurrentStep
from rampcal.steps.dark_decay import DarkDecayStep
from rampcal.steps.dq_init import DQInitStep
from rampcal.steps.flatfield import FlatFieldStep
from rampcal.steps.jump import JumpStep
from rampcal.steps.linearity import LinearityStep
from rampcal.steps.photom import PhotomStep
from rampcal.steps.ramp_fit import RampFitStep
from rampcal.steps.refpix import RefPixStep
from rampcal.steps.saturation import SaturationStep
from rampcal.steps.source_catalog import SourceCatalogStep
from rampcal.steps.tweakreg import TweakRegStep
from rampcal.steps.wfi18_transient import WFI18TransientStep

log = logging.getLogger(__name__)

__all__ = ["ExposurePipeline", "IMAGING_TYPES", "is_fully_saturated"]

#: Exposure types that get flat fielding, photometry, catalogs and alignment.
IMAGING_TYPES = ("WFI_IMAGE", "WFI_LOLO", "WFI_WFSC")
#: Exposure types that get catalogs and alignment.
CATALOG_TYPES = ("WFI_IMAGE", "WFI_LOLO")

_SKIPPED_WHEN_SATURATED = (
    "refpix",
    "dark_decay",
    "wfi18_transient",
    "linearity",
    "dark",
    "ramp_fit",
    "assign_wcs",
    "flat_field",
    "photom",
    "source_catalog",
    "tweakreg",
)


class ExposurePipeline(RampcalPipeline):
    """Roman WFI exposure-level pipeline ("ramps to slopes", then calibration and alignment)."""

    class_alias = "exposure_pipeline"

    spec = """
    save_calibrated_ramp = boolean(default=False)  # also save the ramp after dark_current (_ramp)
    output_use_model = boolean(default=True)  # name outputs after each exposure
    suffix = string(default='cal')  # output file suffix
    """

    step_defs = {
        "dq_init": DQInitStep,
        "saturation": SaturationStep,
        "refpix": RefPixStep,
        "dark_decay": DarkDecayStep,
        "wfi18_transient": WFI18TransientStep,
        "linearity": LinearityStep,
        "dark_current": DarkCurrentStep,
        "jump": JumpStep,
        "rampfit": RampFitStep,
        "assign_wcs": AssignWcsStep,
        "flatfield": FlatFieldStep,
        "photom": PhotomStep,
        "source_catalog": SourceCatalogStep,
        "tweakreg": TweakRegStep,
    }

    def process(self, step_input):
        inputs = expand_inputs(step_input)
        if not inputs:
            raise NoScienceDataError("no exposures to process")
        if self.save_results:
            # _cat and _segm are products of the pipeline; tweakreg then rewrites the
            # catalog files with the aligned sky coordinates
            self.source_catalog.save_results = True
            self.tweakreg.update_source_catalog_coordinates = True
        results, any_saturated = [], False
        for item in inputs:
            image, saturated = self.process_exposure(item)
            any_saturated |= saturated
            results.append(image)
        catalog_ready = [m for m in results if m.meta.cal_step.get("source_catalog") == "COMPLETE"]
        if any_saturated or self.tweakreg.skip or not catalog_ready:
            reason = "a fully saturated exposure" if any_saturated else "no catalogs to align"
            log.info("tweakreg skipped: %s", reason)
        else:
            self.tweakreg.run(catalog_ready)
        for m in results:  # exposures tweakreg did not align (no catalog, WFSC, ...)
            if m.meta.cal_step.get("tweakreg") != "COMPLETE":
                m.meta.cal_step.tweakreg = "SKIPPED"
        for m in results:
            self.save_wcs_product(m)
        return results[0] if len(results) == 1 else results

    def process_exposure(self, item):
        """Run one exposure from raw ramp to calibrated image; returns (image, fully_saturated)."""
        model = self.dq_init.run(item)
        model = self.saturation.run(model)
        if is_fully_saturated(model):
            log.warning("%s is fully saturated: writing a zero image", model.meta.filename)
            return _saturated_image(model), True
        model = self.refpix.run(model)
        model = self.dark_decay.run(model)
        model = self.wfi18_transient.run(model)
        model = self.linearity.run(model)
        dark_after = self.dark_current.subtract_from == "slope"
        if not dark_after:
            model = self.dark_current.run(model)
        if self.save_calibrated_ramp:
            self.save_model(model, suffix="ramp", force=True)
        if self.rampfit.use_ramp_jump_detection:
            model.meta.cal_step["jump"] = "SKIPPED"
        else:
            model = self.jump.run(model)
        # the ramp is not needed after the fit: the fit hands its memory back block by
        # block (~0.75 GB for a full detector) instead of holding it to the end
        self.rampfit._release_input = True
        try:
            image = self.rampfit.run(model)
        finally:
            self.rampfit._release_input = False
        del model
        if dark_after:
            image = self.dark_current.run(image)
        image = self.assign_wcs.run(image)
        exp_type = str(image.meta.exposure.type)
        if exp_type not in IMAGING_TYPES:
            for key in ("flat_field", "photom", "source_catalog", "tweakreg"):
                image.meta.cal_step[key] = "SKIPPED"
            log.info("%s exposure: flatfield, photom, source_catalog, tweakreg skipped", exp_type)
            return image, False
        image = self.photom.run(image)
        image = self.flatfield.run(image)
        if exp_type in CATALOG_TYPES:
            image = self.source_catalog.run(image)
        else:
            image.meta.cal_step.source_catalog = "SKIPPED"
        return image, False

    def save_wcs_product(self, image) -> None:
        """Write the ``_wcs`` product (L2 and L1 gwcs) beside the ``_cal`` file."""
        if not self.save_results or image.meta.get("wcs") is None:
            return
        from rampcal.datamodels.wcs_product import make_wcs_product

        self.save_model(make_wcs_product(image), suffix="wcs", force=True)


def is_fully_saturated(ramp) -> bool:
    """True if every resultant value, or every pixel, is flagged SATURATED."""
    sat_g = np.uint8(GroupFlag.SATURATED)
    sat_p = np.uint32(PixelFlag.SATURATED)
    if np.all(np.asarray(ramp.pixeldq) & sat_p):
        return True
    return bool(np.all(np.asarray(ramp.groupdq) & sat_g))


def _saturated_image(ramp):
    """The L2 image of a fully saturated exposure: zeros, flags, later steps SKIPPED."""
    b = REFERENCE_BORDER
    sci = (slice(b, -b), slice(b, -b))
    shape = np.asarray(ramp.pixeldq)[sci].shape
    zeros = np.zeros(shape, dtype=np.float32)
    dq = (
        np.asarray(ramp.pixeldq)[sci]
        | np.asarray(ramp.groupdq[0])[sci].astype(np.uint32)
        | np.uint32(PixelFlag.SATURATED)
    )
    image = new_image_model(ramp, data=zeros, dq=dq, err=zeros, var_poisson=zeros, var_rnoise=zeros)
    for key in _SKIPPED_WHEN_SATURATED:
        image.meta.cal_step[key] = "SKIPPED"
    return image
