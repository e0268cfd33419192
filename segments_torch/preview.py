"""Pictures for people: samples with their masks in category colors, and a legend.

:func:`render_preview` reads each sample at the size of its tile (10-12 MP photos cost a
JPEG decode at a reduced DCT scale, their ids are sampled by nearest neighbour) and draws
the masks, outlines, boxes and names there, so what is drawn is what is shown. Tiles take
the page's common aspect ratio. Categories to which the release gives no color get one of
a color-blind-safe palette, chosen by their release id (:func:`category_color`), so a
category looks the same in every preview of its release.

Example:
    >>> ds = SegmentsDataset("flowers-v1.0.json")  # doctest: +SKIP
    >>> render_preview(ds, range(8), boxes=True).save("preview.png")  # doctest: +SKIP
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.v2.functional import resize
from torchvision.utils import make_grid

from .categories import CategoryMap
from .dataset import SegmentsDataset
from .samples import SelectionError
from .targets import sample_nearest

__all__ = ["PALETTE", "category_color", "draw_sample", "preview_colors", "render_preview"]

RGB = tuple[int, int, int]

#: Okabe and Ito's color-blind-safe qualitative colors without their black (unseen on
#: dark photos): orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple.
PALETTE: tuple[RGB, ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
)
_GOLDEN = 0.6180339887498949
_PADDING = 4  # white pixels between tiles and around the grid
_LETTERBOX = 32  # grey of the part of a tile that an image of another aspect leaves
_LEGEND_ROW = 18
_OUTLINE_SHADE = 0.5  # outline brightness against the fill color's
_BACKING = (0, 0, 0)  # behind a box's name: readable on any photo


def category_color(category_id: int) -> RGB:
    """The palette color of a release category id: :data:`PALETTE` in order, then the
    same hues darker and lighter in turn (by amounts the golden ratio spreads).

    The color depends on the id alone, so a category keeps it whatever else the release
    holds or the dataset selects.

    Example:
        >>> category_color(0), category_color(1), category_color(7)
        ((230, 159, 0), (86, 180, 233), (101, 70, 0))
    """
    red, green, blue = PALETTE[category_id % len(PALETTE)]
    cycle = category_id // len(PALETTE)
    if cycle == 0:
        return red, green, blue
    amount = 0.25 + 0.5 * (cycle * _GOLDEN % 1.0)
    toward = 0 if cycle % 2 else 255
    return (
        round(red + (toward - red) * amount),
        round(green + (toward - green) * amount),
        round(blue + (toward - blue) * amount),
    )


def preview_colors(categories: CategoryMap) -> list[RGB]:
    """RGB of each training label for pictures: the release's color of its first
    category that has one, else :func:`category_color` of its lowest release id (labels
    without a category keep ``categories.label_colors``).

    Example:
        >>> from segments_torch.release import Category
        >>> cmap = CategoryMap([Category(0, "plastic"), Category(1, "can", color=(9, 9, 9))])
        >>> preview_colors(cmap)
        [(230, 159, 0), (9, 9, 9)]
    """
    colors = list(categories.label_colors)
    colored: set[int] = set()
    lowest: dict[int, int] = {}
    for entry in categories.entries:  # in release-id order
        if entry.label is None:
            continue
        lowest.setdefault(entry.label, entry.category.id)
        if entry.category.color is not None:
            colored.add(entry.label)
    for label, category_id in lowest.items():
        if label not in colored:
            colors[label] = category_color(category_id)
    return colors


def draw_sample(
    image: torch.Tensor,
    target: dict[str, Any],
    colors: Sequence[RGB],
    *,
    label_offset: int = 1,
    alpha: float = 0.5,
    outline_width: int | None = None,
    outline_color: RGB | None = None,
    boxes: bool = False,
    names: Sequence[str] | None = None,
) -> torch.Tensor:
    """``image`` with each segment of ``target`` (an instance's mask, a stuff region, a
    label of a semantic map) filled in its label's color and outlined, at the image's size.

    Args:
        image: ``(3, H, W)`` uint8.
        target: a dataset target: ``instance_map`` and ``labels`` (panoptic), ``masks``
            and ``labels`` (instance; where masks overlap the last is drawn), or
            ``semantic``; ``is_thing`` says which segments are things (default: all of
            ``labels``' segments, none of a semantic map's).
        colors: RGB per training label (:func:`preview_colors`).
        label_offset: what the dataset added to training labels in ``labels``.
        alpha: opacity of the fill.
        outline_width: how many pixels of each segment's inner border are drawn opaque
            (0: none); ``None``: 1 per 160 pixels of the image's longer side, at least 1
            (2 on a 256-pixel tile).
        outline_color: the outlines' color; ``None``: each segment's own at half its
            brightness, which parts touching segments of one label and keeps their hue.
        boxes: also draw each thing's box (around its pixels, in its color) and its
            label's name in white on a dark backing at the box's top-left.
        names: the name of each training label, for the boxes (default: the label).

    Returns:
        ``(3, H, W)`` uint8, on the CPU.

    Example:
        >>> image, target = ds[0]  # doctest: +SKIP
        >>> drawn = draw_sample(image, target, preview_colors(ds.categories))  # doctest: +SKIP
    """
    # In numpy: a tile is some ten thousand pixels, where torch's thread pool costs more
    # than it saves, and much more on busy cores.
    pixels = image.as_subclass(torch.Tensor).permute(1, 2, 0).cpu().numpy().astype(np.float32)
    segments, labels, things = _segments(target, label_offset, len(colors))
    if not labels:
        return image.as_subclass(torch.Tensor).cpu()
    # Segment k + 1's fill color in row k + 1 of a table: one lookup for every pixel.
    table = np.array([(0, 0, 0), *(colors[label] for label in labels)], dtype=np.float32)
    painted = table[segments]
    labelled = (segments > 0)[..., None]
    drawn = np.where(labelled, pixels * (1 - alpha) + painted * alpha, pixels)
    width = max(1, round(max(segments.shape) / 160)) if outline_width is None else outline_width
    ring = labelled & _boundary(segments, width)[..., None]
    if outline_color is None:  # a darker shade: it parts touching segments of one color
        outline = painted * _OUTLINE_SHADE
    else:
        outline = np.array(outline_color, dtype=np.float32)
    drawn = np.rint(np.where(ring, outline, drawn)).astype(np.uint8)
    if boxes:
        corners = _boxes(segments, len(labels))
        found = [k for k in range(len(labels)) if things[k] and corners[k][0] >= 0]
        _draw_boxes(
            drawn,
            [corners[k] for k in found],
            [colors[labels[k]] for k in found],
            [names[labels[k]] if names is not None else str(labels[k]) for k in found],
        )
    return torch.from_numpy(np.ascontiguousarray(drawn.transpose(2, 0, 1)))


Segments = npt.NDArray[np.int64]


def _segments(
    target: dict[str, Any], label_offset: int, num_labels: int
) -> tuple[Segments, list[int], list[bool]]:
    """``target`` as one ``(H, W)`` map of segment numbers (``k + 1`` for segment ``k``, 0
    for none), the training label of each segment and whether it is a thing."""
    if "instance_map" in target or "masks" in target:
        labels = [int(v) - label_offset for v in target["labels"]]
        if "instance_map" in target:
            segments = _host(target["instance_map"]).astype(np.int64)
        else:
            masks = _host(target["masks"]).astype(bool)
            segments = np.zeros(masks.shape[-2:], dtype=np.int64)
            for number, mask in enumerate(masks, start=1):  # one (H, W) map, not N of them
                segments[mask] = number
        things = [bool(v) for v in target.get("is_thing", [True] * len(labels))]
        return segments, labels, things
    if "semantic" in target:
        semantic = _host(target["semantic"])
        labels = [int(v) for v in np.unique(semantic) if 0 <= int(v) < num_labels]
        segments = np.zeros(semantic.shape, dtype=np.int64)
        for number, label in enumerate(labels, start=1):
            segments[semantic == label] = number
        return segments, labels, [False] * len(labels)
    return np.zeros((0, 0), dtype=np.int64), [], []


def _host(tensor: torch.Tensor) -> npt.NDArray[Any]:
    return tensor.as_subclass(torch.Tensor).cpu().numpy()


def _boundary(segments: Segments, width: int) -> npt.NDArray[np.bool_]:
    """``(H, W)`` bool: pixels with another segment number (0 included) within ``width``
    pixels (8-neighbour steps); the image's edge is no boundary."""
    highest = _extreme(segments, width, np.maximum)
    lowest = _extreme(segments, width, np.minimum)
    different: npt.NDArray[np.bool_] = highest != lowest
    return different


