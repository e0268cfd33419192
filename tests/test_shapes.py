"""Tests of segments_torch.shapes: polygons rasterised exactly as pycocotools does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import v2

from segments_torch.shapes import polygon_box, polygon_mask, shape_target

coco_mask = pytest.importorskip("pycocotools.mask", reason="the reference is pycocotools")


def reference(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """pycocotools' mask of one polygon."""
    rle = coco_mask.frPyObjects([points.reshape(-1).tolist()], height, width)
    mask: np.ndarray = coco_mask.decode(rle)[:, :, 0].astype(bool)
    return mask


@st.composite
def polygons(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    height = draw(st.integers(1, 40))
    width = draw(st.integers(1, 40))
    count = draw(st.integers(3, 12))
    scale = draw(st.sampled_from([0.3, 1.0, 1.3]))  # sub-pixel, inside, past the edges
    coordinate = st.floats(-3, 1, allow_nan=False)
    xs = draw(st.lists(coordinate, min_size=count, max_size=count))
    ys = draw(st.lists(coordinate, min_size=count, max_size=count))
    points = np.array(
        [
            [(x + 0.5) * width * scale, (y + 0.5) * height * scale]
            for x, y in zip(xs, ys, strict=True)
        ]
    )
    return points, height, width


@settings(max_examples=400, deadline=None)
@given(polygons())
def test_random_polygons_cover_what_pycocotools_covers(case):
    points, height, width = case
    np.testing.assert_array_equal(
        polygon_mask(points, height, width), reference(points, height, width)
    )


@pytest.mark.parametrize(
    "points",
    [
        [[2.0, 2.0], [8.0, 2.0], [8.0, 7.0], [2.0, 7.0]],  # a rectangle
        [[2.0, 2.0], [8.0, 7.0], [8.0, 2.0], [2.0, 7.0]],  # a bow tie: self-intersecting
        [[3.2, 3.1], [3.4, 3.2], [3.3, 3.4]],  # smaller than a pixel
        [[1.0, 1.0], [9.0, 1.0], [9.0, 1.0], [5.0, 8.0]],  # a vertex twice
        [[-5.0, -5.0], [30.0, 2.0], [4.0, 30.0]],  # past every edge
        [[0.0, 0.0], [11.0, 0.0], [11.0, 9.0], [0.0, 9.0]],  # the whole image
        [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]],  # a point
        [[1.0, 2.0], [8.0, 2.0], [4.5, 2.0]],  # a line
    ],
    ids=[
        "rectangle",
        "bow-tie",
        "sub-pixel",
        "repeated-vertex",
        "past-the-edges",
        "whole",
        "point",
        "line",
    ],
)
def test_particular_polygons_cover_what_pycocotools_covers(points):
    xy = np.array(points)
    np.testing.assert_array_equal(polygon_mask(xy, 10, 12), reference(xy, 10, 12))


def test_a_large_polygon_with_many_vertices():
    angles = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    radius = 300 + 40 * np.sin(7 * angles)
    xy = np.stack([640 + radius * np.cos(angles), 360 + radius * np.sin(angles)], axis=1)
    mask = polygon_mask(xy, 720, 1280)
    np.testing.assert_array_equal(mask, reference(xy, 720, 1280))
    assert 200_000 < int(mask.sum()) < 400_000


def test_no_points_or_no_pixels():
    assert polygon_mask(np.zeros((0, 2)), 4, 5).shape == (4, 5)
    assert not polygon_mask(np.zeros((0, 2)), 4, 5).any()
    assert polygon_mask([[0, 0], [1, 0], [1, 1]], 0, 5).shape == (0, 5)


def test_polygon_box_is_the_box_of_the_vertices():
    assert polygon_box([[1.5, 2.0], [4.0, 1.0], [3.0, 6.25]]).tolist() == [1.5, 1.0, 4.0, 6.25]
    assert polygon_box(np.array([[-2.0, 3.0], [5.0, 3.0], [1.0, 9.5]])).dtype == np.float32


# -- shape_target ---------------------------------------------------------------------------

