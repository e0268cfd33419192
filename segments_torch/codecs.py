"""Bytes to tensors and back: the one place that decides how bytes become pixels.

- :func:`decode_image`: a photo (JPEG, PNG, and what Pillow reads: BMP, WebP, TIFF, ...)
  to a ``(3, H, W)`` uint8 tensor with its EXIF orientation applied, as the labelling tool
  shows it (the bitmap is drawn on the oriented image).
- :func:`decode_bitmap`: a segmentation bitmap (8-bit RGBA or RGB PNG) to an ``(H, W)``
  int32 map of instance ids, ``id = R + 256 G + 65536 B``.
- :func:`encode_bitmap`: the reverse, ids to an RGBA PNG.

Which library decodes what is chosen here alone, by measurement
(``benchmarks/bench_decoders.py``) and by how each fails on damaged files:

- JPEG: torchcodec when installed (as fast as torchvision.io, whose decoders are
  deprecated since torchvision 0.29), torchvision.io otherwise, its deprecation warning
  kept from users. At a reduced DCT scale (``size=``): simplejpeg when installed, Pillow's
  ``draft`` otherwise (both libjpeg-turbo, the same pixels; simplejpeg decodes straight
  into one array, Pillow copies the image three times on its way out).
- PNG images: torchcodec when installed, Pillow otherwise; never torchvision.io's
  ``decode_png``, which crashes the process (SIGSEGV) on a PNG that fails mid-image.
- Bitmaps: pyspng when installed (the fastest by far), torchcodec, then Pillow. pyspng
  checks neither the chunk CRCs nor zlib's Adler-32 checksum, so both are checked here
  first (a damaged byte would otherwise decode silently to wrong ids): the pixel data is
  inflated once more, with zlib-ng when installed (faster than zlib), its output
  discarded. Any eXIf chunk is dropped: a bitmap's grid is used as
  stored.
- Everything else (BMP, WebP, TIFF, GIF): Pillow.

Hostile files: before anything is decoded, the size the file declares (JPEG SOF, PNG
IHDR, or Pillow's reading of the header) is checked against ``max_pixels`` (default
:data:`DEFAULT_MAX_PIXELS`), so a 2 KB file declaring 30000 x 30000 pixels never becomes a
2.7 GB tensor; running out of memory while decoding is a :class:`DecodeError` too.

Example:
    >>> ids = torch.tensor([[0, 300], [70000, 1]], dtype=torch.int32)
    >>> decode_bitmap(encode_bitmap(ids)).tolist()
    [[0, 300], [70000, 1]]
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2.functional import resize

from .errors import DecodeError
from .sizes import Size, output_size

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DeviceImage",
    "PngHeader",
    "check_complete",
    "check_pixels",
    "declared_size",
    "decode_bitmap",
    "decode_bitmap_pixels",
    "decode_image",
    "decode_jpegs",
    "encode_bitmap",
    "orient",
    "oriented_size",
    "pixels_to_ids",
    "png_header",
    "prepare_image",
    "sniff",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7's passes: first column, first row, column step, row step.
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
#: JPEG frame headers (SOF0-SOF15) hold the size; C4 (DHT), C8 (JPG), CC (DAC) are no frames.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Output of one inflate step when checking a bitmap's zlib stream (kept in cache, dropped).
_INFLATE_STEP = 1 << 18
_MAX_ID = 2**24 - 1
_EXIF_ORIENTATION = 0x0112
#: The most pixels an image or bitmap may declare unless told otherwise (2^28: 16384 x
#: 16384, 27 times a 10 MP photo); a 2^28-pixel RGBA bitmap decodes to 1 GiB.
DEFAULT_MAX_PIXELS = 2**28


def sniff(data: bytes) -> str:
    """The container format of encoded bytes: ``"jpeg"``, ``"png"``, ``"webp"``,
    ``"gif"``, ``"bmp"``, ``"tiff"`` or ``"unknown"``."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == _PNG_SIGNATURE:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return "unknown"


