"""File names from sample names: safe on every filesystem, unique within one export.

Sample names are free text (``"cam/0001.jpg"``, ``"../../x.png"``, ``"a.jpg"`` twice). The
SDK's export kept ``basename`` without extension, so ``"left/0001.jpg"`` and
``"right/0001.jpg"`` (or ``"a.jpg"`` and ``"a.png"``) wrote the same label file and one
silently replaced the other. Here each name becomes a *stem* that

- holds no path separator: the name's path components (``/`` or ``\\``) are joined with
  ``_``, leaving out empty ones, ``.`` and ``..`` (``"../../etc/x.png"`` gives ``etc_x``);
- holds no ``..`` (runs of dots become one dot), no control character and none of
  ``:*?"<>|`` (each becomes ``_``);
- does not start or end with a dot or a space (no hidden files, nothing Windows trims);
- is never empty (``sample-<row>``) nor a Windows device name (``CON`` becomes ``CON_``,
  ``nul.tar`` ``nul_.tar``);
- fits in 150 UTF-8 bytes (file names may have 255), cut at a character boundary;
- is unique, compared case-insensitively after Unicode NFC normalisation (macOS and
  Windows filesystems would merge ``A.png`` and ``a.png``): the first sample, in release
  order, keeps its stem; a later one gets ``-<row>`` (its release row, the ``image_id``
  of the export), then ``-<row>-2``, ``-<row>-3`` ... should that be taken too.

The extension of the sample name (``.jpg``: a dot and 1 to 8 letters or digits) is kept
apart, so the image file name is ``stem + extension`` and label files ``stem + ".png"``.

Example:
    >>> unique_file_names(["a.jpg", "dir/a.jpg", "a.png", "../x.jpg"], [0, 1, 2, 3])
    [('a', '.jpg'), ('dir_a', '.jpg'), ('a-2', '.png'), ('x', '.jpg')]
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = ["MAX_STEM_BYTES", "safe_name", "unique_file_names"]

#: Longest stem in UTF-8 bytes: room left for a ``-<row>`` suffix and an extension.
MAX_STEM_BYTES = 150

_SEPARATORS = re.compile(r"[/\\]")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f:*?"<>|]')
_DOTS = re.compile(r"\.{2,}")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,8}$")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)


def safe_name(name: str, row: int) -> tuple[str, str]:
    """``(stem, extension)`` of one sample name, made safe (not yet unique).

    Args:
        name: the sample's name in the release.
        row: the sample's release row, for the stem of a name with nothing usable.

    Example:
        >>> safe_name("../../etc/passwd.png", 7), safe_name("..", 7)
        (('etc_passwd', '.png'), ('sample-7', ''))
    """
    parts = _SEPARATORS.split(unicodedata.normalize("NFC", name))
    text = "_".join(part for part in parts if part.strip(". "))  # no "", ".", ".."
    text = _DOTS.sub(".", _UNSAFE.sub("_", text)).strip(". ")
    match = _EXTENSION.search(text)
    extension = match.group(0) if match and match.start() > 0 else ""
    stem = text[: len(text) - len(extension)].strip(". ")
    encoded = stem.encode()
    if len(encoded) > MAX_STEM_BYTES:
        stem = encoded[:MAX_STEM_BYTES].decode(errors="ignore").rstrip(". ")
    if not stem:
        stem = f"sample-{row}"
    head, dot, tail = stem.partition(".")
    if head.upper() in _RESERVED:  # Windows reserves "NUL" with any extension too
        stem = f"{head}_{dot}{tail}"
    return stem, extension


def unique_file_names(names: Sequence[str], rows: Sequence[int]) -> list[tuple[str, str]]:
    """``(stem, extension)`` for each sample, stems unique (see the module docstring).

    Args:
        names: sample names, in the order of the export (release order).
        rows: the release row of each sample (used in the suffix of a colliding stem).
    """
    taken: set[str] = set()
    result = []
    for name, row in zip(names, rows, strict=True):
        stem, extension = safe_name(name, row)
        candidate, attempt = stem, 1
        while candidate.casefold() in taken:
            attempt += 1
            candidate = f"{stem}-{row}" if attempt == 2 else f"{stem}-{row}-{attempt - 1}"
        taken.add(candidate.casefold())
        result.append((candidate, extension))
    return result
