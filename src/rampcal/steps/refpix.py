"""refpix: reference-pixel correction with the border pixels and amp33 (ALGORITHMS.md §4)."""

from __future__ import annotations

import logging

import numpy as np

from rampcal.core.refpix import correct_refpix
from rampcal.datamodels.blockstream import plane_reader
from rampcal.errors import ReferenceFileError
from rampcal.steps.base import RampcalStep

log = logging.getLogger(__name__)

__all__ = ["RefPixStep"]


class RefPixStep(RampcalStep):
    """Remove channel offsets, drifts and correlated noise seen by the reference pixels."""

    class_alias = "refpix"

    spec = """
    remove_offset = boolean(default=True)  # remove the per-pixel mean over resultants first
    remove_trends = boolean(default=True)  # remove per-channel linear drifts from top/bottom rows
    cosine_interpolate = boolean(default=True)  # fill missing amp33 samples by cosine interpolation
    fft_interpolate = boolean(default=True)  # refine the amp33 pad samples by FFT interpolation
    suffix = string(default='refpix')  # output file suffix
    """

    reference_file_types = ["refpix"]

    def process(self, step_input):
        from roman_datamodels import datamodels as rdd

        model = self.open_model(step_input)
        ref = self.reference_model(model, "refpix", expect=rdd.RefpixRefModel, check_shape=False)
        if ref is None:
            self.record_step(model, "SKIPPED", reason="no REFPIX reference file")
            return model
        coeffs = [_load_coefficients(ref, name) for name in ("gamma", "zeta", "alpha")]
        ref.close()  # drop anything loaded whole; coeffs keeps what is needed
        del ref
        data = np.ascontiguousarray(model.data, dtype=np.float32)
        try:
            result = correct_refpix(
                data,
                np.asarray(model.amp33),
                np.asarray(model.pixeldq, dtype=np.uint32),
                *coeffs,
                remove_offset=self.remove_offset,
                remove_trends=self.remove_trends,
                cosine_interpolate=self.cosine_interpolate,
                fft_interpolate=self.fft_interpolate,
            )
        except ValueError as exc:
            raise ReferenceFileError(f"REFPIX reference does not fit the exposure: {exc}") from None
        model.data = data
        amp = result.amp33  # float32, ours: rounded and clipped in place
        np.abs(amp, out=amp)
        np.rint(amp, out=amp)
        np.clip(amp, 0, 65535, out=amp)
        model.amp33 = amp.astype(np.uint16)
        del amp
        b = 4
        model.border_ref_pix_left = np.array(data[:, :, :b])
        model.border_ref_pix_right = np.array(data[:, :, -b:])
        self.record_step(model, "COMPLETE")
        log.info(
            "refpix: correction rms %.3f DN per resultant (%s path), %d bad reference pixels",
            float(np.mean(result.correction_rms)),
            "time-domain" if result.fast_path else "FFT",
            result.n_bad_ref_pixels,
        )
        return model


def _load_coefficients(ref, name: str) -> np.ndarray:
    """One REFPIX coefficient array (32, L//2+1), compact where it can be.

    A row repeated in every channel becomes a read-only broadcast view of that row (of
    one value if the row is constant, e.g. zeros). A lazily opened reference is
    streamed a channel row at a time from its ASDF block, so such an array never exists
    in memory whole (147 MB for the full frame); only an array with differing rows is
    assembled. A reference already in memory is compacted by :func:`_compact`.
    """
    reader = plane_reader(ref, name)
    if reader is None or len(reader.shape) != 2 or reader.shape[0] == 0:
        return _compact(ref[name])
    full = None
    first = None
    for i, piece in enumerate(reader.planes(1)):
        row = piece[0]
        if first is None:
            first = row.copy()
        elif full is not None:
            full[i] = row
        elif not _equal(row, first):
            full = np.empty(reader.shape, dtype=first.dtype)
            full[:i] = first
            full[i] = row
    if full is not None:
        return full
    if np.all(first == first[0]):
        first = first[:1]  # one value everywhere (e.g. zeros)
    return np.broadcast_to(first, reader.shape)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """``np.array_equal`` of two rows; complex ones compared as their float parts (same
    result: equal real and imaginary parts, twice as fast)."""
    if np.iscomplexobj(a) and a.dtype == b.dtype and a.flags.c_contiguous and b.flags.c_contiguous:
        a, b = a.view(a.real.dtype), b.view(b.real.dtype)
    return np.array_equal(a, b)


def _compact(array) -> np.ndarray:
    """Load a coefficient array; one repeated in every channel becomes a broadcast view."""
    arr = np.asarray(array)
    if arr.ndim != 2 or arr.shape[0] == 0:
        return arr  # the core function reports the shape error
    row = arr[0]
    if np.array_equal(arr, np.broadcast_to(row, arr.shape)):
        return np.broadcast_to(row.copy(), arr.shape)  # frees the full array
    return arr