BOX, POLYGON, POLYLINE, POINT = 0, 1, 2, 3
#: One label: a box, a triangle, a polyline, a point, then a square over the triangle
#: whose category is not selected (label -1).
TYPES = np.array([BOX, POLYGON, POLYLINE, POINT, POLYGON], dtype=np.int8)
POINTS = np.array(
    [
        [2, 3],
        [10, 9],  # box
        [4, 4],
        [16, 4],
        [10, 14],  # triangle
        [0, 1],
        [5, 1],
        [5, 6],  # polyline
        [7.5, 8.25],  # point
        [6, 6],
        [12, 6],
        [12, 12],
        [6, 12],  # unselected square
    ],
    dtype=np.float32,
)
OFFSETS = np.array([0, 2, 5, 8, 9, 13])
TRACK_IDS = np.array([11, 12, 13, 14, 15])
LABELS = np.array([0, 2, 1, 1, -1])
ATTRIBUTES = ['{"occluded": true}', "", '{"lane": "left"}', "", '{"x": 1}']


def target(kind: str, **options: Any) -> dict[str, Any]:
    return shape_target(kind, TYPES, POINTS, OFFSETS, TRACK_IDS, LABELS, 16, 20, **options)


def test_instance_target_of_every_shape_type():
    got = target("instance", attributes=ATTRIBUTES)
    box_mask = polygon_mask([[2, 3], [10, 3], [10, 9], [2, 9]], 16, 20)
    triangle_mask = polygon_mask(POINTS[2:5], 16, 20)
    assert isinstance(got["boxes"], tv_tensors.BoundingBoxes)
    assert got["boxes"].canvas_size == (16, 20)
    assert got["boxes"].tolist() == [[2, 3, 10, 9], [4, 4, 16, 14]]
    assert got["labels"].tolist() == [1, 3]
    assert isinstance(got["masks"], tv_tensors.Mask)
    np.testing.assert_array_equal(got["masks"].numpy(), np.stack([box_mask, triangle_mask]))
    assert got["instance_ids"].tolist() == [11, 12]
    assert got["area"].tolist() == [box_mask.sum(), triangle_mask.sum()] == [48, 58]
    assert got["iscrowd"].tolist() == [0, 0]
    assert isinstance(got["keypoints"], tv_tensors.KeyPoints)
    assert got["keypoints"].canvas_size == (16, 20)
    assert got["keypoints"].tolist() == [[0, 1], [5, 1], [5, 6], [7.5, 8.25]]
    assert got["keypoint_offsets"].tolist() == [0, 3, 4]
    assert got["keypoint_labels"].tolist() == [2, 2]
    assert got["keypoint_ids"].tolist() == [13, 14]
    assert got["attributes"] == {11: {"occluded": True}, 12: {}, 13: {"lane": "left"}, 14: {}}


def test_boxes_target_is_the_instance_target_without_masks():
    instance, boxes = target("instance"), target("boxes")
    assert "masks" not in boxes
    assert "attributes" not in boxes
    assert sorted(boxes) == sorted(set(instance) - {"masks"})
    for key, value in boxes.items():
        assert torch.equal(value, instance[key]), key


def test_semantic_target_paints_in_annotation_order():
    types = np.array([POLYGON, POLYGON, BOX], dtype=np.int8)
    points = np.array(
        [[0, 0], [8, 0], [8, 8], [0, 8], [4, 4], [12, 4], [12, 12], [4, 12], [1, 1], [3, 3]],
        dtype=np.float32,
    )
    offsets = np.array([0, 4, 8, 10])
    labels = np.array([0, 1, -1])  # the box's category is not selected
    got = shape_target("semantic", types, points, offsets, np.arange(3), labels, 12, 14)
    semantic = got["semantic"]
    assert isinstance(semantic, tv_tensors.Mask)
    assert semantic.dtype == torch.int64
    expected = np.full((12, 14), 255)
    expected[polygon_mask(points[0:4], 12, 14)] = 0
    expected[polygon_mask(points[4:8], 12, 14)] = 1  # the later polygon covers the earlier
    np.testing.assert_array_equal(semantic.numpy(), expected)
    assert (semantic[5, 5], semantic[2, 2], semantic[0, 13]) == (1, 0, 255)
    with_background = shape_target(
        "semantic", types, points, offsets, np.arange(3), labels, 12, 14, background=0
    )
    assert with_background["semantic"][0, 13] == 0


