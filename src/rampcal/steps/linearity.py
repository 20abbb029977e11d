"""linearity: correct resultants for classical non-linearity (ALGORITHMS.md §6).

The LINEARITY and INVERSELINEARITY coefficient cubes are (ncoeff, 4096, 4096) float32,
0.3–0.5 GB each once decompressed. They are streamed from their ASDF blocks a few rows
at a time (:mod:`rampcal.datamodels.blockstream`) and only the planes that really vary
per pixel are kept (:class:`~rampcal.core.linearity.CoefficientPlanes`): a uniform plane
(the built-in defaults are all uniform) costs one number, a per-pixel plane ny·nx·4 bytes
(64 MiB for the full detector). The LINEARITY ``dq`` is kept only if it has a flag.
"""

from __future__ import annotations

import logging
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rampcal.core.linearity import (
    CoefficientPlanes,
    InlTable,
    coefficients_from_rows,
    compact_coefficients,
    correct_linearity,
)
from rampcal.datamodels import read_pattern_of
from rampcal.datamodels.blockstream import PlaneReader, plane_reader
from rampcal.errors import ReferenceFileError
from rampcal.steps.base import RampcalStep

log = logging.getLogger(__name__)

#: rows of a coefficient plane (or of the dq) decompressed at a time (4 MiB for 4096 columns)
STREAM_ROWS = 256
#: what a truncated or damaged array block raises while it is read
_READ_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError, EOFError, KeyError, zlib.error)
try:
    from lz4.block import LZ4BlockError

    _READ_ERRORS += (LZ4BlockError,)
except ImportError:  # pragma: no cover - lz4 comes with asdf
    pass

__all__ = ["LinearityStep"]


class LinearityStep(RampcalStep):
    """Read-level non-linearity correction (inverse linearity + optional integral table).

    Memory: besides the exposure, the step holds one 64 MiB float32 plane (full
    detector) for each coefficient plane of the reference files that varies from pixel
    to pixel, plus the LINEARITY ``dq`` (64 MiB) if it has any flag set; uniform planes
    and an empty ``dq`` cost nothing.
    """

    class_alias = "linearity"

    spec = """
    suffix = string(default='linearity')  # output file suffix
    """

    reference_file_types = ["linearity", "inverselinearity", "integralnonlinearity"]

    def process(self, step_input):
        from roman_datamodels import datamodels as rdd

        model = self.open_model(step_input)
        lin = self.reference_model(model, "linearity", expect=rdd.LinearityRefModel)
        if lin is None:
            self.record_step(model, "SKIPPED", reason="no LINEARITY reference file")
            return model
        refs = [lin]
        try:
            ilin = self.reference_model(
                model, "inverselinearity", expect=rdd.InverselinearityRefModel
            )
            refs.append(ilin)
            inl_ref = self.reference_model(
                model,
                "integralnonlinearity",
                expect=rdd.IntegralnonlinearityRefModel,
                check_shape=False,
            )
            refs.append(inl_ref)
            inl = None
            if inl_ref is not None and ilin is not None:
                inl = _inl_table(inl_ref, model.data.shape[-1])
                if not np.any(inl.correction):
                    inl = None  # an all-zero table changes nothing: skip the slow lookup path
            # the two cubes are decompressed side by side (lz4/zlib release the GIL)
            with ThreadPoolExecutor(max_workers=2) as pool:
                lin_job = pool.submit(_load_linearity, lin)
                inverse = None if ilin is None else load_coefficients(ilin, "INVERSELINEARITY")
                coeffs, lin_dq = lin_job.result()
        finally:
            for ref in refs:
                if ref is not None:
                    ref.close()
        result = correct_linearity(
            np.asarray(model.data, dtype=np.float32),
            model.groupdq,
            model.pixeldq,
            coeffs,
            lin_dq,
            read_pattern_of(model),
            inverse_coeffs=inverse,
            inl=inl,
        )
        model.data = result.data
        model.groupdq = result.groupdq
        model.pixeldq = result.pixeldq
        self.record_step(model, "COMPLETE")
        per_pixel = coeffs.n_per_pixel + (0 if inverse is None else inverse.n_per_pixel)
        log.info(
            "linearity: %s correction, %d per-pixel coefficient planes (%.0f MB), "
            "%d pixels uncorrected (NO_LIN_CORR), %d values clipped",
            "read-level" if inverse is not None else "polynomial",
            per_pixel,
            per_pixel * 4 * result.pixeldq.size / 1e6,
            result.n_no_correction,
            result.n_clipped,
        )
        return model


