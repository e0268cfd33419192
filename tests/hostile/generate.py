"""The hostile inputs of ``tests/hostile/``: how each is made, and what it must give.

Each :class:`Case` is one file that a careless or malicious source could hand the library
(a release, an image, a bitmap, an asset URL, a cache entry), with the exception it must
raise and a fragment of its message (``"ok"``: the library must serve the sample all the
same). ``python -m tests.hostile.generate`` writes every input to ``tests/hostile/inputs/``
and the expectations to ``tests/hostile/manifest.json``; ``tests/hostile/test_hostile.py``
checks both are what this module makes, then feeds each input to the library.

Everything is built here from bytes, numpy and Pillow; nothing is downloaded.

Kinds and how ``test_hostile`` uses them:

- ``release``: the release file itself, read by ``load_release`` and ``segments-torch
  info`` (one line, exit status 1).
- ``image`` / ``bitmap``: sample ``a.jpg``'s image or bitmap in :func:`base_release`'s
  folder; ``ds[0]`` must raise it as an ``AssetError`` naming the sample, and under
  ``on_error="skip"`` the next sample is served and the failure counted.
- ``url``: sample ``a.jpg``'s image URL (the file holds the URL; ``{root}`` is the
  release's folder, ``{server}`` a local HTTP server's root URL), as for ``image``.
- ``cache``: the cache entry of ``a.jpg``'s image, served over HTTP (``cache-dir.*``: a
  folder in its place); the item must equal the one read without a cache.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs"
MANIFEST = HERE / "manifest.json"

#: Sample a.jpg's image and bitmap size in :func:`base_release`, and its instances.
HEIGHT, WIDTH = 24, 32
REGIONS = [(1, 2, 3, 12, 14), (2, 14, 16, 22, 30)]  # id, top, left, bottom, right


@dataclass(frozen=True)
class Case:
    """One hostile input.

    Attributes:
        name: its file name under ``inputs/`` (also the test's id).
        kind: ``release``, ``image``, ``bitmap``, ``url`` or ``cache``.
        data: its bytes.
        error: the exception class it must raise, by name, or ``"ok"``.
        fragment: a part of that exception's message.
        hidden: text that must appear in no message (a password, a signature).
    """

    name: str
    kind: str
    data: bytes
    error: str
    fragment: str
    hidden: str = ""

    def record(self) -> dict[str, str]:
        """Its line of the manifest."""
        return {
            "name": self.name,
            "kind": self.kind,
            "error": self.error,
            "fragment": self.fragment,
            "hidden": self.hidden,
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


# -- the well-formed material the cases damage --------------------------------------------


def ids_of_a() -> np.ndarray:
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    for instance, top, left, bottom, right in REGIONS:
        ids[top:bottom, left:right] = instance
    return ids


def jpeg(height: int = HEIGHT, width: int = WIDTH, seed: int = 0, **options: Any) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90, **options)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png(
    rows: bytes,
    width: int,
    height: int,
    *,
    bit_depth: int = 8,
    color_type: int = 6,
    stream: bytes | None = None,
    ending: bytes | None = None,
) -> bytes:
    """A PNG of raw ``rows`` (filter byte + samples each), its zlib stream written here
    (``stream`` replaces it), chunk CRCs right; ``ending`` replaces the IEND chunk."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(rows, 9) if stream is None else stream
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", data)
        + (chunk(b"IEND", b"") if ending is None else ending)
    )


def rgba_rows(ids: np.ndarray) -> bytes:
    rgba = np.stack(
        [ids & 0xFF, (ids >> 8) & 0xFF, (ids >> 16) & 0xFF, np.full_like(ids, 255)], axis=-1
    ).astype(np.uint8)
    return b"".join(b"\x00" + row.tobytes() for row in rgba.reshape(ids.shape[0], -1))


def bitmap(ids: np.ndarray) -> bytes:
    return png(rgba_rows(ids), ids.shape[1], ids.shape[0])


