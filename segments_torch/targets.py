"""Training targets from an instance-id map: pure tensor code, CPU or CUDA alike.

Every function takes tensors and returns tensors on the same device, so the dataset
(CPU workers) and :mod:`segments_torch.device` (GPU) build identical targets.

Per sample the work is a few passes over the pixels and one over the masks:

1. ``ids -> value`` through a lookup table indexed by instance id (``index_select``),
   sized by the sample's largest annotation id; when ids are large and sparse (a
   16-million id on a small image) through ``torch.searchsorted`` over the sorted ids
   instead, so memory never scales with 2^24.
2. masks by one broadcast comparison of a one-byte segment map with the segment numbers,
   which writes each byte of the ``(N, H, W)`` output once (as a zero-fill would); boxes
   from the rows and columns the masks touch (two reductions), areas by one count. On
   CPU this is 2-3x faster than scattering pixels into a zeroed buffer and reducing
   their coordinates with ``scatter_reduce`` (``benchmarks/bench_dataset.py``).

Example:
    >>> ids = torch.tensor([[0, 7], [7, 300]], dtype=torch.int32)
    >>> map_ids(ids, torch.tensor([7, 300]), torch.tensor([1, 2]), fill=255).tolist()
    [[255, 1], [1, 2]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors

__all__ = [
    "INSTANCE_FIELDS",
    "TARGET_KINDS",
    "SegmentTargets",
    "build_target",
    "instance_fields",
    "map_ids",
    "segment_targets",
]

#: What ``target=`` may be.
TARGET_KINDS = ("instance", "semantic", "panoptic")
#: Target entries with one row per instance, which ``SanitizeBoundingBoxes`` must filter
#: together with the boxes (see :func:`instance_fields`).
INSTANCE_FIELDS = ("labels", "instance_ids", "area", "iscrowd", "is_thing")


def map_ids(
    ids: torch.Tensor, annotation_ids: torch.Tensor, values: torch.Tensor, fill: int
) -> torch.Tensor:
    """Replace each pixel's instance id by the value of its annotation.

    Args:
        ids: ``(H, W)`` int32 instance ids (0 = unlabelled).
        annotation_ids: ``(N,)`` distinct ids of the label's annotations.
        values: ``(N,)`` the value for each annotation.
        fill: the value of pixels whose id has no annotation (0 included).

    Returns:
        ``(H, W)`` tensor of ``values.dtype``.
    """
    if annotation_ids.numel() == 0:
        return torch.full(ids.shape, fill, dtype=values.dtype, device=ids.device)
    annotation_ids = annotation_ids.to(device=ids.device, dtype=torch.int64)
    values = values.to(ids.device)
    largest = int(annotation_ids.max())
    if largest < max(1 << 16, ids.numel()):
        # Dense table; ids above the largest annotation id land on its last (fill) slot.
        table = torch.full((largest + 2,), fill, dtype=values.dtype, device=ids.device)
        table[annotation_ids] = values
        # index_select, not table[ids]: advanced indexing is 2-3x slower on CPU.
        index = ids.clamp(max=largest + 1).reshape(-1)
        return table.index_select(0, index).view(ids.shape)
    ordered, order = torch.sort(annotation_ids.to(ids.dtype))
    position = torch.searchsorted(ordered, ids).clamp_(max=len(ordered) - 1)
    found = ordered[position] == ids
    return torch.where(found, values[order][position], fill)


@dataclass(frozen=True)
class SegmentTargets:
    """Masks, boxes and areas of the segments that have pixels.

    Attributes:
        masks: ``(M, H, W)`` uint8, 1 inside the segment.
        boxes: ``(M, 4)`` float32 XYXY covering the segment's pixels (``x1 = max x + 1``),
            so a one-pixel segment has a box of size 1 x 1.
        area: ``(M,)`` int64 pixel counts.
        segments: ``(M,)`` int64, which of the requested segments each row is.
        segment_map: ``(H, W)`` int64, each pixel's row in ``masks`` or ``-1``.
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    area: torch.Tensor
    segments: torch.Tensor
    segment_map: torch.Tensor


def segment_targets(segment_map: torch.Tensor, num_segments: int) -> SegmentTargets:
    """Masks, boxes and areas of segments ``0 .. num_segments - 1``.

    Args:
        segment_map: ``(H, W)`` int64, each pixel's segment or ``-1``.
        num_segments: how many segments were assigned; those without pixels are dropped.
    """
    height, width = segment_map.shape
    device = segment_map.device
    flat = segment_map.reshape(-1)
    # Segment + 1 (0 = none) in a narrow dtype: counting and comparing read 1 byte a pixel.
    narrow = torch.uint8 if num_segments < 255 else torch.int32
    code = (flat + 1).to(narrow)
    area = torch.bincount(code, minlength=num_segments + 1)[1:]
    present = torch.nonzero(area).squeeze(1)
    count = len(present)
    if count < num_segments:  # renumber the segments that have pixels
        renumber = torch.full((num_segments + 1,), -1, dtype=torch.int64, device=device)
        renumber[present + 1] = torch.arange(count, device=device)
        flat = renumber.index_select(0, flat + 1)
        code = (flat + 1).to(narrow)
    # Masks by one broadcast comparison that writes every byte once (no zero-fill, no
    # scatter); the uint8 out= keeps the comparison on the vectorised same-dtype path.
    masks = torch.empty((count, height, width), dtype=torch.uint8, device=device)
    numbers = torch.arange(1, count + 1, dtype=narrow, device=device).view(count, 1, 1)
    torch.eq(code.view(1, height, width), numbers, out=masks)
    # Boxes from the columns and rows each mask touches.
    boxes = torch.empty((count, 4), dtype=torch.int64, device=device)
    for axis, (touched, extent) in enumerate(
        ((masks.amax(dim=1), width), (masks.amax(dim=2), height))
    ):
        hit = touched > 0
        position = torch.arange(extent, device=device)
        boxes[:, axis] = torch.where(hit, position, extent).amin(dim=1)
        boxes[:, axis + 2] = torch.where(hit, position, -1).amax(dim=1) + 1
    return SegmentTargets(
        masks=masks,
        boxes=boxes.to(torch.float32),
        area=area[present],
        segments=present,
        segment_map=flat.view(height, width),
    )