@dataclass(frozen=True)
class PngHeader:
    """The IHDR fields of a PNG: enough to refuse a bitmap before decoding it."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool = False

    @property
    def mode(self) -> str:
        """E.g. ``"8-bit RGBA"``, ``"16-bit RGB"``, ``"8-bit palette"``."""
        kind = _PNG_COLOR_TYPES.get(self.color_type, f"color type {self.color_type}")
        return f"{self.bit_depth}-bit {kind}"

    @property
    def pixel_data_size(self) -> int:
        """How many bytes the pixel data inflates to: each row of each pass (Adam7 has
        seven) is a filter byte and its samples, packed."""
        bits = _PNG_CHANNELS.get(self.color_type, 4) * self.bit_depth
        passes = _ADAM7 if self.interlaced else ((0, 0, 1, 1),)
        size = 0
        for x0, y0, dx, dy in passes:
            width = -(-(self.width - x0) // dx) if self.width > x0 else 0
            height = -(-(self.height - y0) // dy) if self.height > y0 else 0
            if width and height:
                size += height * (1 + (width * bits + 7) // 8)
        return size


def png_header(data: bytes) -> PngHeader:
    """Read a PNG's IHDR chunk; raises :class:`DecodeError` for anything else."""
    if data[:8] != _PNG_SIGNATURE:
        raise DecodeError(f"expected a PNG, found {_found(data)}")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise DecodeError("a PNG without its IHDR header (truncated?)")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
    return PngHeader(width, height, bit_depth, color_type, interlaced=data[28] == 1)


@dataclass(frozen=True)
class _JpegFrame:
    """What a JPEG's frame header (SOF) says: its kind of coding, size and components."""

    marker: int
    width: int
    height: int
    components: int

    @property
    def for_every_decoder(self) -> bool:
        """Huffman-coded baseline, extended or progressive, grey or three components: the
        JPEGs nvJPEG and libjpeg-turbo's fast paths both take (not CMYK, arithmetic
        coding or lossless ones, which Pillow decodes)."""
        return self.marker in (0xC0, 0xC1, 0xC2) and self.components in (1, 3)


def _jpeg_frame(data: bytes) -> _JpegFrame:
    """A JPEG's frame header, read without decoding."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:  # stray bytes between segments: decoders skip them too
            position = data.find(b"\xff", position)
            if position < 0:
                break
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            position += 2
        elif marker in (0xD9, 0xDA):  # EOI, or the scan began: no frame header before it
            break
        elif marker in _JPEG_FRAMES:
            if position + 10 > len(data):
                break
            height, width, components = struct.unpack_from(">HHB", data, position + 5)
            return _JpegFrame(marker, width, height, components)
        else:
            position += 2 + struct.unpack_from(">H", data, position + 2)[0]
    raise DecodeError("cannot decode the image (JPEG data): no frame header (truncated?)")


def declared_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` that encoded image bytes declare, read from the header alone
    (JPEG SOF, PNG IHDR, or what Pillow reads of other formats' headers): how large the
    decoded image would be, before anything is decoded. EXIF orientation may swap them.

    Raises :class:`DecodeError` where the bytes are no image or the header is damaged.

    Example:
        >>> declared_size(encode_bitmap(torch.zeros(2, 3, dtype=torch.int32)))
        (3, 2)
    """
    kind = sniff(data)
    if kind == "jpeg":
        frame = _jpeg_frame(data)
        return frame.width, frame.height
    if kind == "png":
        header = png_header(data)
        return header.width, header.height
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return width, height
    except UnidentifiedImageError:
        raise DecodeError(
            f"cannot decode the image ({_found(data)}): not a format Pillow reads either"
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"cannot decode the image ({_found(data)}): {exc}") from None


def check_pixels(what: str, width: int, height: int, max_pixels: int | None) -> None:
    """Raise :class:`DecodeError` unless a ``width`` x ``height`` image (``what``: "image"
    or "bitmap") has pixels and at most ``max_pixels`` of them (``None``: no limit)."""
    if width == 0 or height == 0:
        raise DecodeError(f"the {what} declares {width}x{height} pixels: it holds none")
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError(
            f"the {what} declares {width}x{height} pixels ({width * height:,}), more than "
            f"max_pixels={max_pixels:,}"
        )


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed: MemoryError (Python, numpy, Pillow) or
    torch's RuntimeError ("DefaultCPUAllocator: can't allocate memory", CUDA's
    OutOfMemoryError)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


