"""Tests of segments_torch.codecs: image decoding (with EXIF orientation), bitmap
decoding and encoding, format sniffing, and agreement between the decoder back-ends.

All test data is generated here with numpy and Pillow. PNGs that Pillow cannot write
(16-bit RGB/RGBA, unknown colour types, corrupted files) are built by :func:`make_png`.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageOps
from torchvision.transforms import v2

from segments_torch import codecs
from segments_torch.codecs import (
    PngHeader,
    decode_bitmap,
    decode_bitmap_pixels,
    decode_image,
    encode_bitmap,
    pixels_to_ids,
    png_header,
    sniff,
)
from segments_torch.errors import DecodeError, SegmentsTorchError

U8 = npt.NDArray[np.uint8]
MAX_ID = 2**24 - 1
SPECIAL_IDS = [0, 1, 255, 256, 65535, 65536, MAX_ID]
REPO = Path(__file__).resolve().parents[1]
EXIF_ORIENTATION = 0x0112

# What each EXIF orientation does to the stored pixels (H, W, C) to give the displayed
# image, written independently of Pillow.
ORIENT: dict[int, Callable[[U8], U8]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


# -- helpers ----------------------------------------------------------------------------


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def random_u8(shape: tuple[int, ...], seed: int = 0) -> U8:
    return rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode_error(decode: Callable[[bytes], Any], data: bytes) -> str:
    """The message of the DecodeError that ``decode(data)`` raises."""
    with pytest.raises(DecodeError) as info:
        decode(data)
    return str(info.value)


def exif(orientation: int) -> Image.Exif:
    tags = Image.Exif()
    tags[EXIF_ORIENTATION] = orientation
    return tags


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def make_png(
    samples: npt.NDArray[Any], bit_depth: int, color_type: int, *, level: int = 6
) -> bytes:
    """A PNG of ``samples`` (H, W) or (H, W, C), 8 or 16 bits per sample, no filtering."""
    height, width = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = np.ascontiguousarray(samples.astype(dtype)).reshape(height, -1).view(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    return png_of_scanlines(raw, width, height, bit_depth, color_type, level=level)


def png_of_scanlines(
    raw: bytes, width: int, height: int, bit_depth: int, color_type: int, *, level: int = 6
) -> bytes:
    """A PNG whose IDAT holds ``raw`` (filter byte + samples per row), checksums correct."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw, level))
        + png_chunk(b"IEND", b"")
    )


def corrupted_png(rgba: U8) -> tuple[bytes, int]:
    """An RGBA PNG whose pixel data has one byte flipped, the checksums left as they were:
    the deflate stream is stored (level 0), so it stays well-formed and only the chunk CRC
    and zlib's Adler-32 can notice. Returns the bytes and the index of the damaged sample
    in row 0."""
    data = bytearray(make_png(rgba, 8, 6, level=0))
    idat = data.index(b"IDAT")
    # IDAT payload: 2 bytes zlib header, 5 bytes stored-block header, then row 0's filter
    # byte; sample k of row 0 follows it.
    sample = 5
    data[idat + 4 + 2 + 5 + 1 + sample] ^= 0xFF
    return bytes(data), sample


def ids_of(rgb: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Reference ids R + 256 G + 65536 B of (H, W, >=3) pixels."""
    channels = rgb[..., :3].astype(np.int64)
    return channels[..., 0] + 256 * channels[..., 1] + 65536 * channels[..., 2]


def hwc(image: torch.Tensor) -> npt.NDArray[Any]:
    """A decoded (3, H, W) image as (H, W, 3) numpy."""
    return image.permute(1, 2, 0).numpy()


def pillow_rgb(data: bytes) -> U8:
    """What Pillow shows: EXIF orientation applied, converted to RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return np.array(ImageOps.exif_transpose(image).convert("RGB"))


def assert_image(image: torch.Tensor, expected: npt.NDArray[Any]) -> None:
    """``image`` is a (3, H, W) uint8 tensor with exactly the pixels ``expected`` (H, W, 3)."""
    assert isinstance(image, torch.Tensor)
    assert image.dtype == torch.uint8
    assert tuple(image.shape) == (3, *expected.shape[:2])
    np.testing.assert_array_equal(hwc(image), expected)


def blocks(rows: int = 2, cols: int = 3, size: int = 8) -> U8:
    """An asymmetric image of ``rows`` x ``cols`` flat blocks of distinct saturated colours,
    each ``size`` pixels square (8: aligned with JPEG's DCT blocks)."""
    palette = np.array(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]],
        dtype=np.uint8,
    )
    grid = palette[: rows * cols].reshape(rows, cols, 3)
    return np.repeat(np.repeat(grid, size, axis=0), size, axis=1)


def optional_package(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, attribute: str
) -> str:
    """The fixtures' param: the package's name (the test skips when it is not installed)
    or "without-" and the name (``codecs.<attribute>`` set to None, as if not installed)."""
    name: str = request.param
    if name.startswith("without-"):
        monkeypatch.setattr(codecs, attribute, None)
    elif getattr(codecs, attribute) is None:
        pytest.skip(f"{name} is not installed")
    return name


@pytest.fixture(params=["pyspng", "without-pyspng"])
def bitmap_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once with pyspng decoding bitmaps (when installed), once as if pyspng
    were not installed (the fallback decoder)."""
    return optional_package(request, monkeypatch, "_PYSPNG")


@pytest.fixture(params=["torchcodec", "without-torchcodec"])
def image_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once with torchcodec (when installed), once as if it were not
    installed (torchvision.io and Pillow)."""
    return optional_package(request, monkeypatch, "_TORCHCODEC")


