"""Background, detection image and segmentation of a calibrated image (ALGORITHMS.md §12, 2-5).

Pure functions: 2-D numpy arrays in, arrays (or a :class:`Segmentation`) out. Arrays
are numpy order ``(ny, nx)``; pixel centres are at integers, 0-based.

The background follows photutils ``Background2D`` (sigma-clipped median and standard
deviation per box, IDW fill of rejected boxes, median filter of the mesh, bicubic
``scipy.ndimage.zoom`` to full resolution) but computes it in compiled kernels
(:mod:`rampcal.catalog._detect_kernels`): the box statistics on sorted values and the
zoom as a separable product of two small interpolation matrices, evaluated where it is
used (:class:`MeshImage`: background subtraction, detection threshold), so the
full-resolution background and rms images need not exist. The detection image is two
1-D passes of the separable kernel (fused with the background subtraction in
:func:`subtract_and_detect`); the segmentation (without deblending) a compiled
connected-component labelling with photutils' numbering, which also returns the bounding
box and area of every segment. photutils itself is only imported for deblending.
Each gives photutils' result bit for bit or to float32 rounding
(tests/catalog/test_detection.py compares them).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import NamedTuple

import numba
import numpy as np

from rampcal.catalog import _detect_kernels as _k

log = logging.getLogger(__name__)

#: Deblending contrast of the segmentation (reference value).
DEBLEND_CONTRAST = 1.0e-4
#: Deblending levels (photutils default).
DEBLEND_LEVELS = 32
#: Boxes with more than this percentage of rejected pixels are excluded (photutils default).
EXCLUDE_PERCENTILE = 10.0
#: Sigma-clipping iterations of the box statistics.
BKG_CLIP_MAXITERS = 10
#: σ/FWHM of a Gaussian (astropy's ``gaussian_fwhm_to_sigma``, the same expression).
GAUSSIAN_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: Image rows per block of the detection-image kernel.
_BAND_ROWS = 128

__all__ = [
    "DEBLEND_CONTRAST",
    "GAUSSIAN_FWHM_TO_SIGMA",
    "Background",
    "BackgroundMesh",
    "MeshImage",
    "Segmentation",
    "background_mesh",
    "build_mask",
    "detection_image",
    "estimate_background",
    "gaussian_kernel",
    "segment_image",
    "subtract_and_detect",
]


class Background(NamedTuple):
    """Smooth background of an image and its noise.

    Attributes
    ----------
    background : ndarray, float32, (ny, nx)
        Background level (data units).
    rms : ndarray, float32, (ny, nx)
        Background noise (data units, one sigma per pixel).
    """

    background: np.ndarray
    rms: np.ndarray


class MeshImage(NamedTuple):
    """Full-resolution image of a low-resolution mesh, evaluated where it is used.

    The value at pixel (j, i) is ``scale × clip(A_y[j] · mesh · A_x[i]ᵀ, min, max)`` with
    the bicubic zoom matrices ``A`` of :func:`estimate_background`, in float32 with the
    products accumulated by fused multiply-adds in order (as OpenBLAS ``sgemm`` does:
    the same numbers as ``(A_y @ mesh) @ A_x.T`` there).

    Attributes
    ----------
    mesh : ndarray, float32, (nby, nbx)
        Mesh values (one per box).
    box : (int, int)
        Box size (rows, columns) in pixels.
    shape : (int, int)
        Image shape (ny, nx).
    scale : float
        Factor applied (in float32) to the zoomed values.
    """

    mesh: np.ndarray
    box: tuple[int, int]
    shape: tuple[int, int]
    scale: float = 1.0

    def scaled(self, factor: float) -> MeshImage:
        """The same image times ``factor``."""
        return self._replace(scale=self.scale * float(factor))

    def image(self) -> np.ndarray:
        """The whole image, float32 (ny, nx)."""
        out = np.empty(self.shape, dtype=np.float32)
        _k.mesh_image(*self.factors(), out, False, out)
        return out

    def subtract_from(self, data: np.ndarray) -> np.ndarray:
        """``data − image`` in float32 (no full-resolution image in memory)."""
        data = _native(np.asarray(data, dtype=np.float32))
        if data.shape != tuple(self.shape):
            raise ValueError(f"data has shape {data.shape}, the mesh image {self.shape}")
        out = np.empty(self.shape, dtype=np.float32)
        _k.mesh_image(*self.factors(), data, True, out)
        return out

    def factors(self):
        """(A_y (ny, nby), mesh, A_xᵀ (nbx, nx), min, max, scale) for the compiled kernels.

        A flat mesh gives zero matrices and ``min = max`` = its value.
        """
        mesh = np.ascontiguousarray(self.mesh, dtype=np.float32)
        ny, nx = self.shape
        lo, hi = np.min(mesh), np.max(mesh)
        scale = np.float32(self.scale)
        if hi == lo or not (np.isfinite(lo) and np.isfinite(hi)):
            return _flat_factors(ny, nx, lo) + (scale,)
        ay = _zoom_matrix(mesh.shape[0], self.box[0], ny)
        axt = np.ascontiguousarray(_zoom_matrix(mesh.shape[1], self.box[1], nx).T)
        return ay, mesh, axt, lo, hi, scale


class BackgroundMesh(NamedTuple):
    """Background and rms of an image as mesh images (:func:`background_mesh`).

    Attributes
    ----------
    background, rms : MeshImage
        Background level and noise (data units).
    """

    background: MeshImage
    rms: MeshImage

    def evaluate(self) -> Background:
        """Full-resolution :class:`Background`."""
        return Background(self.background.image(), self.rms.image())


class Segmentation:
    """Segmentation map: integer labels, 0 for the background.

    Duck-types the parts of photutils ``SegmentationImage`` the catalog uses.

    Parameters
    ----------
    data : ndarray (ny, nx), integer
        Label of each pixel (kept, not copied).
    labels : ndarray (n,), optional
        The non-zero labels present, increasing (computed when not given).
    boxes : ndarray (n, 4) int64, optional
        Bounding box of each label, ``[ymin, ymax)``, ``[xmin, xmax)``, as ``data`` is
        at creation (the labeller knows them; :func:`~rampcal.catalog.measure_sources`
        scans the map otherwise).
    areas : ndarray (n,) int64, optional
        Pixel count of each label (with ``boxes``).
    """

    def __init__(
        self,
        data: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        boxes: np.ndarray | None = None,
        areas: np.ndarray | None = None,
    ):
        self.data = data
        if labels is None:
            labels = _present_labels(np.asarray(data))
        self.labels = np.asarray(labels, dtype=np.int64)
        if (boxes is None) != (areas is None):
            raise ValueError("boxes and areas go together")
        if boxes is not None and (
            np.shape(boxes) != (self.labels.size, 4) or np.shape(areas) != self.labels.shape
        ):
            raise ValueError("boxes (n, 4) and areas (n,) must match the labels")
        self.boxes = boxes
        self.areas = areas

    @property
    def n_labels(self) -> int:
        """Number of labels."""
        return int(self.labels.size)

    @property
    def max_label(self) -> int:
        """Largest label (0 when there is none)."""
        return int(self.labels[-1]) if self.labels.size else 0

    def __repr__(self) -> str:
        return f"Segmentation(shape={np.shape(self.data)}, n_labels={self.n_labels})"


def build_mask(
    data: np.ndarray,
    err: np.ndarray | None = None,
    dq: np.ndarray | None = None,
    *,
    bad_bits: int = 1,
) -> np.ndarray:
    """Pixels to ignore: non-finite data or error, error ≤ 0, or ``dq & bad_bits``.

    Parameters
    ----------
    data : ndarray (ny, nx)
    err : ndarray (ny, nx), optional
        Total error; pixels with a non-finite or non-positive error are masked.
    dq : ndarray (ny, nx) of unsigned int, optional
        Data-quality flags.
    bad_bits : int
        Flags that exclude a pixel (default ``DO_NOT_USE`` = 1, as the reference
        implementation does for L2 images).

    Returns
    -------
    ndarray, bool, (ny, nx)
        True where the pixel is excluded.
    """
    data = _native(data)
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D, got shape {data.shape}")
    if err is not None:
        err = _native(err)
        if err.shape != data.shape:
            raise ValueError(f"err has shape {err.shape}, data has {data.shape}")
    if dq is not None:
        dq = _native(dq)
        if dq.shape != data.shape:
            raise ValueError(f"dq has shape {dq.shape}, data has {data.shape}")
        if dq.dtype.kind not in "iu":
            raise ValueError(f"dq must be integer flags, got {dq.dtype}")
    mask = np.empty(data.shape, dtype=bool)
    _k.mask_kernel(
        data,
        data if err is None else err,
        np.zeros((1, 1), np.uint32) if dq is None else dq,
        err is not None,
        dq is not None,
        np.uint64(int(bad_bits)),
        mask,
    )
    return mask


def estimate_background(
    data: np.ndarray,
    mask: np.ndarray,
    *,
    box_size: int = 1000,
    filter_size: int = 3,
    sigma: float = 3.0,
) -> Background:
    """2-D background and rms with sigma-clipped medians in boxes (photutils Background2D).

    Parameters
    ----------
    data : ndarray (ny, nx), float
        Image (any units).
    mask : ndarray (ny, nx), bool
        Excluded pixels (they get the interpolated background too).
    box_size : int
        Box side in pixels; clipped to the image size, so a small image gets one box.
    filter_size : int
        Median filter (in boxes) applied to the low-resolution map.
    sigma : float
        Clipping threshold (robust ``mad_std`` scatter).

    Returns
    -------
    Background

    Notes
    -----
    Same result as ``Background2D(data, box, mask=mask, filter_size=filt,
    sigma_clip=SigmaClip(sigma, maxiters=10, stdfunc="mad_std"),
    bkg_estimator=MedianBackground(), bkg_rms_estimator=StdBackgroundRMS())`` with
    ``exclude_percentile=10``:

    - boxes tile the image from pixel (0, 0); the last row/column of boxes may be
      smaller, but the box size ``b`` still sets the threshold: a box is rejected when
      fewer than ``0.9 b²`` good pixels survive the clipping;
    - clipping: repeat (at most 10 times) ``med = median``, ``s = 1.4826 MAD``, keep
      ``med − σ s ≤ v ≤ med + σ s``; done on the sorted values of a box (astropy's
      C implementation gives the same bounds); background = median, rms = standard
      deviation (ddof 0) of what is kept;
    - rejected boxes are filled by photutils' ``ShepardIDWInterpolator`` (10
      neighbours, power 1), then a ``filter_size`` NaN-median filter runs on the mesh;
    - full resolution: ``scipy.ndimage.zoom(mesh, b, order=3, mode="reflect",
      grid_mode=True)`` cropped and clipped to the mesh range, evaluated as
      ``A_y · mesh · A_xᵀ`` where ``A`` holds the zoom of each unit mesh vector (the
      zoom is a tensor-product spline), so it costs O(ny·nx·nboxes) in float32 and
      agrees with photutils to float32 rounding. The products are chains of fused
      multiply-adds in index order (:class:`MeshImage`): the numbers OpenBLAS ``sgemm``
      gives for ``(A_y @ mesh) @ A_x.T`` on an FMA machine.

    When every box is rejected, the whole image is used as one box (sigma-clipped
    median and ``mad_std``), as the reference does.
    """
    return background_mesh(
        data, mask, box_size=box_size, filter_size=filter_size, sigma=sigma
    ).evaluate()


def background_mesh(
    data: np.ndarray,
    mask: np.ndarray,
    *,
    box_size: int = 1000,
    filter_size: int = 3,
    sigma: float = 3.0,
) -> BackgroundMesh:
    """The background and rms of :func:`estimate_background` as mesh images.

    Same parameters and values; the full-resolution images are only computed a block of
    rows at a time when used (:class:`MeshImage`), which keeps two image-sized arrays
    out of memory.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    mask = np.ascontiguousarray(mask, dtype=bool)
    if data.ndim != 2 or mask.shape != data.shape:
        raise ValueError(f"data {data.shape} and mask {mask.shape} must be the same 2-D shape")
    ny, nx = data.shape
    box = (max(1, min(int(box_size), ny)), max(1, min(int(box_size), nx)))
    nboxes = (math.ceil(ny / box[0]), math.ceil(nx / box[1]))
    filt = (min(filter_size, nboxes[0]) | 1, min(filter_size, nboxes[1]) | 1)
    if filt[0] > nboxes[0] or filt[1] > nboxes[1]:
        filt = (1, 1)
    threshold = (1.0 - EXCLUDE_PERCENTILE / 100.0) * box[0] * box[1]
    bkg_mesh, rms_mesh = _box_statistics(data, mask, box, float(sigma), threshold)
    if np.any(np.isfinite(bkg_mesh)):
        bkg_mesh = _filter_mesh(_fill_mesh(bkg_mesh), filt)
        rms_mesh = _filter_mesh(_fill_mesh(rms_mesh), filt)
        if np.all(np.isfinite(bkg_mesh)) and np.all(np.isfinite(rms_mesh)):
            return BackgroundMesh(
                MeshImage(bkg_mesh, box, data.shape), MeshImage(rms_mesh, box, data.shape)
            )
    log.info("no box background could be measured; using one box for the whole image")
    return _one_box_background(data, mask, sigma)


