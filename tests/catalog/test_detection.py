"""Mask, background, detection image and segmentation (rampcal.catalog.detection)."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.catalog import detection
from rampcal.catalog.detection import (
    build_mask,
    detection_image,
    estimate_background,
    gaussian_kernel,
    segment_image,
)
from rampcal.core.dq import PixelFlag


def test_build_mask_flags_bad_values_and_do_not_use():
    data = np.ones((4, 5), np.float32)
    err = np.ones((4, 5), np.float32)
    dq = np.zeros((4, 5), np.uint32)
    data[0, 0] = np.nan
    err[1, 1] = 0.0
    err[2, 2] = np.inf
    dq[3, 3] = PixelFlag.DO_NOT_USE | PixelFlag.HOT
    dq[3, 4] = PixelFlag.HOT  # not DO_NOT_USE: kept
    mask = build_mask(data, err, dq, bad_bits=int(PixelFlag.DO_NOT_USE))
    assert mask.dtype == bool
    assert set(zip(*np.nonzero(mask))) == {(0, 0), (1, 1), (2, 2), (3, 3)}
    with pytest.raises(ValueError, match="err has shape"):
        build_mask(data, err[:2])


def test_gaussian_kernel_size_and_normalisation():
    k = gaussian_kernel(2.0)
    assert k.shape == (7, 7)  # ceil(3 * 2) = 6 -> odd 7
    assert k.sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(k), k.shape) == (3, 3)
    assert gaussian_kernel(3.0).shape == (9, 9)
    with pytest.raises(ValueError):
        gaussian_kernel(0.0)


def test_background_recovers_plane_and_noise():
    rng = np.random.default_rng(3)
    ny, nx = 200, 300
    yy, xx = np.mgrid[:ny, :nx]
    truth = 10.0 + 0.002 * xx - 0.001 * yy
    data = (truth + rng.normal(0, 0.5, (ny, nx))).astype(np.float32)
    mask = np.zeros((ny, nx), bool)
    mask[50:60, 50:60] = True
    data[mask] = 1e6  # garbage under the mask must not matter
    bkg = estimate_background(data, mask, box_size=50)
    assert bkg.background.shape == (ny, nx) and bkg.background.dtype == np.float32
    inner = (slice(25, -25), slice(25, -25))
    assert np.max(np.abs(bkg.background - truth)[inner]) < 0.12
    assert np.median(bkg.rms) == pytest.approx(0.5, rel=0.1)


def test_background_rms_with_masked_pixel_on_a_star():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:96, :96]
    data = 500.0 * np.exp(-((xx - 65.0) ** 2 + (yy - 48.0) ** 2) / 2.0)
    data = (data + rng.normal(0, 0.05, data.shape)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[48, 65] = True
    bkg = estimate_background(data, mask, box_size=1000)
    assert bkg.rms[0, 0] == pytest.approx(0.05, rel=0.05)
    assert bkg.background[0, 0] == pytest.approx(0.0, abs=0.005)


def test_background_box_larger_than_image_is_one_box():
    rng = np.random.default_rng(4)
    data = (5.0 + rng.normal(0, 1.0, (64, 80))).astype(np.float32)
    bkg = estimate_background(data, np.zeros(data.shape, bool), box_size=1000)
    assert np.ptp(bkg.background) == pytest.approx(0.0, abs=1e-5)
    assert bkg.background[0, 0] == pytest.approx(5.0, abs=0.05)
    assert bkg.rms[0, 0] == pytest.approx(1.0, rel=0.1)


def test_background_all_masked_is_zero():
    data = np.ones((16, 16), np.float32)
    bkg = estimate_background(data, np.ones((16, 16), bool), box_size=8)
    assert np.all(bkg.background == 0) and np.all(bkg.rms == 0)


def test_detection_image_preserves_constant_and_ignores_masked_pixels():
    data = np.full((30, 30), 2.0, np.float32)
    mask = np.zeros((30, 30), bool)
    data[10, 10] = 1e9
    mask[10, 10] = True
    det = detection_image(data, mask, kernel_fwhm=2.0)
    assert det.dtype == np.float32
    np.testing.assert_allclose(det, 2.0, rtol=1e-6)


def test_detection_image_conserves_a_point_source():
    data = np.zeros((31, 31), np.float32)
    data[15, 15] = 100.0
    det = detection_image(data, np.zeros(data.shape, bool), kernel_fwhm=2.0)
    assert det.sum() == pytest.approx(100.0, rel=1e-5)
    assert det[15, 15] == pytest.approx(100.0 * gaussian_kernel(2.0)[3, 3], rel=1e-5)


def test_segment_image_counts_sources_and_respects_npixels():
    img = np.zeros((64, 64), np.float32)
    img[10:16, 10:16] = 5.0  # 36 pixels
    img[40:44, 40:44] = 5.0  # 16 pixels: below npixels=25
    img[30:36, 50:56] = 5.0
    segm = segment_image(img, 1.0, npixels=25)
    assert segm.n_labels == 2
    assert set(np.unique(segm.data[10:16, 10:16])) == {segm.data[12, 12]} != {0}
    assert np.all(segm.data[40:44, 40:44] == 0)
    masked = np.zeros(img.shape, bool)
    masked[10:16, 10:16] = True
    assert segment_image(img, 1.0, npixels=25, mask=masked).n_labels == 1


def test_segment_image_nothing_detected_returns_none():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1.0, (64, 64)).astype(np.float32)
    assert segment_image(noise, 100.0, npixels=25) is None


def _two_touching_sources():
    yy, xx = np.mgrid[:64, :64]
    return sum(
        100.0 * np.exp(-((xx - x0) ** 2 + (yy - 32) ** 2) / (2 * 2.0**2)) for x0 in (26.0, 38.0)
    ).astype(np.float32)


def test_segment_image_deblends_touching_sources():
    pytest.importorskip("skimage")
    img = _two_touching_sources()
    assert segment_image(img, 0.5, npixels=25, deblend=False).n_labels == 1
    assert segment_image(img, 0.5, npixels=25, deblend=True).n_labels == 2


def test_segment_image_without_scikit_image_does_not_deblend(monkeypatch, caplog):
    monkeypatch.setattr(detection, "_have_skimage", lambda: False)
    with caplog.at_level("WARNING"):
        segm = segment_image(_two_touching_sources(), 0.5, npixels=25, deblend=True)
    assert segm.n_labels == 1
    assert "scikit-image" in caplog.text


# ---------------------------------------------------------------------------- equivalences


def _photutils_background(data, mask, box, filt):
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

    return Background2D(
        data,
        box,
        mask=mask,
        filter_size=filt,
        sigma_clip=SigmaClip(sigma=3.0, maxiters=10, stdfunc="mad_std"),
        bkg_estimator=MedianBackground(),
        bkg_rms_estimator=StdBackgroundRMS(),
    )


def test_background_matches_photutils_background2d():
    """Box statistics, rejected boxes (IDW fill), median filter and bicubic zoom."""
    rng = np.random.default_rng(7)
    ny, nx = 300, 250  # partial last row (44) and column (58) of 64-pixel boxes
    yy, xx = np.mgrid[:ny, :nx]
    truth = 20.0 + 0.01 * xx - 0.02 * yy + 3.0 * np.sin(xx / 40.0) * np.cos(yy / 55.0)
    data = truth + rng.normal(0, 1.0 + xx / 250.0, (ny, nx))
    stars = rng.integers(0, [ny, nx], (150, 2))
    data[stars[:, 0], stars[:, 1]] += rng.uniform(20, 500, 150)  # outliers to clip
    data = data.astype(np.float32)
    mask = np.zeros((ny, nx), bool)
    mask[70:128, 130:192] = True  # most of one box: it is rejected and filled
    mask[5, 5] = True
    data[mask] = np.nan
    bkg = estimate_background(data, mask, box_size=64)
    ref = _photutils_background(data, mask, (64, 64), (3, 3))
    # rejected: the masked box, the short last row, one box of the narrow last column
    assert np.count_nonzero(ref.n_pixels_mesh <= 0.9 * 64 * 64) == 6
    rms = float(np.median(ref.background_rms))
    assert np.max(np.abs(bkg.background - ref.background)) < 1e-5 * rms
    assert np.max(np.abs(bkg.rms - ref.background_rms)) < 1e-5 * rms


def test_background_single_row_of_boxes_matches_photutils():
    rng = np.random.default_rng(8)
    data = (5.0 + np.linspace(0, 2, 200)[None, :] + rng.normal(0, 0.5, (40, 200))).astype(
        np.float32
    )
    mask = np.zeros(data.shape, bool)
    bkg = estimate_background(data, mask, box_size=50)  # boxes (40, 50): one row of 4
    ref = _photutils_background(data, mask, (40, 50), (1, 3))
    assert np.max(np.abs(bkg.background - ref.background)) < 1e-5
    assert np.max(np.abs(bkg.rms - ref.background_rms)) < 1e-5


def test_detection_image_matches_2d_masked_correlation():
    from scipy.ndimage import correlate

    rng = np.random.default_rng(9)
    data = rng.normal(0, 1, (80, 90)).astype(np.float32)
    mask = rng.random(data.shape) < 0.03
    mask[:, :3] = True
    det = detection_image(data, mask, kernel_fwhm=2.5)
    kernel = gaussian_kernel(2.5)
    num = correlate(np.where(mask, 0.0, data.astype(float)), kernel, mode="constant")
    den = correlate((~mask).astype(float), kernel, mode="constant")
    expected = np.where(den > 1e-3, num / np.where(den > 1e-3, den, 1.0), 0.0)
    np.testing.assert_allclose(det, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("npixels", [1, 5, 25])
def test_segment_image_matches_photutils_source_finder(npixels):
    from photutils.segmentation import SourceFinder
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(npixels)
    img = gaussian_filter(rng.normal(0, 1, (120, 130)), 1.5).astype(np.float32)
    threshold = (0.15 + 0.05 * rng.random(img.shape)).astype(np.float32)
    mask = rng.random(img.shape) < 0.02
    segm = segment_image(img, threshold, npixels=npixels, mask=mask)
    det = np.where(mask, np.float32(-np.finfo(np.float32).max), img)
    ref = SourceFinder(npixels, connectivity=8, deblend=False, progress_bar=False)(det, threshold)
    assert segm.n_labels == ref.n_labels > 10
    np.testing.assert_array_equal(segm.data, ref.data)
    np.testing.assert_array_equal(segm.labels, np.arange(1, segm.n_labels + 1))


def test_build_mask_accepts_big_endian_and_float64():
    data = np.ones((3, 4), ">f8")
    data[1, 2] = np.inf
    err = np.ones((3, 4), ">f4")
    dq = np.zeros((3, 4), ">u4")
    dq[2, 3] = 1
    mask = build_mask(data, err, dq)
    assert set(zip(*np.nonzero(mask))) == {(1, 2), (2, 3)}


# ---------------------------------------------------------------------------- fast paths


def test_gaussian_kernel_is_photutils_kernel():
    from photutils.segmentation import make_2dgaussian_kernel

    for fwhm in (1.0, 1.7, 2.0, 3.3):
        size = gaussian_kernel(fwhm).shape[0]
        ref = make_2dgaussian_kernel(fwhm, size=size)
        ref.normalize()
        np.testing.assert_array_equal(gaussian_kernel(fwhm), ref.array)


def _field_with_background(seed=11, shape=(700, 650)):
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    data = 3.0 + 0.002 * xx + 0.5 * np.sin(yy / 90.0) + rng.normal(0, 0.2, shape)
    pos = rng.uniform(5, [nx - 5, ny - 5], (80, 2))
    for x0, y0 in pos:
        data += 40.0 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 3.0)
    data = data.astype(np.float32)
    mask = rng.random(shape) < 2e-3
    data[mask] = np.nan
    return data, mask


def test_background_mesh_paths_give_the_full_frame_values():
    """Mesh images evaluated where used: the same float32 numbers as the full frames."""
    from rampcal.catalog.detection import background_mesh, subtract_and_detect

    data, mask = _field_with_background()
    mesh = background_mesh(data, mask, box_size=100)
    full = estimate_background(data, mask, box_size=100)
    np.testing.assert_array_equal(mesh.background.image(), full.background)
    np.testing.assert_array_equal(mesh.rms.image(), full.rms)
    # the zoomed mesh is the bicubic product A_y · mesh · A_xᵀ (BLAS may round differently)
    ay = detection._zoom_matrix(mesh.rms.mesh.shape[0], 100, data.shape[0])
    ax = detection._zoom_matrix(mesh.rms.mesh.shape[1], 100, data.shape[1])
    blas = np.clip(ay @ mesh.rms.mesh @ ax.T, mesh.rms.mesh.min(), mesh.rms.mesh.max())
    np.testing.assert_allclose(full.rms, blas, rtol=1e-6)
    sci = data - full.background
    np.testing.assert_array_equal(mesh.background.subtract_from(data), sci)
    got_sci, got_det = subtract_and_detect(data, mask, mesh.background, kernel_fwhm=2.0)
    np.testing.assert_array_equal(got_sci, sci)
    np.testing.assert_array_equal(got_det, detection_image(sci, mask, kernel_fwhm=2.0))
    # threshold as a mesh image or as the full frame: the same segmentation
    by_mesh = segment_image(got_det, mesh.rms.scaled(3.0), npixels=9, mask=mask)
    by_image = segment_image(got_det, 3.0 * full.rms, npixels=9, mask=mask)
    assert by_mesh.n_labels == by_image.n_labels > 40
    np.testing.assert_array_equal(by_mesh.data, by_image.data)


def test_segmentation_boxes_and_areas():
    from scipy.ndimage import find_objects

    data, mask = _field_with_background(12, (300, 320))
    det = detection_image(data - np.nanmedian(data), mask, kernel_fwhm=2.0)
    segm = segment_image(det, 1.5, npixels=5, mask=mask)
    assert segm.data.dtype == np.int32 and segm.n_labels > 20
    slices = find_objects(segm.data)
    expected = np.array([[s[0].start, s[0].stop, s[1].start, s[1].stop] for s in slices])
    np.testing.assert_array_equal(segm.boxes, expected)
    np.testing.assert_array_equal(segm.areas, np.bincount(segm.data.ravel())[1:])
    again = detection.Segmentation(segm.data)
    np.testing.assert_array_equal(again.labels, segm.labels)
    assert again.boxes is None and again.max_label == segm.n_labels
    with pytest.raises(ValueError, match="boxes"):
        detection.Segmentation(segm.data, segm.labels, boxes=segm.boxes)


def test_rejected_boxes_filled_as_photutils_idw():
    from photutils.utils import ShepardIDWInterpolator

    rng = np.random.default_rng(13)
    mesh = rng.normal(5.0, 1.0, (6, 7)).astype(np.float32)
    mesh[-1, :] = np.nan  # ties between equidistant boxes at the 10th neighbour
    mesh[:, -1] = np.nan
    mesh[2, 3] = np.nan
    bad = np.isnan(mesh)
    interp = ShepardIDWInterpolator(np.column_stack(np.nonzero(~bad)), mesh[~bad])
    expected = mesh.copy()
    expected[bad] = interp(
        np.column_stack(np.nonzero(bad)), n_neighbors=10, power=1.0, eps=0.0, regularization=0.0
    )
    np.testing.assert_array_equal(detection._fill_mesh(mesh), expected)


@pytest.mark.parametrize(
    "nmesh, factor, n",
    [(1, 100, 90), (2, 64, 128), (2, 50, 100), (3, 100, 300), (4, 64, 250), (5, 64, 300),
     (5, 1000, 4088), (7, 100, 650), (9, 512, 4088)],
)  # fmt: skip
def test_zoom_matrix_is_scipy_zoom_of_unit_vectors(nmesh, factor, n):
    from scipy.ndimage import zoom

    eye = np.eye(nmesh)
    cols = [zoom(eye[j], factor, order=3, mode="reflect", grid_mode=True)[:n] for j in range(nmesh)]
    np.testing.assert_array_equal(
        detection._zoom_matrix(nmesh, factor, n), np.column_stack(cols).astype(np.float32)
    )


def test_mesh_median_filter_is_scipy_generic_filter():
    from scipy.ndimage import generic_filter

    rng = np.random.default_rng(14)
    mesh = rng.normal(size=(6, 7)).astype(np.float32)
    mesh[1, 2] = np.nan
    for size in ((3, 3), (1, 3), (3, 1), (5, 3)):
        ref = generic_filter(mesh, np.nanmedian, size=size, mode="constant", cval=np.nan)
        np.testing.assert_array_equal(detection._filter_mesh(mesh, size), ref)
