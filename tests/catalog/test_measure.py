"""Source catalog measurements (rampcal.catalog.measure)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from rampcal.catalog.detection import (
    build_mask,
    detection_image,
    estimate_background,
    segment_image,
)
from rampcal.catalog.measure import (
    AB_ZEROPOINT_NJY,
    ApertureCorrection,
    catalog_columns,
    empty_catalog,
    measure_sources,
    update_sky_coordinates,
)
from rampcal.catalog.psf import gaussian_psf


def _starfield():
    name = "rampcal_tests_starfield"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("starfield.py")
        )
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


sf = _starfield()
NOISE = 0.05
#: Encircled energy of a pixel-sampled Gaussian measured with exact apertures:
#: σ_eff² = σ² + 1/12 (pixel response) + 1/12 (aperture over pixels).
SAMPLED = ApertureCorrection.gaussian(
    math.sqrt((sf.FWHM_F158 / 2.3548200450309493) ** 2 + 1.0 / 6.0) * 2.3548200450309493
)


def _catalog(data, err, *, wcs=None, psf=True, apcorr=SAMPLED, dq=None):
    mask = build_mask(data, err, dq)
    bkg = estimate_background(data, mask, box_size=1000)
    sci = data - bkg.background
    det = detection_image(sci, mask, kernel_fwhm=2.0)
    segm = segment_image(det, 3.0 * bkg.rms, npixels=25, mask=mask)
    table = measure_sources(
        sci,
        segm,
        error=err,
        mask=mask,
        detection=det,
        wcs=wcs,
        flux_scale=sf.NJY_PER_DN_S,
        pixel_scale=0.11,
        apcorr=apcorr,
        psf_model=gaussian_psf(sf.FWHM_F158) if psf else None,
    )
    return table, segm


def _match(table, truth):
    dist, idx = cKDTree(np.c_[truth["x"], truth["y"]]).query(
        np.c_[table["x_centroid"], table["y_centroid"]]
    )
    assert np.all(dist < 1.0)
    sigma = sf.FWHM_F158 / 2.3548200450309493
    snr = truth["flux"][idx] / (NOISE * math.sqrt(4.0 * math.pi * sigma**2))
    return idx, snr


@pytest.fixture(scope="module")
def field():
    data, err, truth = sf.star_field(seed=1, noise=NOISE)
    wcs = sf.make_wcs(data.shape)
    table, segm = _catalog(data, err, wcs=wcs)
    return data, err, truth, wcs, table, segm


def test_columns_dtypes_and_units(field):
    table = field[4]
    expected = catalog_columns(psf=True, ee_fractions=(0.3, 0.5, 0.7))
    assert table.colnames == [c[0] for c in expected]
    for name, dtype, unit in expected:
        assert table[name].dtype == np.dtype(dtype), name
        if unit:
            assert table[name].unit is not None, name
    assert str(table["psf_flux"].unit) == "nJy" and str(table["ra"].unit) == "deg"


def test_catalog_validates_as_image_source_catalog(field):
    from roman_datamodels import datamodels as rdd

    model = rdd.ImageSourceCatalogModel.create_fake_data()
    model.source_catalog = field[4]
    model.validate()
    model.source_catalog = empty_catalog(psf=True, apcorr=SAMPLED)
    model.validate()


def test_bright_star_positions_within_005_pixel(field):
    _, _, truth, _, table, _ = field
    idx, snr = _match(table, truth)
    bright = snr > 100
    assert np.count_nonzero(bright) >= 20
    assert np.all(table["label"] > 0)
    for stem in ("centroid", "centroid_win", "psf"):
        dx = np.asarray(table[f"x_{stem}"], float) - truth["x"][idx]
        dy = np.asarray(table[f"y_{stem}"], float) - truth["y"][idx]
        assert np.max(np.abs(dx[bright])) < 0.05, stem
        assert np.max(np.abs(dy[bright])) < 0.05, stem
    assert np.all(table["psf_flags"][bright] == 0)
    assert np.all(table["warning_flags"] == 0)


def test_bright_star_fluxes_within_2_percent(field):
    _, _, truth, _, table, _ = field
    idx, snr = _match(table, truth)
    bright = snr > 100
    true_njy = truth["flux"][idx] * sf.NJY_PER_DN_S
    psf = np.asarray(table["psf_flux"], float) / true_njy
    assert np.max(np.abs(psf[bright] - 1.0)) < 0.02
    # Kron and isophotal fluxes: within their errors (4 sigma) plus 0.5 %
    for col in ("kron_flux", "segment_flux"):
        got = np.asarray(table[col], float)
        tol = 4.0 * np.asarray(table[f"{col}_err"], float) + 0.005 * true_njy
        assert np.all(np.abs(got - true_njy)[bright] < tol[bright]), col
    # aperture-corrected total flux: right on average (single stars vary with pixel phase)
    total = np.asarray(table["aper_total_flux"], float) / true_njy
    assert np.median(total[bright]) == pytest.approx(1.0, abs=0.015)
    mag = -2.5 * np.log10(np.asarray(table["kron_flux"], float)) + AB_ZEROPOINT_NJY
    np.testing.assert_allclose(table["kron_abmag"], mag, atol=1e-5)


def test_error_estimates_are_honest():
    pulls = {"x_centroid": [], "x_psf": [], "psf_flux": []}
    for seed in range(3):
        data, err, truth = sf.star_field(seed=10 + seed, n=50, noise=NOISE, flux_range=(10, 200))
        table, _ = _catalog(data, err)
        idx, _ = _match(table, truth)
        pulls["x_centroid"].append(
            (table["x_centroid"] - truth["x"][idx]) / table["x_centroid_err"]
        )
        pulls["x_psf"].append((table["x_psf"] - truth["x"][idx]) / table["x_psf_err"])
        true_njy = truth["flux"][idx] * sf.NJY_PER_DN_S
        pulls["psf_flux"].append((table["psf_flux"] - true_njy) / table["psf_flux_err"])
    width = {k: float(np.std(np.concatenate(v))) for k, v in pulls.items()}
    assert 0.8 < width["x_psf"] < 1.25
    assert 0.8 < width["psf_flux"] < 1.25
    # the moment-centroid error ignores the noise of the segment footprint: ~1.3
    assert 0.8 < width["x_centroid"] < 1.6


def test_sky_columns_follow_the_wcs(field):
    _, _, _, wcs, table, _ = field
    ra, dec = wcs(np.asarray(table["x_centroid"], float), np.asarray(table["y_centroid"], float))
    # the table keeps float32 pixel positions: 1e-8 deg = 36 µas
    np.testing.assert_allclose(table["ra_centroid"], ra, rtol=0, atol=1e-8)
    np.testing.assert_allclose(table["dec_centroid"], dec, rtol=0, atol=1e-8)
    good = table["psf_flags"] == 0
    np.testing.assert_array_equal(table["ra"][good], table["ra_psf"][good])
    # sky errors: pixel errors times 0.11"
    ex = np.asarray(table["x_psf_err"], float)
    ey = np.asarray(table["y_psf_err"], float)
    np.testing.assert_allclose(table["ra_psf_err"], np.sqrt((ex**2 + ey**2) / 2) * 0.11, rtol=1e-5)


def test_shape_columns_in_arcsec(field):
    _, _, _, _, table, segm = field
    areas = np.array([np.count_nonzero(segm.data == lab) for lab in table["label"]])
    np.testing.assert_allclose(table["segment_area"], areas * 0.11**2, rtol=1e-5)
    sigma = sf.FWHM_F158 / 2.3548200450309493
    bright = np.asarray(table["segment_flux"]) > np.percentile(table["segment_flux"], 50)
    # shapes come from the detection image: σ² + 1/12 (pixel) + σ_kernel² (FWHM 2)
    expected = math.sqrt(sigma**2 + 1 / 12 + (2.0 / 2.3548200450309493) ** 2) * 0.11
    assert np.median(table["semimajor"][bright]) == pytest.approx(expected, rel=0.1)
    assert np.all(table["semiminor"] <= table["semimajor"])
    assert not np.any(table["is_extended"])
    assert np.all(np.isfinite(table["sharpness"])) and np.all(np.isfinite(table["roundness1"]))
    assert np.all(np.isnan(table["dust_ebv"])) and np.all(table["image_flags"] == 0)


def test_nearest_neighbours(field):
    table = field[4]
    xy = np.c_[table["x_centroid"], table["y_centroid"]].astype(float)
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    nearest = np.argmin(d, axis=1)
    np.testing.assert_array_equal(table["nn_label"], table["label"][nearest])
    np.testing.assert_allclose(table["nn_distance"], d.min(axis=1) * 0.11, rtol=1e-5)


def test_extended_source_and_flagged_centroid():
    shape = (96, 96)
    rng = np.random.default_rng(2)
    data = sf.render(shape, [30.0, 65.0], [48.0, 48.0], [500.0, 500.0], sf.FWHM_F158)
    data += sf.render(shape, [48.0], [20.0], [2000.0], 6.0)  # a galaxy
    data = (data + rng.normal(0, NOISE, shape)).astype(np.float32)
    err = np.full(shape, NOISE, np.float32)
    dq = np.zeros(shape, np.uint32)
    dq[48, 65] = 1  # DO_NOT_USE at the second star's centre
    table, _ = _catalog(data, err, dq=dq, psf=False, apcorr=None)
    assert len(table) == 3
    order = np.lexsort((table["x_centroid"], table["y_centroid"]))
    galaxy, star1, star2 = (table[i] for i in order)
    assert bool(galaxy["is_extended"]) and not bool(star1["is_extended"])
    assert star2["warning_flags"] == 1 and star1["warning_flags"] == 0
    assert "psf_flux" not in table.colnames and "aper_total_flux" not in table.colnames


@pytest.mark.parametrize("direction, expected", [("north", 0.0), ("east", 90.0)])
def test_orientation_sky(direction, expected):
    shape = (64, 64)
    wcs = sf.make_wcs(shape)
    ra0, dec0 = wcs(32.0, 32.0)
    if direction == "north":
        x1, y1 = wcs.invert(ra0, dec0 + 1.0 / 3600)
    else:
        x1, y1 = wcs.invert(ra0 + 1.0 / 3600 / math.cos(math.radians(dec0)), dec0)
    theta = math.atan2(y1 - 32.0, x1 - 32.0)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    u = (xx - 32) * math.cos(theta) + (yy - 32) * math.sin(theta)
    v = -(xx - 32) * math.sin(theta) + (yy - 32) * math.cos(theta)
    data = (100.0 * np.exp(-0.5 * ((u / 4.0) ** 2 + (v / 1.5) ** 2))).astype(np.float32)
    err = np.full(shape, 0.01, np.float32)
    table, _ = _catalog(data, err, wcs=wcs, psf=False)
    assert len(table) == 1
    assert float(table["orientation_pix"][0]) == pytest.approx(
        (math.degrees(theta) + 90) % 180 - 90, abs=0.5
    )
    pa = float(table["orientation_sky"][0])
    assert min(abs(pa - expected), 180 - abs(pa - expected)) < 0.5


def test_update_sky_coordinates_uses_the_new_wcs(field):
    _, _, _, _, table, _ = field
    table = table.copy()
    errors = np.array(table["ra_centroid_err"])
    info = dict(sf.WCSINFO, ra_ref=sf.WCSINFO["ra_ref"] + 1.0 / 3600)
    new_wcs = sf.make_wcs((256, 256), info)
    updated = update_sky_coordinates(table, new_wcs)
    assert {"ra", "dec", "ra_centroid", "ra_centroid_win", "ra_psf", "orientation_sky"} <= set(
        updated
    )
    ra, _ = new_wcs(np.asarray(table["x_psf"], float), np.asarray(table["y_psf"], float))
    np.testing.assert_allclose(table["ra_psf"], ra, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(table["ra_centroid_err"], errors)
    assert update_sky_coordinates(empty_catalog(psf=False), new_wcs) == []


def test_empty_catalog_and_no_segments():
    table = empty_catalog(psf=False)
    assert len(table) == 0
    assert table.colnames == [c[0] for c in catalog_columns(psf=False)]
    data = np.zeros((32, 32), np.float32)
    got = measure_sources(
        data, None, error=np.ones_like(data), mask=np.zeros(data.shape, bool), detection=data
    )
    assert len(got) == 0 and "x_centroid" in got.colnames


def test_no_wcs_gives_nan_sky_columns():
    data, err, _ = sf.star_field(seed=3, n=10, flux_range=(100, 1000))
    table, _ = _catalog(data, err, wcs=None, psf=False)
    assert len(table) == 10
    assert np.all(np.isnan(table["ra"])) and np.all(np.isnan(table["orientation_sky"]))


def test_aperture_correction_curve():
    curve = ApertureCorrection.gaussian(2.0)
    sigma = 2.0 / 2.3548200450309493
    r = np.array([0.2, 1.0, 2.0, 3.0, 5.0])
    exact = 1.0 - np.exp(-(r**2) / (2 * sigma**2))
    got = curve.encircled_energy(r)
    # inside the table: linear interpolation; beyond it: the Gaussian tail is exact
    np.testing.assert_allclose(got[1:3], exact[1:3], atol=0.01)
    np.testing.assert_allclose(got[3:], exact[3:], atol=1e-9)
    assert 0 < got[0] < curve.ee_fractions[0]
    entry = {
        "ee_fractions": [0.8, 0.5],
        "ee_radii": [3.0, 1.5],
        "ap_corrections": [1.25, 2.0],
    }
    table = ApertureCorrection.from_table(entry)
    np.testing.assert_array_equal(table.ee_radii, [1.5, 3.0])
    np.testing.assert_array_equal(table.ap_corrections, [2.0, 1.25])
    with pytest.raises(ValueError):
        ApertureCorrection.from_table(
            {"ee_fractions": [0.5], "ee_radii": [1.0], "ap_corrections": [2.0]}
        )


# ---------------------------------------------------------------------------- equivalences


def _crowded_field(seed=5):
    """Stars, some close enough to share apertures, masked pixels and outliers."""
    rng = np.random.default_rng(seed)
    shape = (120, 130)
    x, y = sf.star_positions(rng, shape, 14, margin=3.0, min_sep=6.0)
    flux = np.exp(rng.uniform(np.log(20), np.log(2000), x.size))
    data = sf.render(shape, x, y, flux, sf.FWHM_F158) + rng.normal(0, NOISE, shape)
    hot = rng.integers(0, [shape[0], shape[1]], (40, 2))
    data[hot[:, 0], hot[:, 1]] += 5.0  # outliers for the annulus clipping
    mask = rng.random(shape) < 0.01
    data[mask] = np.nan
    err = np.full(shape, NOISE, np.float32)
    err[mask] = np.nan
    return data.astype(np.float32), err, mask


def _photutils_catalog(data, segm, det, err, mask):
    from photutils.segmentation import SegmentationImage, SourceCatalog

    return SourceCatalog(
        data,
        SegmentationImage(segm.data),
        convolved_data=det,
        error=err,
        mask=mask,
        aperture_mask_method="mask",
    )


def test_circular_aperture_sums_match_photutils_catalog():
    from rampcal.catalog.measure import circular_aperture_sums

    data, err, mask = _crowded_field()
    det = detection_image(data, mask, kernel_fwhm=2.0)
    segm = segment_image(det, 3 * NOISE, npixels=5, mask=mask)
    cat = _photutils_catalog(data, segm, det, err, mask)
    radii = np.array([0.5, 1.3, 3.0, 7.7, 14.5])
    flux, ferr = circular_aperture_sums(
        data,
        cat.x_centroid,
        cat.y_centroid,
        radii,
        error=err,
        mask=mask,
        segmentation=segm.data,
        labels=cat.labels,
    )
    for k, r in enumerate(radii):
        ref, ref_err = cat.circular_photometry(r)
        np.testing.assert_allclose(flux[:, k], ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ferr[:, k], ref_err, rtol=1e-10)


def test_annulus_statistics_match_aperture_stats():
    from astropy.stats import SigmaClip
    from photutils.aperture import ApertureStats, CircularAnnulus

    from rampcal.catalog.measure import annulus_statistics

    data, _, mask = _crowded_field(6)
    x = np.array([60.3, 20.7, 2.2, 127.4, 64.0])  # the last ones cross the image edges
    y = np.array([55.8, 30.1, 60.5, 118.9, 64.0])
    median, std, area = annulus_statistics(data, x, y, 8.3, 12.1, mask=mask)
    ref = ApertureStats(
        data, CircularAnnulus(np.c_[x, y], 8.3, 12.1), mask=mask, sigma_clip=SigmaClip(sigma=3.0)
    )
    np.testing.assert_allclose(median, ref.median, rtol=1e-12)
    np.testing.assert_allclose(std, ref.std, rtol=1e-10)
    np.testing.assert_allclose(area, ref.sum_aper_area.value, rtol=1e-10)
    assert area[0] < np.pi * (12.1**2 - 8.3**2)  # clipped and masked pixels removed


def _dao_reference(sci, mask, x, y):
    from photutils.detection import DAOStarFinder

    xy = np.c_[np.rint(x), np.rint(y)].astype(int)
    return DAOStarFinder(
        threshold=0.0,
        fwhm=2.0,
        xycoords=xy,
        exclude_border=False,
        sharpness_range=None,
        roundness_range=None,
    )(np.where(mask, np.float32(0.0), sci))


def test_daofind_at_any_pixel_matches_star_finder(field):
    """The compiled DAOFIND (sharpness, roundness1, marginal-fit centroid) at given pixels,
    inside and at the edges, as DAOStarFinder on the whole image."""
    from rampcal.catalog import _measure_kernels as mk
    from rampcal.catalog.measure import _dao_kernel

    data, err, _, _, table, _ = field
    mask = build_mask(data, err)
    sci = (data - estimate_background(data, mask, box_size=1000).background).astype(np.float32)
    x = np.r_[np.asarray(table["x_centroid"], float), 0.4, 254.8, 3.0]  # + edge positions
    y = np.r_[np.asarray(table["y_centroid"], float), 100.2, 1.4, 254.6]
    ref = _dao_reference(sci, mask, x, y)
    assert len(ref) == x.size
    ints, _, weights, kmask, vec, wts, scal = _dao_kernel(2.0)
    nfo = weights.size
    got = np.empty((x.size, 5))
    for k in range(x.size):
        mk._dao_one(
            sci, mask, int(np.rint(x[k])), int(np.rint(y[k])), ints[1 : 1 + nfo],
            ints[1 + nfo :], weights, kmask, ints[0], vec, wts, scal, got[k],
        )  # fmt: skip
    assert np.all(got[:, 4] == 1)
    np.testing.assert_array_equal(got[:, 2], ref["sharpness"])
    np.testing.assert_array_equal(got[:, 3].astype(np.float32), ref["roundness1"])
    np.testing.assert_allclose(got[:, 0], ref["x_centroid"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[:, 1], ref["y_centroid"], rtol=0, atol=1e-12)


def test_daofind_columns_match_star_finder_on_the_image(field):
    data, err, _, _, table, _ = field
    mask = build_mask(data, err)
    sci = data - estimate_background(data, mask, box_size=1000).background
    x = np.asarray(table["x_centroid"], float)
    y = np.asarray(table["y_centroid"], float)
    ref = _dao_reference(sci * np.float32(sf.NJY_PER_DN_S), mask, x, y)
    dist, idx = cKDTree(np.c_[x, y]).query(np.c_[ref["x_centroid"], ref["y_centroid"]])
    assert np.all(dist < 1.5)
    np.testing.assert_array_equal(table["sharpness"][idx], np.float32(ref["sharpness"]))
    np.testing.assert_array_equal(table["roundness1"][idx], ref["roundness1"])


def test_catalog_matches_photutils_source_catalog():
    """Isophotal, shape, Kron and segment columns as photutils SourceCatalog computes them
    (crowded sources, masked and NaN pixels, sources on the image edges)."""
    data, err, mask = _crowded_field(8)
    data[0:3, 60:64] += 40.0  # a source cut by the edge
    det = detection_image(data, mask, kernel_fwhm=2.0)
    segm = segment_image(det, 3 * NOISE, npixels=5, mask=mask)
    table = measure_sources(
        data, segm, error=err, mask=mask, detection=det, flux_scale=1.0, pixel_scale=1.0
    )
    cat = _photutils_catalog(data, segm, det, err, mask)
    assert len(table) == cat.n_labels >= 10
    columns = {
        "x_centroid": cat.x_centroid,
        "y_centroid": cat.y_centroid,
        "bbox_xmin": cat.bbox_xmin,
        "bbox_xmax": cat.bbox_xmax,
        "bbox_ymin": cat.bbox_ymin,
        "bbox_ymax": cat.bbox_ymax,
        "segment_area": cat.segment_area.value,
        "semimajor": cat.semimajor_axis.value,
        "semiminor": cat.semiminor_axis.value,
        "fwhm": cat.fwhm.value,
        "ellipticity": cat.ellipticity.value,
        "cxx": cat.ellipse_cxx.value,
        "cxy": cat.ellipse_cxy.value,
        "cyy": cat.ellipse_cyy.value,
        "kron_radius": cat.kron_radius.value
        * np.sqrt(cat.semimajor_axis.value * cat.semiminor_axis.value),
        "kron_flux": cat.kron_flux,
        "kron_flux_err": cat.kron_flux_err,
        "segment_flux": cat.segment_flux,
        "segment_flux_err": cat.segment_flux_err,
        "fluxfrac_radius_50": cat.flux_radius(0.5).value,
        "x_centroid_win": cat.x_centroid_win,
        "y_centroid_win": cat.y_centroid_win,
    }
    for name, ref in columns.items():
        got = np.asarray(table[name])
        # float32 columns: equal to photutils' value rounded to float32 (the moments
        # come from BLAS products there, so allow one float32 ulp)
        np.testing.assert_allclose(
            got, np.asarray(ref).astype(got.dtype), rtol=1.2e-7, err_msg=name
        )
    orient = np.mod(cat.orientation.value + 90.0, 180.0) - 90.0
    np.testing.assert_allclose(table["orientation_pix"], orient.astype(np.float32), rtol=1.2e-7)


def test_fully_masked_segment_is_nan_and_others_follow_photutils():
    from rampcal.catalog.detection import Segmentation

    data, err, mask = _crowded_field(9)
    det = detection_image(data, mask, kernel_fwhm=2.0)
    labels = segment_image(det, 3 * NOISE, npixels=5, mask=mask).data.copy()
    labels[2:5, 2:5] = labels.max() + 1  # a forced segment on masked pixels only
    mask = mask.copy()
    mask[2:5, 2:5] = True
    segm = Segmentation(labels)
    table = measure_sources(
        data, segm, error=err, mask=mask, detection=det, flux_scale=1.0, pixel_scale=1.0
    )
    cat = _photutils_catalog(data, segm, det, err, mask)
    last = table[-1]
    assert np.isnan(last["segment_flux"]) and np.isnan(last["kron_flux"])
    # with a fully masked source photutils sums the errors in float64
    np.testing.assert_array_equal(table["segment_flux"], np.float32(cat.segment_flux))
    np.testing.assert_array_equal(table["segment_flux_err"], np.float32(cat.segment_flux_err))


def test_psf_fwhm_number_is_the_gaussian_prf(field):
    data, err, _, wcs, _, _ = field
    mask = build_mask(data, err)
    bkg = estimate_background(data, mask, box_size=1000)
    sci = data - bkg.background
    det = detection_image(sci, mask, kernel_fwhm=2.0)
    segm = segment_image(det, 3.0 * bkg.rms, npixels=25, mask=mask)
    options = {"error": err, "mask": mask, "detection": det, "flux_scale": 2.0}
    by_model = measure_sources(sci, segm, psf_model=gaussian_psf(sf.FWHM_F158), **options)
    sci_copy = np.array(sci, dtype=np.float32)
    err_copy = np.array(err, dtype=np.float32)
    options.update(error=err_copy)
    by_fwhm = measure_sources(sci_copy, segm, psf_model=sf.FWHM_F158, inplace=True, **options)
    for name in by_model.colnames:
        np.testing.assert_array_equal(by_fwhm[name], by_model[name], err_msg=name)
    np.testing.assert_array_equal(sci_copy, np.float32(sci) * np.float32(2.0))  # scaled in place
    with pytest.raises(ValueError, match="writeable C-contiguous float32"):
        measure_sources(sci.astype(np.float64), segm, inplace=True, **options)


def test_half_light_radius_and_windowed_centroid_match_photutils():
    data, err, mask = _crowded_field(7)
    det = detection_image(data, mask, kernel_fwhm=2.0)
    segm = segment_image(det, 3 * NOISE, npixels=5, mask=mask)
    table = measure_sources(
        data, segm, error=err, mask=mask, detection=det, flux_scale=1.0, pixel_scale=1.0
    )
    cat = _photutils_catalog(data, segm, det, err, mask)
    assert len(table) == cat.n_labels >= 10
    np.testing.assert_allclose(table["fluxfrac_radius_50"], cat.flux_radius(0.5).value, rtol=1e-6)
    np.testing.assert_allclose(table["x_centroid_win"], cat.x_centroid_win, rtol=0, atol=1e-4)
    np.testing.assert_allclose(table["y_centroid_win"], cat.y_centroid_win, rtol=0, atol=1e-4)
    # centroid errors: sqrt(Σ σ² (x − x̄)²) / Σ d over the unmasked segment pixels
    lab = int(table["label"][0])
    yy, xx = np.nonzero((segm.data == lab) & ~mask)
    x0 = float(cat.x_centroid[0])
    expected = np.sqrt(np.sum(err[yy, xx] ** 2 * (xx - x0) ** 2)) / np.sum(data[yy, xx])
    assert float(table["x_centroid_err"][0]) == pytest.approx(expected, rel=1e-5)
