"""Photometry, astrometry and shapes of segmented sources (ALGORITHMS.md §12, 6).

:func:`measure_sources` turns a background-subtracted image and its segmentation map
into the Roman "prompt" source catalog: an astropy ``Table`` whose column names, dtypes
and units follow the ``image_source_catalog`` schema of roman_datamodels (so it can be
wrapped in an ``ImageSourceCatalogModel`` and written to parquet).

Units
-----
The caller gives ``flux_scale``, the factor that turns "image unit × pixel" into nJy
(for an L2 image in DN/s: ``photmjsr [MJy/sr per DN/s] × Ω_pix [sr] × 1e15``; for an
L3 image in MJy/sr: ``Ω_pix × 1e15``). Every flux column is in nJy, AB magnitudes are
``-2.5 log10(F / nJy) + 31.4``; positions are 0-based pixels (``x`` column index,
``y`` row index); lengths are arcsec, areas arcsec², angles degrees.

Errors: PSF positions and fluxes carry the fit covariance errors (pulls of unit width
in the tests); ``x/y_centroid_err`` propagate the pixel errors through the first
moment ``sqrt(Σ σ_i² (x_i − x̄)²) / Σ d_i`` over the segment, which ignores the
smoothing and the noise of the segment footprint (≈ 30 % too small at S/N 20-100).
Sky-coordinate errors are ``sqrt((σ_x² + σ_y²)/2) × pixel_scale``. ``kron_radius`` is
photutils' unscaled Kron radius times ``sqrt(a b)`` (a pixel length) in arcsec.

Implementation: every source is measured in one compiled pass over its bounding box
(:mod:`rampcal.catalog._measure_kernels`, sources shared by a few threads) that follows photutils'
``SourceCatalog``, ``ApertureStats`` and ``DAOStarFinder`` operation by operation, so the
columns equal photutils' (tests/catalog/test_measure.py compares them); photutils is
not imported unless an EPSF model is fitted.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from rampcal.catalog import _aperture_kernels as _ak
from rampcal.catalog import _measure_kernels as _k
from rampcal.catalog.detection import GAUSSIAN_FWHM_TO_SIGMA, _thread_count
from rampcal.catalog.psf import PSFFit, fit_gaussian_psf, fit_psf

log = logging.getLogger(__name__)

#: AB zero point for fluxes in nJy: m = -2.5 log10(F/nJy) + 31.4.
AB_ZEROPOINT_NJY = 31.4
#: Radii (arcsec) of the fixed circular apertures: column ``aperNN_flux`` with NN in 0.1".
APERTURE_RADII_ARCSEC = (0.1, 0.2, 0.4, 0.8, 1.6)
#: Inner and outer radius (arcsec) of the local-background annulus.
BACKGROUND_ANNULUS_ARCSEC = (2.4, 2.8)
#: Encircled-energy fractions whose APCORR radii get an aperture flux column.
EE_APERTURE_FRACTIONS = (0.3, 0.5, 0.7)
#: ``warning_flags`` bit: centroid not finite or on a DO_NOT_USE pixel.
WARN_BAD_CENTROID = 1
#: ``is_extended`` threshold on the aperture-flux ratio relative to a point source.
EXTENDED_RATIO = 1.2
#: photutils ``SourceCatalog`` Kron parameters: scale, minimum unscaled radius, minimum
#: circular radius (pixels).
_KRON_PARAMS = (2.5, 1.4, 0.0)

__all__ = [
    "AB_ZEROPOINT_NJY",
    "APERTURE_RADII_ARCSEC",
    "ApertureCorrection",
    "WARN_BAD_CENTROID",
    "annulus_statistics",
    "catalog_columns",
    "circular_aperture_sums",
    "empty_catalog",
    "measure_sources",
    "sky_columns",
    "update_sky_coordinates",
]


class ApertureCorrection(NamedTuple):
    """Encircled-energy curve of the PSF (one filter of an APCORR reference file).

    Attributes
    ----------
    ee_fractions : ndarray float64 (m,)
        Encircled-energy fractions, increasing.
    ee_radii : ndarray float64 (m,)
        Radii (pixels) enclosing those fractions.
    ap_corrections : ndarray float64 (m,)
        Multiplicative corrections from the aperture flux to the total flux.
    """

    ee_fractions: np.ndarray
    ee_radii: np.ndarray
    ap_corrections: np.ndarray

    @classmethod
    def from_table(cls, entry) -> ApertureCorrection:
        """From an APCORR ``data[<filter>]`` mapping (``ee_fractions``, ``ee_radii``, ...)."""
        frac = np.asarray(entry["ee_fractions"], dtype=np.float64)
        radii = np.asarray(entry["ee_radii"], dtype=np.float64)
        corr = np.asarray(entry["ap_corrections"], dtype=np.float64)
        if not (frac.shape == radii.shape == corr.shape) or frac.ndim != 1 or frac.size < 2:
            raise ValueError(
                "APCORR entry needs equal-length 1-D ee_fractions/ee_radii/ap_corrections"
            )
        order = np.argsort(radii)
        return cls(frac[order], radii[order], corr[order])

    @classmethod
    def gaussian(cls, fwhm: float) -> ApertureCorrection:
        """The curve of a circular Gaussian PSF of ``fwhm`` pixels (fractions 0.1 … 0.9)."""
        sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        frac = np.arange(1, 10, dtype=np.float64) / 10.0
        return cls(frac, sigma * np.sqrt(-2.0 * np.log1p(-frac)), 1.0 / frac)

    def encircled_energy(self, radius) -> np.ndarray:
        """Fraction of the PSF flux inside ``radius`` pixels.

        Linear interpolation of the table; below the first radius EE ∝ r²; beyond
        the last radius a Gaussian tail ``1 − (1 − EE_m) exp(−(r² − r_m²)/(2 s²))``
        with ``s`` matched to the last two points.
        """
        r = np.asarray(radius, dtype=np.float64)
        rad, frac = self.ee_radii, self.ee_fractions
        ee = np.interp(r, rad, frac)
        inner = r < rad[0]
        ee = np.where(inner, frac[0] * (r / rad[0]) ** 2, ee)
        outer = r > rad[-1]
        if np.any(outer):
            q1, q2 = np.log1p(-frac[-2]), np.log1p(-frac[-1])
            s2 = (rad[-1] ** 2 - rad[-2] ** 2) / max(2.0 * (q1 - q2), 1e-12)
            tail = 1.0 - (1.0 - frac[-1]) * np.exp(-(r**2 - rad[-1] ** 2) / (2.0 * s2))
            ee = np.where(outer, tail, ee)
        return np.clip(ee, 0.0, 1.0)


def catalog_columns(*, psf: bool, ee_fractions: Sequence[float] = ()) -> list[tuple[str, str, str]]:
    """Ordered ``(name, dtype, unit)`` of the catalog columns.

    Parameters
    ----------
    psf : bool
        Include the PSF-photometry columns.
    ee_fractions : sequence of float
        Fractions with an ``aper_eeNN_flux`` column (plus ``aper_total_flux``).
    """
    f4, f8, i4 = "float32", "float64", "int32"
    cols: list[tuple[str, str, str]] = [("label", i4, ""), ("flagged_spatial_id", "int64", "")]
    for stem in ("centroid", "centroid_win"):
        cols += [(f"x_{stem}", f4, "pix"), (f"y_{stem}", f4, "pix")]
        cols += [(f"x_{stem}_err", f4, "pix"), (f"y_{stem}_err", f4, "pix")]
    if psf:
        cols += [("x_psf", f4, "pix"), ("y_psf", f4, "pix")]
        cols += [("x_psf_err", f4, "pix"), ("y_psf_err", f4, "pix")]
    cols += [("ra", f8, "deg"), ("dec", f8, "deg")]
    for stem in ("centroid", "centroid_win") + (("psf",) if psf else ()):
        cols += [(f"ra_{stem}", f8, "deg"), (f"dec_{stem}", f8, "deg")]
        cols += [(f"ra_{stem}_err", f4, "arcsec"), (f"dec_{stem}_err", f4, "arcsec")]
    cols += [(n, i4, "") for n in ("bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax")]
    cols += [
        ("segment_area", f4, "arcsec2"),
        ("semimajor", f4, "arcsec"),
        ("semiminor", f4, "arcsec"),
        ("fwhm", f4, "arcsec"),
        ("ellipticity", f4, ""),
        ("orientation_pix", f4, "deg"),
        ("orientation_sky", f4, "deg"),
        ("cxx", f4, "arcsec-2"),
        ("cxy", f4, "arcsec-2"),
        ("cyy", f4, "arcsec-2"),
        ("kron_radius", f4, "arcsec"),
        ("nn_label", i4, ""),
        ("nn_distance", f4, "arcsec"),
        ("sharpness", f4, ""),
        ("roundness1", f4, ""),
        ("is_extended", "bool", ""),
        ("fluxfrac_radius_50", f4, "arcsec"),
        ("aper_bkg_flux", f4, "nJy arcsec-2"),
        ("aper_bkg_flux_err", f4, "nJy arcsec-2"),
    ]
    for r in APERTURE_RADII_ARCSEC:
        name = f"aper{round(r * 10):02d}_flux"
        cols += [(name, f4, "nJy"), (f"{name}_err", f4, "nJy")]
    for f in ee_fractions:
        name = f"aper_ee{round(f * 100):02d}_flux"
        cols += [(name, f4, "nJy"), (f"{name}_err", f4, "nJy")]
    if ee_fractions:
        cols += [("aper_total_flux", f4, "nJy"), ("aper_total_flux_err", f4, "nJy")]
    if psf:
        cols += [("psf_flux", f4, "nJy"), ("psf_flux_err", f4, "nJy")]
    cols += [
        ("segment_flux", f4, "nJy"),
        ("segment_flux_err", f4, "nJy"),
        ("kron_flux", f4, "nJy"),
        ("kron_flux_err", f4, "nJy"),
        ("kron_abmag", f4, "mag(AB)"),
        ("kron_abmag_err", f4, "mag(AB)"),
        ("warning_flags", i4, ""),
        ("image_flags", i4, ""),
    ]
    if psf:
        cols += [("psf_flags", i4, ""), ("psf_gof", f4, "")]
    cols += [("dust_ebv", f4, "mag")]
    return cols


def empty_catalog(*, psf: bool, apcorr: ApertureCorrection | None = None):
    """A zero-row catalog with every column (dtype and unit) that :func:`measure_sources`
    writes for the same ``psf`` (PSF model given) and ``apcorr`` options."""
    return _make_table({}, 0, catalog_columns(psf=psf, ee_fractions=_ee_fractions(apcorr)))


def measure_sources(
    data: np.ndarray,
    segm,
    *,
    error: np.ndarray,
    mask: np.ndarray,
    detection: np.ndarray,
    wcs=None,
    flux_scale: float = 1.0,
    pixel_scale: float = 0.11,
    kernel_fwhm: float = 2.0,
    apcorr: ApertureCorrection | None = None,
    psf_model=None,
    psf_fit_shape: tuple[int, int] = (5, 5),
    inplace: bool = False,
):
    """Measure every segment of ``segm`` and return the source catalog.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Background-subtracted image (image units, e.g. DN/s).
    segm : Segmentation or photutils SegmentationImage
        Source segments: ``segm.data`` (ny, nx) integer labels (0 = background) and
        ``segm.labels``, the labels to measure (increasing).
    error : ndarray (ny, nx)
        1-sigma total error (image units).
    mask : ndarray (ny, nx), bool
        Excluded pixels (DO_NOT_USE, non-finite values).
    detection : ndarray (ny, nx)
        Smoothed detection image: as in photutils (and the reference pipeline), the
        isophotal centroids and the shapes are measured on it; the fluxes and the
        windowed centroids on ``data``.
    wcs : gwcs.WCS, optional
        Pixel → (RA, Dec) in degrees; without it the sky columns are NaN.
    flux_scale : float
        nJy per (image unit × pixel) (module docstring).
    pixel_scale : float
        Pixel size (arcsec) for the lengths, areas and apertures.
    kernel_fwhm : float
        FWHM (pixels) of the DAOFIND kernel for ``sharpness`` and ``roundness1``.
    apcorr : ApertureCorrection, optional
        Encircled-energy curve for ``is_extended`` and the ``aper_ee*``/``aper_total``
        columns; without it those columns are left out and ``is_extended`` uses a
        Gaussian of the PSF FWHM of 2 pixels.
    psf_model : float or photutils PSF model, optional
        When given, the PSF is fitted at every centroid (:func:`~rampcal.catalog.psf.fit_psf`,
        box ``psf_fit_shape``, neighbours closer than 5 pixels fitted together) and the
        ``*_psf``, ``psf_flux``, ``psf_flags`` and ``psf_gof`` columns are added. A
        number is the FWHM (pixels) of a pixel-integrated circular Gaussian
        (:func:`~rampcal.catalog.psf.fit_gaussian_psf`, no photutils needed).
    inplace : bool
        Multiply ``data`` and ``error`` (float32, C-contiguous, writeable) by
        ``flux_scale`` in place instead of working on scaled copies (saves two image
        copies; the caller's arrays are then in nJy per pixel).

    Returns
    -------
    astropy.table.Table
        One row per label (increasing), columns of :func:`catalog_columns`.

    Notes
    -----
    Every source is measured in one compiled pass over its bounding box
    (:mod:`rampcal.catalog._measure_kernels`), with photutils' definitions:
    ``SourceCatalog`` centroids, moments, shapes, segment and Kron photometry
    (``kron_params=(2.5, 1.4, 0.0)``, ``aperture_mask_method='mask'``), ``circular_photometry``,
    ``flux_radius(0.5)``, ``centroid_win``, ``ApertureStats`` on the background annulus and
    ``DAOStarFinder`` (``threshold=0``, ``xycoords`` at the rounded centroids, masked
    pixels set to 0). ``tests/catalog/test_measure.py`` compares them with photutils.
    """
    scale = float(flux_scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"flux_scale must be a positive number, got {flux_scale}")
    ee_fracs = _ee_fractions(apcorr)
    columns = catalog_columns(psf=psf_model is not None, ee_fractions=ee_fracs)
    n = 0 if segm is None else int(segm.n_labels)
    if n == 0:
        return _make_table({}, 0, columns)
    sci = _scaled(data, scale, "data", inplace)
    err = _scaled(error, scale, "error", inplace, sci.shape)
    mask = _native2d(mask, bool, "mask", sci.shape)
    det = _native2d(detection, np.float32, "detection", sci.shape)
    seg = _native2d(segm.data, None, "segmentation", sci.shape)
    if seg.dtype.kind not in "iu":
        raise ValueError(f"segmentation labels must be integers, got {seg.dtype}")
    labels = np.asarray(segm.labels, dtype=np.int64)
    radii, names = _aperture_radii(pixel_scale, apcorr, ee_fracs)
    annulus = tuple(r / float(pixel_scale) for r in BACKGROUND_ANNULUS_ARCSEC)
    props, flux, ferr, boxes, count = _measure_all(
        sci, err, mask, det, seg, labels, radii, annulus, kernel_fwhm, _known_boxes(segm)
    )
    values = _source_values(props, boxes, count, pixel_scale)
    values.update(_aperture_values(props, flux, ferr, names, pixel_scale, apcorr, ee_fracs))
    x, y = values["x_centroid"], values["y_centroid"]
    values.update(_daofind_values(props, x, y, sci.shape, kernel_fwhm))
    values.update(_neighbours(labels, x, y, pixel_scale))
    values["is_extended"] = _is_extended(values, pixel_scale, apcorr)
    values["label"] = labels
    values["flagged_spatial_id"] = np.zeros(n, dtype=np.int64)
    values["warning_flags"] = _warning_flags(x, y, mask)
    values["image_flags"] = np.zeros(n, dtype=np.int32)
    values["dust_ebv"] = np.full(n, np.nan)
    if psf_model is not None:
        options = {
            "flux": values["segment_flux"],
            "error": err,
            "mask": mask,
            "fit_shape": psf_fit_shape,
        }
        if isinstance(psf_model, (int, float, np.floating, np.integer)):
            fit = fit_gaussian_psf(sci, x, y, fwhm=float(psf_model), **options)
        else:
            fit = fit_psf(sci, x, y, psf_model=psf_model, **options)
        values.update(_psf_values(fit))
    values.update(sky_columns(values, wcs, pixel_scale))
    return _make_table(values, n, columns)


def sky_columns(values, wcs, pixel_scale: float = 0.11) -> dict[str, np.ndarray]:
    """RA/Dec columns (deg, arcsec errors) and ``orientation_sky`` from pixel columns.

    Parameters
    ----------
    values : mapping of column name → array
        Needs ``x_centroid``/``y_centroid``, and uses ``x/y_centroid_win``,
        ``x/y_psf`` (+ ``psf_flags``), their ``_err`` columns and ``orientation_pix``
        when present.
    wcs : gwcs.WCS or None
        Pixel ``(x, y)`` → ``(ra, dec)`` degrees.

    Returns
    -------
    dict
        ``ra_<stem>``, ``dec_<stem>`` (+ ``_err``) for each available stem; ``ra``/
        ``dec`` (PSF position where the fit is good, else the centroid);
        ``orientation_sky`` (position angle of the major axis, East of North, in
        [0, 180)) when ``orientation_pix`` is present.
    """
    n = len(values["x_centroid"])
    out: dict[str, np.ndarray] = {}
    for stem in ("centroid", "centroid_win", "psf"):
        if f"x_{stem}" not in values:
            continue
        x = np.asarray(values[f"x_{stem}"], dtype=np.float64)
        y = np.asarray(values[f"y_{stem}"], dtype=np.float64)
        ra, dec = _pix_to_sky(wcs, x, y)
        out[f"ra_{stem}"], out[f"dec_{stem}"] = ra, dec
        ex = np.asarray(values.get(f"x_{stem}_err", np.full(n, np.nan)), dtype=np.float64)
        ey = np.asarray(values.get(f"y_{stem}_err", np.full(n, np.nan)), dtype=np.float64)
        sky_err = np.sqrt(0.5 * (ex**2 + ey**2)) * pixel_scale
        out[f"ra_{stem}_err"] = sky_err
        out[f"dec_{stem}_err"] = sky_err
    ra, dec = out["ra_centroid"].copy(), out["dec_centroid"].copy()
    if "ra_psf" in out:
        flags = np.asarray(values.get("psf_flags", np.zeros(n)), dtype=np.int64)
        good = (flags == 0) & np.isfinite(out["ra_psf"]) & np.isfinite(out["dec_psf"])
        ra[good], dec[good] = out["ra_psf"][good], out["dec_psf"][good]
    out["ra"], out["dec"] = ra, dec
    if "orientation_pix" in values:
        out["orientation_sky"] = _orientation_sky(
            wcs,
            np.asarray(values["x_centroid"], dtype=np.float64),
            np.asarray(values["y_centroid"], dtype=np.float64),
            np.asarray(values["orientation_pix"], dtype=np.float64),
        )
    return out


def update_sky_coordinates(table, wcs) -> list[str]:
    """Recompute, in place, the RA/Dec columns of a catalog from its pixel columns.

    Pairs ``(x_centroid, y_centroid) → (ra_centroid, dec_centroid)``,
    ``(x_centroid_win, y_centroid_win) → (ra/dec_centroid_win)``, ``(x_psf, y_psf) →
    (ra/dec_psf)``, the best ``ra``/``dec`` and ``orientation_sky``; error columns are
    kept. Columns absent from the table are not added.

    Returns
    -------
    list of str
        Names of the columns updated.
    """
    if "x_centroid" not in table.colnames or len(table) == 0:
        return []
    values = {name: np.asarray(table[name]) for name in table.colnames}
    updated = []
    for name, arr in sky_columns(values, wcs).items():
        if name in table.colnames and not name.endswith("_err"):
            table[name][:] = np.asarray(arr).astype(table[name].dtype)
            updated.append(name)
    return updated


def circular_aperture_sums(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radii: np.ndarray,
    *,
    error: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    segmentation: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact circular-aperture sums of every source for several radii.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Image (background-subtracted).
    x, y : ndarray (n,)
        Aperture centres (pixels, 0-based); non-finite → NaN row.
    radii : ndarray (m,)
        Aperture radii (pixels, > 0).
    error : ndarray (ny, nx), optional
        1-sigma pixel errors; without them the errors are NaN.
    mask : ndarray (ny, nx), bool, optional
        Excluded pixels (non-finite data are excluded too).
    segmentation, labels : ndarray (ny, nx) int and (n,) int, optional
        Segmentation map and the label of each source: pixels of other sources are
        excluded (photutils ``aperture_mask_method='mask'``).

    Returns
    -------
    flux, flux_err : ndarray float64 (n, m)
        ``Σ w_i d_i`` and ``sqrt(Σ w_i σ_i²)`` over the good pixels, ``w_i`` the exact
        area of pixel ``i`` inside the circle (pixel = unit square centred on its
        integer coordinates); NaN where no good pixel overlaps the aperture.
    """
    data = _native2d(data, np.float32, "data")
    shape = data.shape
    x = np.ascontiguousarray(x, dtype=np.float64).ravel()
    y = np.ascontiguousarray(y, dtype=np.float64).ravel()
    radii = np.ascontiguousarray(radii, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"x and y differ in length ({x.size}, {y.size})")
    if radii.size == 0 or not np.all(radii > 0):
        raise ValueError("aperture radii must be > 0")
    has_err = error is not None
    err = _native2d(error, np.float32, "error", shape) if has_err else data
    has_mask = mask is not None
    bad = _native2d(mask, bool, "mask", shape) if has_mask else np.zeros((1, 1), bool)
    has_segm = segmentation is not None
    if has_segm:
        seg = _native2d(segmentation, None, "segmentation", shape)
        if labels is None:
            raise ValueError("labels are needed with a segmentation map")
        lab = np.ascontiguousarray(labels, dtype=np.int64).ravel()
        if lab.size != x.size:
            raise ValueError(f"{lab.size} labels for {x.size} positions")
    else:
        seg = np.zeros((1, 1), np.int32)
        lab = np.zeros(x.size, np.int64)
    flux = np.full((x.size, radii.size), np.nan)
    ferr = np.full((x.size, radii.size), np.nan)
    _ak.circular_kernel(
        data, err, bad, seg, has_err, has_mask, has_segm, lab, x, y, radii, flux, ferr
    )
    return flux, ferr


def annulus_statistics(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    r_in: float,
    r_out: float,
    *,
    mask: np.ndarray | None = None,
    sigma: float = 3.0,
    maxiters: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigma-clipped median, standard deviation and area of circular annuli.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Image.
    x, y : ndarray (n,)
        Annulus centres (pixels, 0-based).
    r_in, r_out : float
        Inner and outer radii (pixels), ``0 ≤ r_in < r_out``.
    mask : ndarray (ny, nx), bool, optional
        Excluded pixels (non-finite data are excluded too).
    sigma, maxiters : float, int
        Clipping (astropy ``SigmaClip`` defaults: median centre, std scatter).

    Returns
    -------
    median, std, area : ndarray float64 (n,)
        As photutils ``ApertureStats(data, CircularAnnulus, mask=mask,
        sigma_clip=SigmaClip(sigma, maxiters))``: ``median`` and ``std`` (ddof 0) of
        the clipped values of the pixels whose centre lies in ``r_in ≤ d < r_out``;
        ``area`` (``sum_aper_area``, pixels) the exact overlap weights of the
        unmasked pixels that survive a clipping of the pixels with a non-zero weight.
        NaN where no pixel centre of the annulus is usable.
    """
    data = _native2d(data, np.float32, "data")
    x = np.ascontiguousarray(x, dtype=np.float64).ravel()
    y = np.ascontiguousarray(y, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"x and y differ in length ({x.size}, {y.size})")
    if not (0.0 <= r_in < r_out):
        raise ValueError(f"annulus radii must satisfy 0 <= r_in < r_out, got {r_in}, {r_out}")
    has_mask = mask is not None
    bad = _native2d(mask, bool, "mask", data.shape) if has_mask else np.zeros((1, 1), bool)
    out = np.full((x.size, 3), np.nan)
    _ak.annulus_kernel(
        data, bad, has_mask, x, y, float(r_in), float(r_out), float(sigma), int(maxiters), out
    )
    return out[:, 0], out[:, 1], out[:, 2]


# --------------------------------------------------------------------------- private


def _ee_fractions(apcorr: ApertureCorrection | None) -> tuple[float, ...]:
    if apcorr is None:
        return ()
    return tuple(f for f in EE_APERTURE_FRACTIONS if np.any(np.isclose(apcorr.ee_fractions, f)))


def _make_table(values: dict, n: int, columns: list[tuple[str, str, str]]):
    from astropy.table import Column, Table

    table = Table()
    for name, dtype, unit in columns:
        if name in values:
            arr = np.asarray(values[name])
        else:
            fill = False if dtype == "bool" else (np.nan if dtype.startswith("float") else 0)
            arr = np.full(n, fill)
        with np.errstate(invalid="ignore"):
            arr = arr.astype(dtype)
        table[name] = Column(arr, unit=unit or None)
    return table


def _scaled(a, scale: float, name: str, inplace: bool, shape=None) -> np.ndarray:
    """``a × scale`` in float32 (the same rounding as ``np.float32`` array arithmetic)."""
    s32 = np.float32(scale)
    if not inplace:
        out = _native2d(a, np.float32, name, shape) * s32
        return out
    arr = a
    if not (
        isinstance(arr, np.ndarray)
        and arr.dtype == np.float32
        and arr.dtype.isnative
        and arr.flags.c_contiguous
        and arr.flags.writeable
    ):
        raise ValueError(f"{name} must be a writeable C-contiguous float32 array with inplace=True")
    if arr.ndim != 2 or (shape is not None and arr.shape != tuple(shape)):
        raise ValueError(f"{name} has shape {arr.shape}, expected 2-D {shape or ''}")
    np.multiply(arr, s32, out=arr)
    return arr


def _aperture_radii(pixel_scale, apcorr, ee_fracs) -> tuple[np.ndarray, list[str]]:
    """Radii (pixels) and column names of the circular apertures."""
    names: list[str] = []
    radii: list[float] = []
    for r in APERTURE_RADII_ARCSEC:
        names.append(f"aper{round(r * 10):02d}_flux")
        radii.append(r / float(pixel_scale))
    for f in ee_fracs:
        i = int(np.argmin(np.abs(apcorr.ee_fractions - f)))
        names.append(f"aper_ee{round(f * 100):02d}_flux")
        radii.append(float(apcorr.ee_radii[i]))
    return np.asarray(radii, dtype=np.float64), names


def _known_boxes(segm):
    """(boxes, areas) a :class:`~rampcal.catalog.detection.Segmentation` carries, or None."""
    boxes = getattr(segm, "boxes", None)
    areas = getattr(segm, "areas", None)
    if boxes is None or areas is None:
        return None
    return np.ascontiguousarray(boxes, dtype=np.int64), np.asarray(areas, dtype=np.int64)


def _measure_all(sci, err, mask, det, seg, labels, radii, annulus, kernel_fwhm, known=None):
    """Run the compiled measurement of every label.

    Returns ``props`` (n, N_COLUMNS) float64 (columns ``_measure_kernels.C_*``), the
    circular-aperture fluxes and errors (n, m), the bounding boxes (n, 4) int64
    ([ymin, ymax), [xmin, xmax)) and the pixel counts (n,) of the segments.
    """
    n = labels.size
    if known is not None:
        boxes, count = known
    else:
        boxes, count = _segment_boxes(seg, labels)
    if np.any(count == 0):
        raise ValueError("every label of segm.labels must have pixels in segm.data")
    ints, _, weights, kmask, vec, wts, scal = _dao_kernel(float(kernel_fwhm))
    props = np.full((n, _k.N_COLUMNS), np.nan)
    flux = np.full((n, radii.size), np.nan)
    ferr = np.full((n, radii.size), np.nan)
    params = np.array([*_KRON_PARAMS, annulus[0], annulus[1], 3.0, 5.0])

    def run(rows):
        _k.measure_kernel(
            sci, err, mask, det, seg, labels, boxes, radii, params, ints, weights, kmask,
            vec, wts, scal, rows, props, flux, ferr,
        )  # fmt: skip

    # sources in interleaved chunks over a few threads (the kernel releases the GIL)
    workers = max(1, min(_thread_count(), n // 64))
    if workers == 1:
        run(np.arange(n))
    else:
        from concurrent.futures import ThreadPoolExecutor

        chunks = np.array_split(np.arange(n), 8 * workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, chunks))
    return props, flux, ferr, boxes, count


def _segment_boxes(seg, labels):
    """Bounding boxes (n, 4) and pixel counts (n,) of the labels, by one scan of ``seg``."""
    n = labels.size
    ny, nx = seg.shape
    top = int(labels.max(initial=0))
    if n and int(labels.min()) <= 0:
        raise ValueError("segmentation labels to measure must be > 0")
    if top > 64 * (seg.size + 1):
        raise ValueError(f"segmentation label {top} is too large (relabel the map)")
    lut = np.full(top + 1, -1, dtype=np.int64)
    lut[labels] = np.arange(n)
    boxes = np.empty((n, 4), dtype=np.int64)
    boxes[:] = (ny, 0, nx, 0)
    count = np.zeros(n, dtype=np.int64)
    _k.segment_boxes(seg, lut, boxes, count)
    return boxes, count


def _source_values(props, boxes, count, pixel_scale: float) -> dict[str, np.ndarray]:
    """Centroid, shape, Kron and isophotal columns from the kernel's output."""
    ps = float(pixel_scale)
    k = _k
    x, y = props[:, k.C_X], props[:, k.C_Y]
    a, b = props[:, k.C_SEMIMAJOR], props[:, k.C_SEMIMINOR]
    kron_radius = props[:, k.C_KRON_RADIUS]
    kron_flux, kron_err = props[:, k.C_KRON_FLUX], props[:, k.C_KRON_ERR]
    # photutils sums the squared errors in float32, in float64 once a source is fully masked
    use64 = bool(np.any(props[:, k.C_ALL_MASKED] != 0))
    seg_flux = props[:, k.C_FLUX]
    seg_err = props[:, k.C_ERR64 if use64 else k.C_ERR32]
    xw, yw = _windowed_fallback(props)
    with np.errstate(divide="ignore", invalid="ignore"):
        abmag = np.where(kron_flux > 0, -2.5 * np.log10(kron_flux) + AB_ZEROPOINT_NJY, np.nan)
        abmag_err = np.where(kron_flux > 0, 2.5 / np.log(10.0) * kron_err / kron_flux, np.nan)
        sum_d = props[:, k.C_SUM_D]
        sigx = np.where(sum_d > 0, np.sqrt(props[:, k.C_VAR_X]) / np.abs(sum_d), np.nan)
        sigy = np.where(sum_d > 0, np.sqrt(props[:, k.C_VAR_Y]) / np.abs(sum_d), np.nan)
    return {
        "x_centroid": x,
        "y_centroid": y,
        "x_centroid_err": sigx,
        "y_centroid_err": sigy,
        "x_centroid_win": xw,
        "y_centroid_win": yw,
        "x_centroid_win_err": sigx,
        "y_centroid_win_err": sigy,
        "bbox_xmin": boxes[:, 2],
        "bbox_xmax": boxes[:, 3] - 1,
        "bbox_ymin": boxes[:, 0],
        "bbox_ymax": boxes[:, 1] - 1,
        "segment_area": count.astype(np.float64) * ps**2,
        "semimajor": a * ps,
        "semiminor": b * ps,
        "fwhm": props[:, k.C_FWHM] * ps,
        "ellipticity": props[:, k.C_ELLIPTICITY],
        "orientation_pix": np.mod(props[:, k.C_ORIENT] + 90.0, 180.0) - 90.0,
        "cxx": props[:, k.C_CXX] / ps**2,
        "cxy": props[:, k.C_CXY] / ps**2,
        "cyy": props[:, k.C_CYY] / ps**2,
        # photutils' Kron radius is in units of the moment ellipse; sqrt(a b) makes it pixels
        "kron_radius": kron_radius * np.sqrt(a * b) * ps,
        "fluxfrac_radius_50": props[:, k.C_RHL] * ps,
        "segment_flux": seg_flux,
        "segment_flux_err": seg_err,
        "kron_flux": kron_flux,
        "kron_flux_err": kron_err,
        "kron_abmag": abmag,
        "kron_abmag_err": abmag_err,
    }


def _windowed_fallback(props):
    """photutils ``centroid_win`` fallbacks to the isophotal centroid.

    A windowed centroid outside the 1-sigma moment ellipse (``cxx dx² + cxy dx dy +
    cyy dy² > 1``) or not finite (while the half-light radius is) is replaced by the
    isophotal one; the catalog also fills the remaining NaN with it.
    """
    k = _k
    x, y = props[:, k.C_X], props[:, k.C_Y]
    xw, yw = props[:, k.C_XWIN].copy(), props[:, k.C_YWIN].copy()
    nan_hl = ~np.isfinite(props[:, k.C_RHL])
    dx = x - xw
    dy = y - yw
    cxx, cxy, cyy = props[:, k.C_CXX], props[:, k.C_CXY], props[:, k.C_CYY]
    with np.errstate(invalid="ignore"):
        reset = (cxx * dx**2 + cxy * dx * dy + cyy * dy**2) > 1
    reset |= (np.isnan(xw) | np.isnan(yw)) & ~nan_hl
    xw[reset] = x[reset]
    yw[reset] = y[reset]
    return np.where(np.isfinite(xw), xw, x), np.where(np.isfinite(yw), yw, y)


def _aperture_values(props, flux, ferr, names, pixel_scale, apcorr, ee_fracs):
    """Circular-aperture fluxes, total flux and the annulus background columns."""
    ps = float(pixel_scale)
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        out[name], out[f"{name}_err"] = flux[:, k], ferr[:, k]
    if ee_fracs:
        i = int(np.argmin(np.abs(apcorr.ee_fractions - ee_fracs[-1])))
        corr = float(apcorr.ap_corrections[i])
        last = f"aper_ee{round(ee_fracs[-1] * 100):02d}_flux"
        out["aper_total_flux"] = out[last] * corr
        out["aper_total_flux_err"] = out[f"{last}_err"] * corr
    # local background: sigma-clipped median per pixel in an annulus (reported, not subtracted)
    median = props[:, _k.C_BKG_MEDIAN]
    std = props[:, _k.C_BKG_STD]
    npix = props[:, _k.C_BKG_AREA]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["aper_bkg_flux"] = median / ps**2
        out["aper_bkg_flux_err"] = np.sqrt(np.pi / (2.0 * npix)) * std / ps**2
    return out


def _daofind_values(props, x, y, shape, kernel_fwhm) -> dict[str, np.ndarray]:
    """DAOFIND ``sharpness`` and ``roundness1``, matched to the sources as before.

    DAOFIND's centroid of each source (from the rounded centroid, marginal fits) is
    matched to the nearest isophotal centroid within 1.5 pixels; sources not within a
    kernel radius of the edge come first, as in the tiled run this replaces.
    """
    from scipy.spatial import cKDTree

    k = _k
    n = len(x)
    sharp = np.full(n, np.nan)
    round1 = np.full(n, np.nan)
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if ok.size == 0:
        return {"sharpness": sharp, "roundness1": round1}
    ny, nx = shape
    ry, rx = _dao_kernel(float(kernel_fwhm))[1]
    ix = np.rint(x[ok]).astype(np.int64)
    iy = np.rint(y[ok]).astype(np.int64)
    edge = (ix < rx) | (ix > nx - 1 - rx) | (iy < ry) | (iy > ny - 1 - ry)
    order = np.concatenate([ok[~edge], ok[edge]])
    found = order[props[order, k.C_DAO_OK] != 0]
    if found.size == 0:
        return {"sharpness": sharp, "roundness1": round1}
    fx, fy = props[found, k.C_DAO_X], props[found, k.C_DAO_Y]
    dist, idx = cKDTree(np.column_stack([x[ok], y[ok]])).query(np.column_stack([fx, fy]))
    rows = ok[idx]
    near = dist < 1.5
    sharp[rows[near]] = props[found, k.C_SHARP][near]
    round1[rows[near]] = props[found, k.C_ROUND1][near]
    return {"sharpness": sharp, "roundness1": round1}


@functools.lru_cache(maxsize=8)
def _dao_kernel(fwhm: float):
    """photutils' DAOFIND kernel (``_StarFinderKernel``, ratio 1, θ 0, σ-radius 1.5).

    Returns the arrays :func:`_measure_kernels.measure_kernel` takes: (int array
    [n_pixels, footprint dy…, dx…], (ry, rx), flipped non-zero weights, kernel mask,
    marginal vectors (2, 4, size), marginal 2-D weights (2, ky, kx), marginal scalars
    (2, 7)), computed with the same numpy operations as photutils.
    """
    x_sigma = fwhm * GAUSSIAN_FWHM_TO_SIGMA
    y_sigma = x_sigma * 1.0
    theta_radians = np.deg2rad(0.0 % 360.0)
    cost = np.cos(theta_radians)
    sint = np.sin(theta_radians)
    x_sigma2 = x_sigma**2
    y_sigma2 = y_sigma**2
    a = (cost**2 / (2.0 * x_sigma2)) + (sint**2 / (2.0 * y_sigma2))
    b = 0.5 * cost * sint * ((1.0 / x_sigma2) - (1.0 / y_sigma2))
    c = (sint**2 / (2.0 * x_sigma2)) + (cost**2 / (2.0 * y_sigma2))
    f = 1.5**2 / 2.0
    denom = (a * c) - b**2
    nx = 2 * int(max(2, math.sqrt(c * f / denom))) + 1
    ny = 2 * int(max(2, math.sqrt(a * f / denom))) + 1
    xc, yc = nx // 2, ny // 2
    yy, xx = np.mgrid[0:ny, 0:nx]
    circular_radius = np.sqrt((xx - xc) ** 2 + (yy - yc) ** 2)
    elliptical_radius = a * (xx - xc) ** 2 + 2.0 * b * (xx - xc) * (yy - yc) + c * (yy - yc) ** 2
    kmask = np.where((elliptical_radius <= f) | (circular_radius <= 2.0), 1, 0).astype(int)
    n_pixels = kmask.sum()
    unmasked = np.exp(-elliptical_radius)
    gauss = unmasked * kmask
    denom = (gauss**2).sum() - (gauss.sum() ** 2 / n_pixels)
    kdata = ((gauss - (gauss.sum() / n_pixels)) / denom) * kmask
    # scipy.ndimage.convolve: flipped weights, footprint |w| > DBL_EPSILON, row-major
    flipped = kdata[::-1, ::-1]
    fy, fx = np.nonzero(np.abs(flipped) > np.finfo(np.float64).eps)
    ints = np.concatenate([[n_pixels], fy - ny // 2, fx - nx // 2]).astype(np.int64)
    # marginal fits (photutils _marginal_weights / _marginal_kernel_sums)
    ycen, xcen = (ny - 1) // 2, (nx - 1) // 2
    wx = xcen - np.abs(np.arange(nx) - xcen) + 1
    wy = ycen - np.abs(np.arange(ny) - ycen) + 1
    xwt, ywt = np.meshgrid(wx, wy)
    size = max(nx, ny)
    vec = np.zeros((2, 4, size))
    wts2 = np.zeros((2, ny, nx))
    scal = np.zeros((2, 7))
    for axis in (0, 1):
        if axis == 0:
            wt, wts, n1, center, sigma = np.transpose(ywt)[0], xwt, ny, ycen, y_sigma
            dxx = np.arange(n1) - center
        else:
            wt, wts, n1, center, sigma = xwt[0], ywt, nx, xcen, x_sigma
            dxx = center - np.arange(n1)
        dx = center - np.arange(n1)
        kern_sum_1d = np.sum(unmasked * wts, axis=1 - axis)
        dkern_dx = kern_sum_1d * dx
        scal[axis] = (
            np.sum(wt),
            np.sum(kern_sum_1d * wt),
            np.sum(kern_sum_1d**2 * wt),
            np.sum(dkern_dx * wt),
            np.sum(dkern_dx**2 * wt),
            np.sum(kern_sum_1d * dkern_dx * wt),
            sigma**2,
        )
        vec[axis, 0, :n1] = wt
        vec[axis, 1, :n1] = kern_sum_1d
        vec[axis, 2, :n1] = dkern_dx
        vec[axis, 3, :n1] = dxx
        wts2[axis] = wts
    weights = np.ascontiguousarray(flipped[fy, fx], dtype=np.float64)
    return ints, (ny // 2, nx // 2), weights, kmask.astype(np.float64), vec, wts2, scal


def _neighbours(labels, x, y, pixel_scale) -> dict[str, np.ndarray]:
    from scipy.spatial import cKDTree

    n = len(labels)
    nn_label = np.full(n, -1, dtype=np.int64)
    nn_dist = np.full(n, np.nan)
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if ok.size >= 2:
        pts = np.column_stack([x[ok], y[ok]])
        dist, idx = cKDTree(pts).query(pts, k=2)
        nn_label[ok] = np.asarray(labels)[ok[idx[:, 1]]]
        nn_dist[ok] = dist[:, 1] * float(pixel_scale)
    return {"nn_label": nn_label, "nn_distance": nn_dist}


def _is_extended(values, pixel_scale, apcorr) -> np.ndarray:
    curve = apcorr if apcorr is not None else ApertureCorrection.gaussian(2.0)
    r2, r4 = 0.2 / pixel_scale, 0.4 / pixel_scale
    ratio = float(curve.encircled_energy(r4) / max(curve.encircled_energy(r2), 1e-6))
    with np.errstate(invalid="ignore"):
        return values["aper04_flux"] > EXTENDED_RATIO * values["aper02_flux"] * ratio


def _warning_flags(x, y, mask) -> np.ndarray:
    ny, nx = mask.shape
    flags = np.zeros(len(x), dtype=np.int32)
    bad = ~(np.isfinite(x) & np.isfinite(y))
    ix = np.clip(np.rint(np.nan_to_num(x)), 0, nx - 1).astype(np.int64)
    iy = np.clip(np.rint(np.nan_to_num(y)), 0, ny - 1).astype(np.int64)
    bad |= mask[iy, ix]
    flags[bad] |= WARN_BAD_CENTROID
    return flags


def _psf_values(psf: PSFFit) -> dict[str, np.ndarray]:
    return {
        "x_psf": psf.x,
        "y_psf": psf.y,
        "x_psf_err": psf.x_err,
        "y_psf_err": psf.y_err,
        "psf_flux": psf.flux,
        "psf_flux_err": psf.flux_err,
        "psf_flags": psf.flags,
        "psf_gof": psf.gof,
    }


def _pix_to_sky(wcs, x, y):
    if wcs is None or x.size == 0:
        return np.full(x.size, np.nan), np.full(x.size, np.nan)
    ok = np.isfinite(x) & np.isfinite(y)
    ra = np.full(x.size, np.nan)
    dec = np.full(x.size, np.nan)
    if np.any(ok):
        r, d = wcs(x[ok], y[ok], with_bounding_box=False)
        ra[ok] = np.mod(np.asarray(r, dtype=np.float64), 360.0)
        dec[ok] = np.asarray(d, dtype=np.float64)
    return ra, dec


def _orientation_sky(wcs, x, y, theta_pix_deg) -> np.ndarray:
    """Position angle (East of North, [0, 180)) of the axis at ``theta_pix_deg`` from +x."""
    if wcs is None or x.size == 0:
        return np.full(x.size, np.nan)
    t = np.deg2rad(theta_pix_deg)
    ra1, dec1 = _pix_to_sky(wcs, x, y)
    ra2, dec2 = _pix_to_sky(wcs, x + np.cos(t), y + np.sin(t))
    d1, d2 = np.deg2rad(dec1), np.deg2rad(dec2)
    dra = np.deg2rad(ra2 - ra1)
    pa = np.arctan2(
        np.sin(dra) * np.cos(d2), np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(dra)
    )
    return np.mod(np.rad2deg(pa), 180.0)


def _native2d(a, dtype, name, shape=None) -> np.ndarray:
    """C-contiguous native-endian 2-D array (numba rejects big-endian data)."""
    arr = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim != 2 or (shape is not None and arr.shape != tuple(shape)):
        raise ValueError(f"{name} has shape {arr.shape}, expected 2-D {shape or ''}")
    return np.ascontiguousarray(arr)
