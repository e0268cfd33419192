from __future__ import annotations

import io
import json
import math
import pickle
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from segments_torch import SegmentsDataset, codecs, load_release
from segments_torch import targets as targets_module
from segments_torch.codecs import decode_bitmap, encode_bitmap
from segments_torch.dataset import UnsupportedTaskError
from segments_torch.demo import (
    RELEASE_PATH,
    SEGMENTATION_SEQUENCE_RELEASE_PATH,
    SEQUENCE_RELEASE_PATH,
    VECTOR_RELEASE_PATH,
)
from segments_torch.errors import AssetError, OptionError
from segments_torch.shapes import polygon_mask
from segments_torch.storage import RetryPolicy, Storage
from segments_torch.targets import TARGET_KINDS, instance_fields
from tests.items import assert_same, assert_same_items
from tests.oriented import oriented_release
from tests.releases import current_release, dataset_tasks_release

DEMO = RELEASE_PATH.parent
REAL = Path(__file__).parent / "fixtures" / "real"


def demo_ids(name: str) -> torch.Tensor:
    return decode_bitmap((DEMO / "bitmaps" / name).read_bytes())


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """A writable copy of the demo release folder."""
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return tmp_path / "demo" / "release.json"


def edit_release(path: Path, edit: Any) -> None:
    document = json.loads(path.read_text())
    edit(document["dataset"]["samples"])
    path.write_text(json.dumps(document))


# -- construction ---------------------------------------------------------------------


def test_construction_reads_no_asset(tmp_path):
    # The release's assets do not exist: construction must not notice.
    path = tmp_path / "r.json"
    path.write_text(json.dumps(current_release()))
    ds = SegmentsDataset(path)
    assert len(ds) == 2
    assert ds.rows.tolist() == [0, 1]
    info = ds.sample_info(1)
    assert (info.name, info.status, info.metadata) == ("b.jpg", "REVIEWED", {"split": "val"})
    assert ds.num_classes == 4  # 3 categories + background


def test_seed_example_runs_as_written(tmp_path):
    """The seed document's call, imports pointing at this package."""
    release_file = tmp_path / "flowers-v1.0.json"
    release_file.write_text(json.dumps(dataset_tasks_release("dict")))
    dataset = SegmentsDataset(
        str(release_file), task="segmentation", filter_by=["labeled", "reviewed"]
    )
    assert len(dataset) == 2
    assert dataset.labelset == "segmentation"

    real = SegmentsDataset(
        str(REAL / "arc_litter-v1.1.json"), task="segmentation", filter_by=["labeled", "reviewed"]
    )
    assert len(real) == 43
    assert SegmentsDataset(REAL / "arc_litter-v2.1.json", filter_by=None).labelset == "segmentation"
    assert len(SegmentsDataset(REAL / "arc_litter-v2.1.json", filter_by="SKIPPED")) == 8


def test_rows_narrow_what_the_filters_keep():
    every = SegmentsDataset(RELEASE_PATH, filter_by=None)
    assert every.rows.tolist() == list(range(8))
    labelled = SegmentsDataset(RELEASE_PATH)
    kept = labelled.rows.tolist()
    assert len(kept) == 6
    # rows the filters drop stay dropped; the table's order is kept, not the given one
    dropped = sorted(set(range(8)) - set(kept))
    ds = SegmentsDataset(RELEASE_PATH, rows=[kept[3], dropped[0], kept[0]])
    assert ds.rows.tolist() == [kept[0], kept[3]]
    assert ds.sample_info(1).name == labelled.sample_info(3).name
    assert len(SegmentsDataset(RELEASE_PATH, rows=[])) == 0
    with pytest.raises(IndexError, match=r"rows= holds \[8, -1\], outside the release's 8 samples"):
        SegmentsDataset(RELEASE_PATH, rows=[0, 8, -1])


def test_an_empty_selection_warns_with_the_counts_per_status(caplog):
    counts = "8 samples (UNLABELED 1, LABELED 3, REVIEWED 3, REJECTED 1)"
    with caplog.at_level("WARNING", logger="segments_torch.dataset"):
        assert len(SegmentsDataset(RELEASE_PATH, filter_by=["verified", "skipped"])) == 0
        assert len(SegmentsDataset(RELEASE_PATH, filter_by_metadata={"split": "test"})) == 0
        assert len(SegmentsDataset(RELEASE_PATH, filter_by="rejected", rows=[0, 1])) == 0
        assert len(SegmentsDataset(RELEASE_PATH)) == 6  # no warning
    assert caplog.messages == [
        f"{RELEASE_PATH}: no sample selected: labelset 'ground-truth' has {counts} and the "
        "label statuses kept are VERIFIED, SKIPPED",
        f"{RELEASE_PATH}: no sample selected: labelset 'ground-truth' has {counts} and the "
        "label statuses kept are LABELED, REVIEWED; of those 6 samples, none has metadata "
        "{'split': 'test'}",
        f"{RELEASE_PATH}: no sample selected: none of the 1 that pass the filters is among rows=",
    ]


def test_filters_and_categories_on_the_demo():
    assert len(SegmentsDataset(RELEASE_PATH)) == 6
    assert len(SegmentsDataset(RELEASE_PATH, filter_by=None)) == 8
    assert len(SegmentsDataset(RELEASE_PATH, filter_by="rejected")) == 1
    val = SegmentsDataset(RELEASE_PATH, filter_by_metadata={"split": "val"})
    assert [val.sample_info(i).name for i in range(len(val))] == [
        "shapes-002-exif.jpg",
        "shapes-007.jpg",
    ]
    ds = SegmentsDataset(RELEASE_PATH, target="semantic", categories=["square", "circle"])
    assert ds.num_classes == 2
    assert str(ds.categories) == (
        "release id  name      label  color\n"
        "0           circle    1      (230, 57, 70)\n"
        "1           square    0      (69, 123, 157)\n"
        "2           triangle  -      -\n"
        "3           grass     -      (106, 168, 79)\n"
        "ignore index: 255"
    )
    assert repr(SegmentsDataset(RELEASE_PATH)) == (
        f"SegmentsDataset('{RELEASE_PATH}', labelset='ground-truth', target='instance', "
        "samples=6 (LABELED: 3, REVIEWED: 3), num_classes=5)"
    )


def test_bad_arguments():
    with pytest.raises(
        ValueError, match="target must be one of instance, semantic, panoptic, boxes"
    ):
        SegmentsDataset(RELEASE_PATH, target="masks")
    with pytest.raises(ValueError, match="labelset='a' and task='b' name different labelsets"):
        SegmentsDataset(RELEASE_PATH, labelset="a", task="b")
    with pytest.raises(IndexError, match="index 6 is out of range for 6 samples"):
        SegmentsDataset(RELEASE_PATH)[6]


def test_unsupported_task_type_is_refused(tmp_path):
    path = tmp_path / "cuboids.json"
    path.write_text(json.dumps(current_release(task_type="pointcloud-cuboid")))
    with pytest.raises(UnsupportedTaskError) as info:
        SegmentsDataset(path)
    assert str(info.value) == (
        f"{path}: labelset 'ground-truth' has task type 'pointcloud-cuboid'; SegmentsDataset "
        "serves bboxes, image-segmentation-sequence, image-vector-sequence, keypoints, "
        "segmentation-bitmap, segmentation-bitmap-highres, vector"
    )


# -- items ---------------------------------------------------------------------------------


