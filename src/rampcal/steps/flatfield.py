"""flatfield: divide an L2 image by the FLAT reference, propagating errors (ALGORITHMS.md §11)."""

from __future__ import annotations

import logging

import numpy as np

from rampcal.core.flat import (
    apply_flat_inplace,
    prepare_flat,
    reconstruct_var_rnoise,
    trim_to_science,
)
from rampcal.datamodels.blockstream import compact_array
from rampcal.datamodels.convert import to_float16
from rampcal.errors import InputFileError, ReferenceFileError
from rampcal.steps.base import RampcalStep

log = logging.getLogger(__name__)

__all__ = ["IMAGING_EXPOSURE_TYPES", "FlatFieldStep"]

#: Exposure types that are flat-fielded (spectral, dark and flat exposures are not).
IMAGING_EXPOSURE_TYPES = frozenset({"WFI_IMAGE", "WFI_LOLO", "WFI_WFSC"})


class FlatFieldStep(RampcalStep):
    """Flat-field an L2 rate image.

    ``data``, ``dumo`` are divided by the flat, ``var_poisson``/``var_rnoise`` by its
    square, the flat DQ is OR-ed in, and ``err`` is recomputed from the variances.
    With ``include_var_flat`` a ``var_flat`` array is added (and included in ``err``).
    """

    class_alias = "flat_field"

    spec = """
    include_var_flat = boolean(default=False)  # add var_flat (from the flat's err) to err
    suffix = string(default='flat')  # output file suffix
    """

    reference_file_types = ["flat"]

    def process(self, step_input):
        from roman_datamodels import datamodels as rdd

        model = self.open_model(step_input)
        name = model.meta.get("filename")
        if not isinstance(model, rdd.ImageModel):
            raise InputFileError(
                f"flat_field needs an L2 ImageModel, got {type(model).__name__}", path=name
            )
        exptype = str(model.meta.exposure.get("type", "WFI_IMAGE")).upper()
        if exptype not in IMAGING_EXPOSURE_TYPES:
            self.record_step(model, "SKIPPED", reason=f"no flat field for {exptype} exposures")
            return model

        ref = self.reference_model(model, "flat", expect=rdd.FlatRefModel, check_shape=False)
        if ref is None:
            self.record_step(model, "SKIPPED", reason="no FLAT reference file")
            return model
        shape = model.data.shape
        try:
            flat = prepare_flat(  # a uniform flat (the built-in default) stays one value
                trim_to_science(compact_array(ref, "data", np.float32), shape),
                flat_dq=_trimmed(ref, "dq", shape),
                flat_err=_trimmed(ref, "err", shape),
            )
        except ValueError as exc:
            raise ReferenceFileError(
                f"FLAT reference: {exc}", path=ref.meta.get("filename")
            ) from None

        if model.get("var_rnoise") is None:  # older products: recover it from err
            old_flat = model.get("var_flat")
            model.var_rnoise = to_float16(
                reconstruct_var_rnoise(
                    np.asarray(model.err),
                    np.asarray(model.var_poisson),
                    var_flat=None if old_flat is None else np.asarray(old_flat),
                )
            )
            restore_rnoise = False
        else:
            restore_rnoise = True
        if self.include_var_flat:
            model.var_flat = np.empty(shape, np.float16)
        elif "var_flat" in model:
            delattr(model, "var_flat")  # err no longer includes it
        for key in ("data", "dq", "err", "var_poisson", "var_rnoise", "dumo"):
            arr = model.get(key)
            if arr is not None and not (isinstance(arr, np.ndarray) and arr.flags.writeable):
                setattr(model, key, np.array(arr))  # updated in place below
        n_bad = apply_flat_inplace(
            model.data,
            model.dq,
            model.var_poisson,
            model.var_rnoise,
            model.err,
            flat,
            dumo=model.get("dumo"),
            var_flat=model.var_flat if self.include_var_flat else None,
        )
        if not restore_rnoise:
            delattr(model, "var_rnoise")  # the product did not carry it before
        self.record_step(model, "COMPLETE")
        log.info(
            "flat_field: %d of %d pixels without flat correction (NO_FLAT_FIELD); var_flat %s",
            n_bad,
            model.data.size,
            "included" if self.include_var_flat else "not included",
        )
        return model


def _trimmed(ref, key: str, shape):
    arr = compact_array(ref, key)
    return None if arr is None else trim_to_science(arr, shape)
