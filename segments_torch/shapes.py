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

import numpy as np
import numpy.typing as npt

__all__ = ["polygon_box", "polygon_mask"]

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
        >>> polygon_mask([[0, 0], [2, 0], [2, 2]], 3, 3).sum()
        np.int64(3)
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mask = np.zeros(height * width, dtype=np.bool_)
    if not len(xy) or not height or not width:
        return mask.reshape(height, width)
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
    # Column-major positions; each crossing flips every pixel after it (COCO's runs), so
    # only the stretch between the first and the last crossing needs counting.
    flips = column[kept].astype(np.int64) * height + row.astype(np.int64)
    flips = flips[flips < height * width]  # past the last pixel: flips nothing
    if len(flips):
        first, last = int(flips.min()), int(flips.max())
        counts = np.bincount(flips - first, minlength=last - first + 1)
        mask[first : last + 1] = (np.cumsum(counts) & 1).astype(np.bool_)
        mask[last + 1 :] = bool(len(flips) & 1)  # an odd count fills the rest, as COCO's runs do
    return mask.reshape(width, height).T


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
