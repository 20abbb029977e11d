"""Compiled numerics of the catalog kernels against numpy, LAPACK and photutils."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.catalog import _aperture_kernels as ak
from rampcal.catalog import _geometry as geo


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_sums_are_numpy_sums(dtype):
    """numpy's pairwise summation: np.sum (from 0) and np.add.reduceat (first + rest)."""
    rng = np.random.default_rng(1)
    pw = geo.pw32 if dtype == np.float32 else geo.pw64
    sizes = [0, 1, 7, 8, 9, 127, 128, 129, 255, 256, 1000, 4097, 20011]
    for n in sizes:
        a = (rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, n)).astype(dtype)
        assert pw(a, 0, n) == np.sum(a), n
        if n > 1:
            assert a[0] + pw(a, 1, n - 1) == np.add.reduceat(a, [0])[0], n
    # segments of a concatenation, as photutils sums the pixels of all sources at once
    parts = [rng.normal(size=int(k)).astype(dtype) for k in rng.integers(1, 600, 40)]
    starts = np.r_[0, np.cumsum([p.size for p in parts])[:-1]]
    ref = np.add.reduceat(np.concatenate(parts), starts)
    got = [p[0] + pw(p, 1, p.size - 1) for p in parts]
    np.testing.assert_array_equal(np.asarray(got, dtype=dtype), ref)


def test_rint_rounds_half_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999999, 3.5000001, 1e9 + 0.5, -7.2])
    np.testing.assert_array_equal([geo.rint(v) for v in x], np.rint(x).astype(int))


def test_dlae2_is_lapack_eigvalsh():
    rng = np.random.default_rng(2)
    for k in range(3000):
        m = rng.normal(size=(2, 2)) * 10.0 ** rng.uniform(-4, 4)
        m = m @ m.T
        if k % 5 == 0:
            m[0, 1] = m[1, 0] = 0.0
        if k % 7 == 0:
            m[1, 1] = m[0, 0]
        ref = np.linalg.eigvalsh(m)
        assert geo.dlae2(m[0, 0], m[0, 1], m[1, 1]) == (ref[1], ref[0])


def test_ellipse_weights_are_photutils_exact_overlaps():
    from photutils.geometry import elliptical_overlap_grid

    rng = np.random.default_rng(3)
    for _ in range(300):
        a = rng.uniform(0.3, 12.0)
        b = a * rng.uniform(0.1, 1.0)
        theta = rng.uniform(-4.0, 4.0)
        nx, ny = (int(v) for v in rng.integers(1, 30, 2))
        x0 = -nx / 2 - rng.uniform(-2, 2)
        y0 = -ny / 2 - rng.uniform(-2, 2)
        ref = elliptical_overlap_grid(x0, x0 + nx, y0, y0 + ny, nx, ny, a, b, theta, 1, 1)
        got = np.empty((ny, nx))
        geo.ellipse_weights(x0, x0 + nx, y0, y0 + ny, nx, ny, a, b, theta, got)
        np.testing.assert_array_equal(got, ref)
    got = np.empty((12, 12))
    geo.ellipse_weights(-6.0, 6.0, -6.0, 6.0, 12, 12, 4.0, 2.5, 0.3, got)
    assert got.sum() == pytest.approx(np.pi * 4.0 * 2.5, rel=1e-12)


def test_overlap_of_pixels_tiles_the_disc():
    r = 3.7
    total = sum(
        geo.overlap(i - 0.5, i + 0.5, j - 0.5, j + 0.5, r)
        for i in range(-5, 6)
        for j in range(-5, 6)
    )
    assert total == pytest.approx(np.pi * r * r, rel=1e-12)
    assert geo.overlap(-0.5, 0.5, -0.5, 0.5, 0.1) == pytest.approx(np.pi * 0.01, rel=1e-12)
    assert geo.overlap(2.0, 3.0, 2.0, 3.0, 2.5) == 0.0


def test_radix_sort_of_float32_values():
    rng = np.random.default_rng(4)
    for n in (0, 1, 2, 3, 50, 541, 3000):
        a = rng.normal(size=n).astype(np.float32)
        if n > 10:
            a[:6] = [0.0, 1e-40, -1e-40, 3.4e38, -3.4e38, -7.0]
        a = a.astype(np.float64)
        got = a.copy()
        ak.sort_float32_values(got)
        np.testing.assert_array_equal(got, np.sort(a))