def test_instance_item_matches_the_bitmap():
    ds = SegmentsDataset(RELEASE_PATH)
    image, target = ds[1]  # shapes-001: ids 5 (grass), 300, 70000, 16777000
    ids = demo_ids("shapes-001.png")
    assert isinstance(image, tv_tensors.Image)
    assert (image.dtype, tuple(image.shape)) == (torch.uint8, (3, 180, 240))
    assert target["instance_ids"].tolist() == [5, 300, 70000, 16777000]
    assert target["labels"].tolist() == [4, 1, 2, 3]  # categories 3, 0, 1, 2 + 1
    assert target["labels"].dtype == torch.int64
    masks = target["masks"]
    assert isinstance(masks, tv_tensors.Mask)
    assert (masks.dtype, tuple(masks.shape)) == (torch.uint8, (4, 180, 240))
    for mask, instance_id in zip(masks, target["instance_ids"], strict=True):
        assert torch.equal(mask.bool(), ids == instance_id)
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert (boxes.format, boxes.canvas_size) == (tv_tensors.BoundingBoxFormat.XYXY, (180, 240))
    for box, mask in zip(boxes, masks, strict=True):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert target["area"].tolist() == [int((ids == i).sum()) for i in (5, 300, 70000, 16777000)]
    assert target["iscrowd"].tolist() == [0, 0, 0, 0]
    assert int(target["image_id"]) == 1


def test_exif_rotated_image_matches_its_bitmap():
    ds = SegmentsDataset(RELEASE_PATH)
    image, target = ds[2]  # shapes-002-exif.jpg: stored 240x180, orientation 6
    assert ds.sample_info(2).name == "shapes-002-exif.jpg"
    assert tuple(image.shape) == (3, 240, 180)
    assert tuple(target["masks"].shape[1:]) == (240, 180)
    # The circle (category 0, red) is red in the oriented image where its mask is.
    circle = target["masks"][target["labels"] == 1][0].bool()
    mean = image[:, circle].float().mean(dim=1)
    assert mean[0] > 180
    assert mean[1] < 100
    assert mean[2] < 100


def test_absent_annotations_and_unannotated_ids():
    ds = SegmentsDataset(RELEASE_PATH, target="panoptic")
    names = [ds.sample_info(i).name for i in range(len(ds))]
    _, target = ds[names.index("shapes-003.png")]  # annotation 4 is not in the bitmap
    assert target["instance_ids"].tolist() == [1, 2, 3]
    _, target = ds[names.index("shapes-004.jpg")]  # id 9 is drawn but has no annotation
    ids = demo_ids("shapes-004.png")
    assert bool((ids == 9).any())
    assert torch.all(target["semantic"][ids == 9] == 255)
    assert torch.all(target["instance_map"][ids == 9] == 0)


def test_semantic_item():
    ds = SegmentsDataset(RELEASE_PATH, target="semantic")
    _, target = ds[0]
    ids = demo_ids("shapes-000.png")
    expected = torch.full(ids.shape, 255, dtype=torch.int64)
    for instance_id, label in ((1, 3), (2, 0), (3, 1), (4, 2)):
        expected[ids == instance_id] = label
    assert isinstance(target["semantic"], tv_tensors.Mask)
    assert torch.equal(target["semantic"], expected)
    assert set(target) == {"semantic", "image_id"}


def test_panoptic_item_merges_stuff():
    ds = SegmentsDataset(RELEASE_PATH, target="panoptic")
    _, target = ds[len(ds) - 1]  # shapes-007: grass (stuff) + 6 things
    assert target["is_thing"].tolist() == [False, True, True, True, True, True, True]
    assert target["labels"].tolist() == [4, 1, 1, 1, 2, 2, 3]
    instance_map = target["instance_map"]
    for row, mask in enumerate(target["masks"]):
        assert torch.equal(instance_map == row + 1, mask.bool())
        assert torch.all(target["semantic"][mask.bool()] == target["labels"][row] - 1)


def test_selected_sample_without_bitmap_has_empty_targets():
    for kind in ("instance", "panoptic"):
        ds = SegmentsDataset(RELEASE_PATH, filter_by="unlabeled", target=kind)
        image, target = ds[0]
        height, width = image.shape[-2:]
        assert tuple(target["boxes"].shape) == (0, 4)
        assert tuple(target["labels"].shape) == (0,)
        assert tuple(target["masks"].shape) == (0, height, width)
    ds = SegmentsDataset(RELEASE_PATH, filter_by="unlabeled", target="semantic")
    image, target = ds[0]
    assert torch.all(target["semantic"] == 255)
    assert tuple(target["semantic"].shape) == tuple(image.shape[-2:])


def test_unselected_categories_produce_no_instance():
    ds = SegmentsDataset(RELEASE_PATH, categories={"circle": 0, "square": 0})
    _, target = ds[1]
    assert target["instance_ids"].tolist() == [300, 70000]
    assert target["labels"].tolist() == [1, 1]
    assert ds.num_classes == 2


# -- bad assets ------------------------------------------------------------------------------


def test_bitmap_of_another_size_is_named(demo_copy):
    bitmap = demo_copy.parent / "bitmaps" / "shapes-000.png"
    bitmap.write_bytes(encode_bitmap(np.zeros((10, 12), dtype=np.uint32)))
    with pytest.raises(AssetError) as info:
        SegmentsDataset(demo_copy)[0]
    assert str(info.value) == (
        "sample 'shapes-000.jpg': bitmaps/shapes-000.png: the bitmap is 12x10 (width x height) "
        "but the oriented image is 320x240"
    )
    assert (info.value.sample, info.value.url) == ("shapes-000.jpg", "bitmaps/shapes-000.png")


def test_bitmap_of_another_mode_is_named(demo_copy):
    buffer = io.BytesIO()
    Image.new("L", (320, 240)).save(buffer, format="PNG")
    (demo_copy.parent / "bitmaps" / "shapes-000.png").write_bytes(buffer.getvalue())
    with pytest.raises(AssetError) as info:
        SegmentsDataset(demo_copy)[0]
    assert str(info.value) == (
        f"sample 'shapes-000.jpg': {demo_copy.parent / 'bitmaps' / 'shapes-000.png'}: expected "
        "an 8-bit RGBA or RGB PNG bitmap, found 8-bit grayscale"
    )


def test_remote_bitmap_of_another_size_is_named(demo_copy, file_server):
    # Over HTTP the bitmap's target is made in a storage thread before the sizes are
    # compared: the mismatch is still refused, with the same message.
    bitmap = demo_copy.parent / "bitmaps" / "shapes-000.png"
    bitmap.write_bytes(encode_bitmap(np.zeros((10, 12), dtype=np.uint32)))
    ds = SegmentsDataset(demo_copy, asset_root=f"{file_server.url}/demo")
    with pytest.raises(AssetError) as info:
        ds[0]
    assert str(info.value) == (
        "sample 'shapes-000.jpg': bitmaps/shapes-000.png: the bitmap is 12x10 (width x height) "
        "but the oriented image is 320x240"
    )


@pytest.mark.parametrize("target", ["instance", "semantic", "panoptic"])
def test_remote_targets_are_made_in_the_storage_thread(demo_copy, file_server, monkeypatch, target):
    # Over HTTP a storage thread downloads, decodes and builds the bitmap's target while
    # the caller's thread downloads and decodes the image; the items are the local ones.
    local = SegmentsDataset(demo_copy, target=target)
    remote = SegmentsDataset(demo_copy, target=target, asset_root=f"{file_server.url}/demo")
    built_in: list[str] = []
    target_for = SegmentsDataset.target_for

    def spy(self: SegmentsDataset, *args: Any, **kwargs: Any) -> dict[str, Any]:
        built_in.append(threading.current_thread().name)
        return target_for(self, *args, **kwargs)

    monkeypatch.setattr(SegmentsDataset, "target_for", spy)
    assert_same_items(
        [remote[i] for i in range(len(remote))], [local[i] for i in range(len(local))]
    )
    count = len(local)
    assert all(name.startswith("segments-torch-read") for name in built_in[:count])
    assert built_in[count:] == [threading.current_thread().name] * count  # local files


