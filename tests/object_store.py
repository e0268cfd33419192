"""What the object-store tests (S3, GCS, Azure) put in their bucket: a small release in the
current layout, its images and bitmaps, and the same files on local disk to compare with;
:class:`Store` says where a module's copy lives, and the helpers below fill and read it the
same way for every backend (each module keeps its own server fixture).

Bitmaps are written with numpy and Pillow, not with the library's own encoder, so the
tests check the library against an independent encoding.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from segments_torch import SegmentsDataset, load_release
from segments_torch.errors import AssetError
from segments_torch.release import Release
from segments_torch.storage import StorageError
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


def forked_items(ds: SegmentsDataset) -> list[Any]:
    """``ds``'s items in order, as two forked DataLoader workers read them (batches of 2)."""
    loader = DataLoader(
        ds, batch_size=2, num_workers=2, multiprocessing_context="fork", collate_fn=ds.collate_fn
    )
    return [item for images, targets in loader for item in zip(images, targets, strict=True)]


def assert_instance_targets(items: list[Any]) -> None:
    """The instance items of :func:`release_document` hold a.jpg's regions (the bitmap's
    ids arrived intact, 70000 included) and c.jpg's empty targets."""
    image, first = items[0]
    assert tuple(image.shape) == (3, 40, 56)
    assert first["labels"].tolist() == [1, 2, 2]  # person, donut, donut (+1 offset)
    assert first["masks"].sum(dim=(1, 2)).tolist() == [18 * 27, 16 * 15, 30 * 19]
    assert items[2][1]["masks"].shape[0] == 0  # c.jpg: no bitmap, empty targets


@dataclass(frozen=True)
class Store:
    """A release in an object store and the same files on local disk: the bucket (or
    container) ``name`` under ``protocol``, a ``folder`` in it ("" or ending in "/"), the
    fsspec options that read it, and ``local``, the folder that mirrors ``url``."""

    protocol: str  # "s3", "gs", "az"
    name: str
    options: dict[str, Any]
    local: Path
    folder: str = ""

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.name}/{self.folder}"

    @property
    def release_url(self) -> str:
        return f"{self.url}release.json"

    @property
    def storage_options(self) -> dict[str, dict[str, Any]]:
        """SegmentsDataset's ``storage_options``: the options under the protocol."""
        return {self.protocol: self.options}

    def path(self, key: str) -> str:
        """The fsspec path (no protocol) of the object named ``key`` in the folder."""
        return f"{self.name}/{self.folder}{key}"

    def release(self) -> Release:
        return load_release(self.release_url, storage_options=self.options)

    def dataset(self, release: Release | None = None, **kwargs: Any) -> SegmentsDataset:
        """A dataset that reads its assets from the store: of ``release``, or else of the
        release file, read now."""
        release = self.release() if release is None else release
        return SegmentsDataset(release, storage_options=self.storage_options, **kwargs)

    def local_dataset(self, release: Release, **kwargs: Any) -> SegmentsDataset:
        """A dataset of ``release`` that reads the local copy instead of the store."""
        return SegmentsDataset(release, url_map={self.url: f"{self.local}/"}, **kwargs)


def fill(fs: Any, store: Store) -> dict[str, bytes]:
    """Puts :func:`store_files` in ``store``'s folder with the fsspec filesystem ``fs``, and
    the same files in its local folder; returns them (name -> bytes)."""
    files = store_files(store.url)
    for key, data in files.items():
        fs.pipe_file(store.path(key), data)
    write_files(store.local, files)
    return files


def empty(fs: Any, store: Store, keys: Iterable[str]) -> None:
    """Deletes the objects named ``keys`` from ``store``'s folder with ``fs``, and drops
    fs's listings so that what it reads next comes from the server."""
    fs.rm([store.path(key) for key in keys])
    fs.invalidate_cache()


def missing_image_dataset(store: Store, **document: Any) -> tuple[SegmentsDataset, str]:
    """A dataset of :func:`release_document` (``document``: its keywords) in ``store``
    whose a.jpg names an image that is not there, and that image's URL."""
    content = release_document(store.url, **document)
    missing = f"{store.url}images/missing.jpg"
    content["dataset"]["samples"][0]["attributes"]["image"]["url"] = missing
    return SegmentsDataset(content, storage_options=store.storage_options), missing


def not_found(ds: SegmentsDataset, url: str) -> StorageError:
    """Reads sample 0 (a.jpg), whose image ``url`` is not in the store, expecting an
    AssetError that names the sample and says "not found"; returns its cause."""
    with pytest.raises(AssetError) as info:
        ds[0]
    error = info.value
    assert (error.sample, error.url) == ("a.jpg", url)
    assert str(error).startswith(f"sample 'a.jpg': {url}: not found")
    cause = error.__cause__
    assert isinstance(cause, StorageError)
    return cause


def store_files(url: str) -> dict[str, bytes]:
    """The assets and ``release.json`` naming them under ``url`` (a folder ending in "/")."""
    return {**asset_files(), "release.json": json.dumps(release_document(url)).encode()}
