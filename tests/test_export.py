"""Exports: COCO instance and panoptic, semantic and instance PNGs, names, workers."""

from __future__ import annotations

import doctest
import errno
import importlib
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_api
from pycocotools.coco import COCO
from torchvision.transforms import v2

from segments_torch import SegmentsDataset
from segments_torch.codecs import decode_bitmap, encode_bitmap
from segments_torch.demo import (
    RELEASE_PATH,
    SEGMENTATION_SEQUENCE_RELEASE_PATH,
    VECTOR_RELEASE_PATH,
)
from segments_torch.errors import AssetError
from segments_torch.export import (
    EXPORT_FORMATS,
    FORMATS,
    ExportError,
    MissingExtraError,
    OutputError,
    category_ids_by_label,
    export_dataset,
    read_label_png,
    resolve_format,
)
from segments_torch.export.base import Encoded
from segments_torch.export.coco import rle_encode
from segments_torch.export.core import _Samples
from segments_torch.export.names import safe_name, unique_file_names
from segments_torch.export.png import encode_ids
from tests.releases import annotation, current_release, label, sample

# pycocotools' decode (the tests' reference) trips numpy 2's copy= deprecation.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

DEMO = RELEASE_PATH.parent
DEMO_UUIDS = {
    0: "d5602f48-2ff7-5b0a-a8f4-2d61115552e3",
    2: "77282206-d1f3-5c52-a013-94730d0f006f",
}


def demo(**kwargs: Any) -> SegmentsDataset:
    return SegmentsDataset(RELEASE_PATH, **kwargs)


def by_row(ds: SegmentsDataset) -> dict[int, tuple[torch.Tensor, dict[str, Any]]]:
    """Every item of ``ds`` keyed by its release row (the exports' image id)."""
    return {int(ds.rows[i]): ds[i] for i in range(len(ds))}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@dataclass
class Spec:
    """One sample of a generated release: its name, bitmap ids and annotations."""

    name: str
    ids: Any
    annotations: list[tuple[int, int]]
    status: str = "LABELED"