def test_the_release_is_read_with_the_asset_storage_settings(demo_copy, file_server):
    """A release URL is read as the assets are: through url_map, with retry and timeout."""
    url = file_server.url_for("demo/release.json", query="sig=secret")
    file_server.fail("demo/release.json", 503, times=2)
    ds = SegmentsDataset(url, retry=RetryPolicy(attempts=3, base_delay=0.001), timeout=5)
    assert ds.release.source == file_server.url_for("demo/release.json")
    assert file_server.count("demo/release.json") == 3
    assert torch.equal(ds[0][0], SegmentsDataset(demo_copy)[0][0])  # assets beside it

    mirrored = SegmentsDataset(
        "https://bucket.example/demo/release.json",
        url_map={"https://bucket.example/demo/": f"{demo_copy.parent}/"},
    )
    assert mirrored.release.source == "https://bucket.example/demo/release.json"
    assert torch.equal(mirrored[0][0], ds[0][0])  # its relative assets: mapped too


def test_the_release_is_read_through_the_given_storage(demo_copy):
    storage = Storage(url_map={"https://bucket.example/demo/": f"{demo_copy.parent}/"})
    ds = SegmentsDataset("https://bucket.example/demo/release.json", storage=storage)
    assert ds.release.source == "https://bucket.example/demo/release.json"
    assert torch.equal(ds[0][0], SegmentsDataset(demo_copy)[0][0])


# -- storage= and its keywords --------------------------------------------------------


def test_a_storage_without_base_url_gets_the_release_folder_in_a_copy(tmp_path):
    storage = Storage(cache_dir=tmp_path / "cache", label_cache=tmp_path / "labels")
    ds = SegmentsDataset(RELEASE_PATH, storage=storage)
    assert ds.storage is not storage
    assert storage.base_url is None  # the given one is left as it was
    assert ds.storage.base_url == str(DEMO)
    assert (ds.storage.cache_dir, ds.storage.label_cache) == (
        tmp_path / "cache",
        tmp_path / "labels",
    )
    assert ds.label_cache is not None
    assert ds.label_cache.folder == tmp_path / "labels"


def test_a_storage_with_a_base_url_is_the_datasets_own(tmp_path):
    storage = Storage(str(DEMO))
    ds = SegmentsDataset(RELEASE_PATH, storage=storage)
    assert ds.storage is storage
    assert ds.label_cache is None


def test_the_storage_keywords_make_the_same_storage(tmp_path):
    retry = RetryPolicy(attempts=2)
    ds = SegmentsDataset(
        RELEASE_PATH,
        asset_root=str(DEMO),
        storage_options={"file": {"auto_mkdir": True}},
        url_map={"https://cdn.example/": f"{DEMO}/"},
        cache_dir=tmp_path / "cache",
        cache_key="url",
        timeout=7.0,
        retry=retry,
        label_cache=tmp_path / "labels",
    )
    storage = ds.storage
    assert storage.base_url == str(DEMO)
    assert storage.storage_options == {"file": {"auto_mkdir": True}}
    assert storage.url_map == {"https://cdn.example/": f"{DEMO}/"}
    assert (storage.cache_dir, storage.cache_key) == (tmp_path / "cache", "url")
    assert (storage.timeout, storage.retry, storage.label_cache) == (
        7.0,
        retry,
        tmp_path / "labels",
    )
    assert ds.label_cache is not None
    assert ds.label_cache.folder == tmp_path / "labels"


def test_storage_and_storage_keywords_together_are_refused():
    with pytest.raises(OptionError) as info:
        SegmentsDataset(RELEASE_PATH, storage=Storage(), cache_dir="/c", asset_root="/a")
    assert str(info.value) == (
        "SegmentsDataset: storage= and cache_dir=, asset_root= given together; set them on "
        "the Storage: Storage(cache_dir=..., base_url=...)"
    )


def test_unknown_keywords_and_a_storage_of_another_type_are_refused():
    with pytest.raises(OptionError) as info:
        SegmentsDataset(RELEASE_PATH, cache_dri="/c")  # type: ignore[call-arg]
    assert str(info.value) == (
        "SegmentsDataset got unexpected keyword arguments 'cache_dri' (its storage keywords "
        "are asset_root, storage_options, url_map, cache_dir, cache_key, timeout, retry, "
        "label_cache)"
    )
    with pytest.raises(OptionError) as info:
        SegmentsDataset(RELEASE_PATH, storage={"cache_dir": "/c"})  # type: ignore[arg-type]
    assert str(info.value) == "SegmentsDataset: storage= takes a Storage, not dict"


# -- with_options --------------------------------------------------------------------------


def test_with_options_makes_a_variant_of_the_same_release():
    ds = SegmentsDataset(RELEASE_PATH, target="instance", categories=["circle"])
    semantic = ds.with_options(target="semantic", ignore_index=100)
    assert semantic.release is ds.release  # not read again
    assert semantic.storage is ds.storage
    assert (semantic.target, semantic.ignore_index, ds.target) == ("semantic", 100, "instance")
    assert semantic.categories.label_names == ["circle"]  # the rest as it was
    expected = SegmentsDataset(
        RELEASE_PATH, target="semantic", categories=["circle"], ignore_index=100
    )
    assert_same(semantic[2], expected[2])


def test_with_options_runs_the_constructors_checks():
    ds = SegmentsDataset(RELEASE_PATH)
    expected = "target must be one of instance, semantic, panoptic, boxes, not 'masks'"
    with pytest.raises(ValueError, match=r"^target must be one of") as info:
        ds.with_options(target="masks")
    assert str(info.value) == expected
    with pytest.raises(ValueError, match=r"^background= with target='panoptic' needs"):
        ds.with_options(target="panoptic", background="background", label_offset=0)
    with pytest.raises(OptionError) as info:
        ds.with_options(targt="semantic", release=RELEASE_PATH)
    assert str(info.value) == (
        "with_options() takes the keywords of SegmentsDataset, not 'release', 'targt'"
    )
    with pytest.raises(OptionError, match=r"^with_options\(\): storage= and cache_dir= given"):
        ds.with_options(storage=Storage(), cache_dir="/c")


def test_with_options_storage_keywords_change_a_copy_of_the_storage(tmp_path):
    ds = SegmentsDataset(RELEASE_PATH, url_map={"https://cdn.example/": f"{DEMO}/"})
    cached = ds.with_options(cache_dir=tmp_path / "cache", label_cache=tmp_path / "labels")
    assert cached.storage is not ds.storage
    assert (ds.storage.cache_dir, ds.label_cache) == (None, None)
    assert cached.storage.cache_dir == tmp_path / "cache"
    assert cached.label_cache is not None
    assert cached.label_cache.folder == tmp_path / "labels"
    assert (cached.storage.base_url, cached.storage.url_map) == (
        ds.storage.base_url,
        ds.storage.url_map,
    )
    other = Storage(str(DEMO))
    assert ds.with_options(storage=other).storage is other


def test_with_options_shares_failure_counts_when_the_rows_are_the_same(demo_copy):
    (demo_copy.parent / "images" / "shapes-000.jpg").unlink()
    ds = SegmentsDataset(demo_copy, on_error="skip")
    semantic = ds.with_options(target="semantic")
    semantic[0]  # skipped: counted for both
    assert (ds.failures, semantic.failures) == (1, 1)
    everything = ds.with_options(filter_by=None)  # other rows: counts of its own
    everything[0]
    assert (ds.failures, everything.failures) == (1, 1)
    everything[1]
    assert [s.name for s in ds.failed_samples()] == ["shapes-000.jpg"]


def test_bitmap_url_and_max_instance_id():
    ds = SegmentsDataset(RELEASE_PATH, filter_by=None)
    table = ds.release.samples
    assert ds.bitmap_url(0) == table.record(0).bitmap_url == "bitmaps/shapes-000.png"
    assert ds.bitmap_url(6) is None  # UNLABELED: no bitmap
    assert ds.bitmap_url(-2) is None
    with pytest.raises(IndexError, match=r"^index 8 is out of range for 8 samples$"):
        ds.bitmap_url(8)
    every_id = [int(i) for row in range(len(table)) for i in table.record(row).annotation_ids]
    assert ds.max_instance_id() == max(every_id)
    circles = ds.with_options(categories=["circle"])
    circle_ids = [
        int(i)
        for row in range(len(table))
        for i, c in zip(
            table.record(row).annotation_ids, table.record(row).category_ids, strict=True
        )
        if ds.release.labelsets["ground-truth"].categories[0].id == c
    ]
    assert circles.max_instance_id() == max(circle_ids)
    assert ds.with_options(rows=[6]).max_instance_id() == 0