def load_coefficients(ref, label: str) -> CoefficientPlanes:
    """The ``coeffs`` cube of a (lazily opened) LINEARITY/INVERSELINEARITY model.

    Streamed :data:`STREAM_ROWS` rows at a time from its ASDF block when possible, so
    that the whole cube never exists in memory; read the ordinary way otherwise (a
    model already in memory, an unusual layout).

    Raises
    ------
    ReferenceFileError
        Not a 3-D cube, or an unreadable (truncated, damaged) block.
    """
    name = _name(ref, label)
    try:
        reader = plane_reader(ref, "coeffs")
        if reader is None or len(reader.shape) != 3 or reader.dtype.kind != "f":
            return compact_coefficients(np.asarray(ref["coeffs"], dtype=np.float32))
        n, ny, nx = reader.shape
        # the same bytes seen as (n * ny, nx): pieces of a few rows, not whole planes
        rows = PlaneReader(reader.path, reader.block, reader.dtype, (n * ny, nx), reader._offset)
        pieces = (np.asarray(p, dtype=np.float32) for p in rows.planes(STREAM_ROWS))
        return coefficients_from_rows(pieces, (n, ny, nx))
    except _READ_ERRORS as exc:
        raise ReferenceFileError(f"{label} coeffs: {exc}", path=name) from None


def load_flags(ref, label: str) -> np.ndarray | None:
    """The ``dq`` plane of a (lazily opened) LINEARITY model as uint32; None if no flag is set.

    Streamed like :func:`load_coefficients`; the plane is allocated (zero-filled by the
    system, untouched pages are not resident) at the first flagged piece of rows, and
    only pieces with flags are copied into it.
    """
    name = _name(ref, label)
    try:
        reader = plane_reader(ref, "dq")
        if reader is None or len(reader.shape) != 2:
            dq = ref.get("dq")
            if dq is None:
                return None
            dq = np.asarray(dq, dtype=np.uint32)
            return dq if dq.any() else None
        dq = None
        row = 0
        for piece in reader.planes(STREAM_ROWS):
            if piece.any():
                if dq is None:
                    dq = np.zeros(reader.shape, dtype=np.uint32)
                dq[row : row + len(piece)] = piece
            row += len(piece)
        return dq
    except _READ_ERRORS as exc:
        raise ReferenceFileError(f"{label} dq: {exc}", path=name) from None


def _load_linearity(ref) -> tuple[CoefficientPlanes, np.ndarray | None]:
    """LINEARITY ``coeffs`` and ``dq`` (one thread per reference model)."""
    return load_coefficients(ref, "LINEARITY"), load_flags(ref, "LINEARITY")


def _name(ref, label: str) -> str:
    meta = getattr(ref, "meta", None)
    return str(getattr(meta, "filename", None) or label)


def _inl_table(ref, ncols: int) -> InlTable:
    """Integral non-linearity table of a reference model, one row per science channel."""
    table = ref.inl_table
    value = np.asarray(ref.value, dtype=np.float64)
    rows = []
    for c in range(1, 33):
        entry = table.get(f"science_channel_{c:02d}")
        corr = None if entry is None else entry.get("correction")
        if corr is None:
            rows.append(np.zeros(value.size))
            continue
        corr = np.asarray(corr, dtype=np.float64)
        if corr.shape != value.shape:
            raise ReferenceFileError(
                f"INTEGRALNONLINEARITY channel {c} has {corr.size} corrections "
                f"for {value.size} values"
            )
        rows.append(corr)
    return InlTable(value=value, correction=np.vstack(rows), channel_width=max(ncols // 32, 1))
