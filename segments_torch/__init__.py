"""segments_torch: Segments.ai releases as PyTorch training data.

Example:
    >>> import segments_torch
    >>> release = segments_torch.load_release("flowers-v1.0.json")  # doctest: +SKIP
    >>> rows = release.samples.select(statuses=["labeled", "reviewed"])  # doctest: +SKIP
"""

from .errors import ReleaseFormatError, ReleaseReadError, SegmentsTorchError, UnknownLabelsetError
from .release import Category, Labelset, Layout, Release, load_release, parse_release
from .samples import LABEL_STATUSES, SampleRecord, SampleTable, SelectionError

__all__ = [
    "LABEL_STATUSES",
    "Category",
    "Labelset",
    "Layout",
    "Release",
    "ReleaseFormatError",
    "ReleaseReadError",
    "SampleRecord",
    "SampleTable",
    "SegmentsTorchError",
    "SelectionError",
    "UnknownLabelsetError",
    "load_release",
    "parse_release",
]

__version__ = "0.1.0"
