"""Labels decoded once: each bitmap's :class:`~segments_torch.targets.SegmentMap`, compressed
on disk, so that later epochs never inflate its PNG again.

A 1280 x 720 bitmap of 25 instances is a 15 KB PNG that takes milliseconds to decode; its
segment map (one byte a pixel) and id table compress with zstd to about 6 KB and come back
in a tenth of a millisecond. :class:`LabelCache` keeps one such entry per bitmap.

**Which bitmap an entry holds.** An entry is named by its bitmap's location as the asset
cache names files: the resolved URL without query string or ``user:password@``
(:meth:`~segments_torch.storage.Storage.identity`). It also records what that location
says of its content where that is cheap to learn: a local file's size and modification
time (nanoseconds). An entry whose record differs from the file's is stale and is rebuilt,
so a bitmap rewritten in place is never served from its old entry. A remote bitmap is
identified by its URL alone: asking the server for an ETag would cost a round trip per
item, and Segments.ai names a changed bitmap with a new URL.

**Entries** are written as the asset cache writes files (a temporary file renamed into
place), so processes and DataLoader workers of one machine may share a cache; each is
checked when read (magic, version, sizes and a CRC-32 of all its bytes), and one that
fails is removed and rebuilt, never served.

**What an entry holds**: the segment map and its id table, and the segments' extents (pixel
count and box, :attr:`~segments_torch.targets.SegmentMap.extents`) where
:meth:`~segments_torch.targets.SegmentMap.measured` finds them, so that the boxes and areas
of a target come without a read of the pixels, and its masks are compared within the boxes
only.

Entry layout (little-endian): ``b"STLC"``, version (u8), codec (u8: 0 zlib, 1 zstd),
segment width in bytes (u8), flags (u8: 1 where the extents are stored), height, width,
number of ids, compressed payload size (four u32), the length of the source record (u16)
and the record (UTF-8), the payload (the extents as ``(K, 5)`` int64 where stored, ``ids``
as int32, then the segments), and the CRC-32 of everything before it (u32). An entry whose
extents do not fit its map (a box outside it, areas not adding up to its pixels) is
discarded as a corrupt one is.

zstd needs the ``zstandard`` package (extra ``fast``); without it entries are written with
zlib (larger and slower, still several times faster than decoding the PNG), and entries
written with zstd are rebuilt.

Example:
    >>> cache = LabelCache("/scratch/labels")  # doctest: +SKIP
    >>> cache.put("https://cdn.example/a.png", "", SegmentMap.from_ids(ids))  # doctest: +SKIP
    >>> cache.get("https://cdn.example/a.png", "").to_ids()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import warn_once, write_atomically
from .targets import SegmentMap

__all__ = ["FORMAT_VERSION", "LabelCache"]

logger = logging.getLogger(__name__)

#: The version of the entry layout: entries of another version are rebuilt.
FORMAT_VERSION = 2
_MAGIC = b"STLC"
_HEADER = struct.Struct("<4sBBBBIIIIH")
_CRC = struct.Struct("<I")
_ZLIB, _ZSTD = 0, 1
_HAS_EXTENTS = 1
#: Bytes of one segment's extents: pixel count and XYXY box, int64.
_EXTENT_BYTES = 5 * 8
_WIDTHS = {1: torch.uint8, 2: torch.int16, 4: torch.int32}
_NUMPY: dict[int, np.dtype[Any]] = {1: np.dtype("u1"), 2: np.dtype("<i2"), 4: np.dtype("<i4")}
#: zstd's level 3 is its default: level 1 made entries no smaller or faster to read.
_ZSTD_LEVEL = 3


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


_ZSTANDARD = _zstandard()


class LabelCache:
    """A folder of decoded labels, one entry per bitmap (see the module docstring).

    Args:
        folder: where entries live (made when the first is written); may be shared by
            the processes of one machine.

    Example:
        >>> ds = SegmentsDataset("flowers.json", label_cache="/scratch/labels")  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        """The entry file of the bitmap at ``key`` (its location, as
        :meth:`~segments_torch.storage.Storage.identity` gives it)."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self.folder / digest[:2] / f"{digest}.stlc"

    def get(self, key: str, source: str) -> SegmentMap | None:
        """The label stored for ``key`` if its entry is whole and was made from the same
        ``source`` (the record of the bitmap's content: size and mtime of a local file);
        ``None`` otherwise. An entry that fails its checks or is stale is removed."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a folder in its place, no permission: as if not cached
            warn_once(logger, "label-read", "cannot read the label cache entry %s: %s", path, exc)
            return None
        try:
            return _decode(data, source)
        except ValueError as exc:
            logger.debug("dropping the label cache entry %s of %s: %s", path, key, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def put(self, key: str, source: str, label: SegmentMap) -> int:
        """Store ``label`` (on any device) for ``key`` made from ``source``; returns the
        entry's size in bytes. Raises OSError where the entry cannot be written."""
        data = _encode(label, source)
        write_atomically(self.path(key), data)
        return len(data)

    def __repr__(self) -> str:
        return f"LabelCache({str(self.folder)!r})"


def _encode(label: SegmentMap, source: str) -> bytes:
    on_host = SegmentMap(label.segments.cpu().contiguous(), label.ids, label.extents).measured()
    segments = on_host.segments.numpy()
    width = segments.dtype.itemsize
    height, columns = label.shape
    ids = label.ids.numpy().astype("<i4")
    extents = b"" if on_host.extents is None else on_host.extents.numpy().astype("<i8").tobytes()
    raw = extents + ids.tobytes() + segments.astype(_NUMPY[width], copy=False).tobytes()
    payload: bytes
    if _ZSTANDARD is not None:
        codec, payload = _ZSTD, _ZSTANDARD.ZstdCompressor(level=_ZSTD_LEVEL).compress(raw)
    else:
        codec, payload = _ZLIB, zlib.compress(raw, 1)
    record = source.encode("utf-8", "surrogatepass")
    header = _HEADER.pack(
        _MAGIC,
        FORMAT_VERSION,
        codec,
        width,
        _HAS_EXTENTS if extents else 0,
        height,
        columns,
        len(ids),
        len(payload),
        len(record),
    )
    body = header + record + payload
    return body + _CRC.pack(zlib.crc32(body))


def _decode(data: bytes, source: str) -> SegmentMap:
    """The label in an entry's bytes; ValueError where they are not a whole entry of
    this version, or were made from another ``source`` (a stale entry)."""
    if len(data) < _HEADER.size + _CRC.size:
        raise ValueError(f"{len(data)} bytes: shorter than a header")
    magic, version, codec, width, flags, height, columns, count, size, length = _HEADER.unpack_from(
        data
    )
    if magic != _MAGIC or version != FORMAT_VERSION:
        raise ValueError(f"not a label cache entry of version {FORMAT_VERSION}")
    body = len(data) - _CRC.size
    if _HEADER.size + length + size != body:
        raise ValueError("its size is not what its header says (truncated?)")
    if zlib.crc32(memoryview(data)[:body]) != _CRC.unpack_from(data, body)[0]:
        raise ValueError("it fails its CRC-32 check")
    record = data[_HEADER.size : _HEADER.size + length].decode("utf-8", "surrogatepass")
    if record != source:
        raise ValueError("it was made from another version of the bitmap")
    if width not in _WIDTHS:
        raise ValueError(f"segments of {width} bytes")
    payload = memoryview(data)[_HEADER.size + length : body]
    extent_bytes = _EXTENT_BYTES * count if flags & _HAS_EXTENTS else 0
    raw = torch.empty(extent_bytes + 4 * count + width * height * columns, dtype=torch.uint8)
    if codec == _ZSTD and _ZSTANDARD is not None:
        made = _unzstd(payload, raw)
    elif codec == _ZLIB:
        inflated = zlib.decompress(payload)
        made = len(inflated)
        if made == raw.numel():
            raw.numpy()[:] = np.frombuffer(inflated, dtype=np.uint8)
    else:
        raise ValueError("written with zstd, which is not installed (pip install zstandard)")
    if made != raw.numel():
        raise ValueError("its payload does not hold the label its header describes")
    # the extents first: int64 views need an offset that is a multiple of 8
    extents = raw[:extent_bytes].view(torch.int64).view(-1, 5) if extent_bytes else None
    ids = raw[extent_bytes : extent_bytes + 4 * count].view(torch.int32)
    segments = raw[extent_bytes + 4 * count :].view(_WIDTHS[width]).view(height, columns)
    if extents is not None:
        _check_extents(extents.numpy(), height, columns)
    return SegmentMap(segments, ids, extents)


def _check_extents(extents: np.ndarray[Any, Any], height: int, width: int) -> None:
    """ValueError unless every segment has pixels, a box within the map that holds them,
    and the areas add up to the map's pixels: a few comparisons per segment, so that
    extents that passed the CRC by chance (or were written wrong) are never served."""
    area, left, top, right, bottom = extents.T
    fits = (
        (area > 0).all()
        and (left >= 0).all()
        and (top >= 0).all()
        and (left < right).all()
        and (top < bottom).all()
        and (right <= width).all()
        and (bottom <= height).all()
        and (area <= (right - left) * (bottom - top)).all()
    )
    if not fits or int(area.sum()) != height * width:
        raise ValueError("its extents do not fit its segment map")


def _unzstd(payload: memoryview, out: torch.Tensor) -> int:
    """Decompress a zstd frame into ``out`` (uint8); returns the bytes it held, counting
    up to one past ``out``'s size. Into the tensor, not into new bytes: a 10 MP label is
    not copied once more."""
    view = out.numpy().data
    made = 0
    with _ZSTANDARD.ZstdDecompressor().stream_reader(payload) as reader:
        while made < len(view):
            step = reader.readinto(view[made:])
            if not step:
                return made
            made += step
        return made + len(reader.read(1))
