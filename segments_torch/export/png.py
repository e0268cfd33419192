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
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from ..codecs import decode_bitmap
from ..errors import ExportError
from .base import Encoded, SampleRef, Writer, coco_boxes

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
#: zlib level of the label PNGs (see :func:`encode_ids`).
COMPRESS_LEVEL = 6
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type and channels of each encoding (bit depth: 16 for uint16, else 8).
_COLOR_TYPES = {"uint8": (0, 1), "uint16": (0, 2), "rgb": (2, 3), "rgba": (6, 4)}


def encode_ids(values: torch.Tensor | npt.NDArray[Any], encoding: str) -> bytes:
    """Encode an ``(H, W)`` map of non-negative integers as a PNG, losslessly.

    Written here rather than by Pillow: label maps are long runs of equal values, which
    zlib packs as well with no PNG row filter, and Pillow's trial of filters on every row
    costs more than it saves, for files of about the same size (docs/benchmarks.md).

    Args:
        values: the map (tensor or array).
        encoding: one of :data:`ID_ENCODINGS`; values must fit it.
    """
    array = values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim != 2 or not array.size:
        raise ValueError(f"expected a non-empty (H, W) map, found shape {array.shape}")
    if array.min() < 0 or array.max() > _LIMITS[encoding]:
        raise ValueError(
            f"values {array.min()}..{array.max()} do not fit a {encoding} PNG "
            f"(0..{_LIMITS[encoding]})"
        )
    height, width = array.shape
    color_type, channels = _COLOR_TYPES[encoding]
    if encoding == "uint8":
        pixels = array.astype(np.uint8, copy=False)
    elif encoding == "uint16":
        pixels = array.astype(">u2").view(np.uint8)  # PNG samples are big-endian
    else:
        # Little-endian uint32 bytes are R, G, B and a fourth: alpha 255 for RGBA.
        packed = array.astype("<u4")
        if encoding == "rgba":
            packed |= np.uint32(0xFF000000)
        pixels = packed.view(np.uint8).reshape(height, width, 4)[..., :channels]
    # Each row: filter type 0 (none), then the row's bytes.
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 1:].reshape(height, width, channels)[...] = pixels.reshape(height, width, channels)
    header = struct.pack(
        ">IIBBBBB", width, height, 16 if encoding == "uint16" else 8, color_type, 0, 0, 0
    )
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.data, COMPRESS_LEVEL)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))
    )


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
    shapes = True
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
        self.encoding = "uint16" if dataset.max_instance_id() <= 65535 else "rgba"

    def header(self) -> dict[str, Any]:
        return {"encoding": self.encoding, **super().header()}

    def encode(self, sample: SampleRef, height: int, width: int, target: dict[str, Any]) -> Encoded:
        path = self.label_path(sample)
        record = sample.image_record(height, width)
        record["label_file"] = path
        masks = target["masks"].as_subclass(torch.Tensor)
        instance_ids = target["instance_ids"].tolist()
        ids = torch.zeros((height, width), dtype=torch.int32)
        boxes = target["boxes"].as_subclass(torch.Tensor).round().to(torch.int64).tolist()
        for mask, instance_id, (x1, y1, x2, y2) in zip(masks, instance_ids, boxes, strict=True):
            # Masks never overlap, and each lies inside its box: fill the box only.
            region = mask[y1:y2, x1:x2].view(torch.bool)
            ids[y1:y2, x1:x2].masked_fill_(region, instance_id)
        annotations = [
            {
                "image_id": sample.image_id,
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