def write_release(
    folder: Path, specs: list[Spec], labelsets: tuple[str, ...] = ("ground-truth",)
) -> Path:
    """A release of ``specs`` (categories: person 0, donut 1, grass 5 as stuff) whose
    assets are behind signed ``https://cdn.example/`` URLs, stored in ``folder``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "bitmaps").mkdir(exist_ok=True)
    samples = []
    for k, spec in enumerate(specs):
        ids = np.asarray(spec.ids)
        height, width = ids.shape
        Image.new("RGB", (width, height), (k, 2 * k, 3 * k)).save(folder / "images" / f"{k}.png")
        (folder / "bitmaps" / f"{k}.png").write_bytes(encode_bitmap(ids))
        annotations = [annotation(i, c) for i, c in spec.annotations]
        bitmap = f"https://cdn.example/bitmaps/{k}.png?sig=secret"
        labels = {name: label(spec.status, annotations, bitmap) for name in labelsets}
        item = sample(spec.name, labels, uuid=f"uuid-{k}")
        item["attributes"]["image"]["url"] = f"https://cdn.example/images/{k}.png?sig=secret"
        samples.append(item)
    path = folder / "release.json"
    path.write_text(json.dumps(current_release(samples, labelsets)))
    return path


def local(path: Path, **kwargs: Any) -> SegmentsDataset:
    """The dataset of a :func:`write_release` release, its URLs mapped to the folder."""
    return SegmentsDataset(path, url_map={"https://cdn.example/": f"{path.parent}/"}, **kwargs)


# -- formats and arguments ----------------------------------------------------------------


def test_formats_and_the_seed_alias(tmp_path):
    assert tuple(EXPORT_FORMATS) == FORMATS
    assert resolve_format("coco") == "coco-instance"
    path = export_dataset(demo(), "coco", out_dir=tmp_path, progress=False)
    assert path == tmp_path / "coco_instance.json"
    assert COCO(str(path)).getImgIds() == [0, 1, 2, 3, 4, 7]


def test_default_folder_is_the_current_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert export_dataset(demo(), progress=False) == Path("coco_instance.json")
    assert (tmp_path / "coco_instance.json").is_file()


def test_bad_format_and_arguments(tmp_path):
    with pytest.raises(ExportError) as info:
        export_dataset(demo(), "cocoo", out_dir=tmp_path / "out")
    assert str(info.value) == (
        "unknown export format 'cocoo'; the formats are: coco-instance (alias coco), "
        "coco-panoptic, semantic, instance"
    )
    with pytest.raises(TypeError, match="export_dataset takes a SegmentsDataset, not list"):
        export_dataset([], "coco", out_dir=tmp_path / "out")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_workers must be >= 0, not -1"):
        export_dataset(demo(), "coco", out_dir=tmp_path / "out", num_workers=-1)
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_missing_pycocotools_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(MissingExtraError) as info:
        export_dataset(demo(), "coco-instance", out_dir=tmp_path)
    assert str(info.value) == (
        "the coco-instance export needs pycocotools (import of pycocotools halted; None in "
        "sys.modules): pip install 'segments-torch[coco]'"
    )
    assert isinstance(info.value, ImportError)
    assert list(tmp_path.iterdir()) == []
    # The other formats do not need it.
    assert export_dataset(demo(), "semantic", out_dir=tmp_path, progress=False).is_file()


def test_importing_the_package_loads_no_optional_extra():
    code = (
        "import sys, segments_torch, segments_torch.export, segments_torch.cli;"
        "print(sorted(m for m in ('pycocotools', 'tqdm', 'lightning', 'torchmetrics', 'torch')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


# -- coco-instance ------------------------------------------------------------------------


def test_coco_instance_round_trip_is_pixel_exact(tmp_path):
    ds = demo(filter_by=None)  # every sample: a null label, a REJECTED one
    path = export_dataset(ds, "coco-instance", out_dir=tmp_path, progress=False)
    coco = COCO(str(path))
    reference = by_row(demo(filter_by=None, target="instance"))
    assert sorted(coco.getImgIds()) == list(range(8))
    assert [a["id"] for a in coco.dataset["annotations"]] == list(range(1, 28))
    for row, (image, target) in reference.items():
        record = coco.imgs[row]
        assert (record["height"], record["width"]) == tuple(image.shape[-2:])
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[row]))
        assert len(annotations) == len(target["masks"])
        for k, ann in enumerate(annotations):
            decoded = coco.annToMask(ann)
            assert np.array_equal(decoded, target["masks"][k].numpy()), (row, k)
            x1, y1, x2, y2 = target["boxes"][k].tolist()
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert mask_api.toBbox(ann["segmentation"]).tolist() == ann["bbox"]
            assert ann["area"] == int(decoded.sum()) == int(target["area"][k])
            assert ann["iscrowd"] == 0
            assert ann["segments_instance_id"] == int(target["instance_ids"][k])
    # Ids above 255 and 65535 are kept; category ids are the release's (0 is real).
    row1 = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["segments_instance_id"] for a in row1] == [5, 300, 70000, 16777000]
    assert [a["category_id"] for a in row1] == [3, 0, 1, 2]
    assert [(c["id"], c["name"], c["isthing"]) for c in coco.dataset["categories"]] == [
        (0, "circle", 1),
        (1, "square", 1),
        (2, "triangle", 1),
        (3, "grass", 0),
    ]
    # The EXIF-rotated sample: the oriented size, and the link back to the sample.
    assert coco.imgs[2] == {
        "id": 2,
        "file_name": "shapes-002-exif.jpg",
        "width": 180,
        "height": 240,
        "segments_row": 2,
        "segments_uuid": DEMO_UUIDS[2],
        "segments_name": "shapes-002-exif.jpg",
        "segments_image_url": "images/shapes-002-exif.jpg",
    }
    assert coco.getAnnIds(imgIds=[6]) == []  # the null label: an image without instances
    assert coco.dataset["info"]["segments_skipped"] == []


def test_coco_one_pixel_instance_and_url_without_query(tmp_path):
    ids = np.zeros((4, 5), dtype=np.int32)
    ids[2, 3] = 7
    ids[0, 0:2] = 300
    release = write_release(tmp_path / "r", [Spec("p.jpg", ids, [(7, 0), (300, 1)])])
    path = export_dataset(local(release), "coco", out_dir=tmp_path / "out", progress=False)
    document = load(path)
    one, two = document["annotations"]
    assert (one["bbox"], one["area"], one["segments_instance_id"]) == ([3, 2, 1, 1], 1, 7)
    assert (two["bbox"], two["area"], two["segments_instance_id"]) == ([0, 0, 2, 1], 2, 300)
    assert mask_api.decode(one["segmentation"]).tolist() == (ids == 7).astype(np.uint8).tolist()
    assert document["images"][0]["segments_image_url"] == "https://cdn.example/images/0.png"
    assert "secret" not in path.read_text()


def test_exported_image_urls_show_no_user_or_password(tmp_path):
    release = write_release(tmp_path / "r", [Spec("p.jpg", np.zeros((4, 5)), [])])
    text = release.read_text().replace("https://cdn.example/", "https://user:hunter2@cdn.example/")
    release.write_text(text)
    ds = SegmentsDataset(
        release, url_map={"https://user:hunter2@cdn.example/": f"{release.parent}/"}
    )
    path = export_dataset(ds, "coco", out_dir=tmp_path / "out", progress=False)
    assert load(path)["images"][0]["segments_image_url"] == "https://cdn.example/images/0.png"
    assert "hunter2" not in path.read_text()


def test_rle_encode_matches_pycocotools_encode():
    masks = torch.zeros((6, 5, 7), dtype=torch.uint8)
    masks[0, 1:3, 2:6] = 1
    masks[1, 4, 6] = 1  # the last pixel
    masks[2, :, 0] = 1  # the first column, whole
    masks[3] = 1  # everything
    masks[4, 0, 0] = 1  # the first pixel
    masks[4, 2, 3] = 1
    masks[5, 0:2, 5:7] = torch.tensor([[1, 0], [1, 1]])  # ends in the last column
    expected = [
        {"size": [5, 7], "counts": r["counts"].decode()}
        for r in mask_api.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy()))
    ]
    assert rle_encode(masks) == expected
    assert rle_encode(masks, segment_targets_boxes(masks)) == expected
    assert rle_encode(masks[:0]) == []
    rng = np.random.default_rng(5)
    for _ in range(50):  # random masks: both paths give pycocotools' RLE
        height, width = rng.integers(1, 12, size=2)
        random = torch.from_numpy(rng.random((4, height, width)) < rng.random()).to(torch.uint8)
        random[:, rng.integers(height), rng.integers(width)] = 1  # none empty
        reference = rle_encode(random)
        assert rle_encode(random, segment_targets_boxes(random)) == reference


def segment_targets_boxes(masks: torch.Tensor) -> torch.Tensor:
    """XYXY boxes covering each mask's pixels."""
    boxes = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32)


