"""ramp_fit: resultants → count-rate image (ALGORITHMS.md §7; spec "Ramp Fitting")."""

from __future__ import annotations

import logging

import numpy as np

from rampcal.datamodels import new_image_model, read_pattern_of
from rampcal.datamodels.blockstream import compact_array
from rampcal.errors import InputFileError
from rampcal.reference.nominal import REFERENCE_BORDER
from rampcal.steps.base import RampcalStep
from rampcal.threads import numba_threads

log = logging.getLogger(__name__)

__all__ = ["RampFitStep", "fit_ramp_model"]


class RampFitStep(RampcalStep):
    """Fit slopes with jump detection and write the L2 ``_rampfit`` image."""

    class_alias = "ramp_fit"

    spec = """
    algorithm = option('ols_cas22', 'likely', 'ols', default='ols_cas22')  # ramp fitting algorithm
    use_ramp_jump_detection = boolean(default=True)  # jumps found in the fit (else: jump step)
    threshold_intercept = float(default=None)  # ols_cas22 jump threshold intercept (default 5.5)
    threshold_constant = float(default=None)  # ols_cas22 jump threshold slope (default 1/3)
    jump_statistic = option('gls', 'excess_slope', default='gls')  # spec's: excess_slope
    rejection_threshold = float(default=4.5)  # likely jump threshold (sigma)
    include_var_rnoise = boolean(default=True)  # write var_rnoise into the image
    record_jumps = boolean(default=True)  # store every jump's (resultant, y, x) as jump_indices
    maximum_cores = string(default='all')  # numba threads: none, quarter, half, all or an int
    suffix = string(default='rampfit')  # output file suffix
    """

    reference_file_types = ["readnoise", "gain"]

    def process(self, step_input):
        from roman_datamodels import datamodels as rdd

        model = self.open_model(step_input)
        if not isinstance(model, rdd.RampModel):
            raise InputFileError(
                f"ramp_fit needs a RampModel, got {type(model).__name__}",
                path=model.meta.get("filename"),
            )
        readnoise = self.reference_model(model, "readnoise", expect=rdd.ReadnoiseRefModel)
        gain = self.reference_model(model, "gain", expect=rdd.GainRefModel)
        if readnoise is None or gain is None:
            raise InputFileError("ramp_fit needs READNOISE and GAIN reference files (got N/A)")
        with numba_threads(self.maximum_cores):
            image = fit_ramp_model(
                model,
                compact_array(readnoise, "data", np.float32),  # uniform: one value
                compact_array(gain, "data", np.float32),
                algorithm=self.algorithm,
                use_jump_detection=self.use_ramp_jump_detection,
                threshold_intercept=self.threshold_intercept,
                threshold_constant=self.threshold_constant,
                jump_statistic=self.jump_statistic,
                rejection_threshold=self.rejection_threshold,
                include_var_rnoise=self.include_var_rnoise,
                record_jumps=self.record_jumps,
                # set by the exposure pipeline, which discards the ramp after the fit
                release_input=getattr(self, "_release_input", False),
            )
        image.meta.cal_step.ramp_fit = "COMPLETE"
        n_jumps = int(image["jump_indices"].shape[0]) if "jump_indices" in image else -1
        log.info(
            "ramp_fit (%s): median slope %.4g DN/s, %d jumps, %d DO_NOT_USE pixels",
            self.algorithm,
            float(np.nanmedian(image.data)),
            n_jumps,
            int(np.count_nonzero(image.dq & 1)),
        )
        return image


#: Image rows fitted at a time: bounds the copies of the cube handed to the kernels.
CHUNK_ROWS = 256


