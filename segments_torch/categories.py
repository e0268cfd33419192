"""From the release's category ids to the labels a model trains on.

Release category ids are the release's own numbers (0 can be a real category, ids need
not be contiguous). :class:`CategoryMap` gives each selected category a *training label*:

- by default, every category in release-id order gets ``0, 1, 2, ...``;
- ``selection=["car", "person"]``: only these, labelled by their order;
- ``selection={"car": 0, "truck": 0, "person": 1}``: several names may share a label.

Semantic maps use the training label itself; detection targets add ``label_offset``
(default 1, so 0 stays the background torchvision detection models reserve). Pixels and
annotations of unselected categories get the ignore index and produce no instance.

``background="background"`` makes unlabelled pixels (id 0) a class of their own: label 0,
named so, the categories' labels after it (``1, 2, ...``; a mapping's labels shifted by
one). Detection labels do not change with it (see ``SegmentsDataset(background=)``).

Example:
    >>> from segments_torch.release import Category
    >>> cmap = CategoryMap([Category(0, "person"), Category(7, "donut")])
    >>> cmap.labels_for(np.array([7, 0, 7])).tolist()
    [1, 0, 1]
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from .errors import CategorySelectionError
from .release import Category

__all__ = ["CategoryEntry", "CategoryMap", "CategorySelectionError"]

#: Color given to labels whose categories set none (a neutral grey).
DEFAULT_COLOR = (128, 128, 128)
#: Color of the background class (black, as semantic segmentation palettes draw it).
BACKGROUND_COLOR = (0, 0, 0)


@dataclass(frozen=True)
class CategoryEntry:
    """One release category and the training label it gets (``None``: not selected)."""

    category: Category
    label: int | None


class CategoryMap:
    """Release category id -> training label, names and colors per label.

    Args:
        categories: the release's categories (``release.labelset(name).categories``).
        selection: ``None`` (all, contiguous labels in release-id order), a sequence of
            names (a subset; the order gives the labels), or a mapping name -> label.
        ignore_index: the value of unlabelled and unselected pixels in semantic maps; no
            training label may equal it.
        background: the name of a class for unlabelled pixels (label 0), or ``None``:
            they get ``ignore_index``.
    """

    def __init__(
        self,
        categories: Sequence[Category],
        selection: Sequence[str] | Mapping[str, SupportsIndex] | None = None,
        *,
        ignore_index: int = 255,
        background: str | None = None,
    ) -> None:
        by_name = {c.name: c for c in categories}
        if background is not None and background in by_name:
            raise CategorySelectionError(
                f"background={background!r} names a category of the release: give the "
                "unlabelled pixels another name, or select that category"
            )
        wanted: dict[str, Any]
        if selection is None:
            wanted = {c.name: label for label, c in enumerate(sorted(categories, key=_by_id))}
        elif isinstance(selection, Mapping):
            wanted = dict(selection)
        elif isinstance(selection, str):
            raise CategorySelectionError(
                f"categories= takes a list of names or a dict name -> label, not the string "
                f"{selection!r}"
            )
        else:
            if len(set(selection)) != len(selection):
                raise CategorySelectionError(f"categories= names a category twice: {selection!r}")
            wanted = {name: label for label, name in enumerate(selection)}
        unknown = [name for name in wanted if name not in by_name]
        if unknown:
            known = ", ".join(repr(c.name) for c in categories)
            raise CategorySelectionError(
                f"unknown categories {', '.join(map(repr, unknown))}; the release has: {known}"
            )
        labels = {name: _as_label(label) for name, label in wanted.items()}
        for name, label in labels.items():
            if label < 0:
                raise CategorySelectionError(
                    f"category {name!r}: expected a label >= 0, found {wanted[name]!r}"
                )
        shift = 0 if background is None else 1  # label 0 is the background's
        labels = {name: label + shift for name, label in labels.items()}
        for name, label in labels.items():
            if label == ignore_index:
                raise CategorySelectionError(
                    f"category {name!r} has label {label}, which is the ignore index; pass "
                    "another ignore_index"
                )
        self.ignore_index = ignore_index
        #: The class of unlabelled pixels: its name, and its label (0), or ``None``.
        self.background = background
        self.background_label = None if background is None else 0
        self.entries = tuple(
            CategoryEntry(c, labels.get(c.name)) for c in sorted(categories, key=_by_id)
        )
        self.num_labels = max(labels.values(), default=shift - 1) + 1
        # Vectorised lookup: release ids sorted, with the label of each (-1 unselected).
        self._ids = np.array([e.category.id for e in self.entries], dtype=np.int64)
        self._labels = np.array(
            [-1 if e.label is None else e.label for e in self.entries], dtype=np.int64
        )
        self._is_thing = np.array([e.category.has_instances for e in self.entries], dtype=bool)

    def without_background(self) -> CategoryMap:
        """The same selection with no background class: the categories' labels one less.

        Example:
            >>> from segments_torch.release import Category
            >>> cmap = CategoryMap([Category(4, "car")], background="background")
            >>> cmap.without_background().label_names
            ['car']
        """
        if self.background is None:
            return self
        selection = {e.category.name: e.label - 1 for e in self.entries if e.label is not None}
        categories = [e.category for e in self.entries]
        return CategoryMap(categories, selection, ignore_index=self.ignore_index)

    def labels_for(self, category_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Training labels of release category ids (every id must be the release's);
        ``-1`` for unselected categories."""
        return self._labels[np.searchsorted(self._ids, category_ids)]

    def things_for(self, category_ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each release category id is a "thing" (``has_instances``)."""
        return self._is_thing[np.searchsorted(self._ids, category_ids)]

    @property
    def label_names(self) -> list[str]:
        """Name of each training label ``0 .. num_labels - 1``; names that share a label
        are joined with ``|``, unused labels are ``""``."""
        names: list[list[str]] = [[] for _ in range(self.num_labels)]
        if self.background is not None:
            names[0].append(self.background)
        for entry in self.entries:
            if entry.label is not None:
                names[entry.label].append(entry.category.name)
        return ["|".join(n) for n in names]

    @property
    def label_colors(self) -> list[tuple[int, int, int]]:
        """RGB color of each training label: its first category's, or grey."""
        colors = [DEFAULT_COLOR] * self.num_labels
        if self.background is not None:
            colors[0] = BACKGROUND_COLOR
        for entry in reversed(self.entries):
            if entry.label is not None and entry.category.color is not None:
                red, green, blue = entry.category.color[:3]
                colors[entry.label] = (red, green, blue)
        return colors

    def __len__(self) -> int:
        return self.num_labels

    def __str__(self) -> str:
        rows = [("release id", "name", "label", "color")]
        if self.background is not None:
            rows.append(("-", self.background, "0", str(BACKGROUND_COLOR)))
        for e in self.entries:
            label = "-" if e.label is None else str(e.label)
            color = "-" if e.category.color is None else str(tuple(e.category.color))
            rows.append((str(e.category.id), e.category.name, label, color))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.append(f"ignore index: {self.ignore_index}")
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        pairs = ", ".join(f"{e.category.name!r}: {e.label}" for e in self.entries)
        background = "" if self.background is None else f", background={self.background!r}"
        return f"CategoryMap({{{pairs}}}, ignore_index={self.ignore_index}{background})"


def _as_label(value: Any) -> int:
    """An integer label (numpy integers included), or -1 for anything else."""
    if isinstance(value, bool):
        return -1
    try:
        return operator.index(value)
    except TypeError:
        return -1


def _by_id(category: Category) -> int:
    return category.id