def test_merged_categories_become_one_coco_category(tmp_path):
    ds = demo(categories={"circle": 0, "square": 0, "grass": 1})
    assert category_ids_by_label(ds.categories) == {0: 0, 1: 3}
    document = load(export_dataset(ds, "coco", out_dir=tmp_path, progress=False))
    assert document["categories"] == [
        {
            "id": 0,
            "name": "circle|square",
            "supercategory": "",
            "isthing": 1,
            "color": [230, 57, 70],
            "training_label": 0,
            "segments_category_ids": [0, 1],
        },
        {
            "id": 3,
            "name": "grass",
            "supercategory": "",
            "isthing": 0,
            "color": [106, 168, 79],
            "training_label": 1,
            "segments_category_ids": [3],
        },
    ]
    row1 = [a for a in document["annotations"] if a["image_id"] == 1]
    # circle (300) and square (70000) both count as category 0; the triangle is gone.
    assert [(a["segments_instance_id"], a["category_id"]) for a in row1] == [
        (5, 3),
        (300, 0),
        (70000, 0),
    ]


def test_filters_and_labelset_are_respected(tmp_path):
    ds = demo(filter_by_metadata={"split": "val"})
    document = load(export_dataset(ds, "coco", out_dir=tmp_path / "val", progress=False))
    assert [image["id"] for image in document["images"]] == [2, 7]
    assert {a["image_id"] for a in document["annotations"]} == {2, 7}
    assert document["info"]["segments_samples"] == 2
    empty = demo(filter_by="verified")  # no sample: valid, empty files
    document = load(export_dataset(empty, "coco", out_dir=tmp_path / "e", progress=False))
    assert (document["images"], document["annotations"]) == ([], [])
    assert len(document["categories"]) == 4

    ids = np.array([[0, 1], [1, 1]])
    specs = [Spec("a.jpg", ids, [(1, 0)]), Spec("b.jpg", ids, [(1, 1)], status="REJECTED")]
    release = write_release(tmp_path / "r", specs, labelsets=("ground-truth", "model"))
    model = local(release, labelset="model", filter_by="rejected")
    document = load(export_dataset(model, "coco", out_dir=tmp_path / "m", progress=False))
    assert document["info"]["segments_labelset"] == "model"
    assert [(a["image_id"], a["category_id"], a["area"]) for a in document["annotations"]] == [
        (1, 1, 3)
    ]


def test_the_dataset_target_kind_and_transforms_do_not_matter(tmp_path):
    flipped = demo(target="semantic", transforms=v2.RandomHorizontalFlip(p=1.0))
    a = export_dataset(flipped, "coco", out_dir=tmp_path / "a", progress=False)
    b = export_dataset(demo(), "coco", out_dir=tmp_path / "b", progress=False)
    assert a.read_text() == b.read_text()
    assert flipped.target == "semantic"  # the dataset itself is left as it was
    assert flipped.transforms is not None


def test_a_dataset_decoded_on_the_device_exports_as_one_decoded_on_the_host(tmp_path):
    host = export_dataset(demo(), "coco-panoptic", out_dir=tmp_path / "host", progress=False)
    device = demo(decode="device")
    path = export_dataset(device, "coco-panoptic", out_dir=tmp_path / "device", progress=False)
    assert path.read_text().replace("/device", "/host") == host.read_text()
    pngs = folder_contents(tmp_path / "host" / "coco_panoptic")
    assert len(pngs) == 6
    assert folder_contents(tmp_path / "device" / "coco_panoptic") == pngs
    assert device.decode == "device"  # the dataset itself is left as it was


# -- coco-panoptic ------------------------------------------------------------------------