def test_missing_image_is_named(demo_copy):
    (demo_copy.parent / "images" / "shapes-000.jpg").unlink()
    with pytest.raises(AssetError) as info:
        SegmentsDataset(demo_copy)[0]
    assert str(info.value) == (
        f"sample 'shapes-000.jpg': {demo_copy.parent / 'images' / 'shapes-000.jpg'}: not found"
    )


def test_relative_urls_need_a_folder():
    release = load_release(RELEASE_PATH)
    document = json.loads(RELEASE_PATH.read_text())
    ds = SegmentsDataset(document)
    with pytest.raises(AssetError) as info:
        ds[0]
    assert str(info.value) == (
        "sample 'shapes-000.jpg': images/shapes-000.jpg: relative URL 'images/shapes-000.jpg' and "
        "no folder to resolve it against (the release was not read from a file): pass asset_root="
    )
    image, _ = SegmentsDataset(document, asset_root=str(DEMO))[0]
    assert torch.equal(image, SegmentsDataset(release)[0][0])


# -- transforms ------------------------------------------------------------------------------


def test_v2_transforms_keep_masks_boxes_and_semantic_aligned():
    torch.manual_seed(0)
    transforms = v2.Compose(
        [
            v2.RandomResizedCrop((96, 128), scale=(0.3, 1.0), antialias=True),
            v2.RandomHorizontalFlip(p=1.0),
        ]
    )
    ds = SegmentsDataset(RELEASE_PATH, target="panoptic", transforms=transforms)
    for index in range(len(ds)):
        image, target = ds[index]
        assert tuple(image.shape) == (3, 96, 128)
        assert target["boxes"].canvas_size == (96, 128)
        for row, mask in enumerate(target["masks"]):
            mask = mask.bool()
            if not mask.any():
                continue
            # Each instance's pixels carry its label in the transformed semantic map.
            assert torch.all(target["semantic"][mask] == target["labels"][row] - 1)
            assert torch.equal(target["instance_map"] == row + 1, mask)
            ys, xs = torch.nonzero(mask, as_tuple=True)
            box = target["boxes"][row]
            # The box, transformed geometrically, still covers the nearest-resampled mask
            # (within one output pixel); a crop can leave it looser than the mask.
            covered = torch.stack(
                [xs.min() + 1 - box[0], ys.min() + 1 - box[1], box[2] - xs.max(), box[3] - ys.max()]
            )
            assert torch.all(covered >= 0), (index, row)