def build_target(
    kind: str,
    ids: torch.Tensor,
    annotation_ids: torch.Tensor,
    labels: torch.Tensor,
    is_thing: torch.Tensor,
    *,
    ignore_index: int = 255,
    label_offset: int = 1,
) -> dict[str, torch.Tensor]:
    """The target of one sample, as torchvision models and ``transforms.v2`` expect.

    Args:
        kind: ``"instance"``, ``"semantic"`` or ``"panoptic"``.
        ids: ``(H, W)`` int32 instance ids of the bitmap.
        annotation_ids: ``(N,)`` the label's annotation ids.
        labels: ``(N,)`` int64 training label of each annotation, ``-1`` when its category
            is not selected.
        is_thing: ``(N,)`` bool, the category's ``has_instances``.
        ignore_index: semantic value of unlabelled and unselected pixels.
        label_offset: added to training labels in ``labels`` (1 keeps 0 for background).

    Returns:
        ``instance``: ``boxes``, ``labels``, ``masks``, ``instance_ids``, ``area``,
        ``iscrowd``. ``semantic``: ``semantic``. ``panoptic``: all of these plus
        ``is_thing`` and ``instance_map`` (``(H, W)`` int64, row in ``masks`` + 1, 0
        where no segment); things are one segment per annotation, stuff
        (``has_instances: false``) one segment per training label.
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"target kind must be one of {TARGET_KINDS}, not {kind!r}")
    device = ids.device
    annotation_ids = annotation_ids.to(device=device, dtype=torch.int64)
    labels = labels.to(device)
    selected = labels >= 0
    target: dict[str, torch.Tensor] = {}
    if kind != "instance":
        semantic = map_ids(
            ids, annotation_ids, torch.where(selected, labels, ignore_index), ignore_index
        )
        target["semantic"] = tv_tensors.Mask(semantic)
    if kind == "semantic":
        return target

    if kind == "instance":
        thing = selected
        segment_of = torch.where(selected, torch.cumsum(selected, 0) - 1, -1)
    else:
        thing = selected & is_thing.to(device)
        segment_of = _panoptic_segments(labels, thing)
    num_segments = int(segment_of.max()) + 1 if len(segment_of) else 0
    segments = segment_targets(map_ids(ids, annotation_ids, segment_of, -1), num_segments)
    # The first annotation of each kept segment (the only one, for things).
    first = torch.full((num_segments + 1,), len(segment_of), dtype=torch.int64, device=device)
    first.scatter_reduce_(0, segment_of + 1, torch.arange(len(segment_of), device=device), "amin")
    annotation = first[segments.segments + 1]
    target.update(
        boxes=tv_tensors.BoundingBoxes(
            segments.boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=tuple(ids.shape)
        ),
        labels=labels[annotation] + label_offset,
        masks=tv_tensors.Mask(segments.masks),
        instance_ids=annotation_ids[annotation],
        area=segments.area,
        iscrowd=torch.zeros(len(annotation), dtype=torch.int64, device=device),
    )
    if kind == "panoptic":
        target["is_thing"] = thing[annotation]
        target["instance_map"] = tv_tensors.Mask(segments.segment_map + 1)
    return target


def _panoptic_segments(labels: torch.Tensor, thing: torch.Tensor) -> torch.Tensor:
    """Segment of each annotation: one per thing, one per stuff label, numbered in the
    order of their first annotation; ``-1`` for unselected annotations."""
    count = len(labels)
    position = torch.arange(count, device=labels.device)
    # Key of a stuff annotation: the position of the first annotation with its label.
    first_of_label = torch.full(
        (int(labels.max()) + 2 if count else 1,), count, dtype=torch.int64, device=labels.device
    )
    # Only stuff annotations key their label (things and unselected ones go to slot 0),
    # so a thing sharing a stuff label ({"car": 0, "road": 0}) never absorbs the stuff.
    first_of_label.scatter_reduce_(0, torch.where(thing, 0, labels + 1), position, "amin")
    key = torch.where(thing, position, first_of_label[labels + 1])
    key = torch.where(labels >= 0, key, count)
    unique_keys = torch.unique(key)
    segment = torch.searchsorted(unique_keys, key)
    return torch.where(labels >= 0, segment, -1)


def instance_fields(inputs: Any) -> tuple[torch.Tensor, ...]:
    """A ``labels_getter`` for ``transforms.v2.SanitizeBoundingBoxes`` that filters every
    per-instance entry of the target with the boxes, not only ``labels``.

    Example:
        >>> from torchvision.transforms import v2
        >>> sanitize = v2.SanitizeBoundingBoxes(labels_getter=instance_fields)
    """
    target = inputs[1] if isinstance(inputs, tuple) and len(inputs) == 2 else inputs[0][1]
    return tuple(target[key] for key in INSTANCE_FIELDS if key in target)
