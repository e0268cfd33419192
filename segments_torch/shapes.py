"""Vector shapes to pixels, by COCO's rules: what a polygon covers, and its box.

COCO rasterises a polygon (``pycocotools.mask.frPyObjects`` then ``decode``) by walking
its edges on a grid five times finer than the pixels, keeping where each edge crosses a
pixel column's centre, and filling each column between its crossings. :func:`polygon_mask`
follows the same rule, in numpy, so that masks made here and an export evaluated with
pycocotools agree pixel for pixel (``tests/test_shapes.py`` compares them on random
polygons, self-intersecting and sub-pixel ones included). Like COCO, it fills by the
parity of crossings: a self-intersecting polygon's doubly covered parts stay empty.

Example:
    >>> polygon_mask(np.array([[1.0, 1.0], [4.0, 1.0], [4.0, 3.0], [1.0, 3.0]]), 5, 6).astype(int)
    array([[0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0, 0],
           [0, 1, 1, 1, 0, 0],
           [0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0]])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torchvision import tv_tensors

__all__ = ["area_outlines", "polygon_box", "polygon_mask", "polygon_window", "shape_target"]

#: How much finer than the pixels the edges are walked (COCO's choice).
_SCALE = 5


def _trunc(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Round toward zero, as a C cast to int does (COCO's arithmetic)."""
    return np.trunc(values).astype(np.int64)