def test_flip_keeps_boxes_tight():
    plain = SegmentsDataset(RELEASE_PATH)
    flipped = SegmentsDataset(RELEASE_PATH, transforms=v2.RandomHorizontalFlip(p=1.0))
    for index in range(len(plain)):
        image, target = flipped[index]
        original_image, original = plain[index]
        assert torch.equal(image, original_image.flip(-1))
        assert torch.equal(target["masks"], original["masks"].flip(-1))
        for box, mask in zip(target["boxes"], target["masks"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_sanitize_drops_what_the_crop_emptied():
    # shapes-000 is 320x240; keep its top-left corner, where only the circle lies.
    ds = SegmentsDataset(RELEASE_PATH)
    image, target = ds[0]
    cropped = v2.functional.crop(image, 0, 0, 120, 110)
    cropped_target = {
        **target,
        "boxes": v2.functional.crop(target["boxes"], 0, 0, 120, 110),
        "masks": v2.functional.crop(target["masks"], 0, 0, 120, 110),
    }
    kept = [bool(m.any()) for m in cropped_target["masks"]]
    assert kept == [False, True, False, False]  # grass, circle, square, triangle
    _, sanitized = v2.SanitizeBoundingBoxes(labels_getter=instance_fields)(cropped, cropped_target)
    assert sanitized["instance_ids"].tolist() == [2]
    assert sanitized["labels"].tolist() == [1]
    assert sanitized["area"].tolist() == target["area"][1:2].tolist()
    assert tuple(sanitized["masks"].shape) == (1, 120, 110)
    assert tuple(sanitized["boxes"].shape) == (1, 4)


# -- DataLoader ----------------------------------------------------------------------------


def reference_items(ds: SegmentsDataset) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    return [ds[i] for i in range(len(ds))]


def unbatch(batches: list[Any]) -> list[Any]:
    return [item for images, targets in batches for item in zip(images, targets, strict=True)]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(context):
    ds = SegmentsDataset(RELEASE_PATH, target="panoptic")
    loader = DataLoader(
        ds,
        batch_size=2,
        num_workers=2,
        multiprocessing_context=context,
        collate_fn=ds.collate_fn,
        persistent_workers=True,
    )
    reference = reference_items(ds)
    for _ in range(2):  # persistent workers serve a second epoch
        assert_same_items(unbatch(list(loader)), reference)


PANOPTIC_MAPS = ("masks", "semantic", "instance_map")  # what shared memory may hold


class SharedMaps(torch.utils.data.Dataset[dict[str, bool]]):
    """Which of an item's masks and maps are in shared memory, seen where it is made."""

    def __init__(self, ds: SegmentsDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict[str, bool]:
        _, target = self.ds[index]
        return {key: target[key].is_shared() for key in PANOPTIC_MAPS if key in target}


@pytest.mark.parametrize(
    ("target", "workers", "options", "expected"),
    [
        # Made in a worker, the masks and maps cross to the main process uncopied.
        ("instance", 1, {}, {"masks": True}),
        ("panoptic", 1, {}, dict.fromkeys(PANOPTIC_MAPS, True)),
        # Any collate stacks semantic maps into a batch of its own.
        ("semantic", 1, {}, {"semantic": False}),
        # Transforms make tensors of their own.
        ("instance", 1, {"transforms": v2.RandomHorizontalFlip(p=0.0)}, {"masks": False}),
        # Items used in the worker.
        ("panoptic", 1, {"shared_memory": False}, dict.fromkeys(PANOPTIC_MAPS, False)),
        # Nothing crosses.
        ("panoptic", 0, {}, dict.fromkeys(PANOPTIC_MAPS, False)),
    ],
)
def test_worker_targets_are_made_in_shared_memory(target, workers, options, expected):
    ds = SegmentsDataset(RELEASE_PATH, target=target, **options)
    loader = DataLoader(SharedMaps(ds), batch_size=None, num_workers=workers)
    assert list(loader) == [expected] * len(ds)


def test_dataloader_semantic_batches_pad_with_ignore_index():
    ds = SegmentsDataset(RELEASE_PATH, target="semantic", ignore_index=250)
    loader = DataLoader(
        ds,
        batch_size=3,
        num_workers=2,
        collate_fn=ds.collate_fn,
        pin_memory=torch.cuda.is_available(),
    )
    batches = list(loader)
    images, targets = batches[0]
    # shapes-000 (240x320), shapes-001 (180x240), shapes-002-exif (240x180)
    assert tuple(images.shape) == (3, 3, 240, 320)
    assert tuple(targets["semantic"].shape) == (3, 240, 320)
    assert targets["image_id"].tolist() == [0, 1, 2]
    _, first = ds[1]
    assert torch.equal(targets["semantic"][1, :180, :240], first["semantic"])
    assert torch.all(targets["semantic"][1, 180:, :] == 250)
    assert torch.all(targets["semantic"][1, :, 240:] == 250)
    assert torch.all(images[1, :, 180:, :] == 0)


def pinned_beside_plain(target: str) -> Iterator[tuple[Any, Any]]:
    """The demo's batches from 2 workers with ``pin_memory=True``, each beside the batch of
    a plain loader in the main process."""
    ds = SegmentsDataset(RELEASE_PATH, target=target)
    pinned = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=ds.collate_fn, pin_memory=True)
    plain = DataLoader(ds, batch_size=3, num_workers=0, collate_fn=ds.collate_fn)
    return zip(pinned, plain, strict=True)


@pytest.mark.filterwarnings("ignore:.*pin_memory.*:UserWarning")
@pytest.mark.parametrize("target", ["instance", "panoptic", "semantic"])
def test_pin_memory_true_gives_the_same_batches(target):
    # On a machine without an accelerator DataLoader warns and pins nothing (CI); with
    # CUDA it pins (see the test below). Either way the batches are the plain loader's.
    for (images, targets), (want_images, want_targets) in pinned_beside_plain(target):
        if target == "semantic":
            assert torch.equal(images, want_images)
            assert isinstance(targets["semantic"], tv_tensors.Mask)
            assert torch.equal(targets["semantic"], want_targets["semantic"])
            continue
        for image, want_image in zip(images, want_images, strict=True):
            assert isinstance(image, tv_tensors.Image)
            assert torch.equal(image, want_image)
        for got, want in zip(targets, want_targets, strict=True):
            assert got.keys() == want.keys()
            assert isinstance(got["boxes"], tv_tensors.BoundingBoxes)
            assert got["boxes"].canvas_size == want["boxes"].canvas_size
            assert isinstance(got["masks"], tv_tensors.Mask)
            for key in got:
                assert torch.equal(got[key], want[key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("target", ["instance", "semantic"])
def test_pin_memory_keeps_tv_tensors_and_values(target):
    for (images, targets), (want_images, want_targets) in pinned_beside_plain(target):
        if target == "instance":
            for got, want in zip(targets, want_targets, strict=True):
                assert got["masks"].is_pinned()
                assert isinstance(got["boxes"], tv_tensors.BoundingBoxes)
                assert got["boxes"].canvas_size == want["boxes"].canvas_size
                assert isinstance(got["masks"], tv_tensors.Mask)
                moved = got["masks"].to("cuda", non_blocking=True)
                assert torch.equal(moved.cpu(), want["masks"])
            for image, want_image in zip(images, want_images, strict=True):
                assert image.is_pinned()
                assert torch.equal(image, want_image)
        else:
            assert images.is_pinned()
            assert targets["semantic"].is_pinned()
            assert torch.equal(images, want_images)
            assert torch.equal(targets["semantic"].to("cuda").cpu(), want_targets["semantic"])


def test_dataset_pickles_small():
    ds = SegmentsDataset(RELEASE_PATH)
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy) == len(ds)
    assert torch.equal(copy[0][1]["masks"], ds[0][1]["masks"])


# -- on_error="skip" ---------------------------------------------------------------------


def test_skip_replaces_broken_samples_deterministically(demo_copy, caplog):
    (demo_copy.parent / "images" / "shapes-000.jpg").write_bytes(b"not an image")
    (demo_copy.parent / "bitmaps" / "shapes-002-exif.png").unlink()
    ds = SegmentsDataset(demo_copy, on_error="skip")
    reference = SegmentsDataset(RELEASE_PATH)
    with caplog.at_level("WARNING", logger="segments_torch.dataset"):
        for _ in range(2):  # the same replacement every time; each failure logged once
            assert torch.equal(ds[0][0], reference[1][0])
            assert torch.equal(ds[2][0], reference[3][0])
    assert ds.failures == 2
    assert [s.name for s in ds.failed_samples()] == ["shapes-000.jpg", "shapes-002-exif.jpg"]
    assert [r.getMessage() for r in caplog.records] == [
        "skipping sample 'shapes-000.jpg': "
        f"{demo_copy.parent / 'images' / 'shapes-000.jpg'}: cannot decode the image (unknown "
        "data starting b'not an i'): not a format Pillow reads either (on_error='skip')",
        f"skipping sample 'shapes-002-exif.jpg': {demo_copy.parent / 'bitmaps'}"
        "/shapes-002-exif.png: not found (on_error='skip')",
    ]
    # The last sample wraps around to the first one that works.
    (demo_copy.parent / "images" / "shapes-007.jpg").unlink()
    assert torch.equal(ds[5][0], reference[1][0])
    assert ds.failures == 3


def test_skip_counts_failures_in_workers(demo_copy):
    (demo_copy.parent / "images" / "shapes-001.jpg").unlink()
    ds = SegmentsDataset(demo_copy, on_error="skip")
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=ds.collate_fn)
    names = [int(t["image_id"]) for _, targets in loader for t in targets]
    assert names == [0, 2, 2, 3, 4, 7]  # row 1 replaced by row 2
    assert ds.failures == 1


def test_skip_when_everything_fails(demo_copy):
    for image in (demo_copy.parent / "images").iterdir():
        image.unlink()
    ds = SegmentsDataset(demo_copy, on_error="skip")
    with pytest.raises(AssetError) as info:
        ds[3]
    assert str(info.value) == (
        f"sample 'shapes-002-exif.jpg': {demo_copy.parent / 'images' / 'shapes-002-exif.jpg'}: "
        "not found (on_error='skip': all 6 failed)"
    )
    assert ds.failures == 6
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip', not 'ignore'"):
        SegmentsDataset(demo_copy, on_error="ignore")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header is rewritten to declare ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">HH", data, data.index(b"\xff\xc0") + 5, height, width)
    return bytes(data)


def test_an_image_declaring_too_many_pixels_is_an_asset_error(demo_copy, caplog):
    image = demo_copy.parent / "images" / "shapes-000.jpg"
    image.write_bytes(jpeg_declaring(30000, 30000))
    message = (
        f"sample 'shapes-000.jpg': {image}: the image declares 30000x30000 pixels "
        "(900,000,000), more than max_pixels=268,435,456"
    )
    with pytest.raises(AssetError) as info:
        SegmentsDataset(demo_copy)[0]
    assert str(info.value) == message
    ds = SegmentsDataset(demo_copy, on_error="skip")
    with caplog.at_level("WARNING", logger="segments_torch.dataset"):
        assert int(ds[0][1]["image_id"]) == 1  # the next sample
    assert [r.getMessage() for r in caplog.records] == [f"skipping {message} (on_error='skip')"]
    assert ds.failures == 1


def test_max_pixels_applies_to_image_and_bitmap(demo_copy):
    image, _ = SegmentsDataset(demo_copy)[0]
    pixels = image.shape[-1] * image.shape[-2]
    assert SegmentsDataset(demo_copy, max_pixels=pixels)[0][0].shape == image.shape
    with pytest.raises(
        AssetError, match=rf"the image declares .* more than max_pixels={pixels - 1:,}$"
    ):
        SegmentsDataset(demo_copy, max_pixels=pixels - 1)[0]
    # a bitmap larger than its image is refused by its own header, before the size check
    bitmap = demo_copy.parent / "bitmaps" / "shapes-000.png"
    bitmap.write_bytes(
        encode_bitmap(torch.zeros((image.shape[-2], image.shape[-1] + 1), dtype=torch.int32))
    )
    with pytest.raises(
        AssetError, match=rf"{bitmap}: the bitmap declares .* more than max_pixels={pixels:,}$"
    ):
        SegmentsDataset(demo_copy, max_pixels=pixels)[0]
    for wrong in (0, -5):
        with pytest.raises(ValueError, match=f"max_pixels must be None or at least 1, not {wrong}"):
            SegmentsDataset(demo_copy, max_pixels=wrong)


def test_running_out_of_memory_is_skipped_under_skip(demo_copy, monkeypatch):
    real = codecs._decode_jpeg

    def out_of_memory_on_the_first(data: bytes) -> torch.Tensor:
        if data == (demo_copy.parent / "images" / "shapes-000.jpg").read_bytes():
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")
        return real(data)

    monkeypatch.setattr(codecs, "_decode_jpeg", out_of_memory_on_the_first)
    monkeypatch.setattr(codecs, "_decode_with_pillow", out_of_memory_on_the_first)
    ds = SegmentsDataset(demo_copy, on_error="skip")
    assert int(ds[0][1]["image_id"]) == 1
    assert ds.failures == 1
    with pytest.raises(AssetError, match=r"out of memory decoding the \d+x\d+ image"):
        SegmentsDataset(demo_copy)[0]


def test_asset_error_from_a_worker_is_an_asset_error(demo_copy):
    (demo_copy.parent / "images" / "shapes-000.jpg").unlink()
    ds = SegmentsDataset(demo_copy)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=ds.collate_fn)
    with pytest.raises(AssetError) as info:
        next(iter(loader))
    # The DataLoader rebuilds the error from its message, which holds the worker's traceback.
    assert f"sample 'shapes-000.jpg': {demo_copy.parent / 'images' / 'shapes-000.jpg'}: " in (
        str(info.value)
    )
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value)


