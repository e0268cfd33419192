"""Tests of segments_torch.shapes: polygons rasterised exactly as pycocotools does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segments_torch.shapes import polygon_box, polygon_mask

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
