"""Read an ASDF array block by block of rows, without ever holding the whole array.

asdf reads an array block whole: a 9-resultant raw cube is 0.3 GB decompressed, a
linearity coefficient cube 0.3–0.5 GB, and asdf's own lz4 reader takes ~2.5 s for
the raw cube. :class:`PlaneReader` walks the block headers of the ASDF file itself
(the layout of the ASDF standard: magic ``\\xd3BLK``, a big-endian header with flags,
compression, allocated/used/data sizes and checksum) and decompresses the block as a
stream — uncompressed, ``zlib``, ``bzp2`` and asdf's ``lz4`` framing (4 MiB chunks
each prefixed by its big-endian length) — into one caller-sized buffer at a time.

Only C-contiguous arrays stored in a block of the same file are streamed; anything
else (strided views, external blocks, extension compressors) makes
:func:`plane_reader` return None and the caller reads the array the ordinary way.
"""

from __future__ import annotations

import bz2
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BlockInfo", "PlaneReader", "compact_array", "find_block", "or_into", "plane_reader"]

_MAGIC = b"\xd3BLK"
_HEADER = struct.Struct(">IIQQQ16s")  # flags, compression, allocated, used, data size, md5
_STREAMED = 0x1
_PIECE = 1 << 22  # bytes of compressed input (or of lz4 output) handled at a time


@dataclass(frozen=True)
class BlockInfo:
    """Where one ASDF block's bytes are and how they are stored."""

    data_offset: int  # file offset of the first stored byte
    used_size: int  # stored (possibly compressed) bytes
    data_size: int  # decompressed bytes
    compression: str  # "", "zlib", "bzp2", "lz4" or another label


