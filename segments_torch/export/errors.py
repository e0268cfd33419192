"""The errors of the exports (pure Python: the command line imports them to start fast)."""

from __future__ import annotations

from ..errors import SegmentsTorchError

__all__ = ["ExportError", "MissingExtraError"]


class ExportError(SegmentsTorchError, ValueError):
    """An export that cannot be done as asked (unknown format, labels a PNG cannot hold)."""


class MissingExtraError(SegmentsTorchError, ImportError):
    """An optional package that this export needs is not installed; names the extra."""
