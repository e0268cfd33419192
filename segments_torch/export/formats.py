"""The names of the export formats (pure Python: the command line lists them without
loading torch).

Example:
    >>> resolve_format("coco")
    'coco-instance'
"""

from __future__ import annotations

from ..errors import ExportError

__all__ = ["FORMATS", "FORMAT_ALIASES", "IMAGE_IDS", "resolve_format"]

#: The export formats, as ``export_dataset(format=...)`` and ``--format`` name them.
FORMATS = ("coco-instance", "coco-panoptic", "semantic", "instance")
#: Other names accepted for a format (the seed document calls ``"coco"``).
FORMAT_ALIASES = {"coco": "coco-instance"}
#: The numberings of exported images, as ``export_dataset(image_ids=...)`` and
#: ``--image-ids`` name them: release rows, or 1..N as the segments-ai SDK numbers them.
IMAGE_IDS = ("row", "sdk")


def resolve_format(name: str) -> str:
    """The format ``name`` stands for; raises :class:`ExportError` listing the formats."""
    resolved = FORMAT_ALIASES.get(name, name)
    if resolved not in FORMATS:
        aliases = {target: alias for alias, target in FORMAT_ALIASES.items()}
        known = ", ".join(f"{f} (alias {aliases[f]})" if f in aliases else f for f in FORMATS)
        raise ExportError(f"unknown export format {name!r}; the formats are: {known}")
    return resolved
