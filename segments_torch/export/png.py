"""PNG label maps: the ``semantic`` and ``instance`` formats, and the PNG codecs of the
exports (the panoptic format's RGB segment ids included).

Never lossy, never rescaled (the SDK wrapped instance ids at 256 and wrote an all-zero
semantic PNG once a value passed 255):

- ``semantic``: each pixel's training label, the ignore index where unlabelled, as 8-bit
  grey when every label and the ignore index are at most 255, 16-bit grey otherwise (at
  most 65535; larger values, or a negative ignore index, are refused). One depth for the
  whole export, recorded in ``semantic.json``.
- ``instance``: each pixel's release instance id (0 where unlabelled or of an unselected
  category) as 16-bit grey when every selected annotation id is at most 65535, else as
  RGBA with ``id = R + 256 G + 65536 B`` (the Segments bitmap packing, any id up to
  2^24 - 1). One encoding for the whole export, recorded in ``instance.json``.

:func:`read_label_png` reads back every PNG these formats write.

Example:
    >>> ids = np.array([[0, 70000], [300, 1]])
    >>> read_label_png(encode_ids(ids, "rgb")).tolist()
    [[0, 70000], [300, 1]]
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from ..codecs import decode_bitmap, encode_bitmap
from .base import Encoded, SampleRef, Writer, coco_boxes
from .errors import ExportError

if TYPE_CHECKING:
    from ..dataset import SegmentsDataset

__all__ = [
    "ID_ENCODINGS",
    "InstanceWriter",
    "SemanticWriter",
    "encode_ids",
    "read_label_png",
    "semantic_bit_depth",
]

#: How :func:`encode_ids` can store integer maps: 8- or 16-bit grey, or packed into
#: ``R + 256 G + 65536 B`` (RGB, or RGBA with alpha 255 as Segments bitmaps).
ID_ENCODINGS = ("uint8", "uint16", "rgb", "rgba")
_LIMITS = {"uint8": 255, "uint16": 65535, "rgb": 2**24 - 1, "rgba": 2**24 - 1}
# Label maps are mostly long runs: zlib's fastest level is 3-4x faster than Pillow's
# default 6 here, for files a few percent larger.
_COMPRESS_LEVEL = 1


def encode_ids(values: torch.Tensor | npt.NDArray[Any], encoding: str) -> bytes:
    """Encode an ``(H, W)`` map of non-negative integers as a PNG, losslessly.

    Args:
        values: the map (tensor or array).
        encoding: one of :data:`ID_ENCODINGS`; values must fit it.
    """
    array = values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.size and (array.min() < 0 or array.max() > _LIMITS[encoding]):
        raise ValueError(
            f"values {array.min()}..{array.max()} do not fit a {encoding} PNG "
            f"(0..{_LIMITS[encoding]})"
        )
    if encoding == "rgba":
        return encode_bitmap(array)
    if encoding == "rgb":
        # Little-endian uint32 bytes are R, G, B, 0: keep the first three.
        packed = array.astype("<u4", order="C").view(np.uint8).reshape(*array.shape, 4)
        image = Image.fromarray(np.ascontiguousarray(packed[..., :3]))
    else:
        image = Image.fromarray(array.astype(np.uint8 if encoding == "uint8" else np.uint16))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=_COMPRESS_LEVEL)
    return buffer.getvalue()


def read_label_png(source: bytes | str | os.PathLike[str]) -> npt.NDArray[np.int64]:
    """Read a label PNG written by an export back to ``(H, W)`` int64 values: grey (8 or
    16 bits) as is, RGB and RGBA as ``R + 256 G + 65536 B``.

    Example:
        >>> read_label_png("export/semantic/shapes-000.png")  # doctest: +SKIP
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        mode = image.mode
    if mode in ("RGB", "RGBA"):
        return decode_bitmap(data).numpy().astype(np.int64)
    if mode not in ("L", "I;16", "I;16B", "I"):
        raise ValueError(f"not a label PNG: mode {mode}")
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image).astype(np.int64)