def test_scale_draws_the_shapes_at_the_item_size():
    half = shape_target(
        "instance", TYPES, POINTS, OFFSETS, TRACK_IDS, LABELS, 8, 10, scale=(0.5, 0.5)
    )
    assert half["boxes"].tolist() == [[1, 1.5, 5, 4.5], [2, 2, 8, 7]]
    assert half["keypoints"].tolist() == [[0, 0.5], [2.5, 0.5], [2.5, 3], [3.75, 4.125]]
    np.testing.assert_array_equal(half["masks"][1].numpy(), polygon_mask(POINTS[2:5] / 2, 8, 10))


def test_a_label_without_shapes():
    empty = np.zeros(0, dtype=np.int64)
    got = shape_target(
        "instance",
        np.zeros(0, dtype=np.int8),
        np.zeros((0, 2), dtype=np.float32),
        np.zeros(1, dtype=np.int64),
        empty,
        empty,
        5,
        6,
        attributes=[],
    )
    assert tuple(got["boxes"].shape) == (0, 4)
    assert tuple(got["masks"].shape) == (0, 5, 6)
    assert tuple(got["keypoints"].shape) == (0, 2)
    assert got["keypoint_offsets"].tolist() == [0]
    assert got["attributes"] == {}


def test_v2_flip_moves_boxes_masks_and_keypoints_together():
    image = tv_tensors.Image(torch.zeros(3, 16, 20, dtype=torch.uint8))
    got = target("instance")
    _, flipped = v2.RandomHorizontalFlip(p=1.0)(image, got)
    assert torch.equal(flipped["masks"], got["masks"].flip(-1))
    assert flipped["boxes"].tolist() == [[10, 3, 18, 9], [4, 4, 16, 14]]
    # torchvision flips keypoints as pixel indices (x -> W - 1 - x), boxes as edges.
    assert flipped["keypoints"][:, 0].tolist() == [19, 14, 14, 11.5]
    assert torch.equal(flipped["keypoint_offsets"], got["keypoint_offsets"])


def test_v2_center_crop_moves_boxes_masks_and_keypoints_together():
    image = tv_tensors.Image(torch.zeros(3, 16, 20, dtype=torch.uint8))
    got = target("instance")
    _, cropped = v2.CenterCrop((10, 12))(image, got)  # rows 3 .. 12, columns 4 .. 15
    assert torch.equal(cropped["masks"], got["masks"][:, 3:13, 4:16])
    assert cropped["boxes"].canvas_size == cropped["keypoints"].canvas_size == (10, 12)
    # Boxes are clamped to the crop; keypoints are moved, not clamped: a point outside the
    # crop keeps coordinates outside the canvas.
    assert cropped["boxes"].tolist() == [[0, 0, 6, 6], [0, 1, 12, 10]]
    assert cropped["keypoints"].tolist() == [[-4, -2], [1, -2], [1, 3], [3.5, 5.25]]
    assert torch.equal(cropped["keypoint_offsets"], got["keypoint_offsets"])


def test_v2_resize_scales_boxes_masks_and_keypoints_together():
    image = tv_tensors.Image(torch.zeros(3, 16, 20, dtype=torch.uint8))
    got = target("instance")
    _, resized = v2.Resize((32, 40))(image, got)
    doubled = got["masks"].repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    assert torch.equal(resized["masks"], doubled)
    assert resized["boxes"].tolist() == [[4, 6, 20, 18], [8, 8, 32, 28]]
    assert resized["keypoints"].tolist() == [[0, 2], [10, 2], [10, 12], [15, 16.5]]
    assert resized["keypoints"].canvas_size == (32, 40)
