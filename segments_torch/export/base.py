"""What every export format shares: the writer interface, the sample's image record and
the table of training labels with their COCO category ids.

A :class:`Writer` turns one dataset item into an :class:`Encoded` sample (JSON records and
file bytes). ``encode`` runs in DataLoader worker processes, so writers hold only what
pickles small: numbers, strings and numpy arrays.

COCO category ids (:func:`label_table`): each training label is one category. Its id is
the release's category id; where ``categories=`` maps several names onto one label, the
smallest of their release ids, and its name joins theirs with ``|`` (as
``CategoryMap.label_names``). Labels no category maps to are left out.

Example:
    >>> from segments_torch.categories import CategoryMap
    >>> from segments_torch.release import Category
    >>> cmap = CategoryMap([Category(3, "car"), Category(7, "truck")], {"car": 0, "truck": 0})
    >>> [(e.label, e.category_id, e.name) for e in label_table(cmap)]
    [(0, 3, 'car|truck')]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch

from ..urls import display_url

if TYPE_CHECKING:
    from ..categories import CategoryMap
    from ..dataset import SegmentsDataset

__all__ = [
    "Encoded",
    "LabelEntry",
    "SampleRef",
    "Writer",
    "category_ids_by_label",
    "coco_boxes",
    "label_table",
]


@dataclass(frozen=True)
class LabelEntry:
    """One training label as exported.

    Attributes:
        label: the training label (semantic value; detection ``labels`` minus the offset).
        category_id: its COCO category id (see the module docstring).
        name: its categories' names joined with ``|``.
        release_ids: the release category ids mapped onto it, ascending.
        color: RGB.
        isthing: whether every category mapped onto it has instances.
    """

    label: int
    category_id: int
    name: str
    release_ids: tuple[int, ...]
    color: tuple[int, int, int]
    isthing: bool

    def coco_category(self) -> dict[str, Any]:
        """The record of a COCO ``categories`` list (with ``isthing`` and ``color`` of
        the panoptic format, and where the category came from)."""
        return {
            "id": self.category_id,
            "name": self.name,
            "supercategory": "",
            "isthing": int(self.isthing),
            "color": list(self.color),
            "training_label": self.label,
            "segments_category_ids": list(self.release_ids),
        }


def label_table(categories: CategoryMap) -> list[LabelEntry]:
    """The training labels that categories map onto, ascending, with their COCO ids."""
    members: dict[int, list[Any]] = {}
    for entry in categories.entries:
        if entry.label is not None:
            members.setdefault(entry.label, []).append(entry.category)
    names, colors = categories.label_names, categories.label_colors
    return [
        LabelEntry(
            label=label,
            category_id=min(c.id for c in members[label]),
            name=names[label],
            release_ids=tuple(sorted(c.id for c in members[label])),
            color=colors[label],
            isthing=all(c.has_instances for c in members[label]),
        )
        for label in sorted(members)
    ]


def category_ids_by_label(categories: CategoryMap) -> dict[int, int]:
    """Training label -> COCO category id, as the COCO exports write them.

    A model trained on ``target="instance"`` predicts ``labels`` = training label +
    ``label_offset``; its detections' ``category_id`` is
    ``category_ids_by_label(ds.categories)[label - ds.label_offset]``.

    Example:
        >>> from segments_torch.categories import CategoryMap
        >>> from segments_torch.release import Category
        >>> category_ids_by_label(CategoryMap([Category(0, "a"), Category(5, "b")]))
        {0: 0, 1: 5}
    """
    return {entry.label: entry.category_id for entry in label_table(categories)}


def coco_boxes(boxes: torch.Tensor) -> list[list[int]]:
    """A target's XYXY ``boxes`` covering pixels (``x1 = max x + 1``) as COCO's integer
    ``[x, y, width, height]``: a one-pixel segment is ``[x, y, 1, 1]``."""
    xyxy = boxes.as_subclass(torch.Tensor).round().to(torch.int64)
    return torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], dim=1).tolist()


@dataclass(frozen=True)
class SampleRef:
    """Where one exported sample came from and the file names it gets.

    Attributes:
        row: its release row (``target["image_id"]``).
        image_id: its image id in every format: the row, or with ``image_ids="sdk"`` its
            position in the dataset + 1 (see :func:`~segments_torch.export.export_dataset`).
        uuid, name: the sample's, as in the release.
        image_url: the image URL without query string (a signed URL's query is a secret).
        stem, extension: the safe, unique file name (see :mod:`.names`).
    """

    row: int
    image_id: int
    uuid: str
    name: str
    image_url: str
    stem: str
    extension: str

    def image_record(self, height: int, width: int) -> dict[str, Any]:
        """The ``images`` record every format writes: COCO's fields with the oriented
        image size, and the link back to the sample."""
        return {
            "id": self.image_id,
            "file_name": self.stem + self.extension,
            "width": width,
            "height": height,
            "segments_row": self.row,
            "segments_uuid": self.uuid,
            "segments_name": self.name,
            "segments_image_url": display_url(self.image_url),
        }


@dataclass
class Encoded:
    """One sample, encoded: its ``images`` record, its ``annotations`` records and the
    files to write (path relative to the output folder, bytes)."""

    image: dict[str, Any]
    annotations: list[dict[str, Any]] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)


class Writer(ABC):
    """One export format: built in the main process from the dataset, ``encode`` called
    in workers for each item, the JSON header asked for once the samples are done.

    Attributes:
        target: the dataset target kind ``encode`` reads.
        json_name: the main JSON file, in the output folder.
        folder: the folder of per-image PNGs (``None``: no files).
        annotations: whether the JSON has an ``annotations`` list.
        numbered: whether annotations get ids ``1, 2, ...`` in export order (COCO's
            evaluation takes id 0 for "no match", so ids start at 1).
        shapes: whether it exports vector labelsets (boxes and polygons) too.
    """

    target: ClassVar[str]
    json_name: ClassVar[str]
    folder: ClassVar[str | None] = None
    annotations: ClassVar[bool] = True
    numbered: ClassVar[bool] = False
    shapes: ClassVar[bool] = False

    def __init__(self, dataset: SegmentsDataset) -> None:
        self.labels = label_table(dataset.categories)
        self.label_offset = dataset.label_offset
        # Training label -> COCO category id, as an array (-1: no category): workers
        # look ids up without a dict per process.
        size = max((e.label for e in self.labels), default=-1) + 1
        self.category_of_label: npt.NDArray[np.int64] = np.full(size, -1, dtype=np.int64)
        for entry in self.labels:
            self.category_of_label[entry.label] = entry.category_id

    def category_ids(self, detection_labels: torch.Tensor) -> list[int]:
        """COCO category ids of a target's ``labels`` (training label + offset)."""
        labels = detection_labels.cpu().numpy() - self.label_offset
        return self.category_of_label[labels].tolist()  # type: ignore[no-any-return]

    @abstractmethod
    def encode(self, sample: SampleRef, height: int, width: int, target: dict[str, Any]) -> Encoded:
        """Encode one dataset item's target (``height`` x ``width`` oriented image)."""

    def header(self) -> dict[str, Any]:
        """The JSON keys written before ``images`` (``info`` is added by the driver)."""
        return {"categories": [entry.coco_category() for entry in self.labels]}

    def label_path(self, sample: SampleRef) -> str:
        """The sample's PNG, relative to the output folder."""
        return f"{self.folder}/{sample.stem}.png"