def _extreme(values: Segments, width: int, pick: np.ufunc) -> Segments:
    """The max (``pick=np.maximum``) or min of ``values`` over each pixel's square of
    ``2 * width + 1`` pixels, within the image: one axis, then the other."""
    for axis in (0, 1):
        result = values.copy()
        for shift in range(1, min(width, values.shape[axis] - 1) + 1):
            ahead = [slice(None), slice(None)]
            behind = [slice(None), slice(None)]
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            pick(result[tuple(behind)], values[tuple(ahead)], out=result[tuple(behind)])
            pick(result[tuple(ahead)], values[tuple(behind)], out=result[tuple(ahead)])
        values = result
    return values


def _boxes(segments: Segments, count: int) -> list[list[int]]:
    """``[x0, y0, x1, y1]`` (inclusive pixels) of segments ``1 .. count`` of the map;
    ``[-1, -1, -1, -1]`` for a segment without pixels."""
    extents = []
    for axis in (1, 0):  # columns (x), then rows (y)
        # present[k, i]: segment k has a pixel in column (or row) i.
        length = segments.shape[axis]
        present = np.zeros((count + 1, length), dtype=bool)
        positions = np.indices(segments.shape)[axis]
        present[segments.reshape(-1), positions.reshape(-1)] = True
        first = present.argmax(axis=1)
        last = length - 1 - present[:, ::-1].argmax(axis=1)
        extents.append((first, last, present.any(axis=1)))
    (x0, x1, found), (y0, y1, _) = extents
    corners = np.stack([x0, y0, x1, y1], axis=1)
    corners[~found] = -1
    return [[int(v) for v in row] for row in corners[1:]]


