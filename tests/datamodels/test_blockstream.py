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