def test_panoptic_pngs_decode_to_the_dataset_instance_map(tmp_path):
    path = export_dataset(demo(), "coco-panoptic", out_dir=tmp_path, progress=False)
    assert path == tmp_path / "coco_panoptic.json"
    document = load(path)
    reference = by_row(demo(target="panoptic"))
    assert [a["image_id"] for a in document["annotations"]] == list(reference)
    for ann in document["annotations"]:
        _, target = reference[ann["image_id"]]
        with Image.open(tmp_path / "coco_panoptic" / ann["file_name"]) as png:
            assert png.mode == "RGB"
        pixels = read_label_png(tmp_path / "coco_panoptic" / ann["file_name"])
        segments = ann["segments_info"]
        ids = [s["id"] for s in segments]
        assert len(set(ids)) == len(ids)
        assert 0 not in ids
        # Segment id -> row in masks + 1: exactly the dataset's instance map.
        rows = {0: 0, **{sid: k + 1 for k, sid in enumerate(ids)}}
        instance_map = np.vectorize(rows.__getitem__)(pixels)
        assert np.array_equal(instance_map, target["instance_map"].numpy())
        for k, segment in enumerate(segments):
            x1, y1, x2, y2 = target["boxes"][k].tolist()
            assert segment["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert segment["area"] == int((pixels == segment["id"]).sum())
            assert segment["iscrowd"] == 0
    row1 = next(a for a in document["annotations"] if a["image_id"] == 1)
    assert row1["file_name"] == "shapes-001.png"
    assert [(s["id"], s["category_id"]) for s in row1["segments_info"]] == [
        (5, 3),
        (300, 0),
        (70000, 1),
        (16777000, 2),
    ]
    pixels = read_label_png(tmp_path / "coco_panoptic" / "shapes-001.png")
    assert np.unique(pixels).tolist() == [0, 5, 300, 70000, 16777000]
    # Things keep the bitmap's own ids, pixel for pixel.
    bitmap = decode_bitmap((DEMO / "bitmaps" / "shapes-001.png").read_bytes()).numpy()
    assert np.array_equal(pixels, np.where(np.isin(bitmap, [5, 300, 70000, 16777000]), bitmap, 0))
    assert [c["isthing"] for c in document["categories"]] == [1, 1, 1, 0]


def test_panoptic_stuff_is_one_segment_with_one_id(tmp_path):
    """The SDK gave every stuff segment of a category the same id (its color)."""
    ids = np.array([[1, 2, 2], [3, 3, 4], [0, 3, 9]])
    annotations = [(1, 0), (2, 5), (3, 5), (4, 1)]  # two grass (stuff) annotations
    release = write_release(tmp_path / "r", [Spec("s.jpg", ids, annotations)])
    path = export_dataset(local(release), "coco-panoptic", out_dir=tmp_path / "o", progress=False)
    (ann,) = load(path)["annotations"]
    assert ann["segments_info"] == [
        {"id": 1, "category_id": 0, "iscrowd": 0, "bbox": [0, 0, 1, 1], "area": 1},
        {"id": 2, "category_id": 5, "iscrowd": 0, "bbox": [0, 0, 3, 3], "area": 5},
        {"id": 4, "category_id": 1, "iscrowd": 0, "bbox": [2, 1, 1, 1], "area": 1},
    ]
    pixels = read_label_png(path.parent / "coco_panoptic" / "s.png")
    assert pixels.tolist() == [[1, 2, 2], [2, 2, 4], [0, 2, 0]]  # id 9: no annotation


# -- semantic -----------------------------------------------------------------------------


def test_semantic_8_bit_equals_the_dataset_target(tmp_path):
    path = export_dataset(demo(), "semantic", out_dir=tmp_path, progress=False)
    document = load(path)
    assert {k: document[k] for k in ("bit_depth", "ignore_index")} == {
        "bit_depth": 8,
        "ignore_index": 255,
    }
    assert document["labels"] == [
        {"label": 0, "name": "circle", "color": [230, 57, 70], "segments_category_ids": [0]},
        {"label": 1, "name": "square", "color": [69, 123, 157], "segments_category_ids": [1]},
        {"label": 2, "name": "triangle", "color": [128, 128, 128], "segments_category_ids": [2]},
        {"label": 3, "name": "grass", "color": [106, 168, 79], "segments_category_ids": [3]},
    ]
    assert "annotations" not in document
    reference = by_row(demo(target="semantic"))
    for record in document["images"]:
        assert record["label_file"] == f"semantic/{Path(record['file_name']).stem}.png"
        with Image.open(tmp_path / record["label_file"]) as png:
            assert png.mode == "L"
        expected = reference[record["id"]][1]["semantic"].numpy()
        assert np.array_equal(read_label_png(tmp_path / record["label_file"]), expected)
    pixels = read_label_png(tmp_path / "semantic" / "shapes-004.png")
    assert np.unique(pixels).tolist() == [0, 1, 2, 255]  # id 9 (no annotation): ignore


@pytest.mark.parametrize(
    ("kwargs", "values"),
    [
        ({"categories": {"circle": 300, "square": 1}}, [1, 255, 300]),
        ({"ignore_index": 1000}, [0, 1, 2, 3, 1000]),
    ],
)
def test_semantic_16_bit_when_a_value_passes_255(tmp_path, kwargs, values):
    """The SDK's semantic PNG went all-zero once a value passed 255."""
    ds = demo(target="semantic", **kwargs)
    document = load(export_dataset(ds, "semantic", out_dir=tmp_path, progress=False))
    assert document["bit_depth"] == 16
    png_path = tmp_path / "semantic" / "shapes-001.png"
    with Image.open(png_path) as png:
        assert png.mode == "I;16"
    pixels = read_label_png(png_path)
    assert np.unique(pixels).tolist() == values
    assert np.array_equal(pixels, by_row(ds)[1][1]["semantic"].numpy())


def test_semantic_values_a_png_cannot_hold_are_refused(tmp_path):
    with pytest.raises(ExportError) as info:
        export_dataset(demo(ignore_index=-100), "semantic", out_dir=tmp_path)
    assert str(info.value) == (
        "the ignore index -100 cannot be stored in a PNG; a semantic export needs an "
        "ignore_index in 0..65535 (e.g. the default 255)"
    )
    with pytest.raises(ExportError) as info:
        export_dataset(demo(categories={"circle": 70000}), "semantic", out_dir=tmp_path)
    assert str(info.value) == (
        "value 70000 (the largest training label or the ignore index) does not fit a "
        "16-bit PNG; a semantic export needs labels and ignore_index in 0..65535"
    )


# -- instance -----------------------------------------------------------------------------


def expected_instance_ids(name: str, kept: list[int]) -> np.ndarray:
    bitmap = decode_bitmap((DEMO / "bitmaps" / name).read_bytes()).numpy()
    return np.where(np.isin(bitmap, kept), bitmap, 0)


def test_instance_rgba_keeps_every_id(tmp_path):
    """Ids above 65535 (and 255, where the SDK wrapped them) come back exactly."""
    path = export_dataset(demo(), "instance", out_dir=tmp_path, progress=False)
    document = load(path)
    assert document["encoding"] == "rgba"
    with Image.open(tmp_path / "instance" / "shapes-001.png") as png:
        assert png.mode == "RGBA"
    pixels = read_label_png(tmp_path / "instance" / "shapes-001.png")
    kept = [5, 300, 70000, 16777000]
    assert np.array_equal(pixels, expected_instance_ids("shapes-001.png", kept))
    # shapes-004: the bitmap's id 9 has no annotation, so it is not an instance.
    pixels = read_label_png(tmp_path / "instance" / "shapes-004.png")
    assert np.array_equal(pixels, expected_instance_ids("shapes-004.png", [1, 2, 3]))
    assert 9 in decode_bitmap((DEMO / "bitmaps" / "shapes-004.png").read_bytes())
    row1 = [a for a in document["annotations"] if a["image_id"] == 1]
    assert [(a["instance_id"], a["category_id"], a["area"]) for a in row1] == [
        (5, 3, 9533),
        (300, 0, 3763),
        (70000, 1, 3989),
        (16777000, 2, 3900),
    ]
    record = document["images"][0]
    assert record["label_file"] == "instance/shapes-000.png"
    assert record["segments_uuid"] == DEMO_UUIDS[0]


def test_instance_16_bit_when_selected_ids_fit(tmp_path):
    ds = demo(categories=["circle", "grass"])  # leaves out ids 70000 and 16777000
    document = load(export_dataset(ds, "instance", out_dir=tmp_path, progress=False))
    assert document["encoding"] == "uint16"
    with Image.open(tmp_path / "instance" / "shapes-001.png") as png:
        assert png.mode == "I;16"
    pixels = read_label_png(tmp_path / "instance" / "shapes-001.png")
    assert np.array_equal(pixels, expected_instance_ids("shapes-001.png", [5, 300]))
    assert np.unique(pixels).tolist() == [0, 5, 300]


def test_label_png_codecs_refuse_what_they_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match=r"values 0\.\.70000 do not fit a uint16 PNG"):
        encode_ids(np.array([[0, 70000]]), "uint16")
    with pytest.raises(ValueError, match=r"values -1\.\.3 do not fit a uint8 PNG"):
        encode_ids(np.array([[-1, 3]]), "uint8")
    palette = tmp_path / "p.png"
    Image.new("P", (2, 2)).save(palette)
    with pytest.raises(ValueError, match="not a label PNG: mode P"):
        read_label_png(palette)
    for encoding, value in (("uint8", 255), ("uint16", 65535), ("rgb", 2**24 - 1)):
        ids = np.array([[0, 1], [value, value - 1]])
        assert read_label_png(encode_ids(ids, encoding)).tolist() == ids.tolist()


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shapes-000.jpg", ("shapes-000", ".jpg")),
        ("../../etc/passwd.png", ("etc_passwd", ".png")),
        ("/abs/x.jpg", ("abs_x", ".jpg")),
        ("C:\\data\\x.jpg", ("C__data_x", ".jpg")),
        ("..", ("sample-3", "")),
        ("", ("sample-3", "")),
        ("a..b.jpg", ("a.b", ".jpg")),
        (".hidden.jpg", ("hidden", ".jpg")),
        ("a\x00b\nc?.png", ("a_b_c_", ".png")),
        ("con.jpg", ("con_", ".jpg")),
        ("NUL.tar.gz", ("NUL_.tar", ".gz")),
        ("frame 7", ("frame 7", "")),
        ("é" * 200 + ".jpg", ("é" * 75, ".jpg")),
    ],
)
def test_safe_name(name, expected):
    assert safe_name(name, 3) == expected


