"""Model conversions: raw exposure → RampModel, ramp → L2 ImageModel (ALGORITHMS.md §2, §7.1)."""

from __future__ import annotations

import copy
import logging

import numpy as np

from rampcal.core.dq_init import decode_raw
from rampcal.core.readpattern import normalize_read_pattern
from rampcal.datamodels.blockstream import plane_reader
from rampcal.datamodels.io import load_array
from rampcal.errors import InputFileError
from rampcal.reference.nominal import REFERENCE_BORDER

log = logging.getLogger(__name__)

__all__ = [
    "L2_CAL_STEPS",
    "raw_to_ramp",
    "copy_border_reference_pixels",
    "read_pattern_of",
    "new_image_model",
]

#: cal_step keys required by the L2 schemas.
L2_CAL_STEPS = (
    "assign_wcs",
    "dark",
    "dark_decay",
    "dq_init",
    "flat_field",
    "flux",
    "linearity",
    "outlier_detection",
    "photom",
    "ramp_fit",
    "refpix",
    "saturation",
    "skymatch",
    "source_catalog",
    "tweakreg",
    "wfi18_transient",
)


def read_pattern_of(model) -> list[list[int]]:
    """The exposure's read pattern as plain lists, checked against the data's resultants.

    Raises
    ------
    InputFileError
        If ``meta.exposure.read_pattern`` is missing or does not describe the data.
    """
    name = getattr(model.meta, "filename", None)
    exposure = model.meta.exposure
    rp = exposure.get("read_pattern") if hasattr(exposure, "get") else None
    if rp is None:
        raise InputFileError("meta.exposure.read_pattern is missing", path=name)
    nres = model.data.shape[0] if getattr(model, "data", None) is not None else None
    try:
        return normalize_read_pattern(rp, nresultants=nres)
    except ValueError as exc:
        raise InputFileError(str(exc), path=name) from None


def raw_to_ramp(raw, *, copy_border: bool = True):
    """Convert a ScienceRawModel into a RampModel (ALGORITHMS.md §2 steps 1, 3, 4, 6).

    The raw uint16 resultants become float32 DN with the reference read added back
    and ``meta.instrument.data_encoding_offset`` subtracted (``amp33`` likewise, in
    float arithmetic so nothing wraps); ``pixeldq``/``pixeldq2`` start at 0,
    ``groupdq`` is the raw ``resultantdq`` when present. Conversion runs in row chunks.

    Parameters
    ----------
    raw : ScienceRawModel
    copy_border : bool
        Also fill the border reference-pixel copies (dq_init does this itself after
        applying the mask).

    Returns
    -------
    RampModel
    """
    from roman_datamodels import datamodels as rdd

    if not isinstance(raw, rdd.ScienceRawModel):
        raise InputFileError(
            f"is a {type(raw).__name__}, expected a ScienceRawModel (_uncal)",
            path=getattr(raw.meta, "filename", None),
        )
    name = getattr(raw.meta, "filename", None)
    read_pattern_of(raw)
    reader = plane_reader(raw, "data")
    shape = reader.shape if reader is not None else np.shape(load_array(raw, "data"))
    if len(shape) != 3:
        raise InputFileError("data is not a 3-D resultant cube", path=name)
    nres, ny, nx = shape

    offset = float(raw.meta.instrument.get("data_encoding_offset", 0) or 0)
    ref_read = _whole_array(raw, "reference_read")
    if ref_read is not None and ref_read.shape != (ny, nx):
        raise InputFileError(
            f"reference_read has shape {ref_read.shape}, expected {(ny, nx)}", path=name
        )
    try:
        if reader is None:  # already in memory (or not streamable): decode it at once
            data = decode_raw(load_array(raw, "data"), ref_read, offset)
        else:  # stream the (compressed) cube plane by plane into the float32 cube
            data = np.empty(shape, dtype=np.float32)
            for i, plane in enumerate(reader.planes(1, read_ahead=True)):
                decode_raw(plane, ref_read, offset, out=data[i : i + 1])
        del ref_read
        amp33 = decode_raw(_whole_array(raw, "amp33"), _whole_array(raw, "reference_amp33"), offset)
        groupdq = _whole_array(raw, "resultantdq", dtype=np.uint8)
    except ValueError as exc:  # a truncated or damaged block
        raise InputFileError(
            f"cannot read the raw arrays, truncated or damaged? ({exc})", path=name
        ) from None
    if groupdq is None:
        groupdq = np.zeros((nres, ny, nx), dtype=np.uint8)
    elif groupdq.shape != data.shape:
        raise InputFileError(
            f"resultantdq has shape {groupdq.shape}, expected {data.shape}", path=name
        )

    meta = copy.deepcopy(dict(raw.meta))
    meta.pop("model_type", None)
    meta["cal_step"] = {
        k: dict(raw.meta).get("cal_step", {}).get(k, "INCOMPLETE") for k in L2_CAL_STEPS
    }
    exposure = meta.get("exposure", {})
    if isinstance(exposure.get("data_problem"), bool):
        exposure["data_problem"] = "True" if exposure["data_problem"] else None

    ramp = rdd.RampModel.create_minimal({"meta": meta})
    ramp.data = data
    ramp.pixeldq = np.zeros((ny, nx), dtype=np.uint32)
    ramp.pixeldq2 = np.zeros((ny, nx), dtype=np.uint32)
    ramp.groupdq = groupdq
    # amp33 is uint16 in the schema: keep the decoded values, clipped into range.
    ramp.amp33 = np.clip(np.rint(amp33), 0, 65535).astype(np.uint16)
    _allocate_border(ramp, nres, ny, nx)
    if copy_border:
        copy_border_reference_pixels(ramp)
    return ramp