@contextlib.contextmanager
def _memory_guard(what: str, width: int, height: int, channels: int) -> Iterator[None]:
    """Turn running out of memory while decoding into a :class:`DecodeError`: one sample
    too large for this machine must not stop a run that skips bad samples."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        raise DecodeError(
            f"out of memory decoding the {width}x{height} {what} "
            f"({width * height * channels:,} bytes): {type(exc).__name__}"
        ) from None


def _found(data: bytes) -> str:
    kind = sniff(data)
    if kind != "unknown":
        return f"{kind.upper()} data"
    return "no data (0 bytes)" if not data else f"unknown data starting {data[:8]!r}"


# -- decoders: chosen once per process, by what is installed ---------------------------


def _quietly(function: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:
    """Call a torchvision.io decoder without its deprecation warning reaching users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return function(*args, **kwargs)


def _as_tensor(data: bytes) -> torch.Tensor:
    # torchvision decoders want a 1-D uint8 tensor; bytearray makes it writable.
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _torchcodec() -> Any:
    try:
        import torchcodec.decoders
    except (ImportError, OSError, RuntimeError):  # not installed, or its libraries missing
        return None
    return torchcodec.decoders


def _pyspng() -> Any:
    try:
        import pyspng
    except ImportError:
        return None
    return pyspng


def _simplejpeg() -> Any:
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