def _draw_boxes(
    pixels: npt.NDArray[np.uint8], corners: list[list[int]], colors: list[RGB], texts: list[str]
) -> None:
    """Draw into ``pixels`` (``(H, W, 3)``) each box outlined in its color and its text at
    its top-left, white on a dark backing kept inside the image."""
    if not corners:
        return
    picture = Image.fromarray(pixels)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for (x0, y0, x1, y1), color, text in zip(corners, colors, texts, strict=True):
        draw.rectangle((x0, y0, x1, y1), outline=color, width=1)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        # The backing (the letters and a pixel around) at the box's top-left, moved left
        # where it would leave the image.
        x = max(0, min(x0, picture.width - (right - left) - 2))
        draw.rectangle((x, y0, x + right - left + 1, y0 + bottom - top + 1), fill=_BACKING)
        draw.text((x + 1 - left, y0 + 1 - top), text, fill=(255, 255, 255), font=font)
    pixels[...] = np.asarray(picture)


#: A vector label's points and polylines: ``(P, 2)`` vertices, offsets of each set,
#: and each set's training label.
KeyPointSets = tuple[npt.NDArray[np.float32], list[int], list[int]]


def _draw_keypoints(
    pixels: npt.NDArray[np.uint8], points: KeyPointSets, colors: Sequence[RGB]
) -> None:
    """Draw into ``pixels`` (``(H, W, 3)``) each polyline as a line and each point as a
    dot, in its label's color with a dark rim."""
    xy, offsets, labels = points
    if not len(labels):
        return
    picture = Image.fromarray(pixels)
    draw = ImageDraw.Draw(picture)
    radius = max(2, round(max(pixels.shape[:2]) / 100))
    for start, stop, label in zip(offsets[:-1], offsets[1:], labels, strict=True):
        color = colors[label]
        vertices = [(float(x), float(y)) for x, y in xy[start:stop]]
        if len(vertices) > 1:
            draw.line(vertices, fill=_BACKING, width=radius + 2, joint="curve")
            draw.line(vertices, fill=color, width=radius, joint="curve")
        else:
            ((x, y),) = vertices
            draw.ellipse(
                (x - radius, y - radius, x + radius, y + radius), fill=color, outline=_BACKING
            )
    pixels[...] = np.asarray(picture)


@dataclass
class _Sample:
    """What a tile is drawn from: the image, its segments as an instance map (row + 1 of
    ``labels``, 0 for none), each segment's training label and kind, and a vector
    label's points and polylines."""

    image: torch.Tensor
    instance_map: torch.Tensor
    labels: torch.Tensor
    is_thing: torch.Tensor
    keypoints: KeyPointSets = (np.zeros((0, 2), dtype=np.float32), [0], [])

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[-2], self.image.shape[-1]