# -- items at a size ---------------------------------------------------------------------------

RESIZES = [(7, None), ((5, 9), None), (None, 11), (6, 9), (100, None)]


def bitmap_ids(ds: SegmentsDataset, index: int, shape: tuple[int, int]) -> torch.Tensor:
    """The full-size id map of ``ds[index]``'s sample (zeros where it has no bitmap)."""
    url = ds.sample_info(index).bitmap_url
    if not url:
        return torch.zeros(shape, dtype=torch.int32)
    return decode_bitmap(Path(ds.storage.resolve(url)).read_bytes())


@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize(("size", "max_size"), RESIZES)
def test_resized_targets_are_those_of_the_resized_id_map(kind, size, max_size, tmp_path):
    oriented_release(tmp_path)
    for release in (RELEASE_PATH, tmp_path / "release.json"):
        ds = SegmentsDataset(release, target=kind, size=size, max_size=max_size, filter_by=None)
        full = SegmentsDataset(release, target=kind, filter_by=None)
        for i in range(len(ds)):
            image, target = ds[i]
            full_image = full[i][0]
            height, width = full_image.shape[-2:]
            out = v2.functional.resize(full_image, size, max_size=max_size, antialias=True)
            assert image.shape == out.shape
            difference = (image.to(torch.int16) - out.to(torch.int16)).abs()
            assert float(difference.float().mean()) < 3.0  # tiny images: see test_codecs
            ids = bitmap_ids(full, i, (height, width))
            small = v2.functional.resize(
                tv_tensors.Mask(ids),
                list(out.shape[-2:]),
                interpolation=v2.InterpolationMode.NEAREST,
            ).as_subclass(torch.Tensor)
            expected = ds.target_for(int(ds.rows[i]), small.to(torch.int32))
            assert target["orig_size"].tolist() == [height, width]
            assert list(target) == [*expected, "orig_size"]
            for key, value in expected.items():
                assert type(target[key]) is type(value), key
                assert torch.equal(target[key], value), (release, i, key)


