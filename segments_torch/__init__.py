"""segments_torch: Segments.ai releases as PyTorch training data.

Example:
    >>> import segments_torch
    >>> ds = segments_torch.SegmentsDataset("flowers.json", target="semantic")  # doctest: +SKIP
    >>> image, target = ds[0]  # doctest: +SKIP

Names that need torch (the dataset, collate functions, category map) are imported on first
use, so ``segments-torch info`` and release inspection start without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AssetError,
    DecodeError,
    ReleaseFormatError,
    ReleaseReadError,
    SegmentsTorchError,
    UnknownLabelsetError,
)
from .release import Category, Labelset, Layout, Release, load_release, parse_release
from .samples import LABEL_STATUSES, SampleRecord, SampleTable, SelectionError

if TYPE_CHECKING:
    from .categories import CategoryMap, CategorySelectionError
    from .collate import collate_detection, collate_semantic
    from .dataset import SegmentsDataset, UnsupportedTaskError

__all__ = [
    "LABEL_STATUSES",
    "AssetError",
    "Category",
    "CategoryMap",
    "CategorySelectionError",
    "DecodeError",
    "Labelset",
    "Layout",
    "Release",
    "ReleaseFormatError",
    "ReleaseReadError",
    "SampleRecord",
    "SampleTable",
    "SegmentsDataset",
    "SegmentsTorchError",
    "SelectionError",
    "UnknownLabelsetError",
    "UnsupportedTaskError",
    "collate_detection",
    "collate_semantic",
    "load_release",
    "parse_release",
]

__version__ = "0.1.0"

_LAZY = {
    "CategoryMap": "categories",
    "CategorySelectionError": "categories",
    "collate_detection": "collate",
    "collate_semantic": "collate",
    "SegmentsDataset": "dataset",
    "UnsupportedTaskError": "dataset",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segments_torch' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