def fit_ramp_model(
    model,
    read_noise: np.ndarray,
    gain: np.ndarray,
    *,
    algorithm: str = "ols_cas22",
    use_jump_detection: bool = True,
    threshold_intercept: float | None = None,
    threshold_constant: float | None = None,
    jump_statistic: str = "gls",
    rejection_threshold: float = 4.5,
    include_var_rnoise: bool = True,
    record_jumps: bool = True,
    chunk_rows: int = CHUNK_ROWS,
    release_input: bool = False,
):
    """Fit a RampModel and build the trimmed L2 ImageModel (slopes in DN/s).

    The science rows are fitted ``chunk_rows`` at a time and each block's results go
    straight into the image's arrays in their stored types (float16 for err, the
    variances, chisq and dumo), so no full-frame float32 temporaries exist besides the
    slope image. The jump flags found are OR-ed into ``model.groupdq`` (as the
    reference implementation does), and ``jump_indices`` lists them.

    With ``release_input`` the memory of every fitted block of ``model.data`` and
    ``model.groupdq`` is handed back to the system as soon as the block is done
    (:func:`rampcal.memory.release_pages`): the cube shrinks while the image grows.
    Only for callers that discard the ramp afterwards: its arrays then read as zeros.
    """
    from rampcal.core.ramp.dq_summary import pixel_dq_from_fit
    from rampcal.core.ramp.dumo import uniform_slope
    from rampcal.datamodels.convert import to_float16
    from rampcal.memory import release_pages

    if algorithm not in ("ols_cas22", "likely", "ols"):
        raise ValueError(f"unknown ramp fitting algorithm {algorithm!r}")
    read_pattern = read_pattern_of(model)
    frame_time = float(model.meta.exposure.frame_time)
    cube = model.data
    groupdq = model.groupdq
    nres, ny, nx = np.shape(cube)
    dark = model.get("average_dark_current") if hasattr(model, "get") else None
    dark = None if dark is None else np.asarray(dark, dtype=np.float32)
    pixeldq = np.asarray(model.pixeldq)

    b = REFERENCE_BORDER
    shape = (ny - 2 * b, nx - 2 * b)
    out = {
        "data": np.empty(shape, np.float32),
        "dq": np.empty(shape, np.uint32),
        "err": np.empty(shape, np.float16),
        "var_poisson": np.empty(shape, np.float16),
        "var_rnoise": np.empty(shape, np.float16) if include_var_rnoise else None,
        "chisq": np.zeros(shape, np.float16),
        "dumo": np.empty(shape, np.float16),
    }
    jumps = []
    step = max(1, int(chunk_rows))
    for y0 in range(b, ny - b, step):
        y1 = min(y0 + step, ny - b)
        rows = slice(y0, y1)
        block = np.ascontiguousarray(cube[:, rows], dtype=np.float32)
        gdq = np.ascontiguousarray(groupdq[:, rows], dtype=np.uint8)
        fit = _fit_block(
            algorithm, block, gdq, read_noise[rows], gain[rows], read_pattern, frame_time,
            None if dark is None else dark[rows],
            use_jump_detection=use_jump_detection,
            threshold_intercept=threshold_intercept,
            threshold_constant=threshold_constant,
            jump_statistic=jump_statistic,
            rejection_threshold=rejection_threshold,
        )  # fmt: skip
        slope, err, vp, vr, chisq, gdq_out = fit
        dumo = uniform_slope(block, read_pattern, frame_time)
        dumo -= slope
        del block
        dq = pixel_dq_from_fit(pixeldq[rows], gdq_out, slope, err, gain[rows])
        cols = slice(b, nx - b)
        dst = slice(y0 - b, y1 - b)
        out["data"][dst] = slope[:, cols]
        out["dq"][dst] = dq[:, cols]
        out["err"][dst] = to_float16(err[:, cols])
        out["var_poisson"][dst] = to_float16(vp[:, cols])
        if include_var_rnoise:
            out["var_rnoise"][dst] = to_float16(vr[:, cols])
        if chisq is not None and algorithm != "ols_cas22":  # cas22 returns zeros
            out["chisq"][dst] = to_float16(chisq[:, cols])
        out["dumo"][dst] = to_float16(dumo[:, cols])
        if release_input:
            for plane, flags in zip(cube, groupdq, strict=True):
                release_pages(plane[rows])
                release_pages(flags[rows])
        elif gdq_out is not gdq:
            groupdq[:, rows] = gdq_out
        if record_jumps:  # every JUMP_DET flag, found here or by an earlier jump step
            jumps.append(_jump_rows(gdq_out[:, :, cols], y0 - b))

    image = new_image_model(model, **out)
    if record_jumps:
        found = np.concatenate(jumps) if jumps else np.zeros((0, 3), np.int16)
        # resultant-major, then row, then column: the order of a whole-cube scan
        image["jump_indices"] = found[np.lexsort((found[:, 2], found[:, 1], found[:, 0]))]
    return image


def _fit_block(algorithm, data, groupdq, read_noise, gain, read_pattern, frame_time, dark, **kw):
    """One block of rows through the chosen fitter: (slope, err, vp, vr, chisq, groupdq)."""
    if algorithm == "ols_cas22":
        from rampcal.core.ramp.cas22 import fit_ramps_cas22

        return tuple(
            fit_ramps_cas22(
                data, groupdq, read_noise, gain, read_pattern, frame_time,
                use_jump_detection=kw["use_jump_detection"],
                threshold_intercept=kw["threshold_intercept"],
                threshold_constant=kw["threshold_constant"],
                jump_statistic=kw["jump_statistic"],
                dark_rate=dark,
            )
        )  # fmt: skip
    if algorithm == "likely":
        from rampcal.core.ramp.likely import fit_ramps_likely

        return tuple(
            fit_ramps_likely(
                data, groupdq, read_noise, gain, read_pattern, frame_time,
                use_jump_detection=kw["use_jump_detection"],
                rejection_threshold=kw["rejection_threshold"],
                dark_rate=dark,
            )
        )  # fmt: skip
    from rampcal.core.ramp.ols import fit_ramps_ols

    fit = fit_ramps_ols(
        data, groupdq, read_noise, gain,
        frame_time=frame_time, read_pattern=read_pattern, read_noise_kind="read",
        dark_current=dark,
    )  # fmt: skip
    return fit.slope, fit.err, fit.var_poisson, fit.var_rnoise, None, groupdq


def _jump_rows(groupdq: np.ndarray, y_offset: int) -> np.ndarray:
    """(resultant, y + y_offset, x) int16 rows of every JUMP_DET flag of a block.

    Per resultant plane with ``flatnonzero`` (``np.argwhere`` on a cube is ~20x slower).
    """
    from rampcal.core.dq import GroupFlag

    jump = np.uint8(GroupFlag.JUMP_DET)
    rows = []
    for i, plane in enumerate(groupdq):
        flat = np.flatnonzero(plane & jump)
        y, x = np.divmod(flat, plane.shape[1])
        rows.append(np.column_stack([np.full(flat.size, i), y + y_offset, x]))
    return np.concatenate(rows).astype(np.int16) if rows else np.zeros((0, 3), np.int16)
