"""Parity with the official Segments.ai Python SDK (``segments-ai``, imported as ``segments``).

Where the SDK defines a result, ours must equal it. The reference configuration is
"release category ids as labels, unlabelled -> 0"::

    SegmentsDataset(path, target="semantic", categories={c.name: c.id ...}, ignore_index=0)

on a release whose categories do not include id 0 (a training label may not equal the
ignore index, so a category 0 cannot take part). Under it, ``target["semantic"]`` equals
``segments.utils.get_semantic_bitmap(instance_bitmap, annotations)`` pixel for pixel, our
``decode_bitmap`` equals the SDK's ``load_label_bitmap_from_url`` decode of the same PNG
(fetched by the SDK's own ``requests`` session from a loopback HTTP server), and our
image equals the SDK's ``load_image_from_url`` + ``handle_exif_rotation``.

Where we differ from the SDK on purpose, the tests below assert both behaviours exactly
and say why (see the ``test_differs_*`` functions):

- the default value of unlabelled pixels is 255 (ours) vs 0 (SDK);
- a category with id 0 and unlabelled pixels are both 0 in the SDK, distinct in ours;
- a bitmap id without annotation is the ignore index in ours; the SDK maps it to 0 when
  it is smaller than the largest annotation id and raises ``IndexError`` when larger;
- an empty annotation list makes the SDK raise ``IndexError``; ours gives empty targets;
- the mirrored EXIF orientations (2, 4, 5, 7) are applied by ours, ignored by the SDK;
- label statuses are matched case-insensitively by ours, exactly by the SDK.

The releases are written to ``tmp_path`` in the current layout, twice: ``release.json``
with asset URLs relative to its folder (ours resolves them), and ``release-sdk.json`` with
the same assets as ``http://127.0.0.1:PORT/...`` URLs for the SDK. Nothing but 127.0.0.1
is ever contacted.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

pytest.importorskip("segments", reason="needs the official SDK, segments-ai")

import segments
import segments.utils
from segments.dataset import SegmentsDataset as SDKDataset
from segments.typing import LabelStatus
from segments.utils import (
    get_semantic_bitmap,
    handle_exif_rotation,
    load_image_from_url,
    load_label_bitmap_from_url,
)

from segments_torch.categories import CategorySelectionError
from segments_torch.codecs import decode_bitmap, decode_image
from segments_torch.dataset import SegmentsDataset
from segments_torch.export import export_dataset
from tests import releases
from tests.http_server import FileServer, file_server_fixture  # noqa: F401

#: Categories without id 0, so that "category id as label, unlabelled -> 0" is expressible.
CATEGORIES: list[dict[str, Any]] = [
    {"id": 1, "name": "car", "color": [0, 0, 142]},
    {"id": 2, "name": "person", "color": [220, 20, 60]},
    {"id": 5, "name": "grass", "has_instances": False},
]
#: The same with a category 0, as in the format's own example ("person": 0).
CATEGORIES_WITH_ZERO: list[dict[str, Any]] = [
    {"id": 0, "name": "person", "color": [220, 20, 60]},
    {"id": 1, "name": "car", "color": [0, 0, 142]},
    {"id": 5, "name": "grass", "has_instances": False},
]
#: Largest per-channel difference between our decoded image and the SDK's (PIL) image.
#: Observed: 0. torchcodec 0.17, torchvision 0.29 and Pillow 13 decode these baseline
#: 4:2:0 JPEGs bit-identically (also 4:4:4, progressive, odd sizes, checked by hand); the
#: slack allows for libjpeg builds whose IDCT or chroma upsampling round differently.
MAX_IMAGE_DIFFERENCE = 2


# -- building releases ---------------------------------------------------------------


@dataclass
class Spec:
    """One sample of a test release: its image, bitmap and annotations."""

    name: str
    ids: np.ndarray  # (H, W) instance ids, matching the oriented image
    annotations: list[tuple[int, int]]  # (instance id, category id)
    status: str = "LABELED"
    orientation: int | None = None  # EXIF orientation written into the JPEG
    seed: int = 0
    image: np.ndarray = field(init=False)  # (h, w, 3) stored (not oriented) pixels

    def __post_init__(self) -> None:
        height, width = self.ids.shape
        if self.orientation in (5, 6, 7, 8):  # stored transposed
            height, width = width, height
        self.image = _picture(height, width, self.seed)

    @property
    def annotation_dicts(self) -> list[dict[str, Any]]:
        return [releases.annotation(i, c) for i, c in self.annotations]

    @property
    def annotation_ids(self) -> np.ndarray:
        return np.array([i for i, _ in self.annotations], dtype=np.int64)


def _picture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth gradient with noise: no symmetry, so a wrong rotation cannot pass."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    smooth = np.stack([x * 255 // width, y * 255 // height, (x + 2 * y) * 4 % 256], axis=-1)
    noise = rng.integers(-40, 40, size=(height, width, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def patchwork(shape: tuple[int, int], ids: Sequence[int], seed: int, cell: int = 4) -> np.ndarray:
    """``(H, W)`` ids: ``cell`` x ``cell`` blocks drawn from ``ids``, each id present."""
    rng = np.random.default_rng(seed)
    height, width = shape
    rows, cols = -(-height // cell), -(-width // cell)
    cells = rng.permutation(np.resize(np.asarray(ids, dtype=np.int64), rows * cols))
    result = np.kron(cells.reshape(rows, cols), np.ones((cell, cell), dtype=np.int64))[
        :height, :width
    ]
    assert set(np.unique(result).tolist()) == set(ids), "make the image larger"
    return result


def write_bitmap(path: Path, ids: np.ndarray) -> None:
    """An 8-bit RGBA PNG, alpha 255, id = R + 256 G + 65536 B (written without our codec)."""
    rgba = np.empty((*ids.shape, 4), dtype=np.uint8)
    rgba[..., 0] = ids & 0xFF
    rgba[..., 1] = (ids >> 8) & 0xFF
    rgba[..., 2] = (ids >> 16) & 0xFF
    rgba[..., 3] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, mode="RGBA").save(path, format="PNG")


def write_jpeg(path: Path, pixels: np.ndarray, orientation: int | None) -> None:
    image = Image.fromarray(pixels, mode="RGB")
    exif = image.getexif()
    if orientation is not None:
        exif[0x0112] = orientation  # Orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90, exif=exif.tobytes())


@dataclass
class Written:
    """A release written twice: for us (relative URLs) and for the SDK (HTTP URLs)."""

    path: Path
    sdk_path: Path
    specs: list[Spec]
    server: FileServer

    def bitmap_url(self, spec: Spec) -> str:
        return self.server.url_for(f"bitmaps/{spec.name}.png")

    def image_url(self, spec: Spec) -> str:
        return self.server.url_for(f"images/{spec.name}.jpg")


def write_release(
    root: Path,
    server: FileServer,
    specs: list[Spec],
    categories: list[dict[str, Any]] = CATEGORIES,
) -> Written:
    samples: list[dict[str, Any]] = []
    sdk_samples: list[dict[str, Any]] = []
    for spec in specs:
        write_jpeg(root / "images" / f"{spec.name}.jpg", spec.image, spec.orientation)
        bitmap = f"bitmaps/{spec.name}.png"
        write_bitmap(root / bitmap, spec.ids)
        for base, out in (("", samples), (server.url + "/", sdk_samples)):
            label = releases.label(spec.status, spec.annotation_dicts, bitmap and base + bitmap)
            sample = releases.sample(
                f"{spec.name}.jpg", {"ground-truth": label}, metadata={"seed": spec.seed}
            )
            sample["attributes"]["image"]["url"] = f"{base}images/{spec.name}.jpg"
            out.append(sample)
    written = Written(root / "release.json", root / "release-sdk.json", specs, server)
    for path, release_samples in ((written.path, samples), (written.sdk_path, sdk_samples)):
        release = releases.current_release(release_samples)
        release["dataset"]["task_attributes"]["categories"] = categories
        path.write_text(json.dumps(release))
    return written


def parity_specs() -> list[Spec]:
    """Ids above 255 and 65535, ids without annotation (below the largest annotation id),
    annotations absent from the bitmap, a one-pixel instance, both lookup paths of
    ``targets.map_ids`` (dense table: largest id < 65536; ``searchsorted``: above), and
    EXIF-rotated images (6: 90 degrees, 3: 180 degrees)."""
    a = patchwork((24, 32), [0, 1, 2, 7, 300, 65791, 70000, 1_000_000], seed=1)
    a[5, 9] = 123_456  # a one-pixel instance
    b = patchwork((20, 28), [0, 3, 4, 256, 40_000, 65535], seed=2)
    c = patchwork((40, 28), [0, 5, 6, 1000], seed=3)  # oriented 28 wide x 40 high
    d = patchwork((24, 36), [0, 9, 17, 70_000], seed=4)
    return [
        Spec(
            "a",
            a,
            [(1, 1), (2, 2), (300, 5), (70000, 1), (1_000_000, 2), (123_456, 1), (55, 5)],
            seed=1,
        ),
        Spec("b", b, [(3, 5), (256, 1), (65535, 2), (12, 1)], status="REVIEWED", seed=2),
        Spec("c", c, [(5, 1), (1000, 2)], orientation=6, seed=3),
        Spec("d", d, [(9, 2), (17, 5), (70_000, 1)], orientation=3, seed=4),
        Spec("e", patchwork((8, 8), [0, 1], seed=5), [(1, 1)], status="UNLABELED", seed=5),
    ]


@pytest.fixture(autouse=True)
def _sdk_session_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's module-level requests session must reach 127.0.0.1 directly, whatever
    proxy the environment names."""
    monkeypatch.setattr(segments.utils.session, "trust_env", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def parity(tmp_path: Path, file_server: FileServer) -> Written:
    return write_release(tmp_path, file_server, parity_specs())


def sdk_config(written: Written, **kwargs: Any) -> SegmentsDataset:
    """Ours in the SDK's convention: release category ids as labels, unlabelled -> 0."""
    names = {c["name"]: c["id"] for c in CATEGORIES}
    return SegmentsDataset(written.path, categories=names, ignore_index=0, **kwargs)


def sdk_dataset(written: Written) -> SDKDataset:
    """The SDK's dataset of the HTTP copy, LABELED and REVIEWED samples, no cache folder
    (nothing is downloaded until an item is read)."""
    return SDKDataset(
        str(written.sdk_path),
        filter_by=[LabelStatus.LABELED, LabelStatus.REVIEWED],
        segments_dir=None,  # type: ignore[arg-type]  # annotated str; None turns caching off
    )


def sdk_semantic(ids: np.ndarray, annotations: list[dict[str, Any]]) -> np.ndarray:
    """``get_semantic_bitmap``, which returns ``None`` only when given ``None``."""
    semantic = get_semantic_bitmap(ids, annotations)
    assert semantic is not None
    return semantic


def labelled(written: Written) -> Iterator[tuple[int, Spec]]:
    """``(index in our dataset, spec)`` of the samples the status filter keeps."""
    kept = [s for s in written.specs if s.status in ("LABELED", "REVIEWED")]
    yield from enumerate(kept)


# -- parity --------------------------------------------------------------------------


def test_decode_bitmap_equals_sdk_load_label_bitmap_from_url(parity):
    """Same PNG bytes: the SDK fetches them over HTTP, we decode the file's bytes."""
    for spec in parity.specs:
        sdk_ids = load_label_bitmap_from_url(parity.bitmap_url(spec))
        ours = decode_bitmap((parity.path.parent / "bitmaps" / f"{spec.name}.png").read_bytes())
        assert sdk_ids.dtype == np.uint32
        assert ours.dtype == torch.int32
        np.testing.assert_array_equal(ours.numpy().astype(np.int64), sdk_ids.astype(np.int64))
        np.testing.assert_array_equal(sdk_ids, spec.ids)  # and both are the ids written
        assert parity.server.count(f"bitmaps/{spec.name}.png", "GET") == 1


def test_decode_bitmap_equals_sdk_on_extreme_ids(tmp_path, file_server):
    """Every channel's extremes, up to 2^24 - 1."""
    ids = np.array(
        [[0, 1, 255, 256], [65535, 65536, 65791, 1 << 23], [(1 << 24) - 1, 0xFF00FF, 0xFFFF00, 7]]
    )
    write_bitmap(tmp_path / "extreme.png", ids)
    sdk_ids = load_label_bitmap_from_url(file_server.url_for("extreme.png"))
    ours = decode_bitmap((tmp_path / "extreme.png").read_bytes())
    np.testing.assert_array_equal(ours.numpy(), sdk_ids.astype(np.int64))
    np.testing.assert_array_equal(sdk_ids, ids)


def test_semantic_equals_sdk_get_semantic_bitmap(parity):
    """``categories={name: id}, ignore_index=0`` reproduces ``get_semantic_bitmap``."""
    ds = sdk_config(parity, target="semantic")
    assert len(ds) == 4  # the UNLABELED sample is filtered out
    for index, spec in labelled(parity):
        sdk_ids = load_label_bitmap_from_url(parity.bitmap_url(spec))
        expected = sdk_semantic(sdk_ids, spec.annotation_dicts)
        _, target = ds[index]
        semantic = target["semantic"]
        assert semantic.dtype == torch.int64
        np.testing.assert_array_equal(semantic.numpy(), expected)
        assert set(np.unique(expected).tolist()) <= {0, 1, 2, 5}


def test_instance_masks_and_boxes_match_sdk_decode(parity):
    """One mask per annotation present in the bitmap, in annotation order, equal to
    ``sdk_ids == annotation id``; boxes are the mask's extent, ``x2 = max x + 1``."""
    ds = sdk_config(parity, target="instance", label_offset=0)
    absent = 0
    for index, spec in labelled(parity):
        sdk_ids = load_label_bitmap_from_url(parity.bitmap_url(spec))
        present = [(i, c) for i, c in spec.annotations if (sdk_ids == i).any()]
        absent += len(spec.annotations) - len(present)
        _, target = ds[index]
        assert target["instance_ids"].tolist() == [i for i, _ in present]
        assert target["labels"].tolist() == [c for _, c in present]  # label_offset=0
        assert target["masks"].shape == (len(present), *sdk_ids.shape)
        for k, (instance_id, _) in enumerate(present):
            mask = sdk_ids == instance_id
            np.testing.assert_array_equal(target["masks"][k].numpy(), mask.astype(np.uint8))
            ys, xs = np.nonzero(mask)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert target["boxes"][k].tolist() == [float(v) for v in box]
            assert int(target["area"][k]) == int(mask.sum())
        assert tuple(target["boxes"].canvas_size) == sdk_ids.shape
    assert absent == 2  # annotations 55 of "a" and 12 of "b" have no pixel


@pytest.mark.parametrize("orientation", [6, 3])
def test_image_equals_sdk_exif_rotation(parity, orientation):
    """``load_image_from_url`` + ``handle_exif_rotation`` vs our ``ds[i]`` image: same
    shape, pixels within ``MAX_IMAGE_DIFFERENCE`` (observed: identical)."""
    ds = sdk_config(parity, target="semantic")
    index, spec = next((i, s) for i, s in labelled(parity) if s.orientation == orientation)
    sdk_image = handle_exif_rotation(load_image_from_url(parity.image_url(spec)))
    sdk_pixels = np.asarray(sdk_image.convert("RGB")).astype(np.int64)
    image, _ = ds[index]
    ours = image.permute(1, 2, 0).numpy().astype(np.int64)
    assert ours.shape == sdk_pixels.shape == (*spec.ids.shape, 3)
    assert sdk_pixels.shape[:2] != spec.image.shape[:2] or orientation == 3  # rotated
    difference = np.abs(ours - sdk_pixels)
    assert difference.max() <= MAX_IMAGE_DIFFERENCE
    # The bound discriminates: the other rotation (or none) is far from it.
    wrong = np.rot90(sdk_pixels, 2)
    assert np.abs(ours - wrong).mean() > 20


def test_sdk_segments_dataset_end_to_end(parity, capsys):
    """The SDK's own ``SegmentsDataset`` over the HTTP copy of the release, item by item:
    same samples in the same order, same image, same ids, same semantic map."""
    sdk = sdk_dataset(parity)
    ours = sdk_config(parity, target="semantic")
    assert len(sdk) == len(ours) == 4
    for index in range(len(ours)):
        item = sdk[index]
        image, target = ours[index]
        assert item["name"] == ours.sample_info(index).name
        sdk_pixels = np.asarray(item["image"].convert("RGB")).astype(np.int64)
        assert image.permute(1, 2, 0).shape == sdk_pixels.shape
        assert np.abs(image.permute(1, 2, 0).numpy() - sdk_pixels).max() <= MAX_IMAGE_DIFFERENCE
        expected = sdk_semantic(item["segmentation_bitmap"], item["annotations"])
        np.testing.assert_array_equal(target["semantic"].numpy(), expected)
    capsys.readouterr()  # the SDK prints progress


class _Region:
    """What the SDK's COCO export reads of a ``skimage.measure.regionprops`` region."""

    def __init__(self, label: int, ids: np.ndarray) -> None:
        ys, xs = np.nonzero(ids == label)
        self.label = label
        self.bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        self.area = len(ys)


def _regionprops(ids: np.ndarray) -> list[_Region]:
    return [_Region(int(label), ids) for label in np.unique(ids) if label]


@pytest.fixture
def sdk_export(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``segments.export``, whose module imports scikit-image (not installed here) for
    ``regionprops`` and ``img_as_ubyte``: those two are stood in for, the rest is the
    SDK's own code. Imported afresh, and forgotten after the test."""
    measure = types.ModuleType("skimage.measure")
    measure.regionprops = _regionprops  # type: ignore[attr-defined]
    skimage = types.ModuleType("skimage")
    skimage.img_as_ubyte = lambda image: image  # type: ignore[attr-defined]
    skimage.measure = measure  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "skimage", skimage)
    monkeypatch.setitem(sys.modules, "skimage.measure", measure)
    # Recorded as it is now (absent, as a rule), restored so at teardown.
    monkeypatch.setitem(sys.modules, "segments.export", None)
    monkeypatch.setattr(segments, "export", None, raising=False)
    del sys.modules["segments.export"]
    return importlib.import_module("segments.export")


def test_image_ids_sdk_are_the_sdk_coco_export_image_ids(parity, sdk_export, tmp_path, capsys):
    """The SDK's COCO export numbers the images of its dataset ``i + 1`` in the dataset's
    order; ``image_ids="sdk"`` gives each sample the same id, so that predictions made
    for either export score against the other. ``"row"`` (the default) does not."""
    sdk_path, _ = sdk_export.export_coco_instance(sdk_dataset(parity), str(tmp_path / "sdk"))
    sdk = json.loads(Path(sdk_path).read_text())
    ours_path = export_dataset(
        SegmentsDataset(parity.path), "coco", tmp_path / "ours", progress=False, image_ids="sdk"
    )
    ours = json.loads(ours_path.read_text())
    capsys.readouterr()  # the SDK prints progress

    def names(document: dict[str, Any], key: str) -> dict[int, str]:
        return {image["id"]: image[key] for image in document["images"]}

    assert names(sdk, "file_name") == {1: "a.jpg", 2: "b.jpg", 3: "c.jpg", 4: "d.jpg"}
    assert names(ours, "segments_name") == names(sdk, "file_name")

    def instances(document: dict[str, Any]) -> list[tuple[int, int, int]]:
        """(image id, category id, area) of every annotation: which instance is where."""
        return sorted((a["image_id"], a["category_id"], a["area"]) for a in document["annotations"])

    assert instances(ours) == instances(sdk)
    assert len(instances(sdk)) == 14  # 2 annotations without pixels left out by both
    rows = export_dataset(SegmentsDataset(parity.path), "coco", tmp_path / "rows", progress=False)
    assert list(names(json.loads(rows.read_text()), "segments_name")) == [0, 1, 2, 3]


# -- where we differ on purpose ------------------------------------------------------


def test_differs_ignore_index_default_255(parity):
    """Unlabelled pixels (id 0, or an id without annotation) are 255 by default in ours,
    0 in the SDK: 0 is a class for a segmentation loss, 255 is torchvision's and
    mmsegmentation's conventional ``ignore_index``. With the default ``categories=None``
    the training labels are also contiguous in release-id order (1, 2, 5 -> 0, 1, 2)."""
    names = {c["name"]: c["id"] for c in CATEGORIES}
    as_ids = SegmentsDataset(parity.path, target="semantic", categories=names)
    defaults = SegmentsDataset(parity.path, target="semantic")
    contiguous = np.zeros(6, dtype=np.int64)
    contiguous[[1, 2, 5]] = [0, 1, 2]
    for index, spec in labelled(parity):
        sdk_ids = load_label_bitmap_from_url(parity.bitmap_url(spec))
        sdk = sdk_semantic(sdk_ids, spec.annotation_dicts)
        annotated = np.isin(sdk_ids, spec.annotation_ids)
        assert (sdk[~annotated] == 0).all()
        np.testing.assert_array_equal(
            as_ids[index][1]["semantic"].numpy(), np.where(annotated, sdk, 255)
        )
        np.testing.assert_array_equal(
            defaults[index][1]["semantic"].numpy(), np.where(annotated, contiguous[sdk], 255)
        )


def test_differs_category_zero(tmp_path, file_server):
    """A category with id 0 ("person": 0 in the format's example) is indistinguishable from
    unlabelled in the SDK (both 0). Ours keeps them apart: by default the category gets
    training label 0 and unlabelled pixels 255. Asking ours for the SDK's convention
    (category ids as labels, ignore_index=0) is refused, as label 0 would be ignored."""
    ids = patchwork((16, 20), [0, 1, 2, 3], seed=7)
    spec = Spec("zero", ids, [(1, 0), (2, 1), (3, 5)])
    written = write_release(tmp_path, file_server, [spec], CATEGORIES_WITH_ZERO)
    sdk = sdk_semantic(load_label_bitmap_from_url(written.bitmap_url(spec)), spec.annotation_dicts)
    assert (sdk[ids == 0] == 0).all()
    assert (sdk[ids == 1] == 0).all()
    np.testing.assert_array_equal(sdk, np.array([0, 0, 1, 5])[ids])

    _, target = SegmentsDataset(written.path, target="semantic")[0]
    np.testing.assert_array_equal(target["semantic"].numpy(), np.array([255, 0, 1, 2])[ids])

    names = {c["name"]: c["id"] for c in CATEGORIES_WITH_ZERO}
    with pytest.raises(CategorySelectionError, match="ignore index"):
        SegmentsDataset(written.path, target="semantic", categories=names, ignore_index=0)
    _, target = SegmentsDataset(written.path, target="semantic", categories=names)[0]
    np.testing.assert_array_equal(target["semantic"].numpy(), np.where(ids == 0, 255, sdk))


@pytest.mark.parametrize(
    ("annotations", "unknown_small", "unknown_large"),
    [
        ([(2, 1), (10, 2)], 5, 70_000),  # dense lookup table
        ([(2, 1), (70_000, 2)], 65_536, 900_000),  # searchsorted lookup
    ],
    ids=["dense", "sparse"],
)
def test_differs_unknown_ids(tmp_path, file_server, annotations, unknown_small, unknown_large):
    """A bitmap id without annotation is the ignore index in ours. The SDK indexes a table
    sized by the largest annotation id: a smaller unknown id maps to 0 (unlabelled), a
    larger one raises ``IndexError``."""
    known = [i for i, _ in annotations]
    ids = patchwork((16, 24), [0, *known, unknown_small, unknown_large], seed=11)
    spec = Spec("unknown", ids, annotations)
    written = write_release(tmp_path, file_server, [spec])
    sdk_ids = load_label_bitmap_from_url(written.bitmap_url(spec))

    with pytest.raises(IndexError):
        get_semantic_bitmap(sdk_ids, spec.annotation_dicts)
    small_only = np.where(sdk_ids == unknown_large, 0, sdk_ids).astype(np.uint32)
    sdk = sdk_semantic(small_only, spec.annotation_dicts)
    assert (sdk[ids == unknown_small] == 0).all()

    category = dict(annotations)
    for ignore_index, ds in (
        (0, sdk_config(written, target="semantic")),
        (255, SegmentsDataset(written.path, target="semantic", categories=["car", "person"])),
    ):
        semantic = ds[0][1]["semantic"].numpy()
        unknown = np.isin(ids, [0, unknown_small, unknown_large])
        assert (semantic[unknown] == ignore_index).all()
        for instance_id in known:
            label = category[instance_id] if ignore_index == 0 else category[instance_id] - 1
            assert (semantic[ids == instance_id] == label).all()
        if ignore_index == 0:  # where the SDK is defined, it agrees with the SDK
            defined = ids != unknown_large
            np.testing.assert_array_equal(semantic[defined], sdk[defined])

    _, target = SegmentsDataset(written.path, target="instance")[0]
    assert target["instance_ids"].tolist() == known  # unknown ids make no instance


def test_differs_empty_annotation_list(tmp_path, file_server):
    """A label with a bitmap but no annotation: the SDK's ``get_semantic_bitmap`` reads
    ``annotations[0]`` and raises ``IndexError``; ours gives an all-ignore semantic map
    and empty instance targets of the right shapes."""
    ids = patchwork((12, 16), [0, 1, 2], seed=13)
    spec = Spec("empty", ids, [])
    written = write_release(tmp_path, file_server, [spec])
    sdk_ids = load_label_bitmap_from_url(written.bitmap_url(spec))
    with pytest.raises(IndexError):
        get_semantic_bitmap(sdk_ids, [])

    _, target = SegmentsDataset(written.path, target="semantic")[0]
    assert (target["semantic"] == 255).all()
    assert target["semantic"].shape == (12, 16)
    _, target = sdk_config(written, target="semantic")[0]
    assert (target["semantic"] == 0).all()

    _, target = SegmentsDataset(written.path, target="instance")[0]
    assert target["boxes"].shape == (0, 4)
    assert target["masks"].shape == (0, 12, 16)
    for key in ("labels", "instance_ids", "area", "iscrowd"):
        assert target[key].shape == (0,)
        assert target[key].dtype == torch.int64


@pytest.mark.parametrize("orientation", [2, 4, 5, 7])
def test_differs_mirrored_exif_orientations(tmp_path, file_server, orientation):
    """``handle_exif_rotation`` handles orientations 3, 6 and 8 only; the mirrored ones
    (2, 4, 5, 7) come back as stored. Ours applies all eight, as browsers (and so the
    labeling tool, whose bitmaps match the displayed image) do: ``ImageOps.exif_transpose``."""
    pixels = _picture(20, 30, seed=orientation)
    write_jpeg(tmp_path / "mirrored.jpg", pixels, orientation)
    data = (tmp_path / "mirrored.jpg").read_bytes()
    sdk = handle_exif_rotation(load_image_from_url(file_server.url_for("mirrored.jpg")))
    stored = Image.open(io.BytesIO(data)).convert("RGB")
    np.testing.assert_array_equal(np.asarray(sdk.convert("RGB")), np.asarray(stored))

    ours = decode_image(data).permute(1, 2, 0).numpy().astype(np.int64)
    transposed = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert ours.shape == transposed.shape
    assert np.abs(ours - transposed).max() <= MAX_IMAGE_DIFFERENCE
    assert (ours.shape == np.asarray(stored).shape) == (orientation in (2, 4))


def test_differs_status_filter_case(tmp_path, file_server, capsys):
    """Ours matches label statuses case-insensitively; the SDK upper-cases ``filter_by``
    but compares it with the status as written, so a lower-case status never matches."""
    ids = patchwork((8, 8), [0, 1], seed=17)
    specs = [Spec("upper", ids, [(1, 1)]), Spec("lower", ids, [(1, 1)], status="reviewed")]
    written = write_release(tmp_path, file_server, specs)
    sdk = sdk_dataset(written)
    ours = SegmentsDataset(written.path, filter_by=["labeled", "reviewed"])
    assert [s["name"] for s in sdk.samples] == ["upper.jpg"]
    assert [ours.sample_info(i).name for i in range(len(ours))] == ["upper.jpg", "lower.jpg"]
    assert file_server.count() == 0  # the SDK without a cache folder loads nothing upfront
    capsys.readouterr()
