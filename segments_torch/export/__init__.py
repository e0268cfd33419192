"""Exports of a :class:`~segments_torch.dataset.SegmentsDataset`: COCO instance (RLE),
COCO panoptic, semantic and instance PNG label maps.

The formats and the files each writes in ``out_dir``:

- ``coco-instance`` (alias ``coco``): ``coco_instance.json``
- ``coco-panoptic``: ``coco_panoptic.json``, ``coco_panoptic/<stem>.png`` (RGB)
- ``semantic``: ``semantic.json``, ``semantic/<stem>.png`` (8- or 16-bit)
- ``instance``: ``instance.json``, ``instance/<stem>.png`` (16-bit or RGBA)

``<stem>`` is the sample name made safe and unique (:mod:`.names`). Names are imported on
first use: ``import segments_torch.export`` loads neither torch nor pycocotools.

Example:
    >>> from segments_torch.export import export_dataset
    >>> path = export_dataset(ds, "coco", out_dir="export")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..errors import ExportError, MissingExtraError, OutputError
    from .base import category_ids_by_label, label_table
    from .core import EXPORT_FORMATS, export_dataset
    from .formats import FORMAT_ALIASES, FORMATS, IMAGE_IDS, resolve_format
    from .names import unique_file_names
    from .png import read_label_png

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "FORMAT_ALIASES",
    "IMAGE_IDS",
    "ExportError",
    "MissingExtraError",
    "OutputError",
    "category_ids_by_label",
    "export_dataset",
    "label_table",
    "read_label_png",
    "resolve_format",
    "unique_file_names",
]

_LAZY = {
    "EXPORT_FORMATS": "core",
    "FORMATS": "formats",
    "FORMAT_ALIASES": "formats",
    "IMAGE_IDS": "formats",
    "category_ids_by_label": "base",
    "export_dataset": "core",
    "label_table": "base",
    "read_label_png": "png",
    "resolve_format": "formats",
    "unique_file_names": "names",
}


def __getattr__(name: str) -> Any:
    if name in ("ExportError", "MissingExtraError", "OutputError"):  # the package's errors
        return getattr(importlib.import_module("..errors", __name__), name)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segments_torch.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
