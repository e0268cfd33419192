"""Pictures for people: samples with their masks in category colors, and a legend.

Example:
    >>> ds = SegmentsDataset("flowers-v1.0.json", target="panoptic")  # doctest: +SKIP
    >>> render_preview(ds, range(8)).save("preview.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from PIL import Image, ImageDraw
from torchvision.transforms.v2.functional import resize
from torchvision.utils import draw_segmentation_masks, make_grid

__all__ = ["draw_sample", "render_preview"]

_LEGEND_ROW = 18


def draw_sample(
    image: torch.Tensor,
    target: dict[str, Any],
    colors: Sequence[tuple[int, int, int]],
    *,
    label_offset: int = 1,
    alpha: float = 0.55,
    outline_color: tuple[int, int, int] = (255, 255, 255),
) -> torch.Tensor:
    """``image`` with each instance mask (or the semantic map) filled in its label's
    color and outlined.

    Args:
        image: ``(3, H, W)`` uint8.
        target: a dataset target with ``masks`` and ``labels``, or ``semantic``.
        colors: RGB per training label.
        label_offset: what the dataset added to training labels in ``labels``.
    """
    image = image.as_subclass(torch.Tensor)
    if "masks" in target and len(target["masks"]):
        masks = target["masks"].as_subclass(torch.Tensor).bool()
        labels = (target["labels"] - label_offset).tolist()
    elif "semantic" in target:
        semantic = target["semantic"].as_subclass(torch.Tensor)
        labels = [int(v) for v in torch.unique(semantic) if 0 <= int(v) < len(colors)]
        masks = torch.stack([semantic == v for v in labels]) if labels else None
    else:
        masks = None
    if masks is None:
        return image
    filled = draw_segmentation_masks(image, masks, alpha=alpha, colors=[colors[v] for v in labels])
    outline = _outlines(masks)
    return torch.where(
        outline, torch.tensor(outline_color, dtype=torch.uint8)[:, None, None], filled
    )


def _outlines(masks: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` bool: pixels of a mask with a 4-neighbour outside it."""
    inside = masks.to(torch.float32).unsqueeze(1)
    eroded = -torch.nn.functional.max_pool2d(-inside, kernel_size=3, stride=1, padding=1)
    return ((inside - eroded) > 0).squeeze(1).any(dim=0)


def render_preview(
    dataset: Any,
    indices: Iterable[int],
    *,
    tile: int = 256,
    columns: int = 4,
) -> Image.Image:
    """A grid of ``dataset[i]`` for ``i`` in ``indices``, each drawn with
    :func:`draw_sample` and letterboxed into ``tile`` x ``tile``, above a legend of the
    dataset's training labels and colors.

    ``dataset`` is a :class:`~segments_torch.dataset.SegmentsDataset` (any target kind).
    """
    colors = dataset.categories.label_colors
    tiles = []
    for index in indices:
        image, target = dataset[index]
        drawn = draw_sample(image, target, colors, label_offset=dataset.label_offset)
        height, width = drawn.shape[-2:]
        scale = tile / max(height, width)
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        resized = resize(drawn, size, antialias=True)
        canvas = torch.full((3, tile, tile), 32, dtype=torch.uint8)
        canvas[:, : size[0], : size[1]] = resized
        tiles.append(canvas)
    if not tiles:
        raise ValueError("no samples to preview")
    grid = make_grid(tiles, nrow=columns, padding=4, pad_value=255)
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    return _with_legend(picture, dataset.categories.label_names, colors)


def _with_legend(
    picture: Image.Image, names: Sequence[str], colors: Sequence[tuple[int, int, int]]
) -> Image.Image:
    rows = (len(names) + 3) // 4
    legend = Image.new("RGB", (picture.width, rows * _LEGEND_ROW + 8), "white")
    draw = ImageDraw.Draw(legend)
    column_width = picture.width // 4
    for label, (name, color) in enumerate(zip(names, colors, strict=True)):
        x = 6 + (label % 4) * column_width
        y = 4 + (label // 4) * _LEGEND_ROW
        draw.rectangle((x, y + 2, x + 12, y + 14), fill=color, outline="black")
        draw.text((x + 18, y + 2), f"{label}: {name}", fill="black")
    result = Image.new("RGB", (picture.width, picture.height + legend.height), "white")
    result.paste(picture, (0, 0))
    result.paste(legend, (0, picture.height))
    return result
