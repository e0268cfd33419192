"""``coco-panoptic``: COCO's panoptic format, ``coco_panoptic.json`` and one RGB PNG per
image in ``coco_panoptic/``.

The segments are those of the dataset's ``target="panoptic"``: one per annotation of a
"thing" category (``has_instances: true``), one per training label for "stuff"
categories (all their annotations merged, as COCO panoptic wants stuff), only where the
category is selected and the segment has pixels. A pixel's PNG value is its segment id
``R + 256 G + 65536 B`` (0: void), and the segment id is the release's instance id of the
segment's annotation (for a merged stuff segment, of its first annotation), so ids are
unique within an image, never 0, and up to 2^24 - 1 survive (the SDK gave every segment
of a stuff category the same id). Each image's ``annotations`` record lists its
``segments_info``: ``id``, ``category_id``, ``iscrowd`` 0, integer ``bbox`` and ``area``;
categories carry ``isthing`` (from ``has_instances``) and ``color``.

Example:
    >>> path = export_dataset(ds, "coco-panoptic", out_dir="export")  # doctest: +SKIP
    >>> # export/coco_panoptic.json, export/coco_panoptic/<stem>.png
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Encoded, SampleRef, Writer, coco_boxes
from .png import encode_ids

__all__ = ["CocoPanopticWriter"]


class CocoPanopticWriter(Writer):
    """``coco-panoptic``: ``coco_panoptic.json`` and ``coco_panoptic/<stem>.png``."""

    target = "panoptic"
    json_name = "coco_panoptic.json"
    folder = "coco_panoptic"

    def header(self) -> dict[str, Any]:
        return {"licenses": [], **super().header()}

    def encode(self, sample: SampleRef, height: int, width: int, target: dict[str, Any]) -> Encoded:
        segment_ids = target["instance_ids"].to(torch.int64)
        # instance_map holds each pixel's row in masks + 1 (0: none): a table lookup
        # turns it into segment ids.
        table = torch.cat([torch.zeros(1, dtype=torch.int64), segment_ids])
        instance_map = target["instance_map"].as_subclass(torch.Tensor)
        pixels = table.index_select(0, instance_map.reshape(-1)).view(height, width)
        segments = [
            {"id": segment_id, "category_id": category_id, "iscrowd": 0, "bbox": bbox, "area": area}
            for segment_id, category_id, bbox, area in zip(
                segment_ids.tolist(),
                self.category_ids(target["labels"]),
                coco_boxes(target["boxes"]),
                target["area"].tolist(),
                strict=True,
            )
        ]
        path = self.label_path(sample)
        annotation = {
            "image_id": sample.image_id,
            "file_name": f"{sample.stem}.png",
            "segments_info": segments,
        }
        return Encoded(
            sample.image_record(height, width), [annotation], [(path, encode_ids(pixels, "rgb"))]
        )