def _zlib() -> Any:
    """zlib-ng's drop-in zlib module when installed (it inflates bitmaps several times
    faster), else zlib."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib
    return zlib_ng


_TORCHCODEC = _torchcodec()
_PYSPNG = _pyspng()
_SIMPLEJPEG = _simplejpeg()
_ZLIB = _zlib()


def _decode_jpeg(data: bytes) -> torch.Tensor:
    if _TORCHCODEC is not None:  # applies the EXIF orientation itself
        return _TORCHCODEC.decode_jpeg(data, mode="RGB")  # type: ignore[no-any-return]
    from torchvision.io import ImageReadMode, decode_jpeg

    return _quietly(
        decode_jpeg, _as_tensor(data), mode=ImageReadMode.RGB, apply_exif_orientation=True
    )


def _decode_png_rgb(data: bytes) -> torch.Tensor:
    # Not torchvision.io.decode_png: it crashes the process (SIGSEGV) on a PNG that fails
    # mid-image (CRC, filter, too few rows) instead of raising.
    pixels: torch.Tensor = _TORCHCODEC.decode_png(data, mode="RGB", output_dtype="auto")
    if pixels.dtype == torch.uint8:  # torchcodec applies the EXIF orientation itself
        return pixels
    return (pixels.to(torch.int32) >> 8).to(torch.uint8)  # no uint16 shifts on CPU


def _decode_with_pillow(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as image:
        oriented = ImageOps.exif_transpose(image)
        if oriented.mode == "P" and "transparency" in oriented.info:
            oriented = oriented.convert("RGBA")  # directly to RGB, Pillow warns
        elif oriented.mode.startswith("I;16"):  # 16-bit grey: convert() would clip at 255
            oriented = Image.fromarray((np.asarray(oriented) >> 8).astype(np.uint8))
        oriented = oriented.convert("RGB")
    return torch.from_numpy(np.array(oriented)).permute(2, 0, 1)


def _checked_png(data: bytes, header: PngHeader) -> bytes:
    """``data`` after checking each chunk's CRC and the pixel data's zlib stream (pyspng
    checks neither, and decodes damaged data to wrong pixels), less any eXIf chunk (a
    bitmap's grid is used as stored)."""
    view = memoryview(data)
    position, exif = 8, None
    inflater = _ZLIB.decompressobj()
    room = header.pixel_data_size  # the stream may inflate to no more than the pixels
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        end = position + 12 + length
        if end > len(data):
            return data  # truncated: the decoder says so
        (crc,) = struct.unpack_from(">I", data, end - 4)
        kind = data[position + 4 : position + 8]
        if zlib.crc32(view[position + 4 : end - 4]) != crc:
            raise ValueError(f"the {kind.decode('latin-1')!r} chunk fails its CRC check")
        if kind == b"IDAT":
            room -= _inflate(inflater, view[position + 8 : end - 4], room)
        elif kind == b"eXIf":
            exif = (position, end)
        position = end
    if not inflater.eof and room == 0:
        raise ValueError("the pixel data's zlib stream does not end after the last row")
    return data if exif is None else data[: exif[0]] + data[exif[1] :]


def _inflate(inflater: Any, chunk: memoryview, room: int) -> int:
    """Inflate ``chunk`` into nothing (the output is dropped a step at a time), checking
    what zlib checks: the deflate data and, at the stream's end, its Adler-32. Returns
    how many bytes it made; raises ValueError past ``room`` (a zlib bomb)."""
    made = 0
    try:
        while True:
            made += len(out := inflater.decompress(chunk, _INFLATE_STEP))
            if made > room:
                raise ValueError("the pixel data inflates to more than its rows")
            chunk = inflater.unconsumed_tail
            if not chunk and len(out) < _INFLATE_STEP:
                return made
    except _ZLIB.error as exc:  # "incorrect data check": the Adler-32 does not match
        raise ValueError(f"the pixel data fails zlib's checks ({exc})") from None


def decode_image(
    data: bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    size: Size = None,
    max_size: int | None = None,
) -> torch.Tensor:
    """Decode an image to ``(3, H, W)`` uint8 RGB with its EXIF orientation applied.

    Alpha is dropped, grey is expanded to three channels, 16-bit PNGs are reduced to 8
    bits. Raises :class:`DecodeError` when no decoder can read the bytes, when the image
    declares more than ``max_pixels`` pixels (``None``: no limit; checked before
    decoding), and when decoding runs out of memory.

    With ``size`` or ``max_size``, the image comes at the size
    ``v2.Resize(size, max_size=max_size)`` gives the oriented image
    (:func:`~segments_torch.sizes.output_size`), resized with antialiasing. A JPEG at
    least twice that size is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that is
    still at least that size (libjpeg-turbo through simplejpeg or Pillow), then resized: a
    fraction of the memory and of the IDCT's time; the pixels differ from those of
    ``v2.Resize(antialias=True)`` of the full decode by a little (measured in
    docs/dataset.md, "Photos at training size").

    Example:
        >>> decode_image(open("photo.jpg", "rb").read()).shape  # doctest: +SKIP
        torch.Size([3, 2736, 3648])
        >>> photo = open("photo.jpg", "rb").read()  # doctest: +SKIP
        >>> decode_image(photo, size=800, max_size=1333).shape  # doctest: +SKIP
        torch.Size([3, 800, 1066])
    """
    width, height = declared_size(data)
    check_pixels("image", width, height, max_pixels)
    resizing = size is not None or max_size is not None
    with _memory_guard("image", width, height, channels=3):
        try:
            scaled = _scaled_jpeg(data, size, max_size) if resizing else None
            if scaled is not None:
                return scaled
            image = _decode_full(data)
        except UnidentifiedImageError:  # its text names only Pillow's buffer object
            raise DecodeError(
                f"cannot decode the image ({_found(data)}): damaged or truncated, no decoder "
                "reads it"
            ) from None
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DecodeError(f"cannot decode the image ({_found(data)}): {exc}") from None
        if not resizing:
            return image
        return _resized(image, output_size(image.shape[-2], image.shape[-1], size, max_size))


def _decode_full(data: bytes) -> torch.Tensor:
    kind = sniff(data)
    try:
        if kind == "jpeg":
            return _decode_jpeg(data)
        if kind == "png" and _TORCHCODEC is not None:
            return _decode_png_rgb(data)
    except RuntimeError as exc:
        if _out_of_memory(exc):
            raise
        # a variant the fast decoder refuses (e.g. CMYK, arithmetic coding): Pillow
    return _decode_with_pillow(data)


def _scaled_jpeg(data: bytes, size: Size, max_size: int | None) -> torch.Tensor | None:
    """A JPEG decoded at a reduced DCT scale and resized to its output size; ``None``
    where that does not apply (not a JPEG every decoder takes, or no scale below 1 that
    is still large enough)."""
    if sniff(data) != "jpeg":
        return None
    frame = _jpeg_frame(data)
    if not frame.for_every_decoder:
        return None
    orientation = _exif_orientation(data)
    turned = orientation >= 5  # a quarter turn or a transposition: sides swap
    shown = (frame.width, frame.height) if turned else (frame.height, frame.width)
    out = output_size(*shown, size, max_size)
    stored = (out[1], out[0]) if turned else out
    # The largest of 1/8, 1/4, 1/2 whose image is larger than the output on both sides, by
    # Pillow's rule (so both decoders read the same scale). One whose pixels would be the
    # output's exactly is passed over: the DCT's reduction then stands for the antialiased
    # resize, and differs from it most.
    fits = min(frame.width // (stored[1] + 1), frame.height // (stored[0] + 1))
    scale = next((s for s in (8, 4, 2) if s <= fits), 1)
    if scale == 1:
        return None  # no reduced scale is larger than the output: decoded in full
    pixels = _jpeg_at_scale(data, scale, frame)
    # The reduced image is ceil(side / s) pixels, its last a partial block: resize by the
    # true factor (out * s / side), not out / reduced, or the content drifts by up to a
    # pixel across the image. In the stored orientation, where the partial block is
    # last; then turned (a permutation, which commutes with the resize).
    factors = [stored[0] * scale / frame.height, stored[1] * scale / frame.width]
    # HWC viewed as CHW: channels-last, where torch's uint8 antialiased resize is fastest
    resized = torch.nn.functional.interpolate(
        pixels.unsqueeze(0),
        scale_factor=factors,
        mode="bilinear",
        antialias=True,
        align_corners=False,
        recompute_scale_factor=False,
    )[0]
    return orient(resized, orientation)


def _jpeg_at_scale(data: bytes, scale: int, frame: _JpegFrame) -> torch.Tensor:
    """A JPEG decoded at DCT scale ``1 / scale``: ``(3, ceil(H / scale), ceil(W / scale))``
    uint8, in a channels-last layout, its EXIF orientation not applied.

    simplejpeg when installed (see the module docstring); Pillow otherwise, and for what
    simplejpeg refuses (it fails on any libjpeg warning, where Pillow decodes on).
    """
    shape = (-(-frame.height // scale), -(-frame.width // scale))
    # simplejpeg decodes at the smallest of libjpeg-turbo's scales (n / 8) whose image is
    # at least the size asked for: 1 / scale, unless a smaller one rounds up to the same
    # size (on images of a few pixels; Pillow then).
    smaller = any(
        -(-frame.height * n // 8) >= shape[0] and -(-frame.width * n // 8) >= shape[1]
        for n in range(1, 8 // scale)
    )
    if _SIMPLEJPEG is not None and not smaller:
        with contextlib.suppress(ValueError):
            array = _SIMPLEJPEG.decode_jpeg(
                data, colorspace="RGB", min_height=shape[0], min_width=shape[1]
            )
            return torch.from_numpy(array).permute(2, 0, 1)
    with Image.open(io.BytesIO(data)) as image:
        # draft takes the largest scale whose image holds the size asked for
        image.draft("RGB", (max(1, frame.width // scale), max(1, frame.height // scale)))
        if image.mode != "RGB":  # grey: draft does not convert it
            image = image.convert("RGB")
        pixels = torch.from_numpy(np.array(image))
    if tuple(pixels.shape[:2]) != shape:
        raise ValueError(f"decoded at {pixels.shape[1]}x{pixels.shape[0]}, not at 1/{scale}")
    return pixels.permute(2, 0, 1)


def _resized(image: torch.Tensor, out: tuple[int, int] | None) -> torch.Tensor:
    """``image`` resized to ``out`` as ``v2.Resize(out, antialias=True)`` does (``None``:
    as it is)."""
    if out is None or tuple(image.shape[-2:]) == out:
        return image
    resized: torch.Tensor = resize(image, list(out), antialias=True)
    return resized


# -- the device path: JPEGs decoded where the model runs ------------------------------------


@dataclass(frozen=True)
class DeviceImage:
    """An image as a DataLoader worker ships it for decoding on the device
    (:func:`prepare_image`): a JPEG as its encoded bytes, anything else decoded.

    Attributes:
        data: a JPEG's bytes as a 1-D uint8 tensor, or the ``(3, H, W)`` decoded image.
        jpeg: whether ``data`` is a JPEG still to decode (:func:`decode_jpegs`).
        orientation: the JPEG's EXIF orientation (1 to 8; 1 where it has none).
        height: the oriented image's height at full size.
        width: its width.
        out: the ``(height, width)`` the image is to be decoded at (``None``: full size);
            an image decoded in the worker is at that size already.
    """

    data: torch.Tensor
    jpeg: bool
    orientation: int
    height: int
    width: int
    out: tuple[int, int] | None = None


def prepare_image(
    data: bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    size: Size = None,
    max_size: int | None = None,
) -> DeviceImage:
    """What a worker does with an image's bytes for decoding on the device: a JPEG that
    every JPEG decoder takes is kept encoded, its size, EXIF orientation and pixel limit
    read from its header; any other image is decoded here (:func:`decode_image`, at the
    size ``size`` and ``max_size`` ask for).

    Example:
        >>> shipped = prepare_image(open("photo.jpg", "rb").read())  # doctest: +SKIP
        >>> shipped.jpeg, shipped.height, shipped.width  # doctest: +SKIP
        (True, 720, 1280)
    """
    if sniff(data) == "jpeg":
        frame = _jpeg_frame(data)
        check_pixels("image", frame.width, frame.height, max_pixels)
        if frame.for_every_decoder:
            orientation = _exif_orientation(data)
            height, width = frame.height, frame.width
            if orientation >= 5:  # a quarter turn or a transposition: sides swap
                height, width = width, height
            out = _output_size(height, width, size, max_size)
            return DeviceImage(_as_tensor(data), True, orientation, height, width, out)
    image = decode_image(data, max_pixels=max_pixels, size=size, max_size=max_size)
    if size is None and max_size is None:
        return DeviceImage(image, False, 1, image.shape[-2], image.shape[-1])
    height, width = oriented_size(data)
    return DeviceImage(image, False, 1, height, width, (image.shape[-2], image.shape[-1]))


def _output_size(
    height: int, width: int, size: Size, max_size: int | None
) -> tuple[int, int] | None:
    """The size an image is resized to, ``None`` where nothing asks for one."""
    if size is None and max_size is None:
        return None
    return output_size(height, width, size, max_size)


def oriented_size(data: bytes) -> tuple[int, int]:
    """``(height, width)`` of an image as shown, EXIF orientation applied, from its
    header alone.

    Example:
        >>> oriented_size(open("portrait.jpg", "rb").read())  # doctest: +SKIP
        (4032, 3024)
    """
    width, height = declared_size(data)
    return (width, height) if _exif_orientation(data) >= 5 else (height, width)


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation of a JPEG (1 where it has none, or an invalid one), as
    Pillow and the decoders read it; from the header only."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """``(..., H, W)`` stored pixels turned as EXIF ``orientation`` says they are shown
    (what ``PIL.ImageOps.exif_transpose`` does), on any device.

    Example:
        >>> orient(torch.tensor([[1, 2], [3, 4]]), 6).tolist()  # a quarter turn clockwise
        [[3, 1], [4, 2]]
    """
    dims = (-2, -1)
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(dims)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(image, -1, dims)
    if orientation == 7:
        return torch.rot90(image.transpose(-2, -1), 2, dims)
    if orientation == 8:
        return torch.rot90(image, 1, dims)
    return image


def decode_jpegs(
    images: Sequence[DeviceImage], device: torch.device | str
) -> list[torch.Tensor | DecodeError]:
    """Decode shipped JPEGs on ``device``, EXIF orientation applied: ``(3, H, W)`` uint8
    each, or the :class:`DecodeError` that one raised (never raised itself, so that one
    bad image does not take its batch along).

    On CUDA, one batched call of torchcodec's nvJPEG decoder (orientation applied here
    where the decoder leaves it out); a JPEG it refuses, and every JPEG on the CPU, is
    decoded as :func:`decode_image` decodes it on the host, so both paths give the same
    pixels wherever they run on the CPU.
    """
    device = torch.device(device)
    if device.type != "cpu" and _TORCHCODEC is not None and images:
        sources = [image.data for image in images]
        try:
            decoded = _TORCHCODEC.decode_jpeg(sources, mode="RGB", device=device)
        except RuntimeError:
            pass  # one of them (at least) is refused: each on its own below
        else:
            turned = not _decoder_orients(device)
            return [
                _resized(orient(pixels, image.orientation) if turned else pixels, image.out)
                for pixels, image in zip(decoded, images, strict=True)
            ]
    results: list[torch.Tensor | DecodeError] = []
    for image in images:
        try:
            pixels = decode_image(image.data.numpy().tobytes(), max_pixels=None, size=image.out)
        except DecodeError as exc:
            results.append(exc)
        else:
            results.append(pixels.to(device, non_blocking=True))
    return results


#: Device type -> whether torchcodec's JPEG decoder there applies the EXIF orientation.
_ORIENTS: dict[str, bool] = {}


def _decoder_orients(device: torch.device) -> bool:
    """Whether torchcodec's decoder on ``device`` applies EXIF orientation itself (its
    CPU decoder does): found once per device type by decoding a 2 x 1 JPEG marked as
    turned a quarter."""
    if device.type not in _ORIENTS:
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = 6
        buffer = io.BytesIO()
        Image.new("RGB", (2, 1)).save(buffer, format="JPEG", exif=exif)
        probe = _TORCHCODEC.decode_jpeg(_as_tensor(buffer.getvalue()), device=device)
        _ORIENTS[device.type] = tuple(probe.shape[-2:]) == (2, 1)
    return _ORIENTS[device.type]


def decode_bitmap_pixels(
    data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Decode a segmentation bitmap to its ``(H, W, C)`` uint8 pixels (``C`` is 4 for
    RGBA, 3 for RGB), after checking it is an 8-bit RGBA or RGB PNG of at most
    ``max_pixels`` pixels, that every chunk's CRC and the pixel data's zlib checksum
    hold."""
    header = png_header(data)
    if header.bit_depth != 8 or header.color_type not in (2, 6):
        raise DecodeError(f"expected an 8-bit RGBA or RGB PNG bitmap, found {header.mode}")
    check_pixels("bitmap", header.width, header.height, max_pixels)
    channels = _PNG_CHANNELS[header.color_type]
    with _memory_guard("bitmap", header.width, header.height, channels):
        try:
            data = _checked_png(data, header)
            if _PYSPNG is not None:
                return torch.from_numpy(_PYSPNG.load(data))
            if _TORCHCODEC is not None:
                pixels = _TORCHCODEC.decode_png(data, mode="UNCHANGED")
                return pixels.permute(1, 2, 0)  # type: ignore[no-any-return]
            with Image.open(io.BytesIO(data)) as image:
                return torch.from_numpy(np.array(image))
        except (RuntimeError, ValueError, OSError) as exc:
            if _out_of_memory(exc):
                raise
            raise DecodeError(f"cannot decode the {header.mode} PNG bitmap: {exc}") from None


def _int32_pixels(pixels: torch.Tensor) -> bool:
    """Whether ``(H, W, 4)`` uint8 pixels can be viewed as int32, one per pixel: four
    bytes a pixel in a row, every pixel 4-byte aligned. ``is_contiguous`` alone is not
    enough: it ignores the strides of dimensions of size 1 (a 1 x 1 view of a CHW tensor)."""
    return bool(
        pixels.shape[-1] == 4
        and pixels.stride(-1) == 1
        and all(stride % 4 == 0 for stride in pixels.stride()[:-1])
        and pixels.storage_offset() % 4 == 0
        and pixels.is_contiguous()
        and sys.byteorder == "little"
    )


def pixels_to_ids(pixels: torch.Tensor) -> torch.Tensor:
    """``(H, W, C)`` uint8 bitmap pixels to ``(H, W)`` int32 ids ``R + 256 G + 65536 B``.

    Pure tensor code: runs where ``pixels`` are, CPU or CUDA.
    """
    if _int32_pixels(pixels):
        # One pass: the 4 bytes of a pixel read as a little-endian int32 are
        # R | G << 8 | B << 16 | A << 24; masking drops alpha.
        return pixels.view(torch.int32).squeeze(-1) & _MAX_ID
    channels = pixels[..., :3].to(torch.int32)
    return channels[..., 0] | (channels[..., 1] << 8) | (channels[..., 2] << 16)


def decode_bitmap(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decode a segmentation bitmap (8-bit RGBA or RGB PNG) to ``(H, W)`` int32 ids.

    Raises :class:`DecodeError` naming the PNG mode for any other kind of PNG, what the
    bytes are when they are not a PNG, and why a damaged or too large one is refused
    (see :func:`decode_bitmap_pixels`).
    """
    pixels = decode_bitmap_pixels(data, max_pixels=max_pixels)
    if _int32_pixels(pixels):
        # The decoder's buffer is ours alone: mask alpha off in place, so no second
        # H x W buffer is allocated and faulted in (a third of the bitmap's cost at 10 MP).
        return pixels.view(torch.int32).squeeze(-1).bitwise_and_(_MAX_ID)
    return pixels_to_ids(pixels)


def encode_bitmap(ids: torch.Tensor | npt.NDArray[np.integer[Any]]) -> bytes:
    """Encode ``(H, W)`` instance ids (0 to 2^24 - 1) as an 8-bit RGBA PNG, alpha 255."""
    array = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    if array.ndim != 2:
        raise ValueError(f"expected (H, W) ids, found shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > _MAX_ID):
        raise ValueError(f"ids must lie in 0..{_MAX_ID}, found {array.min()}..{array.max()}")
    packed = array.astype("<u4", order="C") | np.uint32(0xFF000000)
    rgba = packed.view(np.uint8).reshape(*array.shape, 4)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


# -- completeness: what prefetch checks before it caches bytes it does not decode ----------

#: The next JPEG marker: 0xFF (after any fill 0xFF bytes) and a code other than 0x00 (a
#: stuffed byte of entropy-coded data) and RST0-7 (restart markers inside that data).
_JPEG_MARKER = re.compile(rb"\xff([^\x00\xff\xd0-\xd7])")
#: JPEG markers without a length field: TEM and EOI (RST0-7 are skipped by the search).
_JPEG_STANDALONE = frozenset({0x01, 0xD9})


def _jpeg_is_complete(data: bytes) -> bool:
    """Whether the marker segments of a JPEG lead from SOI to an EOI marker. Bytes after
    EOI (padding, a camera's trailer) do not matter; an EOI inside a segment (the EXIF
    thumbnail's) is skipped with its segment."""
    position = 2
    while match := _JPEG_MARKER.search(data, position):
        marker, position = match[1][0], match.end()
        if marker == 0xD9:
            return True
        if marker not in _JPEG_STANDALONE:
            if position + 2 > len(data):
                return False
            # A segment's length counts its two length bytes; after SOS (0xDA) the
            # entropy-coded data runs to the next marker, which the search finds.
            (length,) = struct.unpack_from(">H", data, position)
            position += length
    return False


def _png_problem(data: bytes) -> str | None:
    """What keeps a PNG from being whole (``None``: its chunks lead to IEND, each CRC
    right)."""
    position = 8
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            break
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(memoryview(data)[position + 4 : end - 4]) != crc:
            return f"a PNG whose {kind.decode('latin-1')!r} chunk fails its CRC check"
        if kind == b"IEND":
            return None
        position = end
    return "a PNG without its IEND chunk (truncated?)"


def _looks_like(data: bytes) -> str:
    """What bytes that are no image seem to be: ``"HTML text"`` (a proxy's or server's
    error page sent with status 200), ``"XML text"`` (an object store's error), else as
    :func:`sniff` names them."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "HTML text"
    if head.startswith(b"<?xml"):
        return "XML text"
    return _found(data)


def check_complete(data: bytes) -> None:
    """Check, at little cost and without decoding, that ``data`` is a whole image of a
    known format: what :func:`~segments_torch.storage.prefetch` asks of downloaded bytes
    before it caches them, so an error page or a cut-short body never becomes a cache
    entry.

    - JPEG: its markers lead from SOI to an EOI marker (anything after EOI is allowed:
      padding, a camera's trailer).
    - PNG: from the signature through IEND, every chunk's CRC right.
    - Other formats Pillow reads (WebP, GIF, BMP, TIFF; rare in releases): decoded by
      Pillow, as its ``verify()`` passes a cut-short GIF, BMP or TIFF.

    Raises:
        DecodeError: saying what was found, e.g. ``expected an image, found HTML text`` or
            ``a JPEG without its end marker (truncated?)``.

    Example:
        >>> check_complete(encode_bitmap(torch.zeros((2, 2), dtype=torch.int32)))
        >>> check_complete(b"<!DOCTYPE html><title>502 Bad Gateway</title>")
        Traceback (most recent call last):
        segments_torch.errors.DecodeError: expected an image, found HTML text
    """
    kind = sniff(data)
    if kind == "jpeg":
        if not _jpeg_is_complete(data):
            raise DecodeError("a JPEG without its end marker (truncated?)")
        return
    if kind == "png":
        problem = _png_problem(data)
        if problem is not None:
            raise DecodeError(problem)
        return
    # The other formats, rare in releases: Pillow decodes them, as its verify() passes a
    # cut-short GIF, BMP or TIFF. Its plugins fail with many types of error.
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if kind == "unknown":
            raise DecodeError(f"expected an image, found {_looks_like(data)}") from None
        raise DecodeError(f"a damaged {kind.upper()} image (truncated?)") from None
    except Exception as exc:
        raise DecodeError(f"a damaged {kind.upper()} image: {exc}") from None
    with image:
        try:
            image.load()
        except Exception as exc:
            raise DecodeError(f"a damaged {image.format} image: {exc}") from None