def find_block(path: str | os.PathLike, index: int) -> BlockInfo:
    """Locate block ``index`` (0-based, in file order) of an ASDF file.

    Raises
    ------
    ValueError
        The file has fewer blocks, or a block header is damaged.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        pos = _first_block(fh)
        for i in range(index + 1):
            fh.seek(pos)
            head = fh.read(6)
            if len(head) < 6 or head[:4] != _MAGIC:
                raise ValueError(f"ASDF block {i} not found at byte {pos}")
            (header_size,) = struct.unpack(">H", head[4:])
            raw = fh.read(header_size)
            if header_size < _HEADER.size or len(raw) < _HEADER.size:
                raise ValueError(f"ASDF block {i} has a damaged header")
            flags, comp, allocated, used, data_size, _ = _HEADER.unpack(raw[: _HEADER.size])
            start = pos + 6 + header_size
            if flags & _STREAMED:
                used = data_size = allocated = size - start
            if i == index:
                label = comp.to_bytes(4, "big").rstrip(b"\0").decode("ascii", "replace")
                if start + used > size:
                    raise ValueError(f"ASDF block {i} is truncated")
                return BlockInfo(start, used, data_size, label)
            pos = start + allocated
    raise AssertionError("unreachable")


def _first_block(fh) -> int:
    """File offset of the first block magic (the YAML tree before it cannot hold 0xd3)."""
    fh.seek(0)
    offset, tail = 0, b""
    while True:
        piece = fh.read(1 << 20)
        if not piece:
            raise ValueError("the ASDF file has no binary blocks")
        hit = (tail + piece).find(_MAGIC)
        if hit >= 0:
            return offset - len(tail) + hit
        offset += len(piece)
        tail = piece[-3:]


class PlaneReader:
    """Sequential reader of one array's rows, in C order, from its ASDF block.

    Parameters
    ----------
    path : path-like
        The ASDF file.
    block : BlockInfo
        The array's block (:func:`find_block`).
    dtype, shape : numpy dtype and tuple
        The array as stored (byte order included).
    offset : int
        Byte offset of the array inside the decompressed block.
    """

    def __init__(self, path, block: BlockInfo, dtype, shape, offset: int = 0):
        self.path = Path(path)
        self.block = block
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(n) for n in shape)
        need = offset + self.dtype.itemsize * int(np.prod(self.shape))
        if block.compression not in ("", "zlib", "bzp2", "lz4"):
            raise ValueError(f"unsupported block compression {block.compression!r}")
        if need > block.data_size:
            raise ValueError(f"array needs {need} bytes, its block holds {block.data_size}")
        self._offset = offset

    def planes(self, rows: int | None = None, *, read_ahead: bool = False) -> Iterator[np.ndarray]:
        """Yield the array in consecutive pieces along axis 0 (``rows`` at a time).

        Every piece is a view of a reused buffer, in native byte order: consume or
        copy it before asking for the next. With ``read_ahead`` a second thread reads
        and decompresses the next piece while the caller works on this one (one more
        buffer of memory; lz4, zlib and file reads release the GIL).
        """
        n0 = self.shape[0]
        rows = n0 if rows is None else n0 if n0 == 0 else max(1, min(int(rows), n0))
        step = rows if len(self.shape) > 1 else n0
        starts = list(range(0, n0, step)) if step else []
        buffers = [np.empty((step, *self.shape[1:]), dtype=self.dtype)]
        if read_ahead and len(starts) > 1:
            buffers.append(np.empty_like(buffers[0]))
        with open(self.path, "rb") as fh:
            fill = self._filler(fh)
            fill(None, self._offset)

            def load(k: int) -> np.ndarray:
                view = buffers[k % len(buffers)][: min(step, n0 - starts[k])]
                fill(memoryview(view.reshape(-1).view(np.uint8)), 0)
                return view if view.dtype.isnative else view.astype(view.dtype.newbyteorder("="))

            if len(buffers) == 1:
                for k in range(len(starts)):
                    yield load(k)
                return
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(load, 0)
                for k in range(len(starts)):
                    piece = pending.result()
                    # the buffer of piece k+1 is the one piece k-1 used: free by now
                    pending = pool.submit(load, k + 1) if k + 1 < len(starts) else None
                    yield piece

    def rows_per_piece(self) -> int:
        """Rows along axis 0 that make about one 4 MiB piece (at least 1)."""
        row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        return max(1, _PIECE // max(1, row_bytes))

    def read(self) -> np.ndarray:
        """The whole array (a new native-order array)."""
        out = np.empty(self.shape, dtype=self.dtype.newbyteorder("="))
        start = 0
        for piece in self.planes(self.rows_per_piece()):
            out[start : start + len(piece)] = piece
            start += len(piece)
        return out

    # ---- byte sources ------------------------------------------------------------------
    def _filler(self, fh):
        """A function ``fill(target, skip)``: skip ``skip`` bytes, then fill ``target``."""
        comp = self.block.compression
        fh.seek(self.block.data_offset)
        if comp == "":

            def fill(target, skip):
                if skip:
                    fh.seek(skip, os.SEEK_CUR)
                if target is not None and fh.readinto(target) != len(target):
                    raise ValueError("ASDF block is truncated")

            return fill
        pieces = _decompressed_pieces(fh, self.block)
        pending = [memoryview(b"")]

        def fill(target, skip):
            want = len(target) if target is not None else 0
            pos = 0
            while skip or pos < want:
                if not len(pending[0]):
                    try:
                        pending[0] = memoryview(next(pieces))
                    except StopIteration:
                        raise ValueError("ASDF block ended early, truncated?") from None
                cur = pending[0]
                if skip:
                    k = min(skip, len(cur))
                    skip -= k
                else:
                    k = min(want - pos, len(cur))
                    target[pos : pos + k] = cur[:k]
                    pos += k
                pending[0] = cur[k:]

        return fill


def _decompressed_pieces(fh, block: BlockInfo) -> Iterator[bytes]:
    """Decompressed bytes of a block, a bounded piece at a time."""
    remaining = block.used_size

    def read(n):
        nonlocal remaining
        data = fh.read(min(n, remaining))
        remaining -= len(data)
        return data

    if block.compression == "lz4":
        import lz4.block

        while remaining > 0:
            head = read(4)
            if len(head) < 4:
                raise ValueError("lz4 block is truncated")
            (n,) = struct.unpack(">I", head)
            chunk = read(n)
            if len(chunk) < n:
                raise ValueError("lz4 block is truncated")
            yield lz4.block.decompress(chunk)
    elif block.compression == "zlib":
        d = zlib.decompressobj()
        data = b""
        while True:
            if not data:
                if remaining <= 0:
                    break
                data = read(_PIECE)
            out = d.decompress(data, _PIECE)
            data = d.unconsumed_tail
            if out:
                yield out
            if d.eof:
                break
        tail = d.flush()
        if tail:
            yield tail
    else:  # bzp2
        d = bz2.BZ2Decompressor()
        while not d.eof:
            data = read(_PIECE) if d.needs_input else b""
            if d.needs_input and not data:
                break
            out = d.decompress(data, _PIECE)
            if out:
                yield out


def plane_reader(model, key: str, path: str | os.PathLike | None = None) -> PlaneReader | None:
    """A :class:`PlaneReader` for array ``key`` of a lazily opened model or AsdfFile.

    Returns None when the array is already in memory, is not a contiguous array in a
    block of ``path`` (default ``model``'s file), or uses a compressor this module does
    not stream: read it the ordinary way then.
    """
    try:
        from asdf.tags.core.ndarray import NDArrayType

        node, asdf_file = _lazy_node(model, key)
        if not isinstance(node, NDArrayType) or node._array is not None:
            return None
        source = node._source
        if not isinstance(source, int) or source < 0 or node._strides is not None:
            return None
        shape = node._shape
        if not isinstance(shape, (list, tuple)) or any(not isinstance(n, int) for n in shape):
            return None
        path = path or _local_path(asdf_file._fd._uri)
        if not path:
            return None
        block = find_block(path, source)
        return PlaneReader(path, block, node._dtype, shape, offset=node._offset or 0)
    except (AttributeError, KeyError, TypeError, ValueError, OSError):
        return None


def _lazy_node(model, key: str):
    """The tree node of ``key`` (not read) and the AsdfFile it belongs to."""
    import asdf

    if isinstance(model, asdf.AsdfFile):
        return model.tree.get(key), model
    return model._instance._data.get(key), model._asdf  # a roman_datamodels model


def _local_path(uri: str | None) -> str | None:
    """A filesystem path from asdf's file URI (None for anything not a local file)."""
    from urllib.parse import unquote, urlparse

    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return unquote(parsed.path) if parsed.scheme else uri
    return None


def compact_array(model, key: str, dtype=None) -> np.ndarray | None:
    """Array ``key`` of a lazily opened model; a uniform array costs no memory.

    The array is streamed a few MB at a time. If every element equals the first one
    (all NaN counts as equal) the result is a read-only ``np.broadcast_to`` view of
    that single value; otherwise the whole array is read. Arrays already in memory,
    or not streamable, are returned as loaded. None if the model has no ``key``.
    """
    tree = _tree(model)
    if tree.get(key) is None:
        return None
    reader = plane_reader(model, key)
    if reader is None:
        return np.asarray(tree[key], dtype=dtype)
    dtype = np.dtype(dtype or reader.dtype.newbyteorder("="))
    value, out, start = None, None, 0
    for piece in reader.planes(reader.rows_per_piece()):
        n = len(piece)
        if value is None and piece.size:
            value = piece.flat[0]
        if out is None and piece.size and not _all_equal(piece, value):
            out = np.empty(reader.shape, dtype=dtype)
            out[:start] = value
        if out is not None:
            out[start : start + n] = piece
        start += n
    if out is not None:
        return out
    filled = np.zeros((), dtype=dtype) if value is None else np.asarray(value, dtype=dtype)
    return np.broadcast_to(filled, reader.shape)


def _tree(model):
    """The mapping holding the arrays: an AsdfFile's tree, or the (Roman) model itself."""
    return model.tree if hasattr(model, "tree") and not hasattr(model, "_instance") else model


def _all_equal(piece: np.ndarray, value) -> bool:
    if np.issubdtype(piece.dtype, np.floating) and np.isnan(value):
        return bool(np.isnan(piece).all())
    return bool((piece == value).all())


def or_into(target: np.ndarray, model, key: str) -> bool:
    """OR the integer array ``key`` of a lazily opened model into ``target``, in place.

    The array is streamed a few MB at a time, so a DQ plane never exists whole in
    memory. Returns False (``target`` unchanged) if the model has no ``key``.
    """
    tree = _tree(model)
    if tree.get(key) is None:
        return False
    reader = plane_reader(model, key)
    if reader is None:
        np.bitwise_or(target, np.asarray(tree[key]).astype(target.dtype, copy=False), out=target)
        return True
    if reader.shape != target.shape:
        raise ValueError(f"'{key}' has shape {reader.shape}, expected {target.shape}")
    start = 0
    for piece in reader.planes(reader.rows_per_piece()):
        n = len(piece)
        target[start : start + n] |= piece.astype(target.dtype, copy=False)
        start += n
    return True