def gaussian_kernel(fwhm: float) -> np.ndarray:
    """Normalised 2-D Gaussian kernel of FWHM ``fwhm`` pixels, odd size ``ceil(3 fwhm)``.

    Returns
    -------
    ndarray, float64, (n, n)
        Sums to 1; ``n = ceil(3·fwhm)`` rounded up to odd (7 for FWHM 2).

    Notes
    -----
    photutils ``make_2dgaussian_kernel(fwhm, size=n)`` (an astropy ``Gaussian2DKernel``
    averaged over a 10× oversampled grid and normalised), built with astropy directly.
    """
    from astropy.convolution import Gaussian2DKernel

    if not fwhm > 0:
        raise ValueError(f"kernel_fwhm must be > 0, got {fwhm}")
    size = math.ceil(3.0 * fwhm)
    size += 1 - size % 2
    kernel = Gaussian2DKernel(
        fwhm * GAUSSIAN_FWHM_TO_SIGMA, x_size=size, y_size=size, mode="oversample", factor=10
    )
    kernel.normalize(mode="integral")  # as photutils does
    kernel.normalize()
    return np.asarray(kernel.array, dtype=np.float64)


def detection_image(data: np.ndarray, mask: np.ndarray, *, kernel_fwhm: float) -> np.ndarray:
    """Image smoothed by the detection kernel, ignoring masked pixels.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Background-subtracted image.
    mask : ndarray (ny, nx), bool
        Excluded pixels (non-finite values are excluded too).
    kernel_fwhm : float
        FWHM (pixels) of the Gaussian kernel (:func:`gaussian_kernel`).

    Returns
    -------
    ndarray, float32, (ny, nx)
        ``conv(d·w) / conv(w)`` with ``w`` = 1 on good pixels (normalised masked
        convolution, zero padding outside the image); 0 where the kernel weight of the
        good pixels is ≤ 1e-3.

    Notes
    -----
    The kernel is a product ``k_y k_xᵀ`` (a Gaussian integrated over pixels), so both
    convolutions run as two 1-D passes in float64, in bands of rows.
    """
    return _smooth(data, mask, None, kernel_fwhm)[1]