def _edge_points(
    x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The fine-grid points along each edge ``(x[j], y[j]) -> (x[j+1], y[j+1])``, in order:
    one step per unit of the edge's longer extent, both ends included, each edge walked
    from its lower end along that extent."""
    xs, xe, ys, ye = x[:-1], x[1:], y[:-1], y[1:]
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    wide = dx >= dy  # stepped along x
    flip = (wide & (xs > xe)) | (~wide & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    steps = np.where(wide, dx, dy)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(wide, (ye - ys) / dx, (xe - xs) / dy)
    slope = np.nan_to_num(slope)  # a point, not an edge: no slope to follow
    counts = steps + 1
    edge = np.repeat(np.arange(len(steps)), counts)
    position = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    t = np.where(flip[edge], steps[edge] - position, position)
    along = t + np.where(wide[edge], xs[edge], ys[edge])
    across = _trunc(np.where(wide[edge], ys[edge], xs[edge]) + slope[edge] * t + 0.5)
    u = np.where(wide[edge], along, across)
    v = np.where(wide[edge], across, along)
    return u, v


def polygon_mask(points: npt.ArrayLike, height: int, width: int) -> npt.NDArray[np.bool_]:
    """The pixels of a ``height`` x ``width`` image that the polygon ``points`` (``(K, 2)``
    x, y in pixels, not closed) covers, as COCO rasterises it.

    Example:
        >>> polygon_mask([[0, 0], [4, 0], [4, 4]], 4, 4).astype(int)  # as pycocotools
        array([[0, 1, 1, 1],
               [0, 0, 1, 1],
               [0, 0, 0, 1],
               [0, 0, 0, 0]])
    """
    mask = np.zeros((height, width), dtype=np.bool_)
    top, left, window = polygon_window(points, height, width)
    mask[top : top + window.shape[0], left : left + window.shape[1]] = window
    return mask


def polygon_window(
    points: npt.ArrayLike, height: int, width: int
) -> tuple[int, int, npt.NDArray[np.bool_]]:
    """:func:`polygon_mask` as ``(top, left, window)``: the mask is ``window`` at row
    ``top`` and column ``left``, and empty elsewhere. The window spans the pixels between
    the polygon's crossings, so a small polygon in a large image costs little.

    Example:
        >>> top, left, window = polygon_window([[10, 10], [14, 10], [14, 14]], 720, 1280)
        >>> top, left, window.shape
        (10, 10, (4, 4))
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(xy) or not height or not width:
        return 0, 0, np.zeros((0, 0), dtype=np.bool_)
    x = _trunc(_SCALE * xy[:, 0] + 0.5)
    y = _trunc(_SCALE * xy[:, 1] + 0.5)
    u, v = _edge_points(np.append(x, x[0]), np.append(y, y[0]))
    # Where the walk moves to another fine column, keep its crossing of a pixel centre.
    moved = np.flatnonzero(u[1:] != u[:-1]) + 1
    column = np.where(u[moved] < u[moved - 1], u[moved], u[moved] - 1).astype(np.float64)
    column = (column + 0.5) / _SCALE - 0.5
    kept = (np.floor(column) == column) & (column >= 0) & (column <= width - 1)
    row = np.minimum(v[moved], v[moved - 1]).astype(np.float64)[kept]
    row = np.ceil(np.clip((row + 0.5) / _SCALE - 0.5, 0, height))
    # Column-major positions: each crossing flips every pixel after it (COCO's runs); a
    # crossing below the last row flips from the next column's first.
    flips = column[kept].astype(np.int64) * height + row.astype(np.int64)
    flips = flips[flips < height * width]  # past the last pixel: flips nothing
    if not len(flips):
        return 0, 0, np.zeros((0, 0), dtype=np.bool_)
    columns, rows = np.divmod(flips, height)
    left, right = int(columns.min()), int(columns.max())
    top, bottom = int(rows.min()), int(rows.max())
    odd_columns = np.bincount(columns - left) & 1
    if len(flips) & 1 or odd_columns.any():
        # A column whose parity carries past its last crossing: whole columns, and
        # with an odd count, everything after the last crossing, as COCO's runs.
        top, bottom = 0, height - 1
        if len(flips) & 1:
            right = width - 1
    spanned = bottom - top + 1
    local = (columns - left) * spanned + (rows - top)
    counts = np.bincount(local, minlength=(right - left + 1) * spanned)
    window = (np.cumsum(counts) & 1).astype(np.bool_)
    return top, left, window.reshape(right - left + 1, spanned).T


def polygon_box(points: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``(4,)`` float32 XYXY box of a polygon's vertices, as COCO's ``bbox`` of a polygon
    annotation (``[x, y, w, h]`` = these corners): not the box of its pixels.

    Example:
        >>> polygon_box([[1.5, 2.0], [4.0, 1.0], [3.0, 6.25]]).tolist()
        [1.5, 1.0, 4.0, 6.25]
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    box: npt.NDArray[np.float32] = np.concatenate([xy.min(axis=0), xy.max(axis=0)]).astype(
        np.float32
    )
    return box


#: Shape codes, as :data:`~segments_torch.samples.SHAPE_TYPES` numbers them.
_BBOX, _POLYGON, _POLYLINE, _POINT = 0, 1, 2, 3


def _outline(kind: int, points: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The polygon a box (its four corners) or a polygon covers."""
    if kind == _BBOX:
        (x0, y0), (x1, y1) = points
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    return points.astype(np.float64)


def area_outlines(
    types: npt.NDArray[np.int8],
    points: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    scale: tuple[float, float] = (1.0, 1.0),
) -> dict[int, npt.NDArray[np.float64]]:
    """The polygon of each selected box (its four corners) and polygon of a label, by
    annotation position, in annotation order: the instances of :func:`shape_target`.

    Example:
        >>> box = np.array([[1, 2], [3, 4]], dtype=np.float32)
        >>> area_outlines(np.zeros(1, np.int8), box, np.array([0, 2]), np.zeros(1))[0].tolist()
        [[1.0, 2.0], [3.0, 2.0], [3.0, 4.0], [1.0, 4.0]]
    """
    chosen = np.flatnonzero(((types == _BBOX) | (types == _POLYGON)) & (labels >= 0))
    return {
        int(k): _outline(int(types[k]), points[offsets[k] : offsets[k + 1]]) * scale[::-1]
        for k in chosen
    }


def shape_target(
    kind: str,
    types: npt.NDArray[np.int8],
    points: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.int64],
    annotation_ids: npt.NDArray[Any],
    labels: npt.NDArray[np.int64],
    height: int,
    width: int,
    *,
    attributes: Sequence[str] | None = None,
    ignore_index: int = 255,
    label_offset: int = 1,
    background: int | None = None,
    scale: tuple[float, float] = (1.0, 1.0),
) -> dict[str, Any]:
    """The target of one vector label, as :func:`~segments_torch.targets.build_target`
    makes a bitmap's: its boxes and polygons are the instances, its points and polylines
    the keypoints.

    Args:
        kind: ``"instance"``, ``"boxes"`` (the same without ``masks``) or ``"semantic"``
            (boxes and polygons painted in annotation order, later over earlier).
        types, points, offsets: the label's shapes (``LabelColumns.shapes_of``).
        annotation_ids, labels: track ids and training labels (``-1``: not selected).
        height, width: the image's size (the masks' and the semantic map's).
        attributes: each annotation's ``attributes`` JSON text (``""``: none); given,
            the target holds them parsed, beside the tensors.
        ignore_index, label_offset, background: as ``build_target``'s.
        scale: ``(y, x)`` factors from the label's pixels to the target's (a resized item).

    An instance target holds, for the selected boxes and polygons: ``boxes`` (XYXY),
    ``labels``, ``masks`` (instance only), ``instance_ids`` (track ids), ``area``,
    ``iscrowd``; for the selected points and polylines: ``keypoints`` (every vertex,
    one ``(P, 2)`` :class:`~torchvision.tv_tensors.KeyPoints`, so v2 transforms move
    them with the image), ``keypoint_offsets`` (set ``j`` is
    ``keypoints[o[j]:o[j+1]]``: one vertex for a point, the vertices in order for a
    polyline), ``keypoint_labels`` and ``keypoint_ids``; with ``attributes``, the dict
    ``attributes`` from track id to the annotation's parsed attributes, which stays
    true however transforms drop instances (``instance_ids`` and ``keypoint_ids`` hold
    the track ids).

    Masks follow COCO's rule (:func:`polygon_mask`), a box as the polygon of its
    corners; boxes are the vertices' (as COCO's ``bbox`` of a polygon), not the masks';
    ``area`` counts the mask's pixels.

    Example:
        >>> target = shape_target(
        ...     "boxes", np.array([0, 3], dtype=np.int8),
        ...     np.array([[1, 1], [3, 2], [5, 6]], dtype=np.float32), np.array([0, 2, 3]),
        ...     np.array([7, 8]), np.array([0, 1]), 10, 10,
        ... )
        >>> target["boxes"].tolist(), target["keypoints"].tolist(), target["keypoint_ids"]
        ([[1.0, 1.0, 3.0, 2.0]], [[5.0, 6.0]], tensor([8]))
    """
    outlines = area_outlines(types, points, offsets, labels, scale)
    if kind == "semantic":
        semantic = np.full((height, width), ignore_index, dtype=np.int64)
        if background is not None:
            semantic[:] = background
        for k, outline in outlines.items():
            top, left, window = polygon_window(outline, height, width)
            rows, columns = window.shape
            semantic[top : top + rows, left : left + columns][window] = labels[k]
        return {"semantic": tv_tensors.Mask(torch.from_numpy(semantic))}

    chosen = np.fromiter(outlines, dtype=np.intp, count=len(outlines))
    boxes = np.zeros((len(chosen), 4), dtype=np.float32)
    masks = np.zeros((len(chosen), height, width), dtype=np.uint8)
    areas = np.zeros(len(chosen), dtype=np.int64)
    for row, shape in enumerate(chosen):
        boxes[row] = polygon_box(outlines[int(shape)])
        # Only the polygon's window is written: the rest of the mask stays untouched
        # zero pages.
        top, left, window = polygon_window(outlines[int(shape)], height, width)
        rows, columns = window.shape
        masks[row, top : top + rows, left : left + columns] = window
        areas[row] = np.count_nonzero(window)
    track_ids = np.asarray(annotation_ids, dtype=np.int64)
    target: dict[str, Any] = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.from_numpy(boxes),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=(height, width),
        ),
        "labels": torch.from_numpy(labels[chosen] + label_offset),
    }
    if kind == "instance":
        target["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
    target["instance_ids"] = torch.from_numpy(track_ids[chosen])
    target["area"] = torch.from_numpy(areas)
    target["iscrowd"] = torch.zeros(len(chosen), dtype=torch.int64)

    point_sets = np.flatnonzero(((types == _POLYLINE) | (types == _POINT)) & (labels >= 0))
    factors = np.asarray(scale[::-1], dtype=np.float32)
    vertices = [points[offsets[k] : offsets[k + 1]] * factors for k in point_sets]
    flat = np.concatenate(vertices) if vertices else np.zeros((0, 2), dtype=np.float32)
    target["keypoints"] = tv_tensors.KeyPoints(
        torch.from_numpy(flat.astype(np.float32)), canvas_size=(height, width)
    )
    counts = [len(v) for v in vertices]
    target["keypoint_offsets"] = torch.from_numpy(np.cumsum([0, *counts], dtype=np.int64))
    target["keypoint_labels"] = torch.from_numpy(labels[point_sets] + label_offset)
    target["keypoint_ids"] = torch.from_numpy(track_ids[point_sets])
    if attributes is not None:
        target["attributes"] = {
            int(track_ids[k]): json.loads(attributes[k]) if attributes[k] else {}
            for k in np.union1d(chosen, point_sets)
        }
    return target
