"""The streaming ASDF block reader returns exactly what asdf reads, piece by piece."""

import asdf
import numpy as np
import pytest
import roman_datamodels as rdm

from rampcal.datamodels.blockstream import PlaneReader, find_block, plane_reader


def _write(path, arrays, compression):
    af = asdf.AsdfFile(arrays)
    af.write_to(path, all_array_compression=compression)


@pytest.mark.parametrize("compression", ["input", "zlib", "bzp2", "lz4"])
@pytest.mark.parametrize("dtype", ["<u2", ">f4", "<f8"])
def test_planes_match_asdf(tmp_path, compression, dtype):
    rng = np.random.default_rng(1)
    cube = (rng.normal(1000, 50, size=(5, 37, 29))).astype(dtype)
    other = np.arange(11, dtype=np.int32)
    path = tmp_path / "a.asdf"
    _write(path, {"other": other, "cube": cube}, None if compression == "input" else compression)
    with asdf.open(path, lazy_load=True) as af:
        for key, expect in (("other", other), ("cube", cube)):
            node = af.tree[key]
            reader = PlaneReader(path, find_block(path, node._source), node._dtype, node._shape)
            got = reader.read()
            assert got.dtype.isnative and np.array_equal(got, expect)
    reader = PlaneReader(path, find_block(path, 1), cube.dtype, cube.shape)
    pieces = [p.copy() for p in reader.planes(2)]
    assert [len(p) for p in pieces] == [2, 2, 1]
    assert np.array_equal(np.concatenate(pieces), cube)


def test_lz4_chunks_larger_than_one_frame(tmp_path):
    # asdf frames lz4 output in 4 MiB chunks: a 9 MiB array spans three of them
    cube = np.arange(3 * 768 * 1024, dtype=np.float32).reshape(3, 1024, 768)
    path = tmp_path / "big.asdf"
    _write(path, {"cube": cube}, "lz4")
    reader = PlaneReader(path, find_block(path, 0), cube.dtype, cube.shape)
    assert np.array_equal(np.concatenate([p.copy() for p in reader.planes(1)]), cube)


def test_truncated_block_raises(tmp_path):
    cube = np.random.default_rng(2).normal(size=(4, 64, 64)).astype(np.float32)
    path = tmp_path / "t.asdf"
    _write(path, {"cube": cube}, "zlib")
    block = find_block(path, 0)
    data = path.read_bytes()
    cut = tmp_path / "cut.asdf"
    cut.write_bytes(data[: block.data_offset + block.used_size // 2])
    with pytest.raises(ValueError, match="truncated"):
        find_block(cut, 0)
    short = type(block)(block.data_offset, block.used_size // 2, block.data_size, "zlib")
    cut.write_bytes(data[: block.data_offset + block.used_size // 2] + b"\0" * 4096)
    with pytest.raises(ValueError):
        PlaneReader(cut, short, cube.dtype, cube.shape).read()


def test_plane_reader_of_lazy_roman_model(tmp_path, raw_factory):
    model = raw_factory((40, 48))
    model.data = np.random.default_rng(3).integers(0, 65535, size=model.data.shape, dtype=np.uint16)
    small_uncal = tmp_path / "r_uncal.asdf"
    model.save(small_uncal)
    with rdm.open(small_uncal, lazy_load=True) as raw:
        reader = plane_reader(raw, "data")
        assert reader is not None
        streamed = reader.read()
    with rdm.open(small_uncal, lazy_load=False) as raw:
        assert np.array_equal(streamed, np.asarray(raw.data))
        assert plane_reader(raw, "data") is None  # already in memory: nothing to stream


@pytest.mark.parametrize(
    ("fill", "uniform"),
    [(2.5, True), (np.nan, True), (None, False)],
)
def test_compact_array(tmp_path, fill, uniform):
    from rampcal.datamodels.blockstream import compact_array

    plane = np.full((300, 1100), 2.5 if fill is None else fill, dtype=np.float32)
    if fill is None:
        plane[299, 1099] = 3.0  # one odd pixel in the last streamed piece
    path = tmp_path / "c.asdf"
    _write(path, {"data": plane}, "lz4")
    with asdf.open(path, lazy_load=True) as af:
        got = compact_array(af, "data")
    assert got.shape == plane.shape
    assert (got.strides == (0, 0)) == uniform
    np.testing.assert_array_equal(got, plane)


def test_compact_array_of_reference_model():
    """The built-in GAIN default is uniform: one value in memory, not a 64x96 plane."""
    from rampcal.datamodels import open_model
    from rampcal.datamodels.blockstream import compact_array
    from rampcal.reference import default_reference, nominal

    path = default_reference("gain", detector="WFI01", optical_element="F158", shape=(64, 96))
    with open_model(path) as ref:  # opened lazily: arrays are read on demand
        gain = compact_array(ref, "data", np.float32)
        assert gain.strides == (0, 0) and gain.shape == (64, 96)
        assert gain[0, 0] == np.float32(nominal.GAIN)


def test_release_pages_returns_memory():
    from rampcal.memory import release_pages
    from rampcal.timing import rss_mb

    cube = np.ones((4, 1024, 4096), dtype=np.float32)  # 64 MiB, every page touched
    before = rss_mb()
    released = sum(release_pages(plane[100:900]) for plane in cube)
    assert released > 0.99 * 4 * 800 * 4096 * 4
    assert rss_mb() < before - 40
    assert cube[0, 99, 0] == 1 and cube[0, 900, 0] == 1  # outside the views: untouched
    assert cube[1, 500].sum() == 0  # released pages read back as zeros
    assert release_pages(np.ones(10)[::2]) == 0  # not contiguous: nothing done


@pytest.mark.parametrize("compression", ["input", "lz4", "zlib"])
def test_read_ahead_gives_the_same_pieces(tmp_path, compression):
    cube = np.random.default_rng(5).normal(size=(7, 33, 41)).astype(np.float32)
    path = tmp_path / "r.asdf"
    _write(path, {"cube": cube}, None if compression == "input" else compression)
    reader = PlaneReader(path, find_block(path, 0), cube.dtype, cube.shape)
    pieces = [p.copy() for p in reader.planes(2, read_ahead=True)]
    assert [len(p) for p in pieces] == [2, 2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(pieces), cube)


@pytest.mark.parametrize("compression", ["input", "lz4"])
def test_or_into_streams_flags(tmp_path, compression):
    from rampcal.datamodels.blockstream import or_into

    rng = np.random.default_rng(11)
    flags = (rng.integers(0, 4, size=(300, 500)) << 3).astype(np.uint32)
    path = tmp_path / "f.asdf"
    _write(path, {"dq": flags}, None if compression == "input" else compression)
    target = rng.integers(0, 8, size=flags.shape).astype(np.uint32)
    expected = target | flags
    with asdf.open(path, lazy_load=True) as af:
        assert or_into(target, af, "dq")
        assert not or_into(target, af, "missing")
    np.testing.assert_array_equal(target, expected)