@pytest.fixture
def no_deprecation_warnings() -> Iterator[None]:
    """Fails the test if its body emits a DeprecationWarning (e.g. torchvision.io's)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert deprecations == []


# -- 1. encode_bitmap / decode_bitmap round trip ---------------------------------------

ids_arrays = hnp.arrays(
    dtype=np.int64,
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=20),
    elements=st.one_of(st.sampled_from(SPECIAL_IDS), st.integers(0, MAX_ID)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=ids_arrays, as_type=st.sampled_from(["torch.int32", "torch.int64", "uint32", "int64"]))
def test_bitmap_round_trip(ids, as_type):
    source: torch.Tensor | npt.NDArray[Any]
    if as_type == "torch.int32":
        source = torch.from_numpy(ids.astype(np.int32))
    elif as_type == "torch.int64":
        source = torch.from_numpy(ids)
    elif as_type == "uint32":
        source = ids.astype(np.uint32)
    else:
        source = ids
    decoded = decode_bitmap(encode_bitmap(source))
    assert decoded.dtype == torch.int32
    assert tuple(decoded.shape) == ids.shape
    np.testing.assert_array_equal(decoded.numpy(), ids)


@settings(max_examples=30, deadline=None)
@given(ids=ids_arrays)
def test_bitmap_round_trip_same_on_every_decoder(ids):
    data = encode_bitmap(ids)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codecs, "_PYSPNG", None)
        without_pyspng = decode_bitmap(data)
    by_default = decode_bitmap(data)
    assert by_default.dtype == without_pyspng.dtype == torch.int32
    assert torch.equal(by_default, without_pyspng)
    np.testing.assert_array_equal(by_default.numpy(), ids)


def test_round_trip_of_the_boundary_ids(bitmap_decoder):
    ids = torch.tensor([SPECIAL_IDS, SPECIAL_IDS[::-1]], dtype=torch.int32)
    assert decode_bitmap(encode_bitmap(ids)).tolist() == ids.tolist()


def test_round_trip_1x1():
    for value in SPECIAL_IDS:
        assert decode_bitmap(encode_bitmap(np.array([[value]], dtype=np.uint32))).tolist() == [
            [value]
        ]


def test_encoded_bitmap_is_an_8_bit_rgba_png_with_opaque_alpha():
    ids = np.array([[0, 1, 255], [256, 65536, MAX_ID]], dtype=np.int64)
    data = encode_bitmap(ids)
    assert sniff(data) == "png"
    assert png_header(data) == PngHeader(width=3, height=2, bit_depth=8, color_type=6)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGBA"
        rgba = np.array(image)
    assert rgba.tolist() == [
        [[0, 0, 0, 255], [1, 0, 0, 255], [255, 0, 0, 255]],
        [[0, 1, 0, 255], [0, 0, 1, 255], [255, 255, 255, 255]],
    ]


def test_encode_bitmap_accepts_a_transposed_tensor():
    ids = torch.arange(12, dtype=torch.int32).reshape(3, 4) * 1000003 % (MAX_ID + 1)
    assert not ids.t().is_contiguous()
    assert decode_bitmap(encode_bitmap(ids.t())).tolist() == ids.t().tolist()


def test_encode_bitmap_accepts_fortran_order_and_strided_arrays():
    ids = rng(19).integers(0, MAX_ID + 1, (5, 8))
    for array in (np.asfortranarray(ids), ids[:, ::2], ids[::-1], ids.astype(np.uint32).T):
        assert decode_bitmap(encode_bitmap(array)).tolist() == array.tolist()


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([[0, -1], [5, 2]]), "ids must lie in 0..16777215, found -1..5"),
        (np.array([[0, 2**24]]), "ids must lie in 0..16777215, found 0..16777216"),
        (
            np.array([[3, 2**32 - 1]], dtype=np.uint32),
            "ids must lie in 0..16777215, found 3..4294967295",
        ),
        (torch.tensor([[7, -3]], dtype=torch.int32), "ids must lie in 0..16777215, found -3..7"),
        (np.array([1, 2, 3]), "expected (H, W) ids, found shape (3,)"),
        (np.zeros((2, 2, 1), dtype=np.int64), "expected (H, W) ids, found shape (2, 2, 1)"),
        (torch.zeros((1, 2, 3), dtype=torch.int32), "expected (H, W) ids, found shape (1, 2, 3)"),
        (np.int64(5), "expected (H, W) ids, found shape ()"),
    ],
)
def test_encode_bitmap_refuses(ids, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        encode_bitmap(ids)
    assert str(info.value) == message


# -- 2. bitmaps written by Pillow, pixels_to_ids ------------------------------------------


@pytest.mark.parametrize("alpha", ["opaque", "varying"])
def test_decode_bitmap_of_pillow_rgba(bitmap_decoder, alpha):
    rgba = random_u8((5, 7, 4), seed=1)
    if alpha == "opaque":
        rgba[..., 3] = 255
    else:
        rgba[..., 3] = np.arange(35, dtype=np.uint8).reshape(5, 7)  # includes 0: alpha ignored
    data = encode(Image.fromarray(rgba, mode="RGBA"), "PNG")
    assert png_header(data).mode == "8-bit RGBA"
    ids = decode_bitmap(data)
    assert ids.dtype == torch.int32
    assert tuple(ids.shape) == (5, 7)
    assert ids.tolist() == ids_of(rgba).tolist()


def test_decode_bitmap_of_pillow_rgb(bitmap_decoder):
    rgb = random_u8((12, 16, 3), seed=2)
    rgb[0, 0] = [255, 255, 255]
    rgb[0, 1] = [0, 0, 0]
    data = encode(Image.fromarray(rgb), "PNG")
    assert png_header(data).mode == "8-bit RGB"
    ids = decode_bitmap(data)
    assert ids.dtype == torch.int32
    assert tuple(ids.shape) == (12, 16)
    assert ids.tolist() == ids_of(rgb).tolist()
    assert ids[0, 0].item() == MAX_ID
    assert ids[0, 1].item() == 0


def test_decode_bitmap_exact_values():
    rgba = np.array(
        [
            [[1, 0, 0, 255], [0, 1, 0, 255], [0, 0, 1, 255]],
            [[10, 20, 30, 7], [255, 255, 255, 0], [0, 0, 0, 0]],
        ],
        dtype=np.uint8,
    )
    data = encode(Image.fromarray(rgba, mode="RGBA"), "PNG")
    assert decode_bitmap(data).tolist() == [
        [1, 256, 65536],
        [10 + 20 * 256 + 30 * 65536, MAX_ID, 0],
    ]


@pytest.mark.parametrize("channels", [4, 3])
def test_decode_bitmap_pixels(bitmap_decoder, channels):
    pixels = random_u8((5, 7, channels), seed=3)
    if channels == 4:
        pixels[..., 3] = 255
    data = encode(Image.fromarray(pixels), "PNG")
    decoded = decode_bitmap_pixels(data)
    assert decoded.dtype == torch.uint8
    assert tuple(decoded.shape) == (5, 7, channels)
    np.testing.assert_array_equal(decoded.numpy(), pixels)


def test_pixels_to_ids_layouts_agree():
    rgba = random_u8((6, 9, 4), seed=4)
    expected = ids_of(rgba).tolist()
    contiguous = torch.from_numpy(rgba.copy())
    chw = contiguous.permute(2, 0, 1).contiguous()
    permuted = chw.permute(1, 2, 0)  # a (H, W, 4) view of a CHW tensor
    assert not permuted.is_contiguous()
    rgb = torch.from_numpy(np.ascontiguousarray(rgba[..., :3]))
    rgb_view = contiguous[..., :3]  # non-contiguous (H, W, 3)
    every_other_column = torch.from_numpy(np.repeat(rgba, 2, axis=1))[:, ::2]
    assert not every_other_column.is_contiguous()
    for pixels in (contiguous, permuted, rgb, rgb_view, every_other_column):
        ids = pixels_to_ids(pixels)
        assert ids.dtype == torch.int32
        assert tuple(ids.shape) == (6, 9)
        assert ids.tolist() == expected


def test_pixels_to_ids_ignores_alpha():
    rgba = random_u8((4, 4, 4), seed=5)
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert torch.equal(
        pixels_to_ids(torch.from_numpy(rgba)), pixels_to_ids(torch.from_numpy(opaque))
    )
    assert pixels_to_ids(torch.tensor([[[255, 255, 255, 255]]], dtype=torch.uint8)).tolist() == [
        [MAX_ID]
    ]


def test_pixels_to_ids_of_a_batch():
    batch = random_u8((2, 3, 5, 4), seed=6)
    ids = pixels_to_ids(torch.from_numpy(batch))
    assert tuple(ids.shape) == (2, 3, 5)
    assert ids.tolist() == ids_of(batch).tolist()


def test_pixels_to_ids_of_a_contiguous_view_at_an_odd_offset():
    # A contiguous (H, W, 4) view whose storage offset is not a multiple of 4 (e.g. a
    # bitmap sliced out of a flat byte buffer): the int32 reinterpretation cannot be used.
    flat = torch.from_numpy(random_u8((1 + 2 * 3 * 4,), seed=7))
    pixels = flat[1:].view(2, 3, 4)
    assert pixels.is_contiguous()
    assert pixels.storage_offset() == 1
    assert pixels_to_ids(pixels).tolist() == ids_of(pixels.numpy()).tolist()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pixels_to_ids_on_cuda():
    rgba = torch.from_numpy(random_u8((5, 7, 4), seed=8))
    on_cpu = pixels_to_ids(rgba)
    for pixels in (rgba, rgba.permute(2, 0, 1).contiguous().permute(1, 2, 0), rgba[..., :3]):
        ids = pixels_to_ids(pixels.cuda())
        assert ids.device.type == "cuda"
        assert torch.equal(ids.cpu(), on_cpu)


def test_decode_bitmap_ignores_exif_orientation(bitmap_decoder):
    # A bitmap is drawn on the oriented image: its pixel grid is used as stored.
    rgba = random_u8((3, 5, 4), seed=9)
    rgba[..., 3] = 255
    data = encode(Image.fromarray(rgba, mode="RGBA"), "PNG", exif=exif(6))
    assert b"eXIf" in data
    assert decode_bitmap(data).tolist() == ids_of(rgba).tolist()


# -- 3. refused bitmaps --------------------------------------------------------------------

BITMAP_EXPECTED = "expected an 8-bit RGBA or RGB PNG bitmap, found "


def refused_pngs() -> list[tuple[str, bytes, str]]:
    grey = random_u8((5, 7), seed=10)
    rgb = random_u8((5, 7, 3), seed=11)
    grey16 = rng(12).integers(0, 2**16, (5, 7), dtype=np.uint16)
    many_colours = Image.fromarray(rgb).quantize(colors=200)
    four_colours = Image.fromarray(rgb).quantize(colors=4)
    return [
        (
            "16-bit grayscale (Pillow I;16)",
            encode(Image.fromarray(grey16), "PNG"),
            "16-bit grayscale",
        ),
        ("16-bit RGBA", make_png(rng(13).integers(0, 2**16, (5, 7, 4)), 16, 6), "16-bit RGBA"),
        ("16-bit RGB", make_png(rng(14).integers(0, 2**16, (5, 7, 3)), 16, 2), "16-bit RGB"),
        ("palette, 200 colours", encode(many_colours, "PNG"), "8-bit palette"),
        ("palette, 4 colours", encode(four_colours, "PNG"), "2-bit palette"),
        ("grayscale", encode(Image.fromarray(grey), "PNG"), "8-bit grayscale"),
        (
            "grayscale+alpha",
            encode(Image.fromarray(np.dstack([grey, grey]), mode="LA"), "PNG"),
            "8-bit grayscale+alpha",
        ),
        ("1-bit", encode(Image.fromarray(grey).convert("1"), "PNG"), "1-bit grayscale"),
        ("colour type 5", make_png(grey, 8, 5), "8-bit color type 5"),
    ]


@pytest.mark.parametrize(
    ("data", "mode"),
    [(data, mode) for _, data, mode in refused_pngs()],
    ids=[name for name, _, _ in refused_pngs()],
)
def test_decode_bitmap_refuses_other_pngs(bitmap_decoder, data, mode):
    assert png_header(data).mode == mode
    assert decode_error(decode_bitmap, data) == BITMAP_EXPECTED + mode


def test_decode_error_is_a_segments_torch_error_and_a_value_error():
    with pytest.raises(DecodeError) as info:
        decode_bitmap(b"")
    assert isinstance(info.value, SegmentsTorchError)
    assert isinstance(info.value, ValueError)


def non_png_files() -> list[tuple[str, bytes, str]]:
    image = Image.fromarray(random_u8((4, 5, 3), seed=15))
    return [
        ("jpeg", encode(image, "JPEG"), "expected a PNG, found JPEG data"),
        ("webp", encode(image, "WEBP", lossless=True), "expected a PNG, found WEBP data"),
        ("gif", encode(image.quantize(8), "GIF"), "expected a PNG, found GIF data"),
        ("bmp", encode(image, "BMP"), "expected a PNG, found BMP data"),
        ("tiff", encode(image, "TIFF"), "expected a PNG, found TIFF data"),
        ("empty", b"", "expected a PNG, found no data (0 bytes)"),
        (
            "text",
            b"hello world, not a png",
            "expected a PNG, found unknown data starting b'hello wo'",
        ),
        (
            "binary",
            b"\x00\x01\xfe\xffabcdefgh",
            "expected a PNG, found unknown data starting b'\\x00\\x01\\xfe\\xffabcd'",
        ),
        ("short", b"\x89PN", "expected a PNG, found unknown data starting b'\\x89PN'"),
        ("html", b"<?xml version", "expected a PNG, found unknown data starting b'<?xml ve'"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [(d, m) for _, d, m in non_png_files()],
    ids=[n for n, _, _ in non_png_files()],
)
def test_decode_bitmap_refuses_what_is_not_a_png(bitmap_decoder, data, message):
    assert decode_error(decode_bitmap, data) == message


def test_decode_bitmap_without_ihdr():
    valid = encode_bitmap(np.zeros((3, 3), dtype=np.int64))
    for data in (valid[:8], valid[:32], valid[:8] + valid[33:]):
        assert decode_error(decode_bitmap, data) == "a PNG without its IHDR header (truncated?)"


@pytest.mark.parametrize("keep", [33, 40, 60])
def test_decode_bitmap_of_a_truncated_png(bitmap_decoder, keep):
    rgba = random_u8((12, 16, 4), seed=16)
    data = encode(Image.fromarray(rgba, mode="RGBA"), "PNG")
    assert len(data) > keep
    assert decode_error(decode_bitmap, data[:keep]).startswith(
        "cannot decode the 8-bit RGBA PNG bitmap: "
    )


def test_decode_bitmap_of_a_truncated_rgb_png(bitmap_decoder):
    data = encode(Image.fromarray(random_u8((12, 16, 3), seed=17)), "PNG")
    assert decode_error(decode_bitmap, data[:50]).startswith(
        "cannot decode the 8-bit RGB PNG bitmap: "
    )


def test_corrupted_png_fixture_is_what_it_claims():
    rgba = random_u8((4, 6, 4), seed=18)
    rgba[..., 3] = 255
    intact = make_png(rgba, 8, 6, level=0)
    with Image.open(io.BytesIO(intact)) as image:
        np.testing.assert_array_equal(np.array(image), rgba)
    damaged, sample = corrupted_png(rgba)
    assert len(damaged) == len(intact)
    assert sum(a != b for a, b in zip(damaged, intact, strict=True)) == 1
    with Image.open(io.BytesIO(damaged)) as image, pytest.raises(OSError, match="broken data"):
        image.load()  # Pillow notices
    assert sample == 5
    # Without the checksums, the damage is exactly one sample of row 0.
    raw_deflate = damaged[damaged.index(b"IDAT") + 4 + 2 :]  # after the 2-byte zlib header
    payload = zlib.decompressobj(-15).decompress(raw_deflate)
    row0 = np.frombuffer(payload[1 : 1 + 6 * 4], dtype=np.uint8)
    assert np.flatnonzero(row0 != rgba[0].reshape(-1)).tolist() == [sample]


def run_forked(check: Callable[[bytes], str], data: bytes) -> tuple[int, str]:
    """Run ``check(data)`` in a forked child, so that a decoder crashing the process does
    not take the test run down with it. Returns the child's wait status and what it said:
    ``check``'s answer, ``"DecodeError: ..."``, or another exception's type and text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            try:
                said = check(data)
            except DecodeError as exc:
                said = f"DecodeError: {exc}"
            except BaseException as exc:
                said = f"{type(exc).__name__}: {exc}"
            os.write(write, said.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return status, said


def shape_of(decode: Callable[[bytes], torch.Tensor]) -> Callable[[bytes], str]:
    return lambda data: f"decoded {tuple(decode(data).shape)}"


def crashed(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"the decoder crashed the process: signal {os.WTERMSIG(status)}"
    return ""


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

MALFORMED_RGBA = random_u8((4, 6, 4), seed=18)
MALFORMED_RGBA[..., 3] = 255


def malformed_pngs() -> dict[str, bytes]:
    """8-bit RGBA PNGs (4 x 6) with an intact IHDR and broken image data."""
    rows = [b"\x00" + row.tobytes() for row in MALFORMED_RGBA.reshape(4, -1)]
    return {
        # One byte of pixel data changed, the checksums left as they were.
        "flipped-byte": corrupted_png(MALFORMED_RGBA)[0],
        # Checksums right, but a scanline filter type that does not exist.
        "bad-filter": png_of_scanlines(b"\x09" + b"".join(rows)[1:], 6, 4, 8, 6),
        # Checksums right, but two of the four rows.
        "too-few-rows": png_of_scanlines(b"".join(rows[:2]), 6, 4, 8, 6),
    }


@needs_fork
def test_run_forked_reports_results():
    data = encode_bitmap(np.zeros((2, 3), dtype=np.int64))
    assert run_forked(shape_of(decode_bitmap), data) == (0, "decoded (2, 3)")
    assert run_forked(shape_of(decode_bitmap), b"") == (
        0,
        "DecodeError: expected a PNG, found no data (0 bytes)",
    )
    assert run_forked(lambda data: str(1 // len(data)), b"")[1] == (
        "ZeroDivisionError: integer division or modulo by zero"
    )


def test_malformed_pngs_are_what_they_claim():
    pngs = malformed_pngs()
    for data in pngs.values():
        assert png_header(data) == PngHeader(width=6, height=4, bit_depth=8, color_type=6)
    with (
        Image.open(io.BytesIO(pngs["flipped-byte"])) as image,
        pytest.raises(OSError, match=r"^broken data stream when reading image file$"),
    ):
        image.load()
    with (
        Image.open(io.BytesIO(pngs["bad-filter"])) as image,
        pytest.raises(
            OSError, match=r"^unrecognized data stream contents when reading image file$"
        ),
    ):
        image.load()
    short = pngs["too-few-rows"]
    (length,) = struct.unpack(">I", short[33:37])
    assert short[37:41] == b"IDAT"
    assert len(zlib.decompress(short[41 : 41 + length])) == 2 * (1 + 6 * 4)  # of 4 rows


@needs_fork
@pytest.mark.parametrize("case", list(malformed_pngs()))
def test_decode_bitmap_of_a_malformed_png(bitmap_decoder, case):
    # The bitmap must be refused with a DecodeError: not decoded to wrong instance ids,
    # and not by crashing the process (a DataLoader worker), which on_error cannot skip.
    status, said = run_forked(shape_of(decode_bitmap), malformed_pngs()[case])
    assert not crashed(status), crashed(status)
    assert said.startswith("DecodeError: cannot decode the 8-bit RGBA PNG bitmap: "), said


@needs_fork
def test_decode_bitmap_never_returns_wrong_ids(bitmap_decoder):
    # Every single-byte change after the signature: a DecodeError, or the right ids.
    ids = torch.from_numpy(rng(90).integers(0, MAX_ID + 1, (6, 9)).astype(np.int32))
    data = encode_bitmap(ids)
    generator = rng(91)
    positions = generator.choice(np.arange(8, len(data)), size=25, replace=False)

    def check(damaged: bytes) -> str:
        return "right ids" if torch.equal(decode_bitmap(damaged), ids) else "WRONG ids"

    for position in positions.tolist():
        damaged = bytearray(data)
        damaged[position] ^= int(generator.integers(1, 256))
        status, said = run_forked(check, bytes(damaged))
        assert not crashed(status), (position, crashed(status))
        assert said == "right ids" or said.startswith("DecodeError: "), (position, said)


# -- 4. decode_image -------------------------------------------------------------------------


def test_decode_jpeg_equals_pillow(image_decoder):
    # Observed bound between torchcodec, torchvision and Pillow on JPEG: 0 (all three use
    # libjpeg-turbo's default IDCT and upsampling), for every chroma subsampling.
    for seed, (height, width) in enumerate([(1, 1), (5, 7), (16, 12), (13, 29), (33, 17)]):
        rgb = random_u8((height, width, 3), seed=20 + seed)
        for subsampling in (0, 1, 2):
            for quality in (50, 95):
                data = encode(
                    Image.fromarray(rgb), "JPEG", quality=quality, subsampling=subsampling
                )
                assert_image(decode_image(data), pillow_rgb(data))


def test_decode_jpeg_same_on_every_decoder():
    rgb = random_u8((21, 34, 3), seed=30)
    data = encode(Image.fromarray(rgb), "JPEG", quality=80, subsampling=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codecs, "_TORCHCODEC", None)
        by_torchvision = decode_image(data)
    by_default = decode_image(data)
    assert by_default.dtype == by_torchvision.dtype == torch.uint8
    assert torch.equal(by_default, by_torchvision)  # observed bound: 0


def test_decode_grayscale_jpeg(image_decoder):
    grey = random_u8((9, 11), seed=31)
    data = encode(Image.fromarray(grey), "JPEG", quality=90)
    image = decode_image(data)
    assert_image(image, pillow_rgb(data))
    assert torch.equal(image[0], image[1])
    assert torch.equal(image[0], image[2])


def test_decode_cmyk_jpeg(image_decoder):
    cmyk = Image.fromarray(random_u8((9, 11, 3), seed=32)).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=90)
    assert_image(decode_image(data), pillow_rgb(data))


def test_decode_png_rgb(image_decoder):
    rgb = random_u8((5, 7, 3), seed=33)
    assert_image(decode_image(encode(Image.fromarray(rgb), "PNG")), rgb)


def test_decode_png_rgba_drops_alpha(image_decoder):
    rgba = random_u8((5, 7, 4), seed=34)
    rgba[0, 0, 3] = 0
    assert_image(decode_image(encode(Image.fromarray(rgba, mode="RGBA"), "PNG")), rgba[..., :3])


def test_decode_png_grayscale_expands_to_three_channels(image_decoder):
    grey = random_u8((5, 7), seed=35)
    assert_image(decode_image(encode(Image.fromarray(grey), "PNG")), np.dstack([grey] * 3))


def test_decode_png_grayscale_alpha(image_decoder):
    grey = random_u8((5, 7), seed=36)
    data = encode(Image.fromarray(np.dstack([grey, grey[::-1]]), mode="LA"), "PNG")
    assert_image(decode_image(data), np.dstack([grey] * 3))


def test_decode_png_16_bit_grayscale(image_decoder):
    grey16 = rng(37).integers(0, 2**16, (5, 7), dtype=np.uint16)
    grey16[0, :4] = [0, 255, 256, 65535]
    data = encode(Image.fromarray(grey16), "PNG")
    assert png_header(data).mode == "16-bit grayscale"
    expected = (grey16 >> 8).astype(np.uint8)
    assert expected[0, :4].tolist() == [0, 0, 1, 255]
    assert_image(decode_image(data), np.dstack([expected] * 3))


@pytest.mark.parametrize(("color_type", "channels"), [(2, 3), (6, 4), (4, 2)])
def test_decode_png_16_bit_colour(image_decoder, color_type, channels):
    samples = rng(38).integers(0, 2**16, (5, 7, channels), dtype=np.uint16)
    data = make_png(samples, 16, color_type)
    high = (samples >> 8).astype(np.uint8)
    expected = high[..., :3] if channels >= 3 else np.dstack([high[..., 0]] * 3)
    assert_image(decode_image(data), expected)


def test_decode_png_palette(image_decoder):
    rgb = random_u8((5, 7, 3), seed=39)
    for colours, bits in ((200, 8), (4, 2), (2, 1)):
        palette_image = Image.fromarray(rgb).quantize(colors=colours)
        data = encode(palette_image, "PNG")
        assert png_header(data).mode == f"{bits}-bit palette"
        assert_image(decode_image(data), np.array(palette_image.convert("RGB")))


def test_decode_png_palette_with_transparency(image_decoder):
    # A palette with a tRNS chunk: alpha must not leak into the colours.
    image = Image.new("P", (2, 1), color=0)
    image.putpalette([17, 34, 51, 68, 85, 102])
    image.putpixel((1, 0), 1)
    data = encode(image, "PNG", transparency=bytes([0, 128]))
    assert decode_image(data).tolist() == [[[17, 68]], [[34, 85]], [[51, 102]]]


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("BMP", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_decode_lossless_formats(fmt, options):
    rgb = random_u8((5, 7, 3), seed=40)
    data = encode(Image.fromarray(rgb), fmt, **options)
    assert sniff(data) == fmt.lower()
    assert_image(decode_image(data), rgb)


def test_decode_lossy_webp_equals_pillow():
    data = encode(Image.fromarray(random_u8((16, 12, 3), seed=41)), "WEBP", quality=80)
    assert_image(decode_image(data), pillow_rgb(data))


def test_decode_gif():
    rgb = random_u8((5, 7, 3), seed=42)
    palette_image = Image.fromarray(rgb).quantize(colors=16)
    data = encode(palette_image, "GIF")
    assert sniff(data) == "gif"
    assert_image(decode_image(data), np.array(palette_image.convert("RGB")))


def test_decode_rgba_webp_and_tiff_drop_alpha():
    rgba = random_u8((5, 7, 4), seed=43)
    rgba[..., 3] = np.arange(35, dtype=np.uint8).reshape(5, 7) + 1
    for fmt, options in (("WEBP", {"lossless": True, "exact": True}), ("TIFF", {})):
        data = encode(Image.fromarray(rgba, mode="RGBA"), fmt, **options)
        assert_image(decode_image(data), rgba[..., :3])


GARBAGE_PREFIX = "cannot decode the image (unknown data starting b'hello wo'): "


def test_decode_image_of_garbage():
    assert (
        decode_error(decode_image, b"hello world, not an image")
        == GARBAGE_PREFIX + "not a format Pillow reads either"
    )


def test_decode_image_of_nothing():
    assert decode_error(decode_image, b"").startswith(
        "cannot decode the image (no data (0 bytes)): "
    )


def test_decode_image_of_a_truncated_png(image_decoder):
    data = encode(Image.fromarray(random_u8((12, 16, 3), seed=44)), "PNG")
    assert decode_error(decode_image, data[:40]).startswith("cannot decode the image (PNG data): ")


def test_decode_image_of_a_truncated_jpeg(image_decoder):
    data = encode(Image.fromarray(random_u8((32, 48, 3), seed=45)), "JPEG", quality=90)
    assert decode_error(decode_image, data[: len(data) // 2]).startswith(
        "cannot decode the image (JPEG data): "
    )


@needs_fork
@pytest.mark.parametrize("case", list(malformed_pngs()))
def test_decode_image_of_a_malformed_png(image_decoder, case):
    # Never a crash: it would kill a DataLoader worker, which on_error cannot skip. (What
    # torchcodec refuses goes on to Pillow, which may give an incomplete image.)
    status, said = run_forked(shape_of(decode_image), malformed_pngs()[case])
    assert not crashed(status), crashed(status)
    refused = said.startswith("DecodeError: cannot decode the image (PNG data): ")
    assert refused or said == "decoded (3, 4, 6)", said


@needs_fork
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_image_survives_damaged_bytes(image_decoder, fmt):
    # Single-byte changes anywhere after the signature: a DecodeError or some image, never
    # a crash.
    data = encode(Image.fromarray(random_u8((16, 24, 3), seed=92)), fmt)
    generator = rng(93)
    positions = generator.choice(np.arange(8, len(data)), size=25, replace=False)
    for position in positions.tolist():
        damaged = bytearray(data)
        damaged[position] ^= int(generator.integers(1, 256))
        status, said = run_forked(shape_of(decode_image), bytes(damaged))
        assert not crashed(status), (position, crashed(status))
        assert said.startswith(("DecodeError: cannot decode the image (", "decoded (3, ")), said


# -- 5. EXIF orientation ---------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation(image_decoder, orientation):
    stored = blocks()  # 16 x 24: 2 x 3 blocks of 8 x 8 pixels
    data = encode(
        Image.fromarray(stored), "JPEG", exif=exif(orientation), quality=95, subsampling=0
    )
    image = decode_image(data)
    expected = ORIENT[orientation](stored)
    assert tuple(image.shape) == (3, *expected.shape[:2])
    if orientation >= 5:
        assert tuple(image.shape) == (3, 24, 16)
    # Against Pillow's exif_transpose of the same bytes: observed difference 0.
    assert_image(image, pillow_rgb(data))
    # Against the independent transform of the source, at block centres: JPEG keeps
    # these flat 8x8 blocks within 1 level of their colour.
    pixels = hwc(image).astype(np.int64)
    for y in range(4, expected.shape[0], 8):
        for x in range(4, expected.shape[1], 8):
            assert np.abs(pixels[y, x] - expected[y, x]).max() <= 1, (y, x)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_png_exif_orientation(image_decoder, orientation, mode):
    stored = random_u8((3, 5, 3), seed=50)
    image = Image.fromarray(stored).convert(mode)
    data = encode(image, "PNG", exif=exif(orientation))
    assert b"eXIf" in data
    expected = ORIENT[orientation](np.array(image.convert("RGB")))
    decoded = decode_image(data)
    assert_image(decoded, expected)
    assert_image(decoded, pillow_rgb(data))


@pytest.mark.parametrize(("fmt", "options"), [("WEBP", {"lossless": True}), ("TIFF", {})])
@pytest.mark.parametrize("orientation", [3, 6, 7])
def test_pillow_formats_exif_orientation(fmt, options, orientation):
    stored = random_u8((3, 5, 3), seed=51)
    data = encode(Image.fromarray(stored), fmt, exif=exif(orientation), **options)
    assert_image(decode_image(data), ORIENT[orientation](stored))


# -- 6. sniff and png_header -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xff\xd8\xff", "jpeg"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8L", "webp"),
        (b"GIF87a", "gif"),
        (b"GIF89a\x01\x00", "gif"),
        (b"BM", "bmp"),
        (b"BM\x36\x00\x00\x00", "bmp"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"", "unknown"),
        (b"\xff\xd8", "unknown"),
        (b"\x89PNG\r\n\x1a", "unknown"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "unknown"),
        (b"GIF90a", "unknown"),
        (b"II+\x00", "unknown"),
        (b"hello", "unknown"),
    ],
)
def test_sniff_signatures(data, kind):
    assert sniff(data) == kind


def test_sniff_real_files():
    image = Image.fromarray(random_u8((4, 5, 3), seed=60))
    assert sniff(encode(image, "JPEG")) == "jpeg"
    assert sniff(encode(image, "PNG")) == "png"
    assert sniff(encode(image, "WEBP")) == "webp"
    assert sniff(encode(image.quantize(4), "GIF")) == "gif"
    assert sniff(encode(image, "BMP")) == "bmp"
    assert sniff(encode(image, "TIFF")) == "tiff"
    assert sniff(encode_bitmap(np.zeros((2, 2), dtype=np.int64))) == "png"


@pytest.mark.parametrize(
    ("bit_depth", "color_type", "mode"),
    [
        (8, 6, "8-bit RGBA"),
        (8, 2, "8-bit RGB"),
        (16, 6, "16-bit RGBA"),
        (16, 2, "16-bit RGB"),
        (8, 3, "8-bit palette"),
        (4, 3, "4-bit palette"),
        (1, 0, "1-bit grayscale"),
        (16, 0, "16-bit grayscale"),
        (8, 4, "8-bit grayscale+alpha"),
        (8, 1, "8-bit color type 1"),
        (8, 7, "8-bit color type 7"),
    ],
)
def test_png_header_mode(bit_depth, color_type, mode):
    assert PngHeader(width=1, height=1, bit_depth=bit_depth, color_type=color_type).mode == mode


def test_png_header_fields():
    data = encode(Image.fromarray(random_u8((12, 16, 4), seed=61), mode="RGBA"), "PNG")
    header = png_header(data)
    assert header == PngHeader(width=16, height=12, bit_depth=8, color_type=6)
    assert header.mode == "8-bit RGBA"
    header = png_header(make_png(np.zeros((3, 1), dtype=np.uint16), 16, 0))
    assert (header.width, header.height, header.mode) == (1, 3, "16-bit grayscale")


def test_png_header_of_pillow_files():
    rgb = random_u8((5, 7, 3), seed=62)
    cases = {
        "RGB": "8-bit RGB",
        "RGBA": "8-bit RGBA",
        "L": "8-bit grayscale",
        "LA": "8-bit grayscale+alpha",
        "1": "1-bit grayscale",
        "P": "8-bit palette",
    }
    for pillow_mode, mode in cases.items():
        data = encode(Image.fromarray(rgb).convert(pillow_mode), "PNG")
        assert png_header(data).mode == mode, pillow_mode


def test_png_header_refuses():
    assert (
        decode_error(png_header, encode(Image.fromarray(random_u8((2, 2, 3))), "JPEG"))
        == "expected a PNG, found JPEG data"
    )
    assert (
        decode_error(png_header, b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
        == "a PNG without its IHDR header (truncated?)"
    )
    not_ihdr_first = b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"comment\x00hello world")
    assert decode_error(png_header, not_ihdr_first) == "a PNG without its IHDR header (truncated?)"


def test_png_header_is_frozen():
    header = PngHeader(width=1, height=2, bit_depth=8, color_type=6)
    with pytest.raises(AttributeError):
        header.width = 3  # type: ignore[misc]


# -- 7. no deprecation warnings ----------------------------------------------------------------


def every_image_format() -> list[bytes]:
    rgb = random_u8((5, 7, 3), seed=70)
    image = Image.fromarray(rgb)
    grey16 = rng(71).integers(0, 2**16, (5, 7), dtype=np.uint16)
    return [
        encode(image, "JPEG"),
        encode(image, "JPEG", exif=exif(6)),
        encode(image, "PNG"),
        encode(image, "PNG", exif=exif(6)),
        encode(image.convert("RGBA"), "PNG"),
        encode(image.convert("L"), "PNG"),
        encode(Image.fromarray(grey16), "PNG"),
        encode(image.quantize(16), "PNG"),
        encode(image, "WEBP", lossless=True),
        encode(image, "BMP"),
        encode(image, "TIFF"),
        encode(image.quantize(16), "GIF"),
    ]


def test_decode_image_emits_no_deprecation_warning(image_decoder, no_deprecation_warnings):
    for data in every_image_format():
        decode_image(data)


def test_decode_image_emits_no_warning_at_all(image_decoder):
    palette = Image.new("P", (2, 1), color=0)
    palette.putpalette([17, 34, 51, 68, 85, 102])
    palette.putpixel((1, 0), 1)
    with_transparency = encode(palette, "PNG", transparency=bytes([0, 128]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for data in [*every_image_format(), with_transparency]:
            decode_image(data)
    assert [str(w.message) for w in caught] == []


def test_bitmap_codecs_emit_no_deprecation_warning(bitmap_decoder, no_deprecation_warnings):
    data = encode_bitmap(np.arange(12, dtype=np.int64).reshape(3, 4))
    decode_bitmap(data)
    rgb = encode(Image.fromarray(random_u8((3, 4, 3), seed=72)), "PNG")
    decode_bitmap(rgb)


def test_first_use_in_a_fresh_process_emits_no_deprecation_warning(tmp_path):
    # In a fresh interpreter torchvision.io is imported by the first decode: any warning
    # at import time would show here, not in the in-process tests.
    jpeg = encode(Image.fromarray(random_u8((5, 7, 3), seed=73)), "JPEG")
    png = encode(Image.fromarray(random_u8((5, 7, 3), seed=74)), "PNG")
    (tmp_path / "a.jpg").write_bytes(jpeg)
    (tmp_path / "a.png").write_bytes(png)
    script = (
        "import warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "from segments_torch import codecs\n"
        f"jpeg = open({str(tmp_path / 'a.jpg')!r}, 'rb').read()\n"
        f"png = open({str(tmp_path / 'a.png')!r}, 'rb').read()\n"
        "codecs.decode_image(png)\n"
        "codecs.decode_bitmap(png)\n"
        "codecs._PYSPNG = None\n"
        "codecs.decode_bitmap(png)\n"
        "codecs.decode_image(jpeg)\n"
        "codecs._TORCHCODEC = None\n"
        "codecs.decode_image(jpeg)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


# -- 8. every decoder path gives the same result -------------------------------------------


def test_bitmap_paths_agree_exactly():
    rgba = random_u8((20, 17, 4), seed=80)
    rgb = random_u8((20, 17, 3), seed=81)
    files = [
        encode(Image.fromarray(rgba, mode="RGBA"), "PNG"),
        encode(Image.fromarray(rgb), "PNG"),
        encode(Image.fromarray(rgb), "PNG", optimize=True),
        make_png(rgba, 8, 6),
        make_png(rgb, 8, 2, level=0),
        encode_bitmap(rng(82).integers(0, MAX_ID + 1, (20, 17))),
    ]
    for data in files:
        by_default = decode_bitmap(data)
        pixels = decode_bitmap_pixels(data)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(codecs, "_PYSPNG", None)
            without_pyspng = decode_bitmap(data)
            pixels_without_pyspng = decode_bitmap_pixels(data)
        assert torch.equal(by_default, without_pyspng)
        assert torch.equal(pixels, pixels_without_pyspng)
        assert by_default.tolist() == ids_of(pixels.numpy()).tolist()


def test_image_paths_agree():
    # decode_image with torchcodec, without it, and Pillow's own decode: identical for JPEG
    # (observed bound 0) and every lossless format.
    for data in every_image_format():
        by_default = decode_image(data)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(codecs, "_TORCHCODEC", None)
            patch.setattr(codecs, "_PYSPNG", None)
            without_torchcodec = decode_image(data)
        assert torch.equal(by_default, without_torchcodec), sniff(data)
        assert by_default.dtype == torch.uint8
        if sniff(data) != "png" or png_header(data).bit_depth == 8:
            # Pillow's convert('RGB') clips a 16-bit grey PNG at 255: no reference there.
            assert_image(by_default, pillow_rgb(data))


# -- hostile files: declared sizes, pixel limits, checksums, memory ---------------------------


@pytest.fixture(params=["zlib-ng", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once checking zlib streams with zlib-ng (when installed), once with
    the standard library's zlib."""
    if request.param == "zlib":
        monkeypatch.setattr(codecs, "_ZLIB", zlib)
    elif codecs._ZLIB is zlib:
        pytest.skip("zlib-ng is not installed")
    return str(request.param)


def with_fixed_crcs(data: bytes) -> bytes:
    """``data`` (a PNG) with every chunk's CRC recomputed: damage only zlib can notice."""
    out, position = bytearray(data[:8]), 8
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        body = data[position + 4 : position + 8 + length]
        out += data[position : position + 8 + length] + struct.pack(">I", zlib.crc32(body))
        position += 12 + length
    return bytes(out)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A 16 x 16 JPEG whose frame header (SOF0) is rewritten to declare ``width`` x
    ``height``: a few hundred bytes that would decode to a huge tensor."""
    data = bytearray(encode(Image.fromarray(random_u8((16, 16, 3), seed=70)), "JPEG"))
    frame = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, height, width)
    return bytes(data)


def png_declaring(width: int, height: int, color_type: int = 6) -> bytes:
    """An 8-bit PNG whose IHDR declares ``width`` x ``height`` over one row of data."""
    channels = {2: 3, 6: 4}[color_type]
    return png_of_scanlines(b"\x00" * (1 + channels), width, height, 8, color_type)


def never_called(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a decoder ran: the size must be refused before decoding")


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if any decoder back-end is called."""
    for name in ("_decode_jpeg", "_decode_png_rgb", "_decode_with_pillow", "_checked_png"):
        monkeypatch.setattr(codecs, name, never_called)


def test_declared_size_of_each_format():
    rgb = random_u8((13, 29, 3), seed=71)
    image = Image.fromarray(rgb)
    for fmt in ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP"):
        assert codecs.declared_size(encode(image, fmt)) == (29, 13), fmt
    # progressive JPEG (SOF2) behind EXIF and comment segments
    data = encode(image, "JPEG", progressive=True, exif=exif(6), comment=b"x" * 300)
    assert b"\xff\xc2" in data
    assert codecs.declared_size(data) == (29, 13)  # as stored: orientation not applied
    assert codecs.declared_size(jpeg_declaring(30000, 20000)) == (30000, 20000)
    assert codecs.declared_size(png_declaring(70000, 3)) == (70000, 3)


def test_declared_size_of_damaged_headers():
    data = encode(Image.fromarray(random_u8((8, 8, 3))), "JPEG")
    frame = data.index(b"\xff\xc0")
    message = "cannot decode the image (JPEG data): no frame header (truncated?)"
    assert decode_error(codecs.declared_size, data[:frame]) == message
    assert decode_error(codecs.declared_size, data[: frame + 6]) == message
    # stray bytes between segments are skipped, as libjpeg does
    stray = data[:frame] + b"\x00\x13" + data[frame:]
    assert codecs.declared_size(stray) == (8, 8)
    assert decode_error(codecs.declared_size, b"<html>error</html>") == (
        "cannot decode the image (unknown data starting b'<html>er'): not a format Pillow "
        "reads either"
    )
    assert decode_error(codecs.declared_size, b"\x89PNG\r\n\x1a\n") == (
        "a PNG without its IHDR header (truncated?)"
    )


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(no_decoding):
    data = jpeg_declaring(30000, 30000)
    assert len(data) < 1000
    assert decode_error(decode_image, data) == (
        "the image declares 30000x30000 pixels (900,000,000), more than max_pixels=268,435,456"
    )
    assert decode_error(lambda d: decode_image(d, max_pixels=10_000), jpeg_declaring(101, 100)) == (
        "the image declares 101x100 pixels (10,100), more than max_pixels=10,000"
    )
    bmp = encode(Image.fromarray(random_u8((20, 30, 3))), "BMP")
    assert decode_error(lambda d: decode_image(d, max_pixels=599), bmp) == (
        "the image declares 30x20 pixels (600), more than max_pixels=599"
    )
    png = png_declaring(20000, 20000, color_type=2)
    assert decode_error(decode_image, png).startswith("the image declares 20000x20000 pixels")


def test_the_pixel_limit_is_inclusive_and_none_lifts_it():
    rgb = random_u8((10, 12, 3), seed=72)
    for data in (encode(Image.fromarray(rgb), "PNG"), encode(Image.fromarray(rgb), "JPEG")):
        assert tuple(decode_image(data, max_pixels=120).shape) == (3, 10, 12)
        assert tuple(decode_image(data, max_pixels=None).shape) == (3, 10, 12)
        with pytest.raises(DecodeError, match=r"more than max_pixels=119$"):
            decode_image(data, max_pixels=119)
    ids = torch.arange(120, dtype=torch.int32).reshape(10, 12)
    bitmap = encode_bitmap(ids)
    assert torch.equal(decode_bitmap(bitmap, max_pixels=120), ids)
    assert torch.equal(decode_bitmap(bitmap, max_pixels=None), ids)
    assert decode_error(lambda d: decode_bitmap(d, max_pixels=119), bitmap) == (
        "the bitmap declares 12x10 pixels (120), more than max_pixels=119"
    )


def test_a_bitmap_declaring_too_many_pixels_is_refused_before_decoding(no_decoding):
    assert decode_error(decode_bitmap, png_declaring(16385, 16384)) == (
        "the bitmap declares 16385x16384 pixels (268,451,840), more than max_pixels=268,435,456"
    )


def test_png_pixel_data_sizes():
    # Rows of filter byte + samples; interlaced: each Adam7 pass's rows, empty passes none.
    assert PngHeader(6, 4, 8, 6).pixel_data_size == 4 * (1 + 24)
    assert PngHeader(5, 3, 8, 2).pixel_data_size == 3 * (1 + 15)
    assert PngHeader(1, 1, 8, 6, interlaced=True).pixel_data_size == 1 + 4
    # 8 x 8: pass sizes (w x h) 1x1, 1x1, 2x1, 2x2, 4x2, 4x4, 8x4, RGB (3 bytes a pixel)
    passes = [(1, 1), (1, 1), (2, 1), (2, 2), (4, 2), (4, 4), (8, 4)]
    assert PngHeader(8, 8, 8, 2, interlaced=True).pixel_data_size == sum(
        h * (1 + 3 * w) for w, h in passes
    )
    rgb = random_u8((11, 13, 3), seed=73)
    data = encode(Image.fromarray(rgb), "PNG", optimize=False)
    header = png_header(data)
    assert header.pixel_data_size == len(zlib.decompress(idat_payload(data)))


def idat_payload(data: bytes) -> bytes:
    """The concatenated IDAT chunk data of a PNG: its zlib stream."""
    out, position = b"", 8
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        if data[position + 4 : position + 8] == b"IDAT":
            out += data[position + 8 : position + 8 + length]
        position += 12 + length
    return out


def test_interlaced_bitmaps_decode(bitmap_decoder, inflater):
    rgba = random_u8((9, 11, 4), seed=74)
    rgba[..., 3] = 255
    data = encode(Image.fromarray(rgba, mode="RGBA"), "PNG")
    # Pillow writes no interlaced PNG: rewrite IHDR's interlace byte over Adam7 data
    # written by hand from the passes' pixels.
    passes = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ]
    raw = b"".join(
        b"\x00" + rgba[y, x0::dx].tobytes()
        for x0, y0, dx, dy in passes
        for y in range(y0, 9, dy)
        if x0 < 11
    )
    header = struct.pack(">IIBBBBB", 11, 9, 8, 6, 0, 0, 1)
    interlaced = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )
    assert png_header(interlaced).interlaced
    assert png_header(interlaced).pixel_data_size == len(raw)
    np.testing.assert_array_equal(decode_bitmap(interlaced).numpy(), ids_of(rgba))
    np.testing.assert_array_equal(decode_bitmap(data).numpy(), ids_of(rgba))


def test_a_wrong_zlib_checksum_under_right_crcs_is_refused(bitmap_decoder, inflater):
    rgba = random_u8((4, 6, 4), seed=18)
    rgba[..., 3] = 255
    damaged = with_fixed_crcs(corrupted_png(rgba)[0])  # one sample changed, CRCs agree
    assert decode_error(decode_bitmap, damaged) == (
        "cannot decode the 8-bit RGBA PNG bitmap: the pixel data fails zlib's checks "
        "(Error -3 while decompressing data: incorrect data check)"
    )


def test_a_zlib_stream_without_its_checksum_is_refused(bitmap_decoder, inflater):
    rgba = random_u8((4, 6, 4), seed=19)
    rgba[..., 3] = 255
    data = bytearray(make_png(rgba, 8, 6))
    start = data.index(b"IDAT")
    (length,) = struct.unpack_from(">I", data, start - 4)
    # drop the stream's last 4 bytes (its Adler-32) and fix the chunk's length and CRC
    stream = bytes(data[start + 4 : start + 4 + length - 4])
    cut = bytes(data[: start - 4]) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")
    assert decode_error(decode_bitmap, cut) == (
        "cannot decode the 8-bit RGBA PNG bitmap: the pixel data's zlib stream does not end "
        "after the last row"
    )


def test_pixel_data_that_inflates_past_its_rows_is_refused(inflater):
    # A zlib bomb: 2 x 2 pixels declared, a megabyte of rows deflated into 1 KB.
    bomb = png_of_scanlines(b"\x00" * (1 << 20), 2, 2, 8, 6, level=9)
    assert len(bomb) < 2000
    assert decode_error(decode_bitmap, bomb) == (
        "cannot decode the 8-bit RGBA PNG bitmap: the pixel data inflates to more than its rows"
    )


@needs_fork
def test_decode_bitmap_never_returns_wrong_ids_whatever_the_crcs_say(bitmap_decoder, inflater):
    # Every byte change of the pixel data with every chunk CRC made right again: only
    # zlib's own checks stand between the damage and wrong ids.
    ids = torch.from_numpy(rng(92).integers(0, MAX_ID + 1, (6, 9)).astype(np.int32))
    data = encode_bitmap(ids)
    start = data.index(b"IDAT") + 4
    (length,) = struct.unpack_from(">I", data, start - 8)
    generator = rng(93)

    def check(damaged: bytes) -> str:
        return "right ids" if torch.equal(decode_bitmap(damaged), ids) else "WRONG ids"

    for position in range(start, start + length):
        damaged = bytearray(data)
        damaged[position] ^= int(generator.integers(1, 256))
        status, said = run_forked(check, with_fixed_crcs(bytes(damaged)))
        assert not crashed(status), (position, crashed(status))
        assert said == "right ids" or said.startswith("DecodeError: "), (position, said)


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 2700000000 bytes. Error code 12"
        ),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.51 GiB"),
    ],
    ids=["MemoryError", "cpu-allocator", "cuda"],
)
def test_running_out_of_memory_while_decoding_is_a_decode_error(monkeypatch, error):
    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise error

    name = type(error).__name__
    for decoder in ("_decode_jpeg", "_decode_with_pillow"):
        monkeypatch.setattr(codecs, decoder, out_of_memory)
    data = encode(Image.fromarray(random_u8((10, 12, 3))), "JPEG")
    assert decode_error(decode_image, data) == (
        f"out of memory decoding the 12x10 image (360 bytes): {name}"
    )
    monkeypatch.setattr(codecs, "_PYSPNG", None)
    monkeypatch.setattr(codecs, "_TORCHCODEC", None)
    monkeypatch.setattr(Image, "open", out_of_memory)
    bitmap = encode_bitmap(torch.zeros((10, 12), dtype=torch.int32))
    assert decode_error(decode_bitmap, bitmap) == (
        f"out of memory decoding the 12x10 bitmap (480 bytes): {name}"
    )


def test_other_runtime_errors_still_fall_back_to_pillow(monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Unsupported color conversion request")

    monkeypatch.setattr(codecs, "_decode_jpeg", refuse)
    rgb = random_u8((10, 12, 3), seed=75)
    data = encode(Image.fromarray(rgb), "JPEG")
    assert_image(decode_image(data), pillow_rgb(data))


@needs_fork
def test_a_real_allocation_failure_is_a_decode_error(image_decoder):
    # In a child whose address space is capped 512 MiB above what it uses: a 700-byte
    # JPEG declaring 30000 x 30000 pixels (2.7 GB decoded), the limit lifted.
    import resource

    def decode_capped(data: bytes) -> str:
        with open("/proc/self/status") as status:
            used = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (used * 1024 + (512 << 20), resource.RLIM_INFINITY))
        return str(tuple(decode_image(data, max_pixels=None).shape))

    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    status, said = run_forked(decode_capped, jpeg_declaring(30000, 30000))
    assert not crashed(status), crashed(status)
    assert said in (
        "DecodeError: out of memory decoding the 30000x30000 image (2,700,000,000 bytes): "
        "RuntimeError",
        # Pillow (the last fallback) refuses first: its own limit is 178,956,970 pixels
        "DecodeError: cannot decode the image (JPEG data): Image size (900000000 pixels) "
        "exceeds limit of 178956970 pixels, could be decompression bomb DOS attack.",
    ), said


# -- check_complete: whole images only ----------------------------------------------------


def jpeg_with_thumbnail() -> bytes:
    """A JPEG whose APP1 segment holds a whole JPEG (as an EXIF thumbnail does): an EOI
    marker long before the image's own."""
    thumbnail = encode(Image.fromarray(random_u8((8, 8, 3), seed=91)), "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumbnail) + 8) + b"Exif\x00\x00" + thumbnail
    main = encode(Image.fromarray(random_u8((40, 50, 3), seed=92)), "JPEG")
    return main[:2] + app1 + main[2:]


@pytest.mark.parametrize(
    "data",
    [
        *every_image_format(),
        encode(Image.fromarray(random_u8((40, 50, 3), seed=93)), "JPEG", progressive=True),
        jpeg_with_thumbnail(),
        encode_bitmap(torch.zeros((3, 2), dtype=torch.int32)) + b"after IEND",
    ],
    ids=lambda data: sniff(data),
)
def test_check_complete_passes_whole_images(data):
    codecs.check_complete(data)


def test_check_complete_allows_padding_after_a_jpeg():
    data = encode(Image.fromarray(random_u8((20, 30, 3), seed=94)), "JPEG")
    codecs.check_complete(data + b"\x00" * 300)
    codecs.check_complete(data + b"\xff" * 3)
    codecs.check_complete(data + b"a camera's trailer with \xff\xd8 in it")


@pytest.mark.parametrize(
    "data",
    [
        encode(Image.fromarray(random_u8((40, 50, 3), seed=95)), "JPEG"),
        encode(Image.fromarray(random_u8((40, 50, 3), seed=96)), "JPEG", progressive=True),
        jpeg_with_thumbnail(),
    ],
)
def test_check_complete_refuses_a_jpeg_cut_anywhere(data):
    for end in [*range(3, len(data) - 1, 53), len(data) - 2, len(data) - 1]:
        message = decode_error(codecs.check_complete, data[:end])
        assert message == "a JPEG without its end marker (truncated?)", end


def test_check_complete_refuses_a_png_cut_anywhere_or_damaged():
    data = encode_bitmap(rng(97).integers(0, MAX_ID + 1, (30, 20)))
    for end in [8, *range(9, len(data) - 1, 41), len(data) - 1]:
        message = decode_error(codecs.check_complete, data[:end])
        assert message == "a PNG without its IEND chunk (truncated?)", end
    damaged = bytearray(data)
    damaged[50] ^= 1  # inside IDAT
    assert decode_error(codecs.check_complete, bytes(damaged)) == (
        "a PNG whose 'IDAT' chunk fails its CRC check"
    )


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_check_complete_refuses_other_formats_cut_short(fmt):
    data = encode(Image.fromarray(random_u8((60, 80, 3), seed=98)), fmt)
    message = decode_error(codecs.check_complete, data[: len(data) // 2])
    assert message.startswith(f"a damaged {fmt} image")


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"<!DOCTYPE html>\n<html><title>502 Bad Gateway</title></html>", "HTML text"),
        (b"\xef\xbb\xbf\n  <HTML><body>Access denied</body></HTML>", "HTML text"),
        (b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "XML text"),
        (b"", "no data (0 bytes)"),
        (b'{"error": 1}', "unknown data starting b'{\"error\"'"),
    ],
)
def test_check_complete_says_what_it_found_instead_of_an_image(data, found):
    assert decode_error(codecs.check_complete, data) == f"expected an image, found {found}"


def test_an_image_declaring_no_pixels_is_refused():
    data = encode(Image.fromarray(random_u8((8, 8, 3))), "JPEG")
    zero = bytearray(data)
    struct.pack_into(">HH", zero, zero.index(b"\xff\xc0") + 5, 0, 8)
    assert decode_error(decode_image, bytes(zero)) == (
        "the image declares 8x0 pixels: it holds none"
    )


def test_an_image_no_decoder_identifies_says_so_without_pillows_buffer():
    data = encode(Image.fromarray(random_u8((8, 8, 3))), "PNG")
    assert decode_error(decode_image, data[:40]) == (
        "cannot decode the image (PNG data): damaged or truncated, no decoder reads it"
    )


# -- 9. properties: Pillow's bitmaps, every id, pixels_to_ids on any view -----------------

#: The decoders decode_bitmap can use, by the optional packages hidden to reach each one.
BITMAP_DECODERS = {
    "pyspng": (),
    "torchcodec": ("_PYSPNG",),
    "Pillow": ("_PYSPNG", "_TORCHCODEC"),
}


def decode_bitmap_with_each_decoder(data: bytes) -> dict[str, torch.Tensor]:
    """``decode_bitmap(data)`` by each of :data:`BITMAP_DECODERS` (those installed)."""
    decoded = {}
    for name, hidden in BITMAP_DECODERS.items():
        if getattr(codecs, f"_{name.upper()}", True) is None:
            continue  # not installed: the decoders after it are still tried
        with pytest.MonkeyPatch.context() as patch:
            for attribute in hidden:
                patch.setattr(codecs, attribute, None)
            decoded[name] = decode_bitmap(data)
    return decoded


def pillow_bitmap(pixels: npt.NDArray[np.uint8], compress_level: int = 1) -> bytes:
    """``pixels`` (H, W, 3 or 4) as an RGB or RGBA PNG written by Pillow."""
    return encode(Image.fromarray(pixels), "PNG", compress_level=compress_level)


channel_values = st.one_of(st.sampled_from([0, 1, 127, 128, 254, 255]), st.integers(0, 255))
pillow_pixels = st.sampled_from([3, 4]).flatmap(
    lambda channels: hnp.arrays(
        np.uint8,
        st.tuples(st.integers(1, 16), st.integers(1, 16), st.just(channels)),
        elements=channel_values,
    )
)


@settings(max_examples=80, deadline=None)
@given(pixels=pillow_pixels, compress_level=st.integers(0, 9))
def test_pillow_rgb_and_rgba_bitmaps_decode_to_their_ids(pixels, compress_level):
    # Any alpha, 0 included: the id is R + 256 G + 65536 B whatever the alpha.
    data = pillow_bitmap(pixels, compress_level)
    assert png_header(data).mode == ("8-bit RGBA" if pixels.shape[2] == 4 else "8-bit RGB")
    expected = ids_of(pixels).tolist()
    for name, ids in decode_bitmap_with_each_decoder(data).items():
        assert (ids.dtype, tuple(ids.shape)) == (torch.int32, pixels.shape[:2]), name
        assert ids.tolist() == expected, name


@pytest.mark.parametrize("writer", ["Pillow RGB", "Pillow RGBA, alpha varying", "encode_bitmap"])
def test_every_id_is_reachable(writer):
    # All 2^24 ids, once each, in one 4096 x 4096 bitmap.
    ids = np.arange(2**24, dtype=np.uint32).reshape(4096, 4096)
    if writer == "encode_bitmap":
        data = encode_bitmap(ids)
    else:
        channels: list[npt.NDArray[Any]] = [ids & 0xFF, (ids >> 8) & 0xFF, ids >> 16]
        if writer == "Pillow RGBA, alpha varying":
            channels.append(ids % 251)
        data = pillow_bitmap(np.stack(channels, axis=-1).astype(np.uint8))
    del ids
    every_id = torch.arange(2**24, dtype=torch.int32).reshape(4096, 4096)
    for name, decoded in decode_bitmap_with_each_decoder(data).items():
        assert torch.equal(decoded, every_id), name


@st.composite
def pixel_views(draw: st.DrawFn) -> torch.Tensor:
    """(H, W, 3 or 4) uint8 views that are not plain contiguous tensors: strided rows
    and columns, an HWC view of a CHW tensor, transposed, the first channels of wider
    pixels, an odd storage offset, a broadcast row (stride 0), or a batch of these."""
    channels = draw(st.sampled_from([3, 4]))
    height, width = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kind = draw(
        st.sampled_from(
            ["strided", "chw", "transposed", "wider", "offset", "broadcast", "batch of strided"]
        )
    )

    def u8(*shape: int) -> torch.Tensor:
        return torch.from_numpy(draw(hnp.arrays(np.uint8, shape, elements=channel_values)))

    if kind in ("strided", "batch of strided"):
        step_y, step_x = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        top, left = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        batch = (2,) if kind == "batch of strided" else ()
        base = u8(*batch, top + height * step_y, left + width * step_x, channels)
        return base[..., top::step_y, left::step_x, :]
    if kind == "chw":
        return u8(channels, height, width).permute(1, 2, 0)
    if kind == "transposed":
        return u8(width, height, channels).transpose(0, 1)
    if kind == "wider":
        return u8(height, width, channels + draw(st.integers(1, 3)))[..., :channels]
    if kind == "offset":
        offset = draw(st.integers(0, 7))
        flat = u8(offset + height * width * channels)
        return flat[offset:].view(height, width, channels)
    return u8(1, width, channels).expand(height, width, channels)


@settings(max_examples=100, deadline=None)
@given(pixels=pixel_views())
def test_pixels_to_ids_of_any_view(pixels):
    expected = ids_of(pixels.contiguous().numpy())
    ids = pixels_to_ids(pixels)
    assert ids.dtype == torch.int32
    assert tuple(ids.shape) == tuple(pixels.shape[:-1])
    assert ids.tolist() == expected.tolist()


def test_pixels_to_ids_of_a_1x1_hwc_view_of_a_chw_tensor():
    # torch calls this (1, 1, 4) view contiguous, whatever the strides of its size-1
    # dimensions (here 1 and 1); reading it as int32 needs strides that are multiples of 4.
    pixels = torch.tensor([[[1]], [[2]], [[3]], [[255]]], dtype=torch.uint8).permute(1, 2, 0)
    assert pixels.is_contiguous()
    assert pixels.stride() == (1, 1, 1)
    assert pixels_to_ids(pixels).tolist() == [[1 + 2 * 256 + 3 * 65536]]


# -- the device path ------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_turns_pixels_as_pillow_shows_them(orientation):
    stored = random_u8((5, 7, 3), seed=80)
    data = encode(Image.fromarray(stored), "PNG", exif=exif(orientation))
    turned = codecs.orient(torch.from_numpy(stored).permute(2, 0, 1), orientation)
    np.testing.assert_array_equal(hwc(turned), pillow_rgb(data))
    np.testing.assert_array_equal(hwc(turned), ORIENT[orientation](stored))


def test_orient_docstring_example():
    assert codecs.orient(torch.tensor([[1, 2], [3, 4]]), 6).tolist() == [[3, 1], [4, 2]]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_prepare_image_keeps_a_jpeg_encoded_with_its_oriented_size(orientation):
    stored = random_u8((6, 9, 3), seed=81)
    data = encode(Image.fromarray(stored), "JPEG", exif=exif(orientation))
    shipped = codecs.prepare_image(data)
    assert shipped.jpeg
    assert shipped.data.numpy().tobytes() == data
    assert shipped.orientation == orientation
    expected = (9, 6) if orientation >= 5 else (6, 9)
    assert (shipped.height, shipped.width) == expected
    (decoded,) = codecs.decode_jpegs([shipped], "cpu")
    assert isinstance(decoded, torch.Tensor)
    assert torch.equal(decoded, decode_image(data))
    assert tuple(decoded.shape[-2:]) == expected


def test_prepare_image_decodes_what_no_gpu_decoder_reads():
    rgb = random_u8((6, 9, 3), seed=82)
    for data in (
        encode(Image.fromarray(rgb), "PNG"),
        encode(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
    ):
        shipped = codecs.prepare_image(data)
        assert not shipped.jpeg
        assert torch.equal(shipped.data, decode_image(data))
        assert (shipped.orientation, shipped.height, shipped.width) == (1, 6, 9)


def test_prepare_image_checks_the_pixel_limit_from_the_header(no_decoding):
    assert decode_error(lambda d: codecs.prepare_image(d), jpeg_declaring(30000, 30000)) == (
        "the image declares 30000x30000 pixels (900,000,000), more than max_pixels=268,435,456"
    )


def test_decode_jpegs_returns_each_failure_in_its_place():
    good = encode(Image.fromarray(random_u8((8, 8, 3), seed=83)), "JPEG")
    cut = good[: good.index(b"\xff\xda") + 30]
    results = codecs.decode_jpegs([codecs.prepare_image(d) for d in (good, cut, good)], "cpu")
    assert isinstance(results[0], torch.Tensor)
    assert isinstance(results[1], DecodeError)
    assert str(results[1]).startswith("cannot decode the image (JPEG data): ")
    assert isinstance(results[2], torch.Tensor)
    assert torch.equal(results[2], results[0])
    assert codecs.decode_jpegs([], "cpu") == []


def test_the_cpu_decoder_applies_exif_orientation_itself():
    if codecs._TORCHCODEC is None:
        pytest.skip("torchcodec is not installed")
    assert codecs._decoder_orients(torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_jpegs_on_cuda_orients_as_the_cpu(orientation):
    stored = random_u8((16, 24, 3), seed=84)
    data = encode(Image.fromarray(stored), "JPEG", exif=exif(orientation), quality=95)
    (decoded,) = codecs.decode_jpegs([codecs.prepare_image(data)], "cuda")
    assert isinstance(decoded, torch.Tensor)
    assert decoded.device.type == "cuda"
    expected = decode_image(data)
    assert decoded.shape == expected.shape
    difference = (decoded.cpu().to(torch.int16) - expected.to(torch.int16)).abs()
    assert int(difference.max()) <= 40


# -- decoding at a size ----------------------------------------------------------------------


def photo(height: int, width: int, seed: int) -> U8:
    """Photo-like pixels: smooth gradients, a few hard-edged shapes and sensor noise."""
    generator = rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [128 + 100 * np.sin(x / (17 + 9 * c) + y / (23 + 5 * c) + c) for c in range(3)], axis=-1
    )
    for _ in range(6):
        cy, cx, r = (
            generator.uniform(0, height),
            generator.uniform(0, width),
            generator.uniform(5, 60),
        )
        inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        base[inside] = generator.uniform(0, 255, 3)
    base += generator.normal(0, 6, base.shape)
    pixels: U8 = np.clip(base, 0, 255).astype(np.uint8)
    return pixels


def resized_reference(data: bytes, size: Any, max_size: Any) -> torch.Tensor:
    """v2.Resize(size, max_size, antialias=True) of the full decode."""
    full = decode_image(data)
    resized: torch.Tensor = v2.functional.resize(full, size, max_size=max_size, antialias=True)
    return resized


SIZES = [
    (800, 1333),
    (480, None),
    (240, None),
    (100, None),
    (None, 320),
    (57, None),
    ((31, 45), None),
]


@pytest.mark.parametrize(("size", "max_size"), SIZES)
@pytest.mark.parametrize("shape", [(480, 640), (721, 1283), (2736, 3648)])
def test_a_jpeg_decoded_at_a_size_is_close_to_the_resized_full_decode(shape, size, max_size):
    # Measured on these photo-like images: mean differences 0 to 1.13, maxima 0 to 20.
    height, width = shape
    data = encode(Image.fromarray(photo(height, width, seed=height)), "JPEG", quality=90)
    reference = resized_reference(data, size, max_size)
    got = decode_image(data, size=size, max_size=max_size)
    assert got.dtype == torch.uint8
    assert got.shape == reference.shape
    difference = (got.to(torch.int16) - reference.to(torch.int16)).abs()
    assert float(difference.float().mean()) < 1.5
    assert int(difference.max()) <= 24


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decoding_at_a_size_applies_exif_orientation(orientation):
    stored = photo(300, 400, seed=orientation)
    data = encode(Image.fromarray(stored), "JPEG", exif=exif(orientation), quality=92)
    reference = resized_reference(data, 60, None)
    got = decode_image(data, size=60)
    assert got.shape == reference.shape
    assert codecs.oriented_size(data) == tuple(decode_image(data).shape[-2:])
    difference = (got.to(torch.int16) - reference.to(torch.int16)).abs()
    assert float(difference.float().mean()) < 1.5
    assert int(difference.max()) <= 24


@pytest.fixture(params=["simplejpeg", "without-simplejpeg"])
def scaled_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once with simplejpeg decoding JPEGs at a reduced scale (when
    installed), once as if it were not installed (Pillow's ``draft``)."""
    return optional_package(request, monkeypatch, "_SIMPLEJPEG")


def spy_on_scales(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The DCT scales (denominators) that decode_image asks :func:`codecs._jpeg_at_scale`
    for, appended as it does."""
    scales: list[int] = []
    real = codecs._jpeg_at_scale

    def spy(data: bytes, scale: int, frame: Any) -> torch.Tensor:
        scales.append(scale)
        return real(data, scale, frame)

    monkeypatch.setattr(codecs, "_jpeg_at_scale", spy)
    return scales


def test_decoding_at_a_size_reads_a_reduced_scale_only_where_it_is_larger(
    monkeypatch, scaled_decoder
):
    scales = spy_on_scales(monkeypatch)
    data = encode(Image.fromarray(photo(480, 640, seed=3)), "JPEG")
    assert tuple(decode_image(data, size=100).shape) == (3, 100, 133)
    assert scales == [4]  # 1/4 (160 x 120) is larger than 133 x 100; 1/8 is not
    scales.clear()
    assert tuple(decode_image(data, size=120).shape) == (3, 120, 160)
    assert scales == [2]  # 1/4 would be the output's size exactly: passed over
    scales.clear()
    # half the size exactly: no scale is larger than it but the full one
    assert tuple(decode_image(data, size=240).shape) == (3, 240, 320)
    assert torch.equal(decode_image(data, size=240), resized_reference(data, 240, None))
    assert scales == []
    # other formats: the full decode, resized
    png = encode(Image.fromarray(photo(48, 64, seed=4)), "PNG")
    assert torch.equal(decode_image(png, size=12), resized_reference(png, 12, None))
    assert scales == []


def pillow_draft(data: bytes, scale: int) -> torch.Tensor:
    """The JPEG decoded by Pillow's ``draft`` at ``1 / scale``, as ``(3, H, W)``."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        image.draft("RGB", (width // scale, height // scale))
        assert image.size == (-(-width // scale), -(-height // scale))
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


JPEG_VARIANTS: dict[str, dict[str, Any]] = {
    "4:2:0": {"quality": 90},
    "4:4:4": {"quality": 95, "subsampling": 0},
    "progressive": {"quality": 85, "progressive": True},
    "grey": {"quality": 90, "mode": "L"},
}


@pytest.mark.parametrize("variant", list(JPEG_VARIANTS))
@pytest.mark.parametrize("shape", [(480, 640), (721, 1283), (97, 61)])
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_a_reduced_scale_decodes_to_pillows_draft_pixels(scaled_decoder, variant, shape, scale):
    # simplejpeg and Pillow both run libjpeg-turbo: the same pixels, whichever is installed
    options = dict(JPEG_VARIANTS[variant])
    height, width = shape
    image = Image.fromarray(photo(height, width, seed=scale)).convert(options.pop("mode", "RGB"))
    data = encode(image, "JPEG", **options)
    got = codecs._jpeg_at_scale(data, scale, codecs._jpeg_frame(data))
    assert got.dtype == torch.uint8
    assert torch.equal(got, pillow_draft(data, scale))


def test_a_tiny_jpeg_whose_smaller_scale_rounds_alike_is_decoded_by_pillow(monkeypatch):
    if codecs._SIMPLEJPEG is None:
        pytest.skip("simplejpeg is not installed")
    calls: list[int] = []
    real = codecs._SIMPLEJPEG

    class Spy:
        @staticmethod
        def decode_jpeg(data: bytes, **options: Any) -> Any:
            calls.append(options["min_height"])
            return real.decode_jpeg(data, **options)

    monkeypatch.setattr(codecs, "_SIMPLEJPEG", Spy)
    # 6 x 6 at 1/2 is 3 x 3, and so is libjpeg-turbo's 3/8: simplejpeg would take 3/8
    tiny = encode(Image.fromarray(photo(6, 6, seed=1)), "JPEG")
    frame = codecs._jpeg_frame(tiny)
    assert torch.equal(codecs._jpeg_at_scale(tiny, 2, frame), pillow_draft(tiny, 2))
    assert calls == []
    large = encode(Image.fromarray(photo(64, 64, seed=1)), "JPEG")
    at_half = codecs._jpeg_at_scale(large, 2, codecs._jpeg_frame(large))
    assert torch.equal(at_half, pillow_draft(large, 2))
    assert calls == [32]


def test_a_jpeg_simplejpeg_refuses_is_decoded_by_pillow(monkeypatch):
    if codecs._SIMPLEJPEG is None:
        pytest.skip("simplejpeg is not installed")
    data = encode(Image.fromarray(photo(240, 320, seed=8)), "JPEG", quality=90)
    # junk before the end marker: libjpeg warns ("extraneous bytes before marker"), which
    # simplejpeg raises and Pillow decodes past
    warned = data[:-2] + b"\x00\x17\x2a" + data[-2:]
    with pytest.raises(ValueError, match="extraneous bytes"):
        codecs._SIMPLEJPEG.decode_jpeg(warned, colorspace="RGB")
    got = decode_image(warned, size=60)
    monkeypatch.setattr(codecs, "_SIMPLEJPEG", None)
    assert torch.equal(got, decode_image(warned, size=60))
    assert torch.equal(got, decode_image(data, size=60))


def test_decoding_a_truncated_jpeg_at_a_size(scaled_decoder):
    data = encode(Image.fromarray(photo(240, 320, seed=9)), "JPEG", quality=90)
    assert decode_error(lambda cut: decode_image(cut, size=60), data[: len(data) // 2]).startswith(
        "cannot decode the image (JPEG data): "
    )


@needs_fork
def test_decoding_at_a_size_survives_damaged_bytes(scaled_decoder):
    data = encode(Image.fromarray(photo(64, 96, seed=10)), "JPEG", quality=90)
    generator = rng(94)
    for position in generator.choice(np.arange(2, len(data)), size=25, replace=False).tolist():
        damaged = bytearray(data)
        damaged[position] ^= int(generator.integers(1, 256))
        status, said = run_forked(shape_of(lambda cut: decode_image(cut, size=16)), bytes(damaged))
        assert not crashed(status), (position, crashed(status))
        assert said.startswith(("DecodeError: cannot decode the image (", "decoded (3, ")), said


@pytest.mark.parametrize("shape", [(201, 300), (300, 201)])
def test_decoding_at_a_size_one_pixel_past_twice_the_output(shape):
    # 201 rows at size=100: 1/2 is not larger than the output by a whole row (Pillow's
    # rule), so the image is decoded in full and resized (this once raised StopIteration)
    data = encode(Image.fromarray(photo(shape[0], shape[1], seed=11)), "JPEG")
    assert torch.equal(decode_image(data, size=100), resized_reference(data, 100, None))


def test_decoding_at_the_full_size_returns_the_full_decode():
    data = encode(Image.fromarray(photo(60, 80, seed=5)), "JPEG")
    assert torch.equal(decode_image(data, size=60), decode_image(data))
    assert torch.equal(decode_image(data, size=(60, 80)), decode_image(data))
