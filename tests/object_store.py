"""What the object-store tests (S3, GCS, Azure) put in their bucket: a small release in the
current layout, its images and bitmaps, and the same files on local disk to compare with.

Bitmaps are written with numpy and Pillow, not with the library's own encoder, so the
tests check the library against an independent encoding.
"""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segments_torch import SegmentsDataset
from tests.releases import annotation, current_release, label, sample

#: a.png's regions: (instance id, top, left, bottom, right); 9 has no annotation.
A_REGIONS = [(1, 2, 3, 20, 30), (2, 22, 5, 38, 20), (70000, 5, 35, 35, 54), (9, 0, 0, 2, 2)]


def jpeg(height: int, width: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bitmap(ids: np.ndarray) -> bytes:
    """An RGBA PNG of instance ids: R + 256 G + 65536 B, alpha 255."""
    rgba = np.stack(
        [ids & 0xFF, (ids >> 8) & 0xFF, (ids >> 16) & 0xFF, np.full_like(ids, 255)], axis=-1
    ).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()


def id_map(height: int, width: int, regions: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    ids = np.zeros((height, width), dtype=np.int64)
    for instance_id, top, left, bottom, right in regions:
        ids[top:bottom, left:right] = instance_id
    return ids


def asset_files() -> dict[str, bytes]:
    """Object names -> bytes: three images, two bitmaps (ids up to 70000 = R 112, G 17,
    B 1, and id 9 with no annotation)."""
    return {
        "images/a.jpg": jpeg(40, 56, seed=0),
        "images/b.jpg": jpeg(32, 48, seed=1),
        "images/c.jpg": jpeg(24, 24, seed=2),
        "bitmaps/a.png": bitmap(id_map(40, 56, A_REGIONS)),
        "bitmaps/b.png": bitmap(id_map(32, 48, [(3, 0, 0, 32, 24)])),
    }


def release_document(url: str, *, unlabelled: bool = False) -> dict[str, Any]:
    """Three selected samples with absolute URLs under ``url`` (a bucket folder ending in
    "/"), one image URL relative to the release file's folder, one label without a bitmap;
    with ``unlabelled``, a fourth sample with a null label."""
    samples = [
        sample(
            "a.jpg",
            {
                "ground-truth": label(
                    "LABELED",
                    [annotation(1, 0), annotation(2, 1), annotation(70000, 1)],
                    bitmap=url + "bitmaps/a.png",
                )
            },
        ),
        sample(
            "b.jpg",
            {"ground-truth": label("REVIEWED", [annotation(3, 5)], bitmap=url + "bitmaps/b.png")},
        ),
        sample("c.jpg", {"ground-truth": label("LABELED", [], bitmap=None)}),
    ]
    images = [url + "images/a.jpg", "images/b.jpg", url + "images/c.jpg"]
    if unlabelled:
        samples.append(sample("d.jpg", {"ground-truth": None}))
        images.append(url + "images/d.jpg")
    for entry, image in zip(samples, images, strict=True):
        entry["attributes"]["image"]["url"] = image
    return current_release(samples)


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """The bucket's files on local disk, under the same names."""
    for key, data in files.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(data)


def all_items(ds: SegmentsDataset) -> list[Any]:
    return [ds[i] for i in range(len(ds))]


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now, for an emulator to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def upload(fs: Any, root: str, files: dict[str, bytes]) -> None:
    """Put ``files`` (name -> bytes) under ``root`` (a bucket or container, and a folder)
    with an fsspec filesystem."""
    for key, data in files.items():
        fs.pipe_file(f"{root}/{key}", data)


def store_files(url: str) -> dict[str, bytes]:
    """The assets and ``release.json`` naming them under ``url`` (a folder ending in "/")."""
    return {**asset_files(), "release.json": json.dumps(release_document(url)).encode()}