def _whole_array(model, key: str, dtype=None):
    """Array ``key`` of a (possibly lazily opened) model, read with the fast block reader."""
    if model.get(key) is None:
        return None
    reader = plane_reader(model, key)
    if reader is None:
        return load_array(model, key, dtype=dtype)
    array = reader.read()
    return array if dtype is None else array.astype(dtype, copy=False)


def copy_border_reference_pixels(ramp) -> None:
    """Copy the 4-pixel reference border of ``data`` and ``pixeldq`` into the border arrays."""
    b = REFERENCE_BORDER
    data = ramp.data
    dq = ramp.pixeldq
    ramp.border_ref_pix_left = np.array(data[:, :, :b], dtype=np.float32)
    ramp.border_ref_pix_right = np.array(data[:, :, -b:], dtype=np.float32)
    ramp.border_ref_pix_top = np.array(data[:, :b, :], dtype=np.float32)
    ramp.border_ref_pix_bottom = np.array(data[:, -b:, :], dtype=np.float32)
    ramp.dq_border_ref_pix_left = np.array(dq[:, :b], dtype=np.uint32)
    ramp.dq_border_ref_pix_right = np.array(dq[:, -b:], dtype=np.uint32)
    ramp.dq_border_ref_pix_top = np.array(dq[:b, :], dtype=np.uint32)
    ramp.dq_border_ref_pix_bottom = np.array(dq[-b:, :], dtype=np.uint32)


def _allocate_border(ramp, nres: int, ny: int, nx: int) -> None:
    b = REFERENCE_BORDER
    ramp.border_ref_pix_left = np.zeros((nres, ny, b), dtype=np.float32)
    ramp.border_ref_pix_right = np.zeros((nres, ny, b), dtype=np.float32)
    ramp.border_ref_pix_top = np.zeros((nres, b, nx), dtype=np.float32)
    ramp.border_ref_pix_bottom = np.zeros((nres, b, nx), dtype=np.float32)
    ramp.dq_border_ref_pix_left = np.zeros((ny, b), dtype=np.uint32)
    ramp.dq_border_ref_pix_right = np.zeros((ny, b), dtype=np.uint32)
    ramp.dq_border_ref_pix_top = np.zeros((b, nx), dtype=np.uint32)
    ramp.dq_border_ref_pix_bottom = np.zeros((b, nx), dtype=np.uint32)


def new_image_model(ramp, *, data, dq, err, var_poisson, var_rnoise=None, chisq=None, dumo=None):
    """Build a valid L2 ImageModel from a RampModel's metadata and fitted arrays.

    All arrays are science-sized (the 4-pixel border already trimmed). Float16 arrays
    (err, variances, chisq, dumo) are clipped into float16 range before the cast.
    ``meta.photometry`` is filled with the "not yet known" values and ``meta.wcs`` is None.
    """
    from roman_datamodels import datamodels as rdd

    meta = copy.deepcopy(dict(ramp.meta))
    meta.pop("model_type", None)
    previous = dict(ramp.meta.get("cal_step", {}))
    meta["cal_step"] = {k: previous.get(k, "INCOMPLETE") for k in L2_CAL_STEPS}
    meta["cal_step"].update(previous)  # extra keys (e.g. jump) are allowed and kept
    meta["photometry"] = {
        "conversion_megajanskys": None,
        "conversion_megajanskys_uncertainty": None,
        "pixel_area": None,
    }
    meta["wcs"] = None
    meta.setdefault("cal_logs", [])
    meta["product_type"] = "l2"
    img = rdd.ImageModel.create_minimal({"meta": meta})
    # create_minimal drops optional meta keys: set them explicitly
    img.meta.cal_step = meta["cal_step"]
    img.meta.cal_logs = list(meta["cal_logs"])
    shape = np.shape(data)
    img.data = np.asarray(data, dtype=np.float32)
    img.dq = np.asarray(dq, dtype=np.uint32)
    img.dq2 = np.zeros(shape, dtype=np.uint32)
    img.err = to_float16(err)
    img.var_poisson = to_float16(var_poisson)
    if var_rnoise is not None:
        img.var_rnoise = to_float16(var_rnoise)
    img.chisq = to_float16(np.zeros(shape, np.float32) if chisq is None else chisq)
    img.dumo = to_float16(np.zeros(shape, np.float32) if dumo is None else dumo)
    for key in (
        "amp33",
        "border_ref_pix_left",
        "border_ref_pix_right",
        "border_ref_pix_top",
        "border_ref_pix_bottom",
        "dq_border_ref_pix_left",
        "dq_border_ref_pix_right",
        "dq_border_ref_pix_top",
        "dq_border_ref_pix_bottom",
    ):
        setattr(img, key, getattr(ramp, key))
    return img


def to_float16(values) -> np.ndarray:
    """Cast to float16 with values clipped into its finite range (NaN kept)."""
    if isinstance(values, np.ndarray) and values.dtype == np.float16:
        return values
    arr = np.asarray(values, dtype=np.float32)
    return np.clip(arr, -65504.0, 65504.0).astype(np.float16)