def base_release(image_urls: tuple[str, str] = ("images/a.jpg", "images/b.jpg")) -> dict[str, Any]:
    """Two labelled samples, a.jpg and b.jpg, with relative asset URLs (current layout)."""

    def sample(name: str, image: str, bitmap_url: str, annotations: list[Any]) -> dict[str, Any]:
        return {
            "uuid": f"uuid-{name}",
            "name": name,
            "data_type": "IMAGE",
            "attributes": {"image": {"url": image}},
            "metadata": {"split": "train"},
            "labels": {
                "ground-truth": {
                    "label_status": "LABELED",
                    "label_type": "segmentation-bitmap",
                    "attributes": {
                        "format_version": "0.1",
                        "annotations": annotations,
                        "segmentation_bitmap": {"url": bitmap_url},
                    },
                }
            },
        }

    return {
        "name": "v1.0",
        "description": "hostile inputs",
        "created_at": "2021-01-01T00:00:00Z",
        "dataset": {
            "name": "hostile",
            "owner": "tests",
            "task_type": "segmentation-bitmap",
            "task_attributes": {
                "format_version": "0.1",
                "categories": [
                    {"id": 0, "name": "person", "color": [220, 20, 60]},
                    {"id": 1, "name": "donut", "color": [250, 170, 30]},
                ],
            },
            "labelsets": [{"name": "ground-truth", "description": ""}],
            "samples": [
                sample(
                    "a.jpg",
                    image_urls[0],
                    "bitmaps/a.png",
                    [
                        {"id": 1, "category_id": 0, "attributes": {}},
                        {"id": 2, "category_id": 1, "attributes": {}},
                    ],
                ),
                sample(
                    "b.jpg",
                    image_urls[1],
                    "bitmaps/b.png",
                    [{"id": 3, "category_id": 1, "attributes": {}}],
                ),
            ],
        },
    }


def base_files() -> dict[str, bytes]:
    """The assets of :func:`base_release`, by path relative to the release's folder."""
    ids_b = np.zeros((16, 20), dtype=np.int64)
    ids_b[2:10, 4:12] = 3
    return {
        "images/a.jpg": jpeg(seed=1),
        "images/b.jpg": jpeg(16, 20, seed=2),
        "bitmaps/a.png": bitmap(ids_of_a()),
        "bitmaps/b.png": bitmap(ids_b),
    }


# -- releases ---------------------------------------------------------------------------


SAMPLE0 = "dataset.samples[0]"
LABEL0 = f"{SAMPLE0}.labels.ground-truth"
ANNOTATION0 = f"{LABEL0}.attributes.annotations[0]"


def edited(edit: Callable[[dict[str, Any]], object]) -> bytes:
    """:func:`base_release` changed by ``edit`` (in place), as JSON text."""
    document = copy.deepcopy(base_release())
    edit(document)
    return json.dumps(document).encode()


def first_sample(document: dict[str, Any]) -> dict[str, Any]:
    sample: dict[str, Any] = document["dataset"]["samples"][0]
    return sample


def first_annotation(document: dict[str, Any]) -> dict[str, Any]:
    label = first_sample(document)["labels"]["ground-truth"]
    annotation: dict[str, Any] = label["attributes"]["annotations"][0]
    return annotation


def setter(
    where: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any
) -> Callable[[dict[str, Any]], object]:
    return lambda document: where(document).__setitem__(key, value)


def remover(
    where: Callable[[dict[str, Any]], dict[str, Any]], key: str
) -> Callable[[dict[str, Any]], object]:
    return lambda document: where(document).pop(key)