def test_resized_items_are_made_small_from_the_start(monkeypatch):
    # No mask, map or image of the full size is ever made: every tensor the target
    # building allocates is at most the output's size.
    made: list[int] = []
    real = targets_module.allocate

    def spy(shape: Any, dtype: torch.dtype, *args: Any, **kwargs: Any) -> torch.Tensor:
        made.append(math.prod(shape[-2:]))
        return real(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(targets_module, "allocate", spy)
    ds = SegmentsDataset(RELEASE_PATH, target="panoptic", size=60)
    image, target = ds[0]
    assert tuple(image.shape[-2:]) == (60, 80)
    assert made
    assert max(made) == 60 * 80
    assert target["masks"].shape[-2:] == (60, 80)
    assert target["boxes"].canvas_size == (60, 80)


def test_instances_that_vanish_at_the_size_are_dropped():
    ds = SegmentsDataset(RELEASE_PATH, target="instance", size=(2, 2))
    full = SegmentsDataset(RELEASE_PATH, target="instance")
    _, small = ds[0]
    _, large = full[0]
    assert len(small["labels"]) < len(large["labels"])
    assert small["masks"].shape == (len(small["labels"]), 2, 2)
    assert int(small["area"].sum()) <= 4


def test_size_options_are_checked():
    with pytest.raises(ValueError, match="max_size goes with an int size"):
        SegmentsDataset(RELEASE_PATH, size=(5, 5), max_size=9)
    with pytest.raises(ValueError, match="must be greater than the shorter side, 9"):
        SegmentsDataset(RELEASE_PATH, size=9, max_size=9)
    assert "orig_size" not in SegmentsDataset(RELEASE_PATH)[0][1]


def test_semantic_batches_of_resized_items_stack_their_full_sizes():
    ds = SegmentsDataset(RELEASE_PATH, target="semantic", size=20, filter_by=None)
    _, targets = ds.collate_fn([ds[i] for i in range(len(ds))])
    assert targets["orig_size"].shape == (8, 2)
    assert targets["orig_size"][2].tolist() == list(
        SegmentsDataset(RELEASE_PATH, filter_by=None)[2][0].shape[-2:]
    )


# -- a background class ------------------------------------------------------------------------


def test_a_background_class_labels_unlabelled_pixels_and_shifts_the_categories():
    plain = SegmentsDataset(RELEASE_PATH, target="semantic")
    ds = SegmentsDataset(RELEASE_PATH, target="semantic", background="background")
    assert ds.categories.label_names == ["background", *plain.categories.label_names]
    assert (plain.num_classes, ds.num_classes) == (4, 5)
    ids = demo_ids("shapes-000.png")
    before, after = plain[0][1]["semantic"], ds[0][1]["semantic"]
    labelled = before != 255
    assert torch.equal(after[labelled], before[labelled] + 1)
    assert torch.all(after[ids == 0] == 0)  # unlabelled pixels: the background
    assert torch.equal(after[(ids != 0) & ~labelled], before[(ids != 0) & ~labelled])  # 255


@pytest.mark.parametrize("kind", ["instance", "panoptic"])
def test_detection_labels_are_the_same_with_a_background(kind):
    plain = SegmentsDataset(RELEASE_PATH, target=kind)
    ds = SegmentsDataset(RELEASE_PATH, target=kind, background="background")
    assert ds.num_classes == plain.num_classes
    for i in range(len(ds)):
        got, expected = ds[i][1], plain[i][1]
        if kind == "instance":
            assert_same_items([(ds[i][0], got)], [(plain[i][0], expected)])
            continue
        # panoptic: one more segment first, the background (label 0, instance id 0)
        has_background = bool((demo_ids_of(plain, i) == 0).any())
        skip = 1 if has_background else 0
        if has_background:
            assert got["labels"][0].item() == 0
            assert got["instance_ids"][0].item() == 0
            assert not got["is_thing"][0]
        assert torch.equal(got["labels"][skip:], expected["labels"])
        assert torch.equal(got["masks"][skip:], expected["masks"])


def demo_ids_of(ds: SegmentsDataset, index: int) -> torch.Tensor:
    url = ds.sample_info(index).bitmap_url
    assert url
    return demo_ids(Path(url).name)


def test_background_needs_a_label_offset_for_panoptic_targets():
    with pytest.raises(ValueError, match="background= with target='panoptic' needs label_offset"):
        SegmentsDataset(RELEASE_PATH, target="panoptic", background="bg", label_offset=0)
    assert SegmentsDataset(RELEASE_PATH, target="semantic", background="bg", label_offset=0)


@pytest.mark.parametrize("kind", ["semantic", "panoptic"])
def test_the_device_path_gives_the_background_as_the_host_path(kind):
    host = SegmentsDataset(RELEASE_PATH, target=kind, background="background")
    device = SegmentsDataset(RELEASE_PATH, target=kind, background="background", decode="device")
    expected = host.collate_fn([host[i] for i in range(len(host))])
    got = device.device_decoder()(device.collate_fn([device[i] for i in range(len(device))]))
    assert_same(got, expected)


@pytest.mark.parametrize("fmt", ["semantic", "coco-panoptic"])
def test_exports_leave_the_background_out(fmt, tmp_path):
    from segments_torch.export import export_dataset

    plain = export_dataset(SegmentsDataset(RELEASE_PATH), fmt, tmp_path / "plain", progress=False)
    with_background = SegmentsDataset(RELEASE_PATH, background="background")
    other = export_dataset(with_background, fmt, tmp_path / "bg", progress=False)
    key = "categories" if fmt == "coco-panoptic" else "labels"
    assert json.loads(other.read_text())[key] == json.loads(plain.read_text())[key]
    for png in sorted((tmp_path / "plain").glob("*/*.png")):
        assert (tmp_path / "bg" / png.parent.name / png.name).read_bytes() == png.read_bytes()


# -- vector labels ------------------------------------------------------------------------


def vector_annotations(index: int) -> list[dict[str, Any]]:
    """The demo vector release's annotations of sample ``index``, read from its JSON."""
    samples = json.loads(VECTOR_RELEASE_PATH.read_text())["dataset"]["samples"]
    annotations: list[dict[str, Any]] = samples[index]["labels"]["ground-truth"]["attributes"][
        "annotations"
    ]
    return annotations


def outline(annotation: dict[str, Any]) -> np.ndarray:
    points = np.asarray(annotation["points"], dtype=np.float64)
    if annotation["type"] == "bbox":
        (x0, y0), (x1, y1) = points
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return points


def test_vector_item_holds_every_shape_of_the_label():
    image, target = SegmentsDataset(VECTOR_RELEASE_PATH)[0]
    assert tuple(image.shape) == (3, 240, 320)
    annotations = vector_annotations(0)
    areas = [a for a in annotations if a["type"] in ("bbox", "polygon")]
    sets = [a for a in annotations if a["type"] in ("polyline", "point")]
    assert [a["type"] for a in areas] == ["polygon", "bbox", "polygon"]  # circle, square, ...
    assert target["instance_ids"].tolist() == [a["track_id"] for a in areas] == [2, 3, 4]
    assert target["labels"].tolist() == [a["category_id"] + 1 for a in areas] == [1, 2, 3]
    for row, annotation in enumerate(areas):
        xy = outline(annotation)
        mask = polygon_mask(xy, 240, 320)
        assert torch.equal(target["masks"][row], torch.from_numpy(mask.astype(np.uint8)))
        assert target["area"][row] == mask.sum()
        corners = [*xy.min(axis=0), *xy.max(axis=0)]
        assert target["boxes"][row].tolist() == pytest.approx(corners)
    assert target["keypoint_ids"].tolist() == [1, 1001]  # the grass edge, the circle's centre
    assert target["keypoint_labels"].tolist() == [4, 1]
    flat = [p for a in sets for p in a["points"]]
    np.testing.assert_array_equal(target["keypoints"].numpy(), np.array(flat, dtype=np.float32))
    assert target["keypoint_offsets"].tolist() == [0, 44, 45]
    assert target["attributes"][1] == {"occluded": True}
    assert target["attributes"][2] == {"occluded": False}
    assert target["image_attributes"] == {"scene": "meadow"}
    assert target["image_id"] == 0


def test_vector_links_are_reachable_from_the_target():
    document = json.loads(VECTOR_RELEASE_PATH.read_text())
    label = document["dataset"]["samples"][0]["labels"]["ground-truth"]["attributes"]
    label["links"] = [{"from_id": 1001, "to_id": 2, "attributes": {"relation": "centre of"}}]
    linked = SegmentsDataset(document, asset_root=str(DEMO))
    assert linked[0][1]["links"] == label["links"]
    assert linked[1][1]["links"] == []  # a label without links
    assert "links" not in linked.with_options(target="semantic")[0][1]


def test_vector_semantic_paints_the_instances_in_order():
    instance = SegmentsDataset(VECTOR_RELEASE_PATH)
    semantic = SegmentsDataset(VECTOR_RELEASE_PATH, target="semantic")
    assert semantic.num_classes == 4
    for index in range(len(instance)):
        _, target = instance[index]
        expected = torch.full(target["masks"].shape[1:], 255, dtype=torch.int64)
        for mask, label in zip(target["masks"], target["labels"], strict=True):
            expected[mask.bool()] = label - 1
        assert torch.equal(semantic[index][1]["semantic"], expected), index


def test_vector_boxes_target_makes_no_masks():
    boxes = SegmentsDataset(VECTOR_RELEASE_PATH, target="boxes")
    instance = SegmentsDataset(VECTOR_RELEASE_PATH)
    for index in range(len(boxes)):
        expected = {k: v for k, v in instance[index][1].items() if k != "masks"}
        assert_same(boxes[index][1], expected)


def test_vector_item_at_training_size():
    image, target = SegmentsDataset(VECTOR_RELEASE_PATH, size=120)[0]  # 320x240 -> 160x120
    _, full = SegmentsDataset(VECTOR_RELEASE_PATH)[0]
    assert tuple(image.shape) == (3, 120, 160)
    assert target["orig_size"].tolist() == [240, 320]
    assert target["boxes"].canvas_size == target["keypoints"].canvas_size == (120, 160)
    assert torch.equal(target["boxes"], full["boxes"] / 2)
    assert torch.equal(target["keypoints"], full["keypoints"] / 2)
    square = outline(vector_annotations(0)[2]) / 2
    assert torch.equal(target["masks"][1].bool(), torch.from_numpy(polygon_mask(square, 120, 160)))


def test_vector_categories_filter_shapes():
    ds = SegmentsDataset(VECTOR_RELEASE_PATH, categories=["circle"])
    _, target = ds[0]
    assert target["instance_ids"].tolist() == [2]
    assert target["keypoint_ids"].tolist() == [1001]
    assert sorted(target["attributes"]) == [2, 1001]


def test_vector_items_through_workers():
    ds = SegmentsDataset(VECTOR_RELEASE_PATH)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=ds.collate_fn)
    assert_same(unbatch(list(loader)), reference_items(ds))


def test_vector_transforms_keep_shapes_aligned():
    flip = SegmentsDataset(VECTOR_RELEASE_PATH, transforms=v2.RandomHorizontalFlip(p=1.0))
    plain = SegmentsDataset(VECTOR_RELEASE_PATH)
    for index in range(len(plain)):
        _, target = flip[index]
        _, original = plain[index]
        width = original["masks"].shape[-1]
        assert torch.equal(target["masks"], original["masks"].flip(-1))
        assert torch.equal(target["boxes"][:, [2, 0]], width - original["boxes"][:, [0, 2]])
        assert torch.equal(target["keypoints"][:, 0], width - 1 - original["keypoints"][:, 0])


@pytest.mark.parametrize(
    "options", [{"target": "panoptic"}, {"decode": "device"}], ids=["panoptic", "device"]
)
def test_vector_labelset_refuses_what_it_cannot_serve(options):
    with pytest.raises(ValueError, match="holds shapes") as info:
        SegmentsDataset(VECTOR_RELEASE_PATH, **options)
    assert str(info.value) == (
        "labelset 'ground-truth' holds shapes (vector): it serves target='instance', "
        "'semantic' or 'boxes', with decode='host'"
    )


# -- sequences ------------------------------------------------------------------------------

#: Each frame of the demo sequences: (row name, sequence, frame index, track ids).
SEQUENCE_FRAMES = [
    ("walk/frame-0.jpg", 0, 0, [7, 12]),
    ("walk/frame-1.jpg", 0, 1, [7, 12]),
    ("walk/frame-2.jpg", 0, 2, [7, 12]),
    ("walk/frame-3.jpg", 0, 3, [7, 12]),
    ("drift/0", 1, 0, [3, 5]),
    ("drift/1", 1, 1, [3, 5]),
    ("drift/2", 1, 2, [3, 5]),
    ("drift/3", 1, 3, [5]),  # the circle has left the view
]