def test_unique_file_names_are_deterministic():
    names = ["a.jpg", "A.JPG", "a.png", "dir/a.jpg", "a-2.jpg", "a.jpg", "e\u0301.png", "é.png"]
    assert unique_file_names(names, [0, 2, 5, 6, 7, 9, 10, 11]) == [
        ("a", ".jpg"),
        ("A-2", ".JPG"),  # case-insensitive filesystems would merge it with "a"
        ("a-5", ".png"),
        ("dir_a", ".jpg"),
        ("a-2-7", ".jpg"),  # its own stem was taken by row 2's
        ("a-9", ".jpg"),
        ("é", ".png"),
        ("é-11", ".png"),  # the same name once normalised
    ]
    assert unique_file_names(["b", "b-1", "b"], [0, 5, 1]) == [
        ("b", ""),
        ("b-1", ""),
        ("b-1-2", ""),
    ]


def test_unsafe_and_colliding_names_never_overwrite_or_escape(tmp_path):
    """The SDK wrote every "a.*" sample to the same file; each keeps its own here."""
    names = ["a.jpg", "a.jpg", "dir/a.jpg", "../a.jpg", "A.png", "/etc/passwd"]
    specs = [
        Spec(n, np.full((2, 3), 1000 * (k + 1)), [(1000 * (k + 1), 0)]) for k, n in enumerate(names)
    ]
    release = write_release(tmp_path / "r", specs)
    out = tmp_path / "out"
    document = load(export_dataset(local(release), "instance", out_dir=out, progress=False))
    files = [r["label_file"] for r in document["images"]]
    assert files == [
        "instance/a.png",
        "instance/a-1.png",
        "instance/dir_a.png",
        "instance/a-3.png",
        "instance/A-4.png",
        "instance/etc_passwd.png",
    ]
    assert [r["file_name"] for r in document["images"]] == [
        "a.jpg",
        "a-1.jpg",
        "dir_a.jpg",
        "a-3.jpg",
        "A-4.png",
        "etc_passwd",
    ]
    assert [r["segments_name"] for r in document["images"]] == names
    for k, file in enumerate(files):
        assert read_label_png(out / file).tolist() == [[1000 * (k + 1)] * 3] * 2
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert [p for p in written if not p.startswith("r/")] == sorted(f"out/{f}" for f in files)


