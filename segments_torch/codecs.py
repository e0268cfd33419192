"""Bytes to tensors and back: the one place that decides how bytes become pixels.

- :func:`decode_image`: a photo (JPEG, PNG, and what Pillow reads: BMP, WebP, TIFF, ...)
  to a ``(3, H, W)`` uint8 tensor with its EXIF orientation applied, as the labelling tool
  shows it (the bitmap is drawn on the oriented image).
- :func:`decode_bitmap`: a segmentation bitmap (8-bit RGBA or RGB PNG) to an ``(H, W)``
  int32 map of instance ids, ``id = R + 256 G + 65536 B``.
- :func:`encode_bitmap`: the reverse, ids to an RGBA PNG.

Which library decodes what is chosen here alone, by measurement
(``benchmarks/bench_decoders.py``): torchvision.io's decoders are deprecated since
torchvision 0.29 in favour of torchcodec, so torchcodec is used when it is installed,
torchvision.io otherwise (its deprecation warning is kept away from users), pyspng for
bitmaps when installed, and Pillow for the formats the others do not read.

Example:
    >>> ids = torch.tensor([[0, 300], [70000, 1]], dtype=torch.int32)
    >>> decode_bitmap(encode_bitmap(ids)).tolist()
    [[0, 300], [70000, 1]]
"""

from __future__ import annotations

import io
import struct
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageOps

from .errors import DecodeError

__all__ = [
    "PngHeader",
    "decode_bitmap",
    "decode_bitmap_pixels",
    "decode_image",
    "encode_bitmap",
    "pixels_to_ids",
    "png_header",
    "sniff",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
_MAX_ID = 2**24 - 1


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

    @property
    def mode(self) -> str:
        """E.g. ``"8-bit RGBA"``, ``"16-bit RGB"``, ``"8-bit palette"``."""
        kind = _PNG_COLOR_TYPES.get(self.color_type, f"color type {self.color_type}")
        return f"{self.bit_depth}-bit {kind}"


def png_header(data: bytes) -> PngHeader:
    """Read a PNG's IHDR chunk; raises :class:`DecodeError` for anything else."""
    if data[:8] != _PNG_SIGNATURE:
        raise DecodeError(f"expected a PNG, found {_found(data)}")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise DecodeError("a PNG without its IHDR header (truncated?)")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
    return PngHeader(width, height, bit_depth, color_type)


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


_TORCHCODEC = _torchcodec()
_PYSPNG = _pyspng()


def _decode_jpeg(data: bytes) -> torch.Tensor:
    if _TORCHCODEC is not None:  # applies the EXIF orientation itself
        return _TORCHCODEC.decode_jpeg(data, mode="RGB")  # type: ignore[no-any-return]
    from torchvision.io import ImageReadMode, decode_jpeg

    return _quietly(
        decode_jpeg, _as_tensor(data), mode=ImageReadMode.RGB, apply_exif_orientation=True
    )


def _decode_png_rgb(data: bytes) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_png

    pixels = _quietly(
        decode_png, _as_tensor(data), mode=ImageReadMode.RGB, apply_exif_orientation=True
    )
    return pixels if pixels.dtype == torch.uint8 else (pixels >> 8).to(torch.uint8)


def _decode_with_pillow(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as image:
        oriented = ImageOps.exif_transpose(image).convert("RGB")
    return torch.from_numpy(np.array(oriented)).permute(2, 0, 1)


def decode_image(data: bytes) -> torch.Tensor:
    """Decode an image to ``(3, H, W)`` uint8 RGB with its EXIF orientation applied.

    Alpha is dropped, grey is expanded to three channels, 16-bit PNGs are reduced to 8
    bits. Raises :class:`DecodeError` when no decoder can read the bytes.

    Example:
        >>> decode_image(open("photo.jpg", "rb").read()).shape  # doctest: +SKIP
        torch.Size([3, 720, 1280])
    """
    kind = sniff(data)
    try:
        if kind == "jpeg":
            return _decode_jpeg(data)
        if kind == "png":
            return _decode_png_rgb(data)
    except RuntimeError:
        pass  # a variant the fast decoder refuses (e.g. CMYK, arithmetic coding): Pillow
    try:
        return _decode_with_pillow(data)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"cannot decode the image ({_found(data)}): {exc}") from None


def decode_bitmap_pixels(data: bytes) -> torch.Tensor:
    """Decode a segmentation bitmap to its ``(H, W, C)`` uint8 pixels (``C`` is 4 for
    RGBA, 3 for RGB), after checking it is an 8-bit RGBA or RGB PNG."""
    header = png_header(data)
    if header.bit_depth != 8 or header.color_type not in (2, 6):
        raise DecodeError(f"expected an 8-bit RGBA or RGB PNG bitmap, found {header.mode}")
    try:
        if _PYSPNG is not None:
            return torch.from_numpy(_PYSPNG.load(data))
        from torchvision.io import ImageReadMode, decode_png

        pixels = _quietly(decode_png, _as_tensor(data), mode=ImageReadMode.UNCHANGED)
        return pixels.permute(1, 2, 0)
    except (RuntimeError, ValueError) as exc:
        raise DecodeError(f"cannot decode the {header.mode} PNG bitmap: {exc}") from None


def pixels_to_ids(pixels: torch.Tensor) -> torch.Tensor:
    """``(H, W, C)`` uint8 bitmap pixels to ``(H, W)`` int32 ids ``R + 256 G + 65536 B``.

    Pure tensor code: runs where ``pixels`` are, CPU or CUDA.
    """
    if pixels.shape[-1] == 4 and pixels.is_contiguous() and sys.byteorder == "little":
        # One pass: the 4 bytes of a pixel read as a little-endian int32 are
        # R | G << 8 | B << 16 | A << 24; masking drops alpha.
        return pixels.view(torch.int32).squeeze(-1) & _MAX_ID
    channels = pixels[..., :3].to(torch.int32)
    return channels[..., 0] | (channels[..., 1] << 8) | (channels[..., 2] << 16)


def decode_bitmap(data: bytes) -> torch.Tensor:
    """Decode a segmentation bitmap (8-bit RGBA or RGB PNG) to ``(H, W)`` int32 ids.

    Raises :class:`DecodeError` naming the PNG mode for any other kind of PNG, and what
    the bytes are when they are not a PNG.
    """
    return pixels_to_ids(decode_bitmap_pixels(data))


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