def frame_fields(target: dict[str, Any]) -> tuple[int, int, list[int]]:
    return int(target["sequence"]), int(target["frame_index"]), target["instance_ids"].tolist()


@pytest.mark.parametrize("path", [SEQUENCE_RELEASE_PATH, SEGMENTATION_SEQUENCE_RELEASE_PATH])
def test_a_sequence_release_serves_one_item_per_frame(path):
    ds = SegmentsDataset(path)
    assert len(ds) == 8
    for index, (name, sequence, frame, tracks) in enumerate(SEQUENCE_FRAMES):
        image, target = ds[index]
        assert image.shape == (3, 48, 64)
        assert frame_fields(target) == (sequence, frame, tracks), index
        assert int(target["image_id"]) == index
        info = ds.sample_info(index)
        assert (info.name, info.sequence, info.frame_index) == (name, sequence, frame)
    assert repr(ds) == (
        f"SegmentsDataset({str(path)!r}, labelset='ground-truth', target='instance', "
        "samples=8 (LABELED: 4, REVIEWED: 4), sequences=2, num_classes=5)"
    )


def test_vector_sequence_frames_hold_their_moving_boxes():
    ds = SegmentsDataset(SEQUENCE_RELEASE_PATH, target="boxes")
    # walk's square (track 7) moves 8 pixels right a frame, its triangle (12) 4 up.
    for frame in range(4):
        _, target = ds[frame]
        assert target["boxes"].tolist() == [
            [3.0 + 8 * frame, 7.0, 17.0 + 8 * frame, 21.0],
            [40.0, 28.0 - 4 * frame, 60.0, 44.0 - 4 * frame],
        ]
        assert target["labels"].tolist() == [2, 3]  # square, triangle
        assert target["attributes"] == {7: {"occluded": False}, 12: {"occluded": False}}


def test_bitmap_sequence_instance_ids_are_track_ids_not_frame_ids():
    # drift's last frame numbers its square 1 in the bitmap; its track is 5.
    ds = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH, rows=[6, 7])
    before, after = ds[0][1], ds[1][1]
    assert before["instance_ids"].tolist() == [3, 5]
    assert after["instance_ids"].tolist() == [5]
    assert after["boxes"].tolist() == [[9.0, 23.0, 31.0, 45.0]]
    assert not torch.equal(after["masks"][0], before["masks"][1])  # it turned
    assert ds.max_instance_id() == 5
    panoptic = ds.with_options(target="panoptic", background="background")[1][1]
    assert panoptic["instance_ids"].tolist() == [0, 5]  # the background segment keeps 0
    semantic = ds.with_options(target="semantic")
    _, batch = semantic.collate_fn([semantic[0], semantic[1]])
    assert batch["sequence"].tolist() == [1, 1]
    assert batch["frame_index"].tolist() == [2, 3]


def test_sequence_true_serves_one_item_per_sequence():
    ds = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH, sequence=True)
    assert len(ds) == 2
    images, targets = ds[1]
    assert isinstance(images, list)
    assert isinstance(targets, list)
    assert [tuple(image.shape) for image in images] == [(3, 48, 64)] * 4
    assert [frame_fields(t) for t in targets] == [(1, f, t) for _, _, f, t in SEQUENCE_FRAMES[4:]]
    frames = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH)
    assert_same_items(list(zip(images, targets, strict=True)), [frames[i] for i in range(4, 8)])
    assert ds.sample_info(1).name == "drift/0"
    assert repr(ds).endswith("sequences=2, sequence=True, num_classes=5)")
    with pytest.raises(IndexError, match="index 2 is out of range for 2 sequences"):
        ds[2]
    # The filters and rows= select frames: a sequence serves those selected.
    part = ds.with_options(rows=[1, 2, 5], filter_by=None)
    assert len(part) == 2
    assert [[int(t["frame_index"]) for t in part[i][1]] for i in range(2)] == [[1, 2], [1]]
    reviewed = ds.with_options(filter_by="reviewed")
    assert len(reviewed) == 1
    assert int(reviewed[0][1][0]["sequence"]) == 1


def test_sequence_true_transforms_a_sequence_at_once():
    calls = []

    def record(images: Any, targets: Any) -> Any:
        calls.append((len(images), len(targets)))
        return images, targets

    SegmentsDataset(SEQUENCE_RELEASE_PATH, sequence=True, transforms=record)[0]
    assert calls == [(4, 4)]
    # A v2 random transform draws its parameters once: every frame gets the same crop.
    torch.manual_seed(0)
    crop = v2.RandomCrop((24, 32))
    images, targets = SegmentsDataset(SEQUENCE_RELEASE_PATH, sequence=True, transforms=crop)[0]
    plain, _ = SegmentsDataset(SEQUENCE_RELEASE_PATH, sequence=True)[0]
    offsets = set()
    for cropped, full in zip(images, plain, strict=True):
        found = [
            (top, left)
            for top in range(48 - 24 + 1)
            for left in range(64 - 32 + 1)
            if torch.equal(full[:, top : top + 24, left : left + 32], cropped)
        ]
        offsets.add(tuple(found))
    assert len(offsets) == 1  # one offset for all four frames
    assert len(next(iter(offsets))) == 1
    assert all(t["boxes"].canvas_size == (24, 32) for t in targets)


def test_sequence_options_are_checked():
    with pytest.raises(ValueError, match=r"^sequence=True serves the sequences") as info:
        SegmentsDataset(RELEASE_PATH, sequence=True)
    assert str(info.value) == (
        "sequence=True serves the sequences of a sequence release (image-segmentation-sequence, "
        "image-vector-sequence); labelset 'ground-truth' has task type 'segmentation-bitmap'"
    )
    with pytest.raises(ValueError, match=r"^sequence=True serves decoded frames: decode='host'$"):
        SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH, sequence=True, decode="device")


def test_sequence_true_skips_a_sequence_with_a_broken_frame(tmp_path, caplog):
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "frames" / "drift-2.jpg").write_bytes(b"not a jpeg")
    ds = SegmentsDataset(folder / "sequence.json", sequence=True, on_error="skip")
    _, targets = ds[1]  # drift fails: walk is served instead
    assert [int(t["sequence"]) for t in targets] == [0, 0, 0, 0]
    assert ds.failures == 1
    assert [info.name for info in ds.failed_samples()] == ["drift/0"]
    assert "drift/2" in caplog.text


@pytest.mark.parametrize("sequence", [False, True])
def test_a_sequence_dataset_through_two_dataloader_workers(sequence):
    ds = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH, sequence=sequence)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=ds.collate_fn)
    batches = list(loader)
    if sequence:
        assert [len(images) for images, _ in batches] == [2]
        ((_, targets),) = batches
        found = [frame_fields(t) for sequence_targets in targets for t in sequence_targets]
    else:
        assert [len(images) for images, _ in batches] == [2, 2, 2, 2]
        found = [frame_fields(t) for _, targets in batches for t in targets]
    assert found == [(s, f, t) for _, s, f, t in SEQUENCE_FRAMES]


def test_a_variant_of_other_items_keeps_its_own_failure_counts(tmp_path):
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "frames" / "drift-2.jpg").write_bytes(b"not a jpeg")
    whole = SegmentsDataset(folder / "sequence.json", sequence=True, on_error="skip")
    frames = whole.with_options(sequence=False)
    assert frames.sample_info(6).name == "drift/2"
    assert int(frames[6][1]["frame_index"]) == 3  # drift/3 instead
    assert (frames.failures, whole.failures) == (1, 0)
    assert [info.name for info in frames.failed_samples()] == ["drift/2"]
    again = frames.with_options(target="boxes")  # the same items: the same counts
    assert again.failures == 1