def subtract_and_detect(
    data: np.ndarray, mask: np.ndarray, background: MeshImage, *, kernel_fwhm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Background-subtracted image and its detection image in one pass.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Image.
    mask : ndarray (ny, nx), bool
        Excluded pixels.
    background : MeshImage
        Background (``background_mesh(...).background``).
    kernel_fwhm : float
        FWHM (pixels) of the detection kernel.

    Returns
    -------
    sci, detection : ndarray, float32, (ny, nx)
        ``data − background`` and ``detection_image(sci, mask, kernel_fwhm=...)``
        (the same values), without the background image in memory.
    """
    if tuple(background.shape) != np.shape(data):
        raise ValueError(f"background has shape {background.shape}, data {np.shape(data)}")
    return _smooth(data, mask, background, kernel_fwhm)


def segment_image(
    detection: np.ndarray,
    threshold: np.ndarray | float | MeshImage,
    *,
    npixels: int = 25,
    deblend: bool = False,
    mask: np.ndarray | None = None,
    contrast: float = DEBLEND_CONTRAST,
):
    """Segment the detection image: connected pixels above ``threshold`` (8-connectivity).

    Parameters
    ----------
    detection : ndarray (ny, nx)
        Smoothed image (:func:`detection_image`).
    threshold : float, ndarray (ny, nx) or MeshImage
        Per-pixel detection threshold (``snr_threshold × background rms``), e.g.
        ``background_mesh(...).rms.scaled(snr)``.
    npixels : int
        Minimum number of connected pixels of a source.
    deblend : bool
        Split blended sources (multi-threshold deblending, ``contrast``).
    mask : ndarray (ny, nx), bool, optional
        Pixels that can belong to no source.

    Returns
    -------
    Segmentation or photutils.segmentation.SegmentationImage or None
        None when nothing is detected; a :class:`Segmentation` (int32 labels 1…n)
        without deblending, photutils' ``SegmentationImage`` with it.

    Notes
    -----
    Without deblending a compiled union-find labelling gives the labels of photutils
    ``SourceFinder`` / ``detect_sources`` (``scipy.ndimage.label``, segments below
    ``npixels`` removed, the rest numbered 1, 2, … in raster order of their first
    pixel); the comparison ``detection > threshold`` is made in float32, a mesh-image
    threshold evaluated row by row. With deblending photutils ``SourceFinder`` runs.
    """
    if deblend and not _have_skimage():
        log.warning("deblending needs scikit-image, which is not installed: sources not deblended")
        deblend = False
    det = np.ascontiguousarray(detection, dtype=np.float32)
    if det.ndim != 2:
        raise ValueError(f"detection must be 2-D, got shape {det.shape}")
    if isinstance(threshold, MeshImage):
        if tuple(threshold.shape) != det.shape:
            raise ValueError(f"threshold has shape {threshold.shape}, detection has {det.shape}")
    elif np.ndim(threshold) != 0:
        threshold = np.ascontiguousarray(threshold, dtype=np.float32)
        if threshold.shape != det.shape:
            raise ValueError(f"threshold has shape {threshold.shape}, detection has {det.shape}")
    bad = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    if bad is not None and bad.shape != det.shape:
        raise ValueError(f"mask has shape {bad.shape}, detection has {det.shape}")
    if deblend:
        if isinstance(threshold, MeshImage):
            threshold = threshold.image()
        return _segment_photutils(det, threshold, npixels, bad, contrast)
    if isinstance(threshold, MeshImage):
        thr, use_img, factors = np.zeros((1, 1), np.float32), False, threshold.factors()
    elif np.ndim(threshold):
        thr, use_img, factors = threshold, True, _flat_factors(1, 1, 0.0) + (np.float32(1),)
    else:
        flat = _flat_factors(det.shape[0], det.shape[1], np.float32(threshold))
        thr, use_img, factors = np.zeros((1, 1), np.float32), False, flat + (np.float32(1),)
    labels = np.zeros(det.shape, dtype=np.int32)
    nlabels, boxes, areas = _k.label_kernel(
        det, np.zeros((1, 1), bool) if bad is None else bad, bad is not None, thr, use_img,
        *factors, int(npixels), labels,
    )  # fmt: skip
    if nlabels == 0:
        return None
    return Segmentation(labels, np.arange(1, nlabels + 1, dtype=np.int64), boxes=boxes, areas=areas)


# --------------------------------------------------------------------------- private


def _have_skimage() -> bool:
    import importlib.util

    return importlib.util.find_spec("skimage") is not None


def _present_labels(data: np.ndarray) -> np.ndarray:
    """Increasing non-zero labels of a label image (counted a block of rows at a time)."""
    if data.dtype.kind not in "iu":
        raise ValueError(f"segmentation labels must be integers, got {data.dtype}")
    if data.size == 0:
        return np.zeros(0, dtype=np.int64)
    flat = data.reshape(data.shape[0], -1)
    top = max(int(flat.max()), 0)
    if top > 4 * data.size:  # sparse large labels: no count table
        return np.unique(data[data > 0]).astype(np.int64)
    counts = np.zeros(top + 1, dtype=np.int64)
    for j0 in range(0, flat.shape[0], 256):
        block = flat[j0 : j0 + 256].ravel()
        counts += np.bincount(block[block > 0], minlength=counts.size)
    return np.flatnonzero(counts[1:]) + 1


def _flat_factors(ny: int, nx: int, value):
    """Mesh-image factors of a constant image (``clip(0, v, v) = v``)."""
    value = np.float32(value)
    return (
        np.zeros((ny, 1), np.float32),
        np.zeros((1, 1), np.float32),
        np.zeros((1, nx), np.float32),
        value,
        value,
    )


def _smooth(data, mask, background, kernel_fwhm):
    """(sci or None, detection) by :func:`_detect_kernels.subtract_smooth`."""
    kernel = gaussian_kernel(kernel_fwhm)
    k1 = kernel.sum(axis=0)
    k1 = k1 / k1.sum()
    data = _native(np.asarray(data, dtype=np.float32))
    mask = np.ascontiguousarray(mask, dtype=bool)
    if data.ndim != 2 or mask.shape != data.shape:
        raise ValueError(f"data {data.shape} and mask {mask.shape} must be the same 2-D shape")
    ny, nx = data.shape
    if background is None:
        factors = _flat_factors(ny, nx, 0.0) + (np.float32(1),)
        sci = np.empty((1, 1), dtype=np.float32)
    else:
        factors = background.factors()
        sci = np.empty(data.shape, dtype=np.float32)
    out = np.empty(data.shape, dtype=np.float32)

    def run(bands):
        _k.subtract_smooth(
            data, mask, *factors, k1, _BAND_ROWS, bands, background is not None, sci, out
        )

    _in_threads(run, np.arange((ny + _BAND_ROWS - 1) // _BAND_ROWS))
    return (None if background is None else sci), out


def _thread_count() -> int:
    """numba's thread count (its configured default until numba's own threads start:
    asking ``numba.get_num_threads()`` would start them)."""
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", False):
        return numba.get_num_threads()
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def _in_threads(run, items: np.ndarray) -> None:
    """``run(chunk)`` over interleaved chunks of ``items`` in :func:`_thread_count`
    threads (the compiled kernels release the GIL)."""
    workers = max(1, min(_thread_count(), items.size))
    if workers == 1:
        run(items)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, [items[k::workers] for k in range(workers)]))


def _segment_photutils(detection, threshold, npixels, mask, contrast):
    """photutils ``SourceFinder`` with deblending."""
    from photutils.segmentation import SourceFinder

    det = np.asarray(detection, dtype=np.float32)
    if mask is not None:
        det = np.where(mask, np.float32(-np.finfo(np.float32).max), det)
    finder = SourceFinder(
        int(npixels),
        connectivity=8,
        deblend=True,
        n_levels=DEBLEND_LEVELS,
        contrast=contrast,
        progress_bar=False,
    )
    with warnings.catch_warnings():
        # NoDetectionsWarning (nothing above threshold) is an expected outcome here
        warnings.simplefilter("ignore")
        segm = finder(det, threshold)
    if segm is None or segm.n_labels == 0:
        return None
    return segm


def _native(a) -> np.ndarray:
    """C-contiguous, native-byte-order view or copy (numba rejects big-endian arrays)."""
    a = np.asarray(a)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return np.ascontiguousarray(a)


def _box_statistics(data, mask, box, sigma, threshold):
    """Sigma-clipped median and std of every box (NaN where rejected), float32 meshes.

    Boxes are independent: they run in a thread pool (numpy's sort and the compiled
    kernels release the GIL) of :func:`_thread_count` workers.
    """
    from concurrent.futures import ThreadPoolExecutor

    ny, nx = data.shape
    by, bx = box
    nby, nbx = math.ceil(ny / by), math.ceil(nx / bx)
    bkg = np.full((nby, nbx), np.nan, dtype=np.float32)
    rms = np.full((nby, nbx), np.nan, dtype=np.float32)
    todo = []
    for j in range(nby):
        for i in range(nbx):
            y0, y1, x0, x1 = j * by, min((j + 1) * by, ny), i * bx, min((i + 1) * bx, nx)
            # a box smaller than the good-pixel threshold is always rejected by photutils
            if (y1 - y0) * (x1 - x0) > threshold:
                todo.append((j, i, y0, y1, x0, x1))

    def one(item):
        j, i, y0, y1, x0, x1 = item
        buf = np.empty((y1 - y0) * (x1 - x0), dtype=np.float32)
        n = _k.gather_box(data, mask, y0, y1, x0, x1, buf)
        if n <= threshold:
            return
        values = np.sort(buf[:n])
        med, std, ngood = _k.clipped_stats(values, sigma, BKG_CLIP_MAXITERS)
        if ngood > threshold:
            bkg[j, i], rms[j, i] = med, std

    workers = max(1, min(_thread_count(), len(todo)))
    if workers == 1:
        for item in todo:
            one(item)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, todo))
    return bkg, rms


def _fill_mesh(mesh: np.ndarray) -> np.ndarray:
    """Rejected (NaN) boxes by photutils' IDW interpolation of the measured ones.

    photutils ``ShepardIDWInterpolator(...)(positions, n_neighbors=10, power=1, eps=0,
    regularization=0)`` with the same k-d tree (ties between equidistant boxes resolved
    the same way) and the same numpy arithmetic.
    """
    bad = np.isnan(mesh)
    if not np.any(bad):
        return mesh
    from scipy.spatial import cKDTree

    coords = np.column_stack(np.nonzero(~bad))
    values = np.asanyarray(mesh[~bad]).ravel()
    positions = np.column_stack(np.nonzero(bad))
    k = 10
    distances, idx = cKDTree(coords, leafsize=10).query(positions, k=k, eps=0.0)
    valid = np.isfinite(distances)
    safe_distances = np.where(valid, distances, 1.0)
    safe_idx = np.where(valid, idx, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = np.where(valid, 1.0 / (safe_distances**1.0 + 0.0), 0.0)
        neighbor_values = values[safe_idx]
        weights_tot = np.sum(weights, axis=1)
        weighted_sum = np.sum(weights * neighbor_values, axis=1)
        interp = np.where(weights_tot > 0.0, weighted_sum / weights_tot, np.nan).astype(float)
    min_dist = distances[:, 0]
    confused = np.isfinite(min_dist) & (min_dist <= 1.0e-12)
    if np.any(confused):
        interp[confused] = values[idx[confused, 0]].astype(float)
    out = mesh.copy()
    out[bad] = interp
    return out


def _filter_mesh(mesh: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """NaN-median filter of the mesh (``scipy.ndimage.generic_filter(mesh, np.nanmedian,
    size, mode="constant", cval=nan)``: each window's values as float64, in order)."""
    if tuple(size) == (1, 1):
        return mesh
    fy, fx = size
    ny, nx = mesh.shape
    padded = np.full((ny + fy - 1, nx + fx - 1), np.nan)
    padded[fy // 2 : fy // 2 + ny, fx // 2 : fx // 2 + nx] = mesh
    out = np.empty(mesh.shape, dtype=mesh.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j in range(ny):
            for i in range(nx):
                out[j, i] = np.nanmedian(padded[j : j + fy, i : i + fx].ravel())
    return out


def _zoom_matrix(nmesh: int, factor: int, n: int) -> np.ndarray:
    """(n, nmesh) float32: row i = weights of the mesh values at output pixel i.

    Column j is ``scipy.ndimage.zoom(e_j, factor, order=3, mode="reflect",
    grid_mode=True)[:n]`` of the unit vector ``e_j`` (the spline photutils' zoom
    interpolator evaluates), computed with scipy's operations: its recursive B-spline
    prefilter with the half-sample-symmetric boundary, output pixel ``k`` at input
    coordinate ``(k + 0.5)·nmesh/round(nmesh·factor) − 0.5`` (reflected about −0.5 when
    negative), cubic weights summed in order (tests/catalog/test_detection.py checks the
    numbers against scipy).
    """
    if nmesh == 1:
        return np.ones((n, 1), dtype=np.float32)
    coef = np.column_stack([_spline_prefilter(np.eye(nmesh)[j]) for j in range(nmesh)])
    zoom = nmesh / round(nmesh * factor)
    x = (np.arange(n, dtype=np.float64) + 0.5) * zoom - 0.5
    x = np.where(x < 0, -x - 1.0, x)
    floor = np.floor(x)
    t = x - floor
    start = floor.astype(np.int64) - 1
    u = 1.0 - t
    w1 = (t * t * (t - 2.0) * 3.0 + 4.0) / 6.0
    w2 = (u * u * (u - 2.0) * 3.0 + 4.0) / 6.0
    w0 = u * u * u / 6.0
    w3 = ((1.0 - w0) - w1) - w2
    out = np.zeros((n, nmesh))
    for m, w in enumerate((w0, w1, w2, w3)):
        idx = start + m
        idx = np.where(idx < 0, -idx - 1, idx)
        idx = np.where(idx >= nmesh, 2 * nmesh - idx - 1, idx)
        out += coef[idx] * w[:, None]
    return np.ascontiguousarray(out, dtype=np.float32)


def _spline_prefilter(values: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients of ``values`` (scipy ``spline_filter1d``, mode reflect)."""
    c = np.array(values, dtype=np.float64)
    n = c.size
    z = -0.267949192431122706472553658494127633  # sqrt(3) - 2
    c *= (1.0 - z) * (1.0 - 1.0 / z)
    z_i = z
    z_n = z**n
    c0 = c[0]
    c[0] = c[0] + z_n * c[n - 1]
    for i in range(1, n):
        c[0] += z_i * (c[i] + z_n * c[n - 1 - i])
        z_i *= z
    c[0] *= z / (1 - z_n * z_n)
    c[0] += c0
    for i in range(1, n):
        c[i] += z * c[i - 1]
    c[n - 1] *= z / (z - 1)
    for i in range(n - 2, -1, -1):
        c[i] = z * (c[i + 1] - c[i])
    return c


def _one_box_background(data, mask, sigma) -> BackgroundMesh:
    """Whole-image sigma-clipped median and ``mad_std`` (the fallback of the reference)."""
    from astropy.stats import SigmaClip, mad_std, sigma_clipped_stats

    good = data[~mask]
    good = good[np.isfinite(good)]
    median = std = 0.0
    if good.size:
        clip = SigmaClip(sigma=sigma, maxiters=10, stdfunc="mad_std")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, median, _ = sigma_clipped_stats(good, sigma=sigma, maxiters=10, stdfunc=mad_std)
            std = float(mad_std(clip(good, masked=False)))
    shape = data.shape
    return BackgroundMesh(
        MeshImage(np.full((1, 1), median, dtype=np.float32), shape, shape),
        MeshImage(np.full((1, 1), std, dtype=np.float32), shape, shape),
    )
