"""Tests of segments_torch.transforms: RecomputeArea after geometric transforms."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from segments_torch import SegmentsDataset
from segments_torch.demo import RELEASE_PATH
from segments_torch.targets import instance_fields
from segments_torch.transforms import RecomputeArea


def test_areas_after_a_resize_are_those_of_the_masks():
    image, target = SegmentsDataset(RELEASE_PATH, target="instance")[0]
    resized_image, resized = v2.Resize((60, 80))(image, target)
    assert torch.equal(resized["area"], target["area"])  # torchvision leaves it full-size
    _, fixed = RecomputeArea()(resized_image, resized)
    assert fixed["area"].dtype == torch.int64
    assert fixed["area"].tolist() == resized["masks"].flatten(1).sum(1).tolist()
    assert int(fixed["area"].sum()) < int(target["area"].sum())
    assert fixed["masks"] is resized["masks"]  # nothing dropped: the same tensors


def test_areas_of_items_made_at_a_size_are_already_right():
    image, target = SegmentsDataset(RELEASE_PATH, target="instance", size=60)[0]
    _, fixed = RecomputeArea()(image, target)
    assert torch.equal(fixed["area"], target["area"])


@pytest.mark.parametrize("kind", ["instance", "panoptic"])
def test_instances_a_crop_leaves_without_pixels_are_dropped_with_every_field(kind):
    image, target = SegmentsDataset(RELEASE_PATH, target=kind)[0]
    # a crop of the top-left corner that leaves some instances without a pixel
    cropped_image, cropped = (
        v2.functional.crop(image, 0, 0, 80, 90),
        {
            key: v2.functional.crop(value, 0, 0, 80, 90)
            if key in ("boxes", "masks", "semantic", "instance_map")
            else value
            for key, value in target.items()
        },
    )
    empty = cropped["masks"].flatten(1).sum(1) == 0
    assert bool(empty.any())
    assert not bool(empty.all())
    _, fixed = RecomputeArea()(cropped_image, cropped)
    kept = int((~empty).sum())
    for key in ("labels", "instance_ids", "area", "iscrowd", "boxes", "masks"):
        assert len(fixed[key]) == kept, key
    assert isinstance(fixed["boxes"], tv_tensors.BoundingBoxes)
    assert fixed["boxes"].canvas_size == (80, 90)
    assert isinstance(fixed["masks"], tv_tensors.Mask)
    assert fixed["labels"].tolist() == cropped["labels"][~empty].tolist()
    assert torch.all(fixed["area"] > 0)
    if kind == "panoptic":
        assert fixed["is_thing"].tolist() == cropped["is_thing"][~empty].tolist()
        assert isinstance(fixed["instance_map"], tv_tensors.Mask)
        # each pixel's value is its mask's row + 1 again
        rows = torch.zeros_like(fixed["instance_map"])
        for row, mask in enumerate(fixed["masks"]):
            rows[mask.bool()] = row + 1
        assert torch.equal(
            fixed["instance_map"].as_subclass(torch.Tensor), rows.as_subclass(torch.Tensor)
        )


def test_keeping_empty_instances_and_targets_without_masks():
    image, target = SegmentsDataset(RELEASE_PATH, target="instance")[0]
    cropped = {**target, "masks": tv_tensors.Mask(torch.zeros_like(target["masks"]))}
    _, kept = RecomputeArea(drop_empty=False)(image, cropped)
    assert kept["area"].tolist() == [0] * len(target["labels"])
    assert len(kept["boxes"]) == len(target["boxes"])
    semantic = SegmentsDataset(RELEASE_PATH, target="semantic")[0]
    assert RecomputeArea()(*semantic) == semantic


def test_in_a_pipeline_with_sanitize_bounding_boxes():
    augment = v2.Compose(
        [
            v2.RandomResizedCrop((64, 64), scale=(0.2, 0.5)),
            v2.SanitizeBoundingBoxes(labels_getter=instance_fields),
            RecomputeArea(),
        ]
    )
    torch.manual_seed(0)
    ds = SegmentsDataset(RELEASE_PATH, target="instance", transforms=augment)
    for i in range(len(ds)):
        _, target = ds[i]
        assert target["area"].tolist() == target["masks"].flatten(1).sum(1).tolist()
        assert len(target["labels"]) == len(target["masks"]) == len(target["boxes"])