def semantic_bit_depth(dataset: SegmentsDataset) -> int:
    """8 or 16: the grey depth that holds every training label and the ignore index."""
    ignore = dataset.ignore_index
    largest = max(dataset.categories.num_labels - 1, ignore)
    if ignore < 0:
        raise ExportError(
            f"the ignore index {ignore} cannot be stored in a PNG; a semantic export needs "
            "an ignore_index in 0..65535 (e.g. the default 255)"
        )
    if largest > 65535:
        raise ExportError(
            f"value {largest} (the largest training label or the ignore index) does not fit a "
            "16-bit PNG; a semantic export needs labels and ignore_index in 0..65535"
        )
    return 8 if largest <= 255 else 16


class SemanticWriter(Writer):
    """``semantic``: ``semantic/<stem>.png`` per image and ``semantic.json``."""

    target = "semantic"
    json_name = "semantic.json"
    folder = "semantic"
    annotations = False

    def __init__(self, dataset: SegmentsDataset) -> None:
        super().__init__(dataset)
        self.bit_depth = semantic_bit_depth(dataset)
        self.ignore_index = dataset.ignore_index
        self.num_labels = dataset.categories.num_labels

    def header(self) -> dict[str, Any]:
        by_label = {entry.label: entry for entry in self.labels}
        table = []
        for label in range(self.num_labels):  # every value a pixel may hold
            entry = by_label.get(label)
            table.append(
                {
                    "label": label,
                    "name": entry.name if entry else "",
                    "color": list(entry.color) if entry else None,
                    "segments_category_ids": list(entry.release_ids) if entry else [],
                }
            )
        return {
            "bit_depth": self.bit_depth,
            "ignore_index": self.ignore_index,
            "labels": table,
        }

    def encode(self, sample: SampleRef, height: int, width: int, target: dict[str, Any]) -> Encoded:
        path = self.label_path(sample)
        record = sample.image_record(height, width)
        record["label_file"] = path
        encoding = "uint8" if self.bit_depth == 8 else "uint16"
        png = encode_ids(target["semantic"].as_subclass(torch.Tensor), encoding)
        return Encoded(image=record, files=[(path, png)])


class InstanceWriter(Writer):
    """``instance``: ``instance/<stem>.png`` of release instance ids per image and
    ``instance.json`` (categories, images, and an annotation per instance)."""

    target = "instance"
    json_name = "instance.json"
    folder = "instance"

    def __init__(self, dataset: SegmentsDataset) -> None:
        super().__init__(dataset)
        self.encoding = "uint16" if _largest_instance_id(dataset) <= 65535 else "rgba"

    def header(self) -> dict[str, Any]:
        return {"encoding": self.encoding, **super().header()}

    def encode(self, sample: SampleRef, height: int, width: int, target: dict[str, Any]) -> Encoded:
        path = self.label_path(sample)
        record = sample.image_record(height, width)
        record["label_file"] = path
        masks = target["masks"].as_subclass(torch.Tensor)
        instance_ids = target["instance_ids"].tolist()
        ids = torch.zeros((height, width), dtype=torch.int32)
        for mask, instance_id in zip(masks, instance_ids, strict=True):
            ids.masked_fill_(mask.view(torch.bool), instance_id)  # masks never overlap
        annotations = [
            {
                "image_id": sample.row,
                "instance_id": instance_id,
                "category_id": category_id,
                "area": area,
                "bbox": bbox,
            }
            for instance_id, category_id, area, bbox in zip(
                instance_ids,
                self.category_ids(target["labels"]),
                target["area"].tolist(),
                coco_boxes(target["boxes"]),
                strict=True,
            )
        ]
        return Encoded(record, annotations, [(path, encode_ids(ids, self.encoding))])


def _largest_instance_id(dataset: SegmentsDataset) -> int:
    """The largest id of an annotation of a selected category in the dataset's rows,
    from the sample table alone (no bitmap is read)."""
    columns = dataset.release.samples.labels[dataset.labelset]
    counts = np.diff(columns.annotation_offsets)
    in_rows = np.zeros(len(counts), dtype=bool)
    in_rows[dataset.rows] = True
    keep = np.repeat(in_rows, counts)
    keep &= dataset.categories.labels_for(columns.category_ids) >= 0
    return int(columns.annotation_ids[keep].max()) if keep.any() else 0