def render_preview(
    dataset: SegmentsDataset,
    indices: Iterable[int],
    *,
    tile: int = 256,
    columns: int = 4,
    boxes: bool = False,
) -> Image.Image:
    """A grid of ``dataset[i]`` for ``i`` in ``indices``, each drawn with
    :func:`draw_sample` in :func:`preview_colors`, above a legend of the training labels.

    Samples are read untransformed, as panoptic targets (things one mask each, stuff one
    per label; a ``background=`` class is neither drawn nor listed; a vector labelset's
    boxes and polygons as masks, where they overlap the later on top, its polylines as
    lines and its points as dots) and at the tile's
    size: the longer side ``tile``, unless the dataset reads at a size of its own
    (``size=``/``max_size=``), which is then kept and scaled to the tile afterwards (the
    image with antialiasing, the ids by nearest neighbour). Masks, outlines and boxes are
    drawn at the size they are shown. Every tile has the page's common (median) aspect
    ratio with ``tile`` pixels on its longer side; an image of another aspect is centred
    in it on dark grey.

    Args:
        dataset: the samples, any target kind and transforms (neither is used).
        indices: which ``dataset[i]`` to draw, in order; of a ``sequence=True`` dataset,
            one tile for each frame of each sequence.
        tile: the longer side of each tile, in pixels.
        columns: tiles per row.
        boxes: draw each instance's box and name (see :func:`draw_sample`).

    Example:
        >>> picture = render_preview(ds, range(16), tile=256, boxes=True)  # doctest: +SKIP
        >>> picture.save("preview.png")  # doctest: +SKIP
    """
    if tile < 1 or columns < 1:
        raise ValueError(f"tile and columns must be at least 1, not {tile} and {columns}")
    reader = _reader(dataset, tile)
    frames = (frame for index in indices for frame in dataset.frames_of(index))
    samples = [_read(reader, frame, tile) for frame in frames]
    if not samples:
        raise SelectionError("render_preview: no samples to preview")
    colors = preview_colors(dataset.categories)
    names = dataset.categories.label_names
    box = _tile_shape([sample.shape for sample in samples], tile)
    tiles = [_draw_tile(sample, box, colors, names, boxes) for sample in samples]
    grid = make_grid(tiles, nrow=columns, padding=_PADDING, pad_value=255)
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    shown = [k for k in range(len(names)) if k != dataset.categories.background_label]
    return _with_legend(picture, shown, names, colors)


def _reader(dataset: SegmentsDataset, tile: int) -> SegmentsDataset:
    """A variant of ``dataset`` serving untransformed panoptic ``(image, target)`` items
    (instance items of vector labels) in private memory, at the tile's size unless the
    dataset has a size of its own, one item per frame of a sequence; it shares the
    dataset's failure counts. Its label
    offset is 1, which panoptic targets with a background class need (:func:`_read` takes
    labels back to training labels)."""
    size = {} if dataset.resizing else {"size": None, "max_size": tile}
    return dataset.with_options(
        target="instance" if dataset.vector else "panoptic",
        transforms=None,
        shared_memory=False,
        decode="host",
        label_offset=1,
        sequence=False,
        **size,
    )


def _read(reader: SegmentsDataset, index: int, tile: int) -> _Sample:
    """``reader[index]`` as a :class:`_Sample` without the background class's segment, at
    most ``tile`` pixels on its longer side (so that a page of samples read at a larger
    size holds little)."""
    image, target = reader[index]
    offset = reader.target_options["label_offset"]
    if reader.vector:
        return _fitted(_shapes_sample(image, target, offset), tile)
    labels = target["labels"] - offset
    instance_map = target["instance_map"].as_subclass(torch.Tensor)
    is_thing = target["is_thing"]
    background = reader.categories.background_label
    kept = labels != (-1 if background is None else background)
    if not bool(kept.all()):  # unlabelled pixels stay as they are: renumber the others
        number = torch.zeros(len(labels) + 1, dtype=instance_map.dtype)
        number[1:][kept] = torch.arange(1, int(kept.sum()) + 1, dtype=instance_map.dtype)
        instance_map, labels, is_thing = number[instance_map], labels[kept], is_thing[kept]
    sample = _Sample(image.as_subclass(torch.Tensor), instance_map, labels, is_thing)
    return _fitted(sample, tile)


