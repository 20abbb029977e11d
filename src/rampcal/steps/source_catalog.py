"""source_catalog: detect, measure and PSF-fit the sources of an L2 image (ALGORITHMS.md §12).

Products (written when ``save_results`` is on, beside the other outputs):

- ``<base>_cat.parquet`` (``output_format='ecsv'``: ``<base>_cat.ecsv``): the source
  catalog, an ``ImageSourceCatalogModel`` table (opens with ``astropy.table.Table.read``;
  astropy's parquet reader needs pandas, :func:`rampcal.catalog.read_table` does not);
- ``<base>_segm.asdf``: the ``SegmentationMapModel`` (uint32 labels, 0 = background).

The step returns the input image, with ``cal_step.source_catalog = COMPLETE`` and the
catalog table attached as ``meta.source_catalog.tweakreg_catalog`` (plus
``tweakreg_catalog_name`` when the catalog was saved) for tweakreg. The image itself
is not saved by this step.

Units: an L2 image is in DN/s (or MJy/sr once ``cal_step.flux`` is COMPLETE); fluxes
are converted to nJy with ``meta.photometry.conversion_megajanskys`` (C, (MJy/sr)/(DN/s))
and the pixel solid angle Ω (``meta.photometry.pixel_area`` in sr, else from the WCS
pixel scale at the image centre): ``F[nJy] = Σ data · C · Ω · 1e15``. Without C the
nominal value of the filter (built-in PHOTOM default) is used, with a warning.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rampcal.catalog.detection import (
    Segmentation,
    background_mesh,
    build_mask,
    segment_image,
    subtract_and_detect,
)
from rampcal.catalog.measure import ApertureCorrection, empty_catalog, measure_sources
from rampcal.catalog.psf import estimate_psf_fwhm, nominal_psf_fwhm
from rampcal.core.dq import PixelFlag
from rampcal.errors import InputFileError
from rampcal.reference import nominal
from rampcal.steps.base import RampcalStep

log = logging.getLogger(__name__)

_ARCSEC_PER_RAD = 206264.80624709636
_MJY_TO_NJY = 1.0e15

__all__ = ["FluxConversion", "SourceCatalogStep", "flux_conversion", "write_catalog"]


class FluxConversion(NamedTuple):
    """How image values become catalog fluxes.

    Attributes
    ----------
    flux_scale : float
        nJy per (image unit × pixel).
    pixel_area : float
        Pixel solid angle (sr).
    pixel_scale : float
        Pixel side (arcsec).
    unit : str
        Image unit (``"DN/s"`` or ``"MJy/sr"``).
    """

    flux_scale: float
    pixel_area: float
    pixel_scale: float
    unit: str


class SourceCatalogStep(RampcalStep):
    """Build the source catalog and segmentation map of a calibrated L2 image."""

    class_alias = "source_catalog"

    spec = """
    bkg_boxsize = integer(default=1000, min=1)  # background mesh box size (pixels)
    kernel_fwhm = float(default=2.0, min=0.1)  # Gaussian detection kernel FWHM (pixels)
    snr_threshold = float(default=3.0)  # detection threshold in background sigmas
    npixels = integer(default=25, min=1)  # minimum connected pixels of a source
    deblend = boolean(default=False)  # deblend overlapping sources
    suffix = string(default='cat')  # catalog file suffix
    fit_psf = boolean(default=True)  # fit a PSF model to every source
    forced_segmentation = string(default='')  # segmentation map file to use instead of detecting
    output_format = option('parquet', 'ecsv', default='parquet')  # catalog file format
    psf_fwhm = float(default=0.0, min=0.0)  # PSF FWHM (pixels); 0: measure it, else nominal
    """

    reference_file_types = ["apcorr"]

    def process(self, step_input):
        from roman_datamodels import datamodels as rdd

        model = self.open_model(step_input)
        name = model.meta.get("filename")
        if not isinstance(model, rdd.ImageModel):
            raise InputFileError(
                f"source_catalog needs an L2 ImageModel, got {type(model).__name__}", path=name
            )
        data = np.asarray(model.data, dtype=np.float32)
        # a private float32 copy of the error: it is scaled to nJy in place below
        err = np.array(model.err, dtype=np.float32, order="C")
        mask = build_mask(data, err, np.asarray(model.dq), bad_bits=int(PixelFlag.DO_NOT_USE))
        wcs = model.meta.get("wcs")
        if wcs is None:
            log.warning("%s has no WCS (run assign_wcs): sky coordinates will be NaN", name)
        conv = flux_conversion(model, wcs)
        apcorr = self._aperture_correction(model, conv.pixel_scale)

        segm = psf_fwhm = None
        if np.all(mask):
            log.warning("%s: every pixel is masked; empty catalog", name)
        else:
            bkg = background_mesh(data, mask, box_size=self.bkg_boxsize)
            sci, detection = subtract_and_detect(
                data, mask, bkg.background, kernel_fwhm=self.kernel_fwhm
            )
            if self.forced_segmentation:
                segm = _read_segmentation(self.forced_segmentation, data.shape)
            else:
                segm = segment_image(
                    detection,
                    bkg.rms.scaled(self.snr_threshold),
                    npixels=self.npixels,
                    deblend=self.deblend,
                    mask=mask,
                )
            if self.fit_psf and segm is not None:
                psf_fwhm = self._psf_fwhm(model, sci, segm, err, mask)
        if segm is None:
            table = empty_catalog(psf=self.fit_psf, apcorr=apcorr)
        else:
            table = measure_sources(
                sci,
                segm,
                error=err,
                mask=mask,
                detection=detection,
                wcs=wcs,
                flux_scale=conv.flux_scale,
                pixel_scale=conv.pixel_scale,
                kernel_fwhm=self.kernel_fwhm,
                apcorr=apcorr,
                psf_model=psf_fwhm,
                inplace=True,  # sci and err are this step's own arrays
            )
            del sci, detection
        cat_path = self._save_products(model, table, segm) if self.save_results else None
        source_catalog = dict(model.meta.get("source_catalog") or {})
        source_catalog["tweakreg_catalog"] = table
        if cat_path is not None:
            source_catalog["tweakreg_catalog_name"] = str(cat_path)
        model.meta.source_catalog = source_catalog
        self.record_step(model, "COMPLETE")
        log.info(
            "source_catalog: %d sources (%s → nJy × %.4g per pixel)%s",
            len(table),
            conv.unit,
            conv.flux_scale,
            ", PSF photometry" if psf_fwhm is not None else "",
        )
        return model

    def save_model(self, model, suffix=None, idx=None, output_file=None, force=False, **components):
        """The returned image is not a product of this step: only explicit saves happen."""
        from roman_datamodels import datamodels as rdd

        if suffix is None and not force and isinstance(model, rdd.ImageModel):
            return None
        return super().save_model(
            model, suffix=suffix, idx=idx, output_file=output_file, force=force, **components
        )

    # ---- helpers ---------------------------------------------------------------------------
    def _aperture_correction(self, model, pixel_scale: float) -> ApertureCorrection:
        from roman_datamodels import datamodels as rdd

        element = str(model.meta.instrument.get("optical_element", "")).upper()
        ref = self.reference_model(model, "apcorr", expect=rdd.ApcorrRefModel, check_shape=False)
        entry = None if ref is None else ref.data.get(element)
        if entry is None:
            log.info("no APCORR entry for %s: Gaussian PSF encircled energy used", element)
            return ApertureCorrection.gaussian(_nominal_fwhm(element))
        curve = ApertureCorrection.from_table(entry)
        # reference radii are native (0.11") pixels
        factor = nominal.PIXEL_SCALE / pixel_scale
        return curve._replace(ee_radii=curve.ee_radii * factor)

    def _psf_fwhm(self, model, sci, segm, err, mask) -> float:
        element = str(model.meta.instrument.get("optical_element", "")).upper()
        if self.psf_fwhm > 0:
            return float(self.psf_fwhm)
        guess = _nominal_fwhm(element)
        measured = estimate_psf_fwhm(sci, segm, error=err, mask=mask, fwhm_guess=guess)
        if measured is not None:
            log.info("PSF FWHM measured on the image: %.3f pixels", measured)
            return measured
        log.info("PSF FWHM: nominal %.3f pixels for %s (too few stars to measure)", guess, element)
        return guess

    def _save_products(self, model, table, segm) -> Path:
        from roman_datamodels import datamodels as rdd

        from rampcal.datamodels import save_atomic

        base = self.output_file or model.meta.filename
        ext = "parquet" if self.output_format == "parquet" else "ecsv"
        cat_path = Path(self.make_output_path(basepath=base, suffix=self.suffix or "cat", ext=ext))
        write_catalog(table, cat_path, model=model)
        log.info("Saved catalog in %s", cat_path)
        segm_model = _new_product(rdd.SegmentationMapModel, model)
        segm_model.data = _segmentation_labels(segm, np.shape(model.data))
        segm_path = Path(self.make_output_path(basepath=base, suffix="segm", ext="asdf"))
        save_atomic(segm_model, segm_path)
        log.info("Saved segmentation map in %s", segm_path)
        return cat_path


def flux_conversion(model, wcs=None) -> FluxConversion:
    """nJy per (image unit × pixel), pixel area and scale of an L2 image (module docstring)."""
    from rampcal.reference.defaults import WFI_FILTERS, photmjsr

    phot = model.meta.get("photometry") or {}
    area = phot.get("pixel_area")
    scale = _wcs_pixel_scale(wcs, np.shape(model.data))
    if area is None or not (float(area) > 0):
        s = scale if scale is not None else nominal.PIXEL_SCALE
        area = (s / _ARCSEC_PER_RAD) ** 2
    area = float(area)
    if scale is None:
        scale = math.sqrt(area) * _ARCSEC_PER_RAD
    cal_step = model.meta.get("cal_step") or {}
    if cal_step.get("flux") == "COMPLETE":
        return FluxConversion(area * _MJY_TO_NJY, area, scale, "MJy/sr")
    conv = phot.get("conversion_megajanskys")
    if conv is None or not (float(conv) > 0):
        element = str(model.meta.instrument.get("optical_element", "")).upper()
        if element in WFI_FILTERS:
            conv = photmjsr(element)
            log.warning(
                "no meta.photometry.conversion_megajanskys: nominal %s value %.4g used",
                element,
                conv,
            )
        else:
            conv = 1.0
            log.warning("no flux calibration for %s: catalog fluxes are DN/s × 1e15 sr⁻¹", element)
    return FluxConversion(float(conv) * area * _MJY_TO_NJY, area, scale, "DN/s")


def write_catalog(table, path: str | os.PathLike, *, model=None) -> Path:
    """Write a source catalog atomically: parquet (via ImageSourceCatalogModel) or ECSV.

    Parameters
    ----------
    table : astropy.table.Table
        Catalog of :func:`rampcal.catalog.measure_sources`.
    path : str or PathLike
        ``.parquet`` or ``.ecsv``.
    model : ImageModel, optional
        Image the catalog was measured on; its metadata go into the parquet file.
    """
    from roman_datamodels import datamodels as rdd

    from rampcal.datamodels import save_atomic

    path = Path(path)
    if path.suffix == ".parquet":
        cat_model = _new_product(rdd.ImageSourceCatalogModel, model)
        cat_model.source_catalog = table
        return save_atomic(cat_model, path)
    if path.suffix != ".ecsv":
        raise ValueError(f"{path}: catalog must be .parquet or .ecsv")
    out = table.copy(copy_data=False)
    if model is not None:
        out.meta["image"] = str(model.meta.get("filename", ""))
        out.meta["detector"] = str(model.meta.instrument.get("detector", ""))
        out.meta["optical_element"] = str(model.meta.instrument.get("optical_element", ""))
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".ecsv", dir=path.parent)
    os.close(fd)
    try:
        out.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- private

_CATALOG_META_KEYS = (
    "calibration_software_name",
    "calibration_software_version",
    "product_type",
    "filename",
    "file_date",
    "origin",
    "prd_version",
    "sdf_software_version",
    "telescope",
    "coordinates",
    "exposure",
    "instrument",
    "observation",
    "photometry",
    "pointing",
    "program",
    "ref_file",
    "visit",
    "wcsinfo",
)


def _catalog_meta(model) -> dict:
    import copy

    src = dict(model.meta)
    meta = {k: copy.deepcopy(src[k]) for k in _CATALOG_META_KEYS if k in src}
    meta["image"] = {"filename": str(src.get("filename", "")), "file_date": src.get("file_date")}
    if meta["image"]["file_date"] is None:
        meta["image"].pop("file_date")
    return meta


def _new_product(cls, model):
    """A catalog-type model (``cls``) carrying the image's metadata."""
    meta = _catalog_meta(model) if model is not None else {}
    product = cls.create_minimal({"meta": meta})
    for key, value in meta.items():  # create_minimal drops optional blocks (meta.image)
        if key not in product.meta:
            product.meta[key] = value
    return product


