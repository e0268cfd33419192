"""segments_torch: Segments.ai releases as PyTorch training data.

Example:
    >>> import segments_torch
    >>> ds = segments_torch.SegmentsDataset("flowers.json", target="semantic")  # doctest: +SKIP
    >>> image, target = ds[0]  # doctest: +SKIP

Names that need torch (the dataset, collate functions, category map, export, the label
cache's filling) or an extra (``SegmentsDataModule``: lightning) are imported on first use,
so ``segments-torch info`` and release inspection start without loading torch, and the
package imports without its extras.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AssetError,
    CategorySelectionError,
    DecodeError,
    ExportError,
    MissingExtraError,
    OptionError,
    OutputError,
    ReleaseFormatError,
    ReleaseReadError,
    SegmentsTorchError,
    SelectionError,
    SourceUnavailableError,
    SplitError,
    StorageError,
    UnknownLabelsetError,
    UnsupportedTaskError,
)
from .release import Category, Labelset, Layout, Release, load_release, parse_release
from .samples import LABEL_STATUSES, SampleRecord, SampleTable
from .splits import ListSplit, MetadataSplit, RatioSplit
from .storage import RetryPolicy, Storage

if TYPE_CHECKING:
    from .categories import CategoryMap
    from .collate import collate_detection, collate_semantic
    from .dataset import SegmentsDataset
    from .export import export_dataset
    from .label_prefetch import LabelReport, fill_label_cache
    from .lightning import SegmentsDataModule

__all__ = [
    "LABEL_STATUSES",
    "AssetError",
    "Category",
    "CategoryMap",
    "CategorySelectionError",
    "DecodeError",
    "ExportError",
    "LabelReport",
    "Labelset",
    "Layout",
    "ListSplit",
    "MetadataSplit",
    "MissingExtraError",
    "OptionError",
    "OutputError",
    "RatioSplit",
    "Release",
    "ReleaseFormatError",
    "ReleaseReadError",
    "RetryPolicy",
    "SampleRecord",
    "SampleTable",
    "SegmentsDataModule",
    "SegmentsDataset",
    "SegmentsTorchError",
    "SelectionError",
    "SourceUnavailableError",
    "SplitError",
    "Storage",
    "StorageError",
    "UnknownLabelsetError",
    "UnsupportedTaskError",
    "collate_detection",
    "collate_semantic",
    "export_dataset",
    "fill_label_cache",
    "load_release",
    "parse_release",
]

__version__ = "0.1.0"

_LAZY = {
    "CategoryMap": "categories",
    "collate_detection": "collate",
    "collate_semantic": "collate",
    "SegmentsDataset": "dataset",
    "export_dataset": "export",
    "LabelReport": "label_prefetch",
    "fill_label_cache": "label_prefetch",
    "SegmentsDataModule": "lightning",  # extra "lightning"
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segments_torch' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