# -- workers, failures, progress ---------------------------------------------------------------


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_workers_write_the_same_files(tmp_path):
    ds = demo(filter_by=None)
    for name in ("coco-panoptic", "coco-instance"):
        export_dataset(ds, name, out_dir=tmp_path / "serial" / name, progress=False)
        workers = tmp_path / "workers" / name
        export_dataset(ds, name, out_dir=workers, num_workers=2, progress=False)
    serial = folder_contents(tmp_path / "serial")
    assert len(serial) == 10  # 2 JSON files, 8 PNGs
    assert folder_contents(tmp_path / "workers") == serial


def test_the_work_pickles_for_spawned_workers(tmp_path):
    ds = demo()
    samples = _Samples(ds, EXPORT_FORMATS["coco-panoptic"](ds))
    copy = pickle.loads(pickle.dumps(samples))
    assert len(pickle.dumps(samples)) < 100_000
    got, expected = copy[1], samples[1]
    assert isinstance(got, Encoded)
    assert got == expected


def test_workers_encode_targets_made_in_private_memory():
    # Targets are encoded where they are made: shared memory would be spent for nothing.
    ds = demo(target="panoptic")
    samples = _Samples(ds, EXPORT_FORMATS["coco-panoptic"](ds))
    assert (samples.dataset.shared_memory, ds.shared_memory) == (False, True)


@pytest.mark.parametrize("module", ["base", "coco", "formats", "names", "png"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"segments_torch.export.{module}"))
    assert result.failed == 0
    assert result.attempted > 0


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return tmp_path / "demo" / "release.json"


def test_skipped_samples_are_left_out_and_listed(demo_copy, tmp_path):
    (demo_copy.parent / "images" / "shapes-001.jpg").write_bytes(b"broken")
    ds = SegmentsDataset(demo_copy, on_error="skip")
    document = load(export_dataset(ds, "coco-panoptic", out_dir=tmp_path / "o", progress=False))
    assert [image["id"] for image in document["images"]] == [0, 2, 3, 4, 7]
    assert [a["image_id"] for a in document["annotations"]] == [0, 2, 3, 4, 7]
    assert document["info"]["segments_skipped"] == ["shapes-001.jpg"]
    assert document["info"]["segments_samples"] == 5
    assert not (tmp_path / "o" / "coco_panoptic" / "shapes-001.png").exists()
    assert [s.name for s in ds.failed_samples()] == ["shapes-001.jpg"]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_skipped_sample_is_logged_once_by_the_main_process_around_the_bar(
    demo_copy, tmp_path, capsys, caplog, monkeypatch, workers
):
    """The skip is logged where the bar is drawn (not in a worker), and as in the command
    line, where logging is not configured, the line stands on its own, not in the bar."""
    (demo_copy.parent / "images" / "shapes-001.jpg").write_bytes(b"broken")
    ds = SegmentsDataset(demo_copy, on_error="skip")
    with caplog.at_level("WARNING", logger="segments_torch.dataset"):
        export_dataset(ds, "coco", out_dir=tmp_path / "o", num_workers=workers)
    line = (
        f"skipping sample 'shapes-001.jpg': {demo_copy.parent / 'images' / 'shapes-001.jpg'}: "
        "cannot decode the image (unknown data starting b'broken'): not a format Pillow reads "
        "either (on_error='skip')"
    )
    assert caplog.messages == [line]
    assert ds.failures == 1
    capsys.readouterr()
    monkeypatch.setattr(logging.root, "handlers", [])  # the handler of last resort prints
    ds = SegmentsDataset(demo_copy, on_error="skip")
    export_dataset(ds, "coco", out_dir=tmp_path / "o", num_workers=workers, overwrite=True)
    pieces = re.split(r"[\r\n]", capsys.readouterr().err)
    assert pieces.count(line) == 1
    assert [s.name for s in ds.failed_samples()] == ["shapes-001.jpg"]


