"""``torchvision.transforms.v2`` transforms for the targets of this library.

:class:`RecomputeArea`: torchvision's geometric transforms move masks and boxes but leave
``area`` as it was, so after a resize or a crop it still counts the pixels of the full
image (torchvision's own COCO wrapper does the same). COCO evaluation sorts instances into
small, medium and large by that area; a model evaluated on resized images would be scored
in the wrong ranges. Put it after the transforms that change the geometry.

Example:
    >>> from torchvision.transforms import v2
    >>> augment = v2.Compose([
    ...     v2.RandomResizedCrop((512, 512)),
    ...     RecomputeArea(),  # areas of the crop; instances left without pixels dropped
    ... ])
    >>> ds = SegmentsDataset("flowers.json", transforms=augment)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .targets import INSTANCE_FIELDS

__all__ = ["RecomputeArea"]


class RecomputeArea(v2.Transform):  # type: ignore[misc]  # torchvision has no type stubs
    """Set each instance's ``area`` to the pixels of its mask, and drop the instances
    whose mask has none left (their box, mask and every per-instance field with them;
    in panoptic targets the ``instance_map`` is renumbered to match).

    Takes ``(image, target)`` as ``transforms.v2`` joint transforms do; a target without
    ``masks`` passes unchanged.

    Args:
        drop_empty: drop instances without pixels (``False``: keep them, area 0).
    """

    def __init__(self, drop_empty: bool = True) -> None:
        super().__init__()
        self.drop_empty = drop_empty

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        image, target = sample
        if not isinstance(target, dict) or "masks" not in target:
            return sample
        masks = target["masks"].as_subclass(torch.Tensor)
        area = masks.flatten(1).sum(dim=1, dtype=torch.int64)
        result = dict(target, area=area)
        keep = area > 0
        if self.drop_empty and not bool(keep.all()):
            for key in (*INSTANCE_FIELDS, "boxes", "masks"):
                if key in result:
                    result[key] = _rows(result[key], keep)
            if "instance_map" in result:
                result["instance_map"] = _renumbered(result["instance_map"], keep)
        return image, result


def _rows(value: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The rows of ``value`` where ``keep`` holds, a tv_tensor kept one (with its
    ``canvas_size`` and format, for boxes)."""
    rows: torch.Tensor = value.as_subclass(torch.Tensor)[keep]
    if isinstance(value, tv_tensors.TVTensor):
        wrapped: torch.Tensor = tv_tensors.wrap(rows, like=value)
        return wrapped
    return rows


def _renumbered(instance_map: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A panoptic ``instance_map`` (row in masks + 1, 0 none) after dropping the rows
    where ``keep`` is False: the rows kept numbered again, the others 0."""
    table = torch.zeros(len(keep) + 1, dtype=instance_map.dtype, device=instance_map.device)
    table[1:][keep] = torch.arange(1, int(keep.sum()) + 1, device=instance_map.device).to(
        instance_map.dtype
    )
    renumbered = table[instance_map.as_subclass(torch.Tensor)]
    if isinstance(instance_map, tv_tensors.TVTensor):
        wrapped: torch.Tensor = tv_tensors.wrap(renumbered, like=instance_map)
        return wrapped
    return renumbered