def _nominal_fwhm(element: str) -> float:
    from rampcal.reference.defaults import WFI_FILTERS

    if element in WFI_FILTERS:
        return nominal_psf_fwhm(WFI_FILTERS[element][0])
    return 2.0


def _wcs_pixel_scale(wcs, shape) -> float | None:
    """Geometric-mean pixel side (arcsec) at the image centre, or None."""
    if wcs is None:
        return None
    ny, nx = shape[-2:]
    x0, y0 = (nx - 1) / 2.0, (ny - 1) / 2.0
    try:
        ra, dec = wcs(
            np.array([x0, x0 + 1.0, x0]), np.array([y0, y0, y0 + 1.0]), with_bounding_box=False
        )
    except Exception:
        return None
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    cosd = np.cos(dec[0])
    dra = (ra[1:] - ra[0] + np.pi) % (2.0 * np.pi) - np.pi  # across RA = 0 too
    jx = np.array([dra[0] * cosd, dec[1] - dec[0]])
    jy = np.array([dra[1] * cosd, dec[2] - dec[0]])
    area = abs(jx[0] * jy[1] - jx[1] * jy[0])
    if not (area > 0) or not math.isfinite(area):
        return None
    return float(math.sqrt(area) * _ARCSEC_PER_RAD)


def _read_segmentation(path: str, shape: tuple[int, int]) -> Segmentation | None:
    from rampcal.datamodels import open_model

    with open_model(path) as segm_model:
        labels = np.asarray(segm_model.data)
    if labels.shape != tuple(shape):
        raise InputFileError(
            f"forced segmentation map has shape {labels.shape}, the image is {tuple(shape)}",
            path=path,
        )
    if not np.any(labels > 0):
        return None
    return Segmentation(labels.astype(np.int32))


def _segmentation_labels(segm, shape) -> np.ndarray:
    """uint32 labels of a segmentation (a view of int32 labels, which are never < 0)."""
    if segm is None:
        return np.zeros(shape, np.uint32)
    labels = np.ascontiguousarray(segm.data)
    if labels.dtype == np.int32:
        return labels.view(np.uint32)
    return labels.astype(np.uint32)