def test_image_ids_sdk_number_the_selection_from_1(demo_copy, tmp_path):
    (demo_copy.parent / "images" / "shapes-001.jpg").write_bytes(b"broken")
    ds = SegmentsDataset(demo_copy, on_error="skip")
    for name in ("coco-instance", "coco-panoptic", "semantic", "instance"):
        document = load(
            export_dataset(ds, name, out_dir=tmp_path / name, progress=False, image_ids="sdk")
        )
        # ds[i] is image i + 1, the skipped sample's id left unused, as the SDK leaves
        # the id of a sample it skips; segments_row links each image to target["image_id"].
        assert [(i["id"], i["segments_row"]) for i in document["images"]] == [
            (1, 0),
            (3, 2),
            (4, 3),
            (5, 4),
            (6, 7),
        ], name
        annotations = document.get("annotations", [])  # semantic.json has none
        assert {a["image_id"] for a in annotations} <= {1, 3, 4, 5, 6}, name
        assert document["info"]["segments_image_ids"] == "sdk"
    rows = load(export_dataset(ds, "coco", out_dir=tmp_path / "rows", progress=False))
    assert [(i["id"], i["segments_row"]) for i in rows["images"]] == [
        (0, 0),
        (2, 2),
        (3, 3),
        (4, 4),
        (7, 7),
    ]
    assert rows["info"]["segments_image_ids"] == "row"
    with pytest.raises(ExportError) as info:
        export_dataset(ds, "coco", out_dir=tmp_path / "x", image_ids="position")
    assert str(info.value) == "image_ids must be one of row, sdk, not 'position'"


def second_release(demo_copy: Path) -> Path:
    """Another release of the demo's assets: every circle labelled a square and back, so
    that each exported PNG differs from the first release's."""
    document = json.loads(demo_copy.read_text())
    for item in document["dataset"]["samples"]:
        for label_ in item["labels"].values():
            for annotation_ in ((label_ or {}).get("attributes") or {}).get("annotations", []):
                annotation_["category_id"] = {0: 1, 1: 0}.get(annotation_["category_id"], 2)
    path = demo_copy.with_name("second.json")
    path.write_text(json.dumps(document))
    return path


def hidden_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("stop", "workers"),
    [("missing image", 0), ("missing image", 2), ("KeyboardInterrupt", 0)],
)
def test_an_interrupted_re_export_leaves_the_old_one_whole(
    demo_copy, tmp_path, monkeypatch, stop, workers
):
    out = tmp_path / "o"
    export_dataset(SegmentsDataset(demo_copy), "semantic", out_dir=out, progress=False)
    before = folder_contents(out)
    second = SegmentsDataset(second_release(demo_copy))
    children = {p.pid for p in psutil.Process().children()}
    if stop == "missing image":
        missing = demo_copy.parent / "images" / "shapes-004.jpg"
        missing.unlink()
        with pytest.raises(AssetError) as info:
            export_dataset(
                second, "semantic", out_dir=out, num_workers=workers, progress=False, overwrite=True
            )
        # The worker's error itself: one line, no worker traceback in its message.
        assert str(info.value) == f"sample 'shapes-004.jpg': {missing}: not found"
        # The workers are gone although the error (its traceback: the export's frame) lives.
        assert {p.pid for p in psutil.Process().children()} == children
    else:  # Ctrl-C after two samples were written: raised from inside the export's loop
        calls = []

        def interrupted(self: Any, record: dict[str, Any]) -> None:
            calls.append(record)
            if len(calls) == 3:
                raise KeyboardInterrupt

        monkeypatch.setattr("segments_torch.export.core._RecordStream.add", interrupted)
        with pytest.raises(KeyboardInterrupt):
            export_dataset(second, "semantic", out_dir=out, progress=False, overwrite=True)
    assert folder_contents(out) == before  # the first release's JSON and PNGs, all of them
    assert hidden_entries(tmp_path) == hidden_entries(out) == []  # no partial folder left


def test_a_re_export_replaces_the_folder_whole(demo_copy, tmp_path, monkeypatch):
    out = tmp_path / "o"
    export_dataset(SegmentsDataset(demo_copy), "coco-panoptic", out_dir=out, progress=False)
    (out / "notes.txt").write_text("mine")
    second = SegmentsDataset(second_release(demo_copy))
    with pytest.raises(ExportError) as info:
        export_dataset(second, "semantic", out_dir=out, progress=False)
    assert str(info.value) == (
        f"cannot export into {out}: the folder is not empty; pass overwrite=True "
        "(export --overwrite) to replace it and everything in it"
    )
    assert (out / "notes.txt").read_text() == "mine"
    assert hidden_entries(tmp_path) == []

    monkeypatch.setattr(os, "umask", os.umask)  # restored after the test
    os.umask(0o027)
    path = export_dataset(second, "semantic", out_dir=out, progress=False, overwrite=True)
    assert path == out / "semantic.json"
    fresh = tmp_path / "fresh"
    export_dataset(second, "semantic", out_dir=fresh, progress=False)
    assert folder_contents(out) == folder_contents(fresh)  # the old files are gone
    assert out.stat().st_mode & 0o777 == 0o750  # the umask's, not a temporary folder's
    assert hidden_entries(tmp_path) == []  # nor is the old folder kept aside


def test_an_empty_folder_is_filled_in_place(tmp_path, monkeypatch):
    out = tmp_path / "mounted"
    out.mkdir()
    inode = out.stat().st_ino
    export_dataset(demo(), "semantic", out_dir=out, progress=False)
    assert out.stat().st_ino == inode
    assert sorted(p.name for p in out.iterdir()) == ["semantic", "semantic.json"]
    monkeypatch.chdir(out)  # the working directory is never replaced
    with pytest.raises(ExportError) as info:
        export_dataset(demo(), "semantic", out_dir=".", progress=False, overwrite=True)
    assert (
        str(info.value) == "cannot replace .: this process works in it; export into another folder"
    )