def dataset_of(document: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = document["dataset"]
    return value


def label_of_first(document: dict[str, Any]) -> dict[str, Any]:
    label: dict[str, Any] = first_sample(document)["labels"]["ground-truth"]
    return label


def attributes_of_first(document: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = label_of_first(document)["attributes"]
    return attributes


def first_category(document: dict[str, Any]) -> dict[str, Any]:
    category: dict[str, Any] = document["dataset"]["task_attributes"]["categories"][0]
    return category


def release_cases() -> Iterator[Case]:
    def case(name: str, data: bytes, fragment: str, error: str = "ReleaseFormatError") -> Case:
        return Case(f"release-{name}.json", "release", data, error, fragment)

    good = edited(lambda d: None)
    yield case("empty", b"", "not valid JSON: the file is empty")
    yield case("blank", b" \n\t ", "not valid JSON: the file is empty")
    yield case("truncated", good[: len(good) // 2], "(the file ends early: is it truncated?)")
    yield case("not-utf8", b'{"name": "\xff\xfe"}', "not valid JSON: not UTF-8 text")
    yield case("trailing-garbage", good + b"}", "not valid JSON: Extra data")
    yield Case(
        "release-gzip-truncated.json.gz",
        "release",
        gzip.compress(good, mtime=0)[:-20],
        "ReleaseFormatError",
        "not a valid gzip file",
    )
    yield case("a-list", b"[]", "expected a JSON object (a release), found a list of 0 items")
    yield case("a-string", b'"release"', 'expected a JSON object (a release), found "release"')
    yield case("no-known-keys", b'{"x": 1}', '"x"')
    depth = 50_000
    yield case(
        "deep-nesting", b"[" * depth + b"]" * depth, f"nested {depth} deep at line 1 column {depth}"
    )
    yield case(
        "deep-nesting-in-metadata",
        edited(setter(first_sample, "metadata", {"x": json.loads("[" * 900 + "]" * 900)}))
        .replace(b"[" * 900, b"[" * depth)
        .replace(b"]" * 900, b"]" * depth),
        "nested",
    )
    yield case(
        "long-integer-id",
        edited(setter(first_annotation, "id", 424242)).replace(b"424242", b"9" * 5000),
        f"{ANNOTATION0}.id: expected a number Python can read",
    )
    yield case(
        "long-integer-metadata",
        edited(setter(first_sample, "metadata", {"n": 0})).replace(
            b'"n": 0', b'"n": ' + b"1" * 4400
        ),
        f"{SAMPLE0}.metadata.n: expected a number Python can read",
    )
    yield case(
        "surrogate-name",
        edited(setter(first_sample, "name", "a\ud800.jpg")),
        f"{SAMPLE0}.name: expected text",
    )
    yield case(
        "surrogate-image-url",
        edited(
            lambda d: first_sample(d)["attributes"]["image"].__setitem__("url", "images/\udc00.jpg")
        ),
        f"{SAMPLE0}.attributes.image.url: expected text",
    )
    yield case(
        "surrogate-category",
        edited(setter(first_category, "name", "\ud83d")),
        "dataset.task_attributes.categories[0].name: expected text",
    )
    yield case(
        "nan-id",
        edited(setter(first_annotation, "id", float("nan"))),
        f"{ANNOTATION0}.id: expected",
    )
    yield case(
        "infinite-id",
        edited(setter(first_annotation, "id", float("inf"))),
        f"{ANNOTATION0}.id: expected",
    )
    yield case(
        "float-id", edited(setter(first_annotation, "id", 1.5)), f"{ANNOTATION0}.id: expected"
    )
    yield case(
        "bool-id", edited(setter(first_annotation, "id", True)), f"{ANNOTATION0}.id: expected"
    )
    yield case(
        "string-id", edited(setter(first_annotation, "id", "1")), f"{ANNOTATION0}.id: expected"
    )
    yield case("zero-id", edited(setter(first_annotation, "id", 0)), f"{ANNOTATION0}.id: expected")
    yield case(
        "negative-id", edited(setter(first_annotation, "id", -1)), f"{ANNOTATION0}.id: expected"
    )
    yield case(
        "id-past-24-bits",
        edited(setter(first_annotation, "id", 2**24)),
        f"{ANNOTATION0}.id: expected",
    )
    yield case(
        "duplicate-ids",
        edited(setter(first_annotation, "id", 2)),
        f"{LABEL0}.attributes.annotations[1].id",
    )
    yield case(
        "unknown-category",
        edited(setter(first_annotation, "category_id", 7)),
        f"{ANNOTATION0}.category_id: expected",
    )
    yield case(
        "string-category",
        edited(setter(first_annotation, "category_id", "0")),
        f"{ANNOTATION0}.category_id: expected",
    )
    yield case(
        "duplicate-category-ids",
        edited(lambda d: d["dataset"]["task_attributes"]["categories"][1].__setitem__("id", 0)),
        "dataset.task_attributes.categories[1].id: expected an id no other category has",
    )
    yield case(
        "unknown-status",
        edited(setter(label_of_first, "label_status", "DONE")),
        f"{LABEL0}.label_status: expected",
    )
    yield case(
        "unknown-task-type",
        edited(setter(dataset_of, "task_type", "cuboids")),
        "dataset.task_type: expected",
    )
    yield case(
        "samples-not-a-list",
        edited(setter(dataset_of, "samples", {})),
        "dataset.samples: expected a list",
    )
    yield case(
        "sample-not-an-object",
        edited(lambda d: d["dataset"]["samples"].__setitem__(0, "a.jpg")),
        f"{SAMPLE0}: expected an object",
    )
    yield case(
        "labels-not-an-object",
        edited(setter(first_sample, "labels", [])),
        f"{SAMPLE0}.labels: expected an object",
    )
    yield case(
        "annotations-not-a-list",
        edited(setter(attributes_of_first, "annotations", {})),
        f"{LABEL0}.attributes.annotations: expected a list",
    )
    yield case(
        "image-without-url",
        edited(lambda d: first_sample(d)["attributes"]["image"].pop("url")),
        f"{SAMPLE0}.attributes.image",
    )
    yield case(
        "bitmap-url-a-number",
        edited(setter(attributes_of_first, "segmentation_bitmap", {"url": 7})),
        f"{LABEL0}.attributes.segmentation_bitmap",
    )
    yield case(
        "metadata-a-list",
        edited(setter(first_sample, "metadata", [])),
        f"{SAMPLE0}.metadata: expected an object or null",
    )
    yield case(
        "no-labelsets",
        edited(setter(dataset_of, "labelsets", [])),
        "dataset.labelsets: expected at least one labelset",
    )
    yield case(
        "name-missing", edited(remover(first_sample, "name")), f"{SAMPLE0}.name: expected a string"
    )


# -- images -----------------------------------------------------------------------------


def with_frame_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) declares ``width`` x ``height``."""
    out = bytearray(data)
    struct.pack_into(">HH", out, out.index(b"\xff\xc0") + 5, height, width)
    return bytes(out)


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP whose header declares ``width`` x ``height`` over 16 x 16 pixels of data."""
    out = bytearray(encode(Image.new("RGB", (16, 16)), "BMP"))
    struct.pack_into("<ii", out, 18, width, height)
    return bytes(out)


HTML = b"<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>"


def image_cases() -> Iterator[Case]:
    def case(name: str, data: bytes, fragment: str) -> Case:
        return Case(f"image-{name}", "image", data, "AssetError", fragment)

    good = jpeg(seed=1)
    frame = good.index(b"\xff\xc0")
    scan = good.index(b"\xff\xda")
    yield case("empty.jpg", b"", "cannot decode the image (no data (0 bytes))")
    yield case(
        "html-error-page.jpg", HTML, "cannot decode the image (unknown data starting b'<!DOCTYP')"
    )
    yield case(
        "random-bytes.jpg",
        np.random.default_rng(3).bytes(300),
        "cannot decode the image (unknown data",
    )
    yield case(
        "jpeg-declaring-30000x30000.jpg",
        with_frame_size(good, 30000, 30000),
        "the image declares 30000x30000 pixels (900,000,000), more than max_pixels=268,435,456",
    )
    yield case(
        "jpeg-declaring-65535x4097.jpg",
        with_frame_size(good, 65535, 4097),
        "the image declares 65535x4097 pixels",
    )
    yield case(
        "jpeg-without-frame-header.jpg", good[:frame] + good[scan:], "no frame header (truncated?)"
    )
    yield case("jpeg-header-only.jpg", good[: frame + 4], "no frame header (truncated?)")
    yield case("jpeg-cut-in-the-scan.jpg", good[: scan + 40], "cannot decode the image (JPEG data)")
    yield case(
        "jpeg-declaring-0x0.jpg",
        with_frame_size(good, 0, 0),
        "the image declares 0x0 pixels: it holds none",
    )
    rows = b"".join(b"\x00" + bytes(3 * 8) for _ in range(8))
    yield case(
        "png-declaring-20000x20000.png",
        png(rows, 20000, 20000, color_type=2),
        "the image declares 20000x20000 pixels",
    )
    damaged = bytearray(png(rows, 8, 8, color_type=2))
    damaged[damaged.index(b"IDAT") + 6] ^= 0x10  # the IDAT chunk's CRC fails
    yield case("png-bad-crc.png", bytes(damaged), "cannot decode the image (PNG data)")
    yield case(
        "png-truncated.png",
        png(rows, 8, 8, color_type=2)[:40],
        "cannot decode the image (PNG data): damaged or truncated, no decoder reads it",
    )
    yield case(
        "bmp-declaring-100000x100000.bmp",
        bmp_declaring(100_000, 100_000),
        "cannot decode the image (BMP data)",
    )
    gif = encode(Image.new("P", (30, 20)), "GIF")
    yield case("gif-truncated.gif", gif[:20], "cannot decode the image (GIF data)")
    yield case(
        "tiff-garbage.tif",
        b"II*\x00" + np.random.default_rng(4).bytes(60),
        "cannot decode the image (TIFF data)",
    )


# -- bitmaps ----------------------------------------------------------------------------


def bitmap_cases() -> Iterator[Case]:
    def case(name: str, data: bytes, fragment: str) -> Case:
        return Case(f"bitmap-{name}.png", "bitmap", data, "AssetError", fragment)

    ids = ids_of_a()
    rows = rgba_rows(ids)
    good = bitmap(ids)
    start = good.index(b"IDAT") + 4
    (length,) = struct.unpack_from(">I", good, start - 8)
    stream = good[start : start + length]
    stored = zlib.compress(rows, 0)  # stored blocks: a changed byte stays well-formed deflate
    flipped = bytearray(stored)
    flipped[2 + 5 + 1 + 5] ^= 0xFF  # row 0, sample 5 (after zlib and block headers)
    yield case(
        "wrong-adler32-right-crcs",
        png(rows, WIDTH, HEIGHT, stream=bytes(flipped)),
        "fails zlib's checks",
    )
    yield case(
        "stream-without-adler32",
        png(rows, WIDTH, HEIGHT, stream=stream[:-4]),
        "does not end after the last row",
    )
    crc = bytearray(good)
    crc[start + 10] ^= 0x01
    yield case("wrong-crc", bytes(crc), "the 'IDAT' chunk fails its CRC check")
    yield case("truncated", good[: len(good) // 2], "cannot decode the 8-bit RGBA PNG bitmap")
    yield case("signature-only", good[:8], "a PNG without its IHDR header (truncated?)")
    yield case("empty", b"", "expected a PNG, found no data (0 bytes)")
    yield case("html-error-page", HTML, "expected a PNG, found unknown data starting b'<!DOCTYP'")
    yield case("a-jpeg", jpeg(), "expected a PNG, found JPEG data")
    bomb = png(b"\x00" * (1 << 22), 2, 2, stream=zlib.compress(b"\x00" * (1 << 22), 9))
    yield case("zlib-bomb", bomb, "the pixel data inflates to more than its rows")
    yield case(
        "declaring-16385x16384",
        png(rows[:129], 16385, 16384),
        "the bitmap declares 16385x16384 pixels (268,451,840), more than max_pixels=268,435,456",
    )
    yield case(
        "declaring-4294967295x1",
        png(rows[:129], 2**32 - 1, 1),
        "the bitmap declares 4294967295x1 pixels",
    )
    rgba16 = b"".join(b"\x00" + bytes(8 * WIDTH) for _ in range(HEIGHT))
    yield case(
        "16-bit-rgba",
        png(rgba16, WIDTH, HEIGHT, bit_depth=16),
        "expected an 8-bit RGBA or RGB PNG bitmap, found 16-bit RGBA",
    )
    grey = b"".join(b"\x00" + bytes(WIDTH) for _ in range(HEIGHT))
    yield case("greyscale", png(grey, WIDTH, HEIGHT, color_type=0), "found 8-bit grayscale")
    yield case("palette", png(grey, WIDTH, HEIGHT, color_type=3), "found 8-bit palette")
    yield case(
        "bad-filter-type",
        png(b"\x09" + rows[1:], WIDTH, HEIGHT),
        "cannot decode the 8-bit RGBA PNG bitmap",
    )
    yield case(
        "too-few-rows",
        png(rows[: len(rows) // 2], WIDTH, HEIGHT),
        "cannot decode the 8-bit RGBA PNG bitmap",
    )
    yield case(
        "no-image-data",
        png(rows, WIDTH, HEIGHT)[:33] + chunk(b"IEND", b""),
        "cannot decode the 8-bit RGBA PNG bitmap",
    )
    yield case(
        "smaller-than-its-image",
        bitmap(ids[:-1, :-1]),
        "the bitmap is 31x23 (width x height) but the oriented image is 32x24",
    )


# -- asset URLs -------------------------------------------------------------------------


SECRET = "X-Amz-Signature=hostile-secret"
PASSWORD = "hostile-password"


def url_cases() -> Iterator[Case]:
    def case(name: str, url: str, error: str, fragment: str, hidden: str = "") -> Case:
        return Case(f"url-{name}.txt", "url", url.encode(), error, fragment, hidden)

    yield case(
        "nul-in-a-path", "{root}/images/a\x00.jpg", "AssetError", "the system refuses this path"
    )
    yield case(
        "nul-in-a-file-url",
        "file://{root}/images/a%00.jpg",
        "AssetError",
        "the system refuses this path",
    )
    yield case("unparsable-host", "http://[::1/a.jpg", "AssetError", "sample 'a.jpg'")
    yield case(
        "file-url-with-a-signature",
        f"file://{{root}}/images/missing.jpg?{SECRET}",
        "AssetError",
        "missing.jpg: not found",
        "hostile-secret",
    )
    yield case(
        "password-in-a-url",
        f"{{server_with_password}}/missing.jpg?{SECRET}",
        "AssetError",
        "/missing.jpg: not found (HTTP 404)",
        PASSWORD,
    )
    yield case(
        "unknown-protocol",
        "nosuchprotocol://bucket/a.jpg",
        "AssetError",
        "sample 'a.jpg': nosuchprotocol://bucket/a.jpg",
    )
    yield case(
        "percent-escapes",
        "file://{root}/images/a%2520b.jpg",
        "AssetError",
        "images/a%20b.jpg: not found",
    )


# -- cache entries ----------------------------------------------------------------------


def cache_cases() -> Iterator[Case]:
    good = jpeg(seed=1)

    def case(name: str, data: bytes) -> Case:
        return Case(f"cache-{name}", "cache", data, "ok", "")

    yield case("html-error-page.bin", HTML)
    yield case("cut-jpeg.bin", good[: len(good) // 2])
    yield case("empty.bin", b"")
    yield case("random-bytes.bin", np.random.default_rng(5).bytes(500))
    yield case("dir.bin", b"")  # a folder in place of the entry


def cases() -> list[Case]:
    """Every hostile input, in manifest order."""
    return [*release_cases(), *image_cases(), *bitmap_cases(), *url_cases(), *cache_cases()]


def write(folder: Path = INPUTS, manifest: Path = MANIFEST) -> list[Case]:
    """Write every input to ``folder`` and the manifest to ``manifest``."""
    folder.mkdir(parents=True, exist_ok=True)
    made = cases()
    for stale in folder.iterdir():
        stale.unlink()
    for case in made:
        (folder / case.name).write_bytes(case.data)
    manifest.write_text(json.dumps([c.record() for c in made], indent=1) + "\n")
    return made


if __name__ == "__main__":
    written = write()
    print(f"{len(written)} hostile inputs in {INPUTS}", file=sys.stderr)