def _shapes_sample(image: torch.Tensor, target: dict[str, Any], offset: int) -> _Sample:
    """A vector item as a sample: its masks as one map (where they overlap, the later
    shape), every instance a thing, and its points and polylines."""
    masks = _host(target["masks"]).astype(bool)
    instance_map = np.zeros(masks.shape[-2:], dtype=np.int64)
    for number, mask in enumerate(masks, start=1):
        instance_map[mask] = number
    labels = target["labels"] - offset
    points = (
        _host(target["keypoints"]).astype(np.float32),
        target["keypoint_offsets"].tolist(),
        (target["keypoint_labels"] - offset).tolist(),
    )
    return _Sample(
        image.as_subclass(torch.Tensor),
        torch.from_numpy(instance_map),
        labels,
        torch.ones(len(labels), dtype=torch.bool),
        points,
    )


def _fitted(sample: _Sample, tile: int) -> _Sample:
    """``sample`` at most ``tile`` pixels on its longer side."""
    height, width = sample.shape
    if max(height, width) <= tile:
        return sample
    scale = tile / max(height, width)
    return _scaled(sample, (max(1, round(height * scale)), max(1, round(width * scale))))


def _scaled(sample: _Sample, size: tuple[int, int]) -> _Sample:
    """``sample`` at ``size``: the image resized with antialiasing, the ids sampled by
    nearest neighbour (as the dataset samples them), the points scaled."""
    if sample.shape == size:
        return sample
    image = resize(sample.image, list(size), antialias=True)
    instance_map = sample_nearest(sample.instance_map, *size)
    assert isinstance(instance_map, torch.Tensor)
    xy, offsets, labels = sample.keypoints
    factors = np.array([size[1] / sample.shape[1], size[0] / sample.shape[0]], dtype=np.float32)
    points = (xy * factors, offsets, labels)
    return _Sample(image, instance_map, sample.labels, sample.is_thing, points)


def _tile_shape(shapes: Sequence[tuple[int, int]], tile: int) -> tuple[int, int]:
    """``(height, width)`` of every tile: the median aspect ratio of ``shapes``, ``tile``
    pixels on the longer side. Photos of one camera fill their tiles whole; a page of
    landscape photos wastes no third of a square tile."""
    aspect = statistics.median(width / height for height, width in shapes)
    if aspect >= 1:
        return max(1, round(tile / aspect)), tile
    return tile, max(1, round(tile * aspect))


def _draw_tile(
    sample: _Sample,
    box: tuple[int, int],
    colors: Sequence[RGB],
    names: Sequence[str],
    boxes: bool,
) -> torch.Tensor:
    """The tile of ``sample``: scaled to fit ``box`` (``(height, width)``), drawn at that
    size and centred."""
    height, width = sample.shape
    scale = min(box[0] / height, box[1] / width)
    fitted = (
        min(box[0], max(1, round(height * scale))),
        min(box[1], max(1, round(width * scale))),
    )
    sample = _scaled(sample, fitted)
    target = {
        "instance_map": sample.instance_map,
        "labels": sample.labels,
        "is_thing": sample.is_thing,
    }
    drawn = draw_sample(sample.image, target, colors, label_offset=0, boxes=boxes, names=names)
    if sample.keypoints[2]:
        pixels = np.ascontiguousarray(drawn.permute(1, 2, 0).numpy())
        _draw_keypoints(pixels, sample.keypoints, colors)
        drawn = torch.from_numpy(pixels.transpose(2, 0, 1))
    canvas = torch.full((3, *box), _LETTERBOX, dtype=torch.uint8)
    top, left = (box[0] - fitted[0]) // 2, (box[1] - fitted[1]) // 2
    canvas[:, top : top + fitted[0], left : left + fitted[1]] = drawn
    return canvas


def _with_legend(
    picture: Image.Image, shown: Sequence[int], names: Sequence[str], colors: Sequence[RGB]
) -> Image.Image:
    """``picture`` above a legend of the ``shown`` labels: swatch, label, name; four a row."""
    rows = (len(shown) + 3) // 4
    legend = Image.new("RGB", (picture.width, rows * _LEGEND_ROW + 8), "white")
    draw = ImageDraw.Draw(legend)
    column_width = picture.width // 4
    for place, label in enumerate(shown):
        x = 6 + (place % 4) * column_width
        y = 4 + (place // 4) * _LEGEND_ROW
        draw.rectangle((x, y + 2, x + 12, y + 14), fill=colors[label], outline="black")
        draw.text((x + 18, y + 2), f"{label}: {names[label]}", fill="black")
    result = Image.new("RGB", (picture.width, picture.height + legend.height), "white")
    result.paste(picture, (0, 0))
    result.paste(legend, (0, picture.height))
    return result