def test_out_dir_that_cannot_be_written(tmp_path, monkeypatch):
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(OutputError) as info:
        export_dataset(demo(), "semantic", out_dir=file, progress=False, overwrite=True)
    assert str(info.value) == f"cannot export into {file}: it exists and is not a folder"
    with pytest.raises(OutputError) as info:
        export_dataset(demo(), "semantic", out_dir=file / "a" / "b", progress=False)
    assert str(info.value) == f"cannot export into {file / 'a' / 'b'}: {file} is not a folder"
    assert isinstance(info.value, OSError)

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OutputError) as info:
        export_dataset(demo(), "semantic", out_dir=tmp_path / "out", progress=False)
    assert str(info.value) == (
        f"cannot write the export into {tmp_path / 'out'}: No space left on device"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_progress_without_tqdm(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    export_dataset(demo(), "semantic", out_dir=tmp_path)
    assert capsys.readouterr().err.splitlines() == [
        "export semantic: 1/6 (16 %)",
        "export semantic: 2/6 (33 %)",
        "export semantic: 3/6 (50 %)",
        "export semantic: 4/6 (66 %)",
        "export semantic: 5/6 (83 %)",
        "export semantic: 6/6 (100 %)",
    ]
    export_dataset(demo(), "semantic", out_dir=tmp_path, progress=False, overwrite=True)
    assert capsys.readouterr().err == ""


# -- vector labelsets -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [None, 120], ids=["full", "resized"])
def test_vector_coco_polygons_decode_to_the_dataset_masks(tmp_path, size):
    ds = SegmentsDataset(VECTOR_RELEASE_PATH, size=size)
    path = export_dataset(ds, "coco-instance", out_dir=tmp_path, progress=False)
    coco = COCO(str(path))
    checked = 0
    for row, (image, target) in by_row(ds).items():
        assert (coco.imgs[row]["height"], coco.imgs[row]["width"]) == tuple(image.shape[-2:])
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[row]))
        assert len(annotations) == len(target["masks"])
        for k, ann in enumerate(annotations):
            # pycocotools rasterises the exported polygon to exactly the dataset's mask.
            assert np.array_equal(coco.annToMask(ann), target["masks"][k].numpy()), (row, k)
            x1, y1, x2, y2 = target["boxes"][k].tolist()
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert ann["area"] == int(target["area"][k])
            assert ann["segments_instance_id"] == int(target["instance_ids"][k])
            checked += 1
    assert checked == 21
    # shapes-000's square is a bbox: its polygon is the box's four corners.
    square = coco.loadAnns(coco.getAnnIds(imgIds=[0]))[1]
    x, y, w, h = square["bbox"]
    assert square["segmentation"] == [[x, y, x + w, y, x + w, y + h, x, y + h]]


def test_vector_semantic_export_equals_the_dataset_target(tmp_path):
    ds = SegmentsDataset(VECTOR_RELEASE_PATH, target="semantic")
    document = load(export_dataset(ds, "semantic", out_dir=tmp_path, progress=False))
    reference = by_row(ds)
    for record in document["images"]:
        expected = reference[record["id"]][1]["semantic"].numpy()
        assert np.array_equal(read_label_png(tmp_path / record["label_file"]), expected)


@pytest.mark.parametrize("name", ["coco-panoptic", "instance"])
def test_vector_formats_that_need_bitmaps_are_refused(tmp_path, name):
    with pytest.raises(ExportError) as info:
        export_dataset(SegmentsDataset(VECTOR_RELEASE_PATH), name, out_dir=tmp_path)
    assert str(info.value) == (
        f"{name} needs bitmap labels: labelset 'ground-truth' holds shapes "
        "(its formats: coco-instance, semantic)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_sequence_dataset_exports_one_file_per_frame(tmp_path):
    # Whole sequences or not, the rows are frames: the same export, frame names unique.
    whole = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH, sequence=True)
    written = export_dataset(whole, "coco-panoptic", tmp_path / "whole", progress=False)
    frames = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH)
    same = export_dataset(frames, "coco-panoptic", tmp_path / "frames", progress=False)
    assert sorted(path.name for path in (written.parent / "coco_panoptic").iterdir()) == [
        *(f"drift_{frame}.png" for frame in range(4)),
        *(f"walk_frame-{frame}.png" for frame in range(4)),
    ]
    document = json.loads(written.read_text())
    assert document == json.loads(same.read_text())
    # drift's last frame: its square is segment 5, its track, not 1, its bitmap id.
    last = next(a for a in document["annotations"] if a["file_name"] == "drift_3.png")
    assert [segment["id"] for segment in last["segments_info"]] == [5]


def test_a_sequence_dataset_skips_a_broken_frame_alone(demo_copy, tmp_path):
    (demo_copy.parent / "frames" / "drift-2.jpg").write_bytes(b"broken")
    whole = SegmentsDataset(demo_copy.with_name("segmentation-sequence.json"), sequence=True)
    skipping = whole.with_options(on_error="skip")
    document = load(
        export_dataset(skipping, "coco-panoptic", out_dir=tmp_path / "o", progress=False)
    )
    assert document["info"]["segments_skipped"] == ["drift/2"]
    assert [image["id"] for image in document["images"]] == [0, 1, 2, 3, 4, 5, 7]
