"""``coco-instance``: COCO's instance format, masks as compressed RLE (pycocotools, the
optional extra ``coco``).

``coco_instance.json`` holds ``info``, ``licenses``, ``categories`` (see
:func:`~segments_torch.export.base.label_table`), ``images`` and ``annotations``. One
annotation per instance of the dataset's ``target="instance"``: every annotation of a
selected category that has pixels (stuff categories included, one per annotation), with

- ``segmentation``: compressed RLE of exactly the dataset's mask; for a vector labelset,
  the COCO polygon of each polygon and box (its four corners), which pycocotools
  rasterises to exactly the dataset's mask;
- ``bbox``: integer ``[x, y, w, h]`` covering the mask (a one-pixel instance is 1 x 1),
  the dataset's box; for a vector labelset, the float box of the vertices;
- ``area``: the mask's pixel count; ``iscrowd``: 0;
- ``id``: 1, 2, ... in export order; ``segments_instance_id``: the release's instance id.

Example:
    >>> from pycocotools.coco import COCO  # doctest: +SKIP
    >>> gt = COCO(str(export_dataset(ds, "coco-instance", out_dir="export")))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from ..errors import MissingExtraError
from .base import Encoded, SampleRef, Writer, coco_boxes

if TYPE_CHECKING:
    from ..dataset import SegmentsDataset

__all__ = ["CocoInstanceWriter", "rle_encode"]


def _mask_api() -> Any:
    try:
        from pycocotools import mask
    except ImportError as exc:
        raise MissingExtraError(
            f"the coco-instance export needs pycocotools ({exc}): "
            "pip install 'segments-torch[coco]'"
        ) from None
    return mask


def rle_encode(masks: torch.Tensor, boxes: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """Compressed RLEs (``{"size": [H, W], "counts": str}``, JSON-ready) of ``(N, H, W)``
    uint8 masks, made by pycocotools.

    Args:
        masks: the masks.
        boxes: ``(N, 4)`` XYXY boxes covering each mask's pixels (a target's ``boxes``),
            when known: then only each box is read, and its runs are counted here and
            compressed by pycocotools (the same RLE as ``encode``, which reads every
            mask whole).

    Example:
        >>> rle_encode(torch.tensor([[[0, 1], [0, 0]]], dtype=torch.uint8))
        [{'size': [2, 2], 'counts': '211'}]
    """
    count, height, width = masks.shape
    if count == 0:
        return []
    source = masks.as_subclass(torch.Tensor).numpy()
    if boxes is None:  # pycocotools reads column-major (H, W, N) arrays
        rles = _mask_api().encode(np.asfortranarray(source.transpose(1, 2, 0)))
    else:
        xyxy = boxes.as_subclass(torch.Tensor).round().to(torch.int64).tolist()
        uncompressed = [
            {"size": [height, width], "counts": _runs(source[k], box)} for k, box in enumerate(xyxy)
        ]
        rles = _mask_api().frPyObjects(uncompressed, height, width)
    return [{"size": [int(n) for n in r["size"]], "counts": r["counts"].decode()} for r in rles]


def _runs(mask: npt.NDArray[np.uint8], box: list[int]) -> list[int]:
    """COCO's uncompressed RLE of one ``(H, W)`` 0/1 mask whose pixels lie in ``box``:
    lengths of alternating runs of 0 and 1 in column-major order, starting with 0."""
    height, width = mask.shape
    x1, y1, x2, y2 = box
    # The box's columns, full height: column-major runs cross from one column into the next.
    columns = np.zeros((x2 - x1, height), dtype=np.uint8)
    columns[:, y1:y2] = mask[y1:y2, x1:x2].T
    flat = columns.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs: list[int] = np.diff(changes, prepend=0, append=flat.size).tolist()
    if flat[0]:
        runs.insert(0, 0)
    runs[0] += height * x1  # the columns left of the box
    after = height * (width - x2)  # and right of it
    if len(runs) % 2:  # the last run is of 0s
        runs[-1] += after
    elif after:
        runs.append(after)
    return runs


class CocoInstanceWriter(Writer):
    """``coco-instance``: ``coco_instance.json`` (no other file)."""

    target = "instance"
    json_name = "coco_instance.json"
    numbered = True
    shapes = True

    def __init__(self, dataset: SegmentsDataset) -> None:
        _mask_api()  # a missing extra fails before any sample is read
        super().__init__(dataset)
        self.dataset = dataset  # a vector label's polygons are read from its shapes

    def header(self) -> dict[str, Any]:
        return {"licenses": [], **super().header()}

    def encode(self, sample: SampleRef, height: int, width: int, target: dict[str, Any]) -> Encoded:
        boxes: list[list[int]] | list[list[float]]
        if self.dataset.vector:
            segmentations, boxes = self._shapes(sample.row, height, width, target)
        else:
            segmentations = rle_encode(target["masks"], target["boxes"])
            boxes = coco_boxes(target["boxes"])
        annotations = [
            {
                "image_id": sample.image_id,
                "category_id": category_id,
                "segmentation": segmentation,
                "area": area,
                "bbox": bbox,
                "iscrowd": 0,
                "segments_instance_id": instance_id,
            }
            for category_id, segmentation, area, bbox, instance_id in zip(
                self.category_ids(target["labels"]),
                segmentations,
                target["area"].tolist(),
                boxes,
                target["instance_ids"].tolist(),
                strict=True,
            )
        ]
        return Encoded(sample.image_record(height, width), annotations)

    def _shapes(
        self, row: int, height: int, width: int, target: dict[str, Any]
    ) -> tuple[list[Any], list[list[float]]]:
        """A vector label's instances as COCO polygons (a box as its four corners) and
        float boxes of their vertices, at the exported size."""
        full_height, full_width = target.get("orig_size", torch.tensor([height, width])).tolist()
        outlines = self.dataset.shape_outlines(row, (height / full_height, width / full_width))
        xyxy = target["boxes"].as_subclass(torch.Tensor).double()
        boxes = torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], dim=1).tolist()
        return [[outline.ravel().tolist()] for outline in outlines], boxes
