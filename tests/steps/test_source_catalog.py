"""The source_catalog step: catalog, segmentation map, units, products."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from rampcal.catalog.align import read_table
from rampcal.errors import InputFileError
from rampcal.steps.source_catalog import SourceCatalogStep, flux_conversion


def _starfield():
    name = "rampcal_tests_starfield"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "catalog" / "starfield.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


sf = _starfield()
SHAPE = (256, 256)

#: Required columns of the Roman prompt catalog (rad prompt_catalog_table-2.1.0), plus PSF.
SPEC_COLUMNS = [
    "label",
    "flagged_spatial_id",
    "x_centroid",
    "y_centroid",
    "x_centroid_err",
    "y_centroid_err",
    "x_centroid_win",
    "y_centroid_win",
    "x_centroid_win_err",
    "y_centroid_win_err",
    "x_psf",
    "y_psf",
    "x_psf_err",
    "y_psf_err",
    "ra",
    "dec",
    "ra_centroid",
    "dec_centroid",
    "ra_centroid_err",
    "dec_centroid_err",
    "ra_centroid_win",
    "dec_centroid_win",
    "ra_centroid_win_err",
    "dec_centroid_win_err",
    "ra_psf",
    "dec_psf",
    "ra_psf_err",
    "dec_psf_err",
    "bbox_xmin",
    "bbox_xmax",
    "bbox_ymin",
    "bbox_ymax",
    "segment_area",
    "semimajor",
    "semiminor",
    "fwhm",
    "ellipticity",
    "orientation_pix",
    "orientation_sky",
    "cxx",
    "cxy",
    "cyy",
    "kron_radius",
    "nn_label",
    "nn_distance",
    "sharpness",
    "roundness1",
    "is_extended",
    "fluxfrac_radius_50",
    "aper_bkg_flux",
    "aper_bkg_flux_err",
    "aper01_flux",
    "aper01_flux_err",
    "aper02_flux",
    "aper02_flux_err",
    "aper04_flux",
    "aper04_flux_err",
    "aper08_flux",
    "aper08_flux_err",
    "aper16_flux",
    "aper16_flux_err",
    "psf_flux",
    "psf_flux_err",
    "segment_flux",
    "segment_flux_err",
    "kron_flux",
    "kron_flux_err",
    "kron_abmag",
    "kron_abmag_err",
    "warning_flags",
    "image_flags",
    "psf_flags",
    "psf_gof",
    "dust_ebv",
]


SMALL = (128, 128)


@pytest.fixture(scope="module")
def field():
    return sf.star_field(seed=1)


@pytest.fixture
def image(field):
    data, err, _ = field
    return sf.image_model(data, err)


@pytest.fixture(scope="module")
def small():
    """A small image and the products the step saved for it (parquet, ECSV, segmentation)."""
    data, err, _ = sf.star_field(seed=5, shape=SMALL, n=15, flux_range=(50.0, 2000.0))
    return data, err


@pytest.fixture(scope="module")
def products(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("products")
    img = sf.image_model(*small)
    result = SourceCatalogStep(save_results=True, output_dir=str(out)).run(img)
    return out, result


def test_catalog_attached_and_step_complete(image, field):
    truth = field[2]
    result = SourceCatalogStep().run(image)
    assert result is image
    assert result.meta.cal_step.source_catalog == "COMPLETE"
    table = result.meta.source_catalog.tweakreg_catalog
    assert set(SPEC_COLUMNS) <= set(table.colnames)
    assert len(table) >= 20
    dist, idx = cKDTree(np.c_[truth["x"], truth["y"]]).query(np.c_[table["x_psf"], table["y_psf"]])
    bright = truth["flux"][idx] * 8.15 > 100  # S/N = flux / (0.05 sqrt(4 pi sigma^2))
    assert np.count_nonzero(bright) >= 20
    assert np.all(dist[bright] < 0.05)
    ratio = np.asarray(table["psf_flux"], float) / (truth["flux"][idx] * sf.NJY_PER_DN_S)
    assert np.max(np.abs(ratio[bright] - 1)) < 0.02
    # the step measured the PSF width itself (psf_fwhm=0): fits are good
    assert np.all(table["psf_flags"][bright] == 0)
    assert 0.7 < np.median(table["psf_gof"]) < 1.5


def test_products_parquet_and_segmentation(products):
    import roman_datamodels as rdm
    from roman_datamodels import datamodels as rdd

    out, result = products
    names = sorted(p.name for p in out.iterdir())
    assert names == ["r0001_wfi01_cat.parquet", "r0001_wfi01_segm.asdf"]  # no image saved
    cat_path = out / "r0001_wfi01_cat.parquet"
    assert result.meta.source_catalog.tweakreg_catalog_name == str(cat_path)
    table = read_table(cat_path)
    attached = result.meta.source_catalog.tweakreg_catalog
    assert table.colnames == attached.colnames and len(table) == len(attached) == 15
    assert set(SPEC_COLUMNS) <= set(table.colnames)
    np.testing.assert_array_equal(table["x_psf"], attached["x_psf"])
    assert str(table["psf_flux"].unit) == "nJy"
    with rdm.open(out / "r0001_wfi01_segm.asdf") as segm:
        assert isinstance(segm, rdd.SegmentationMapModel)
        segm.validate()
        labels = np.asarray(segm.data)
        assert labels.dtype == np.uint32 and labels.shape == SMALL
        assert set(np.unique(labels)) - {0} == set(np.asarray(table["label"]).tolist())
        assert segm.meta.image.filename == "r0001_wfi01_cal.asdf"


def test_parquet_opens_with_astropy_table_read(products):
    pytest.importorskip("pandas")  # astropy's parquet reader needs pandas
    from astropy.table import Table

    table = Table.read(products[0] / "r0001_wfi01_cat.parquet")
    assert set(SPEC_COLUMNS) <= set(table.colnames) and len(table) == 15


def test_ecsv_output(small, tmp_path):
    from astropy.table import Table

    img = sf.image_model(*small)
    SourceCatalogStep(save_results=True, output_dir=str(tmp_path), output_format="ecsv").run(img)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "r0001_wfi01_cat.ecsv",
        "r0001_wfi01_segm.asdf",
    ]
    table = Table.read(tmp_path / "r0001_wfi01_cat.ecsv")
    assert set(SPEC_COLUMNS) <= set(table.colnames) and len(table) == 15
    assert table.meta["optical_element"] == "F158"


def test_empty_image_gives_empty_catalog(tmp_path):
    rng = np.random.default_rng(0)
    data = (1.0 + rng.normal(0, 0.05, SMALL)).astype(np.float32)
    img = sf.image_model(data, np.full(SMALL, 0.05, np.float32))
    result = SourceCatalogStep(save_results=True, output_dir=str(tmp_path)).run(img)
    table = result.meta.source_catalog.tweakreg_catalog
    assert len(table) == 0 and set(SPEC_COLUMNS) <= set(table.colnames)
    assert result.meta.cal_step.source_catalog == "COMPLETE"
    assert len(read_table(tmp_path / "r0001_wfi01_cat.parquet")) == 0
    import roman_datamodels as rdm

    with rdm.open(tmp_path / "r0001_wfi01_segm.asdf") as segm:
        assert not np.any(segm.data)


def test_fully_masked_image():
    data = np.ones(SMALL, np.float32)
    img = sf.image_model(data, np.full(SMALL, 0.05, np.float32))
    img.dq = np.ones(SMALL, np.uint32)  # DO_NOT_USE everywhere
    result = SourceCatalogStep().run(img)
    assert len(result.meta.source_catalog.tweakreg_catalog) == 0
    assert result.meta.cal_step.source_catalog == "COMPLETE"


def test_fluxes_in_mjy_per_sr_images_match(small):
    data, err = small
    img_dn = sf.image_model(data, err)
    conv = float(img_dn.meta.photometry.conversion_megajanskys)
    img_mj = sf.image_model(data * conv, err * conv)
    img_mj.meta.cal_step.flux = "COMPLETE"
    assert flux_conversion(img_mj).unit == "MJy/sr" and flux_conversion(img_dn).unit == "DN/s"
    assert flux_conversion(img_dn).flux_scale == pytest.approx(sf.NJY_PER_DN_S, rel=1e-6)
    # the same PSF width for both, so the two catalogs are identical up to rounding
    a = SourceCatalogStep(psf_fwhm=sf.FWHM_F158).run(img_dn).meta.source_catalog.tweakreg_catalog
    b = SourceCatalogStep(psf_fwhm=sf.FWHM_F158).run(img_mj).meta.source_catalog.tweakreg_catalog
    assert len(a) == len(b) == 15
    for col in ("segment_flux", "kron_flux", "psf_flux", "aper04_flux"):
        np.testing.assert_allclose(b[col], a[col], rtol=2e-3)


def test_missing_photometry_uses_nominal_and_no_wcs_gives_nan(small):
    img = sf.image_model(*small, with_wcs=False)
    img.meta.photometry = {
        "conversion_megajanskys": None,
        "conversion_megajanskys_uncertainty": None,
        "pixel_area": None,
    }
    conv = flux_conversion(img)
    assert conv.flux_scale == pytest.approx(sf.NJY_PER_DN_S, rel=1e-6)
    assert conv.pixel_scale == pytest.approx(0.11)
    table = SourceCatalogStep(fit_psf=False).run(img).meta.source_catalog.tweakreg_catalog
    assert len(table) == 15 and "psf_flux" not in table.colnames
    assert np.all(np.isnan(table["ra"]))


def test_forced_segmentation(products, small):
    out, first = products
    first = first.meta.source_catalog.tweakreg_catalog
    img = sf.image_model(*small)
    forced = SourceCatalogStep(
        forced_segmentation=str(out / "r0001_wfi01_segm.asdf"), fit_psf=False
    )
    table = forced.run(img).meta.source_catalog.tweakreg_catalog
    np.testing.assert_array_equal(table["label"], first["label"])
    np.testing.assert_allclose(table["segment_flux"], first["segment_flux"], rtol=1e-6)


def test_forced_segmentation_wrong_shape(products, image):
    with pytest.raises(InputFileError, match="shape"):
        SourceCatalogStep(forced_segmentation=str(products[0] / "r0001_wfi01_segm.asdf")).run(image)


def test_rejects_non_image_input(raw_factory):
    with pytest.raises(InputFileError, match="ImageModel"):
        SourceCatalogStep().run(raw_factory())


def test_step_needs_no_photutils_and_leaves_the_image_alone(small, monkeypatch):
    """Without deblending nor an EPSF the step runs on its own kernels (no photutils
    import, its slowest part), with the same catalog; the image arrays are untouched."""
    img = sf.image_model(*small)
    data, err = np.array(img.data), np.array(img.err)
    reference = SourceCatalogStep().run(sf.image_model(*small))
    reference = reference.meta.source_catalog.tweakreg_catalog
    for name in [n for n in sys.modules if n == "photutils" or n.startswith("photutils.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "photutils", None)
    table = SourceCatalogStep().run(img).meta.source_catalog.tweakreg_catalog
    assert table.colnames == reference.colnames and len(table) == 15
    for name in table.colnames:
        np.testing.assert_array_equal(table[name], reference[name], err_msg=name)
    np.testing.assert_array_equal(img.data, data)
    np.testing.assert_array_equal(img.err, err)
