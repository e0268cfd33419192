"""The columnar per-sample index of a release.

A Dataset that holds 10^5 samples as a ``list[dict]`` is copied page by page into every
DataLoader worker as reference counts change (pytorch/pytorch#13246). :class:`SampleTable`
keeps every per-sample field in a handful of numpy arrays instead: strings in one byte
buffer with offsets, annotations in flat arrays with per-label offsets (CSR), metadata as
JSON text decoded on demand. Reading a row touches no Python object that outlives the
read, so worker memory stays flat, and pickling (spawn workers) copies buffers, not
objects.

Example:
    >>> table = load_release("flowers-v1.0.json").samples      # doctest: +SKIP
    >>> rows = table.select(labelset="ground-truth", statuses=["labeled", "reviewed"])
    >>> table.record(int(rows[0]), "ground-truth").annotation_ids  # doctest: +SKIP
    array([1, 2, 3], dtype=int32)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import SelectionError, UnknownLabelsetError

__all__ = [
    "LABEL_STATUSES",
    "SHAPE_TYPES",
    "LabelColumns",
    "SampleRecord",
    "SampleTable",
    "SelectionError",
    "SequenceColumns",
    "ShapeColumns",
    "StringColumn",
    "status_codes",
]

#: Every label status of the format; a row's status is its index in this tuple.
#: A ``null`` label, or a sample without a label in a labelset, is ``UNLABELED``.
LABEL_STATUSES: tuple[str, ...] = (
    "UNLABELED",
    "PRELABELED",
    "LABELING_IN_PROGRESS",
    "LABELED",
    "REVIEWING_IN_PROGRESS",
    "REVIEWED",
    "VERIFIED",
    "REJECTED",
    "SKIPPED",
)
_STATUS_CODE = {name: code for code, name in enumerate(LABEL_STATUSES)}

#: The labelset a table uses when none is named and it has more than one.
DEFAULT_LABELSET = "ground-truth"

IntArray = npt.NDArray[np.int64]


def status_codes(statuses: str | Iterable[str]) -> list[int]:
    """Codes (indices into :data:`LABEL_STATUSES`) of status names, case-insensitive.

    Example:
        >>> status_codes(["labeled", "Reviewed"])
        [3, 5]
    """
    names = [statuses] if isinstance(statuses, str) else list(statuses)
    codes = []
    for name in names:
        code = _STATUS_CODE.get(str(name).upper())
        if code is None:
            raise SelectionError(
                f"unknown label status {name!r}; expected one of {', '.join(LABEL_STATUSES)}"
            )
        codes.append(code)
    return codes


@dataclass(frozen=True, eq=False)
class StringColumn:
    """Strings stored as one UTF-8 byte buffer and ``len + 1`` offsets.

    Example:
        >>> column = StringColumn.from_strings(["a.jpg", "", "ü.png"])
        >>> column[2], len(column), column.buffer.nbytes
        ('ü.png', 3, 11)
    """

    buffer: npt.NDArray[np.uint8]
    offsets: IntArray

    @classmethod
    def from_strings(cls, strings: Sequence[str]) -> StringColumn:
        encoded = [s.encode() for s in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return cls(buffer=buffer, offsets=offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> str:
        start, stop = self.offsets[row], self.offsets[row + 1]
        return self.buffer[start:stop].tobytes().decode()

    def __iter__(self) -> Iterator[str]:
        return (self[row] for row in range(len(self)))

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes + self.offsets.nbytes)


#: The shapes of vector labels; an annotation's ``shape_types`` entry is its index here.
SHAPE_TYPES: tuple[str, ...] = ("bbox", "polygon", "polyline", "point")


@dataclass(frozen=True, eq=False)
class ShapeColumns:
    """The shapes of one vector labelset's annotations, aligned with
    :class:`LabelColumns`' annotation arrays.

    Annotation ``k``'s points are ``points[o[k]:o[k+1]]`` with ``o = point_offsets``
    (``(P, 2)`` float32, x and y in pixels; a bbox's two corners sorted: top-left first),
    its shape ``SHAPE_TYPES[types[k]]`` and its ``attributes`` JSON text (``""`` when
    none); ``image_attributes_json`` and ``links_json`` hold each row's label's
    ``image_attributes`` and ``links`` (relations between its annotations, by track id) as
    JSON text.
    """

    types: npt.NDArray[np.int8]
    point_offsets: IntArray
    points: npt.NDArray[np.float32]
    attributes_json: StringColumn
    image_attributes_json: StringColumn
    links_json: StringColumn

    def points_of(self, start: int, stop: int) -> tuple[npt.NDArray[np.float32], IntArray]:
        """The points of annotations ``start .. stop - 1`` and their offsets, from 0."""
        first, last = self.point_offsets[start], self.point_offsets[stop]
        return self.points[first:last], self.point_offsets[start : stop + 1] - first

    @property
    def nbytes(self) -> int:
        arrays = (self.types, self.point_offsets, self.points)
        strings = (self.attributes_json, self.image_attributes_json, self.links_json)
        return sum(int(a.nbytes) for a in arrays) + sum(c.nbytes for c in strings)


@dataclass(frozen=True, eq=False)
class LabelColumns:
    """One labelset's labels, row-aligned with the :class:`SampleTable`.

    The annotations of row ``i`` are ``annotation_ids[o[i]:o[i+1]]`` and
    ``category_ids[o[i]:o[i+1]]`` with ``o = annotation_offsets``; category ids are the
    release's own numbers. A vector labelset's annotation ids are their track ids, and
    ``shapes`` holds their shapes (``None`` for bitmap labelsets). A segmentation
    sequence labelset's annotation ids are the ids in each frame's bitmap, and
    ``track_ids`` the track (the instance across frames) of each (``None`` for other
    labelsets).
    """

    status: npt.NDArray[np.int8]
    bitmap_urls: StringColumn
    annotation_offsets: IntArray
    annotation_ids: npt.NDArray[np.int32]
    category_ids: npt.NDArray[np.int32]
    shapes: ShapeColumns | None = None
    track_ids: npt.NDArray[np.int32] | None = None

    def annotations(self, row: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Views of the ``(annotation ids, category ids)`` of one row."""
        start, stop = self.annotation_offsets[row], self.annotation_offsets[row + 1]
        return self.annotation_ids[start:stop], self.category_ids[start:stop]

    def status_counts(self) -> dict[str, int]:
        """Samples per label status, in :data:`LABEL_STATUSES` order, zeros left out."""
        counts = np.bincount(self.status, minlength=len(LABEL_STATUSES))
        return {LABEL_STATUSES[c]: int(n) for c, n in enumerate(counts) if n}

    def _annotation_rows(self) -> IntArray:
        """The row of each annotation."""
        rows = np.arange(len(self.status), dtype=np.int64)
        return np.repeat(rows, np.diff(self.annotation_offsets))

    def category_counts(self, rows: IntArray | None = None) -> dict[int, tuple[int, int]]:
        """Release category id -> (instances, samples having at least one), for the
        categories that occur in ``rows`` (``None``: every row)."""
        row_of = self._annotation_rows()
        category_ids = self.category_ids
        if rows is not None:
            kept = np.isin(row_of, rows)
            row_of, category_ids = row_of[kept], category_ids[kept]
        ids, instances = np.unique(category_ids, return_counts=True)
        pairs = np.unique(np.stack([category_ids.astype(np.int64), row_of]), axis=1)
        samples = np.searchsorted(pairs[0], ids, side="right") - np.searchsorted(pairs[0], ids)
        return {int(i): (int(n), int(s)) for i, n, s in zip(ids, instances, samples, strict=True)}

    def shape_counts(self, rows: IntArray | None = None) -> dict[str, int]:
        """Shape type -> annotations of that type in ``rows`` (``None``: every row), for
        every type of :data:`SHAPE_TYPES`; ``{}`` for a bitmap labelset."""
        if self.shapes is None:
            return {}
        types = self.shapes.types
        if rows is not None:
            types = types[np.isin(self._annotation_rows(), rows)]
        counts = np.bincount(types, minlength=len(SHAPE_TYPES))
        return {name: int(n) for name, n in zip(SHAPE_TYPES, counts, strict=True)}

    def shapes_of(self, row: int) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], IntArray]:
        """The shape types of one row's annotations, their points and the points'
        offsets per annotation (from 0); a vector labelset's only."""
        if self.shapes is None:
            raise ValueError("a bitmap labelset's annotations have no shapes")
        start, stop = int(self.annotation_offsets[row]), int(self.annotation_offsets[row + 1])
        points, offsets = self.shapes.points_of(start, stop)
        return self.shapes.types[start:stop], points, offsets

    def attributes_of(self, row: int) -> tuple[list[str], str, str]:
        """One row's annotations' ``attributes``, its label's ``image_attributes`` and its
        ``links``, as JSON text (``""``: none); a vector labelset's only."""
        if self.shapes is None:
            raise ValueError("a bitmap labelset's annotations have no shapes")
        start, stop = int(self.annotation_offsets[row]), int(self.annotation_offsets[row + 1])
        texts = [self.shapes.attributes_json[k] for k in range(start, stop)]
        return texts, self.shapes.image_attributes_json[row], self.shapes.links_json[row]

    @property
    def nbytes(self) -> int:
        arrays = (self.status, self.annotation_offsets, self.annotation_ids, self.category_ids)
        shapes = self.shapes.nbytes if self.shapes is not None else 0
        tracks = self.track_ids.nbytes if self.track_ids is not None else 0
        return self.bitmap_urls.nbytes + sum(int(a.nbytes) for a in arrays) + shapes + tracks


@dataclass(frozen=True)
class SampleRecord:
    """One sample's fields in one labelset, decoded from the table on request; of a
    sequence release, one frame's (``name`` is ``"<sample name>/<frame>"``; ``sequence``
    and ``frame_index`` say where it sits, ``None`` in other releases)."""

    row: int
    uuid: str
    name: str
    image_url: str
    labelset: str
    status: str
    bitmap_url: str | None
    annotation_ids: npt.NDArray[np.int32]
    category_ids: npt.NDArray[np.int32]
    metadata: dict[str, Any]
    sequence: int | None = None
    frame_index: int | None = None


@dataclass(frozen=True, eq=False)
class SequenceColumns:
    """Where each row of a sequence release sits: one row per frame, the frames of a
    sequence (a sample of the release) in consecutive rows, in frame order.

    Attributes:
        offsets: ``(S + 1,)``: the rows of sequence ``s`` are ``offsets[s]:offsets[s+1]``.
        sequence: per row, its sequence (the sample's position in the release).
        frame_index: per row, its position among its sequence's frames.
        frame_names, timestamps: per row, the frame's ``name`` and ``timestamp`` (an
            integer one as its decimal text); ``""`` where the frame has none.
        sample_names: per sequence, the sample's name.

    Example:
        >>> table = load_release(SEQUENCE_RELEASE_PATH).samples  # doctest: +SKIP
        >>> table.sequences.sequence[:5], table.sequences.frame_index[:5]  # doctest: +SKIP
        (array([0, 0, 0, 0, 1]), array([0, 1, 2, 3, 0], dtype=int32))
    """

    offsets: IntArray
    sequence: IntArray
    frame_index: npt.NDArray[np.int32]
    frame_names: StringColumn
    timestamps: StringColumn
    sample_names: StringColumn

    def __len__(self) -> int:
        return len(self.sample_names)

    @property
    def nbytes(self) -> int:
        arrays = (self.offsets, self.sequence, self.frame_index)
        strings = (self.frame_names, self.timestamps, self.sample_names)
        return sum(int(a.nbytes) for a in arrays) + sum(c.nbytes for c in strings)


@dataclass(frozen=True, eq=False)
class SampleTable:
    """Every sample of a release, column by column.

    A sequence release (task types ``image-vector-sequence``,
    ``image-segmentation-sequence``) has one row per frame: every row-based tool (filters,
    ``rows=``, targets, caches, export) works per frame. Each frame's row carries its
    sequence's uuid, metadata and label status, and ``sequences`` says where it sits.

    Attributes:
        names, uuids, image_urls: one string per row (``""`` where absent); a frame's
            name is ``"<sample name>/<frame name>"``, or ``"<sample name>/<frame
            index>"`` where the frame has no name.
        metadata_json: each sample's ``metadata`` object as JSON text, ``""`` when empty.
        labels: labelset name -> :class:`LabelColumns`.
        source: the release file, for error messages.
        sequences: a sequence release's :class:`SequenceColumns`, else ``None``.
    """

    names: StringColumn
    uuids: StringColumn
    image_urls: StringColumn
    metadata_json: StringColumn
    labels: Mapping[str, LabelColumns]
    source: str = "<release>"
    sequences: SequenceColumns | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def labelsets(self) -> tuple[str, ...]:
        return tuple(self.labels)

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays."""
        strings = (self.names, self.uuids, self.image_urls, self.metadata_json)
        sequences = self.sequences.nbytes if self.sequences is not None else 0
        labels = sum(c.nbytes for c in self.labels.values())
        return sum(c.nbytes for c in strings) + labels + sequences

    def resolve_labelset(self, labelset: str | None) -> str:
        """The labelset to use: ``labelset`` itself, or when ``None`` the only one or
        ``"ground-truth"``; raises :class:`UnknownLabelsetError` listing those that exist."""
        if labelset is None:
            if len(self.labels) == 1:
                return next(iter(self.labels))
            if DEFAULT_LABELSET in self.labels:
                return DEFAULT_LABELSET
        elif labelset in self.labels:
            return labelset
        known = ", ".join(repr(name) for name in self.labels) or "none"
        wanted = (
            "no labelset was named and there is no default"
            if labelset is None
            else (f"no labelset {labelset!r}")
        )
        raise UnknownLabelsetError(self.source, "", f"{wanted}; the release has: {known}")

    def label_columns(self, labelset: str | None = None) -> LabelColumns:
        return self.labels[self.resolve_labelset(labelset)]

    def metadata(self, row: int) -> dict[str, Any]:
        text = self.metadata_json[row]
        return json.loads(text) if text else {}

    def record(self, row: int, labelset: str | None = None) -> SampleRecord:
        """All fields of one row, for inspection; training code reads columns directly."""
        name = self.resolve_labelset(labelset)
        columns = self.labels[name]
        annotation_ids, category_ids = columns.annotations(row)
        sequences = self.sequences
        return SampleRecord(
            row=row,
            uuid=self.uuids[row],
            name=self.names[row],
            image_url=self.image_urls[row],
            labelset=name,
            status=LABEL_STATUSES[columns.status[row]],
            bitmap_url=columns.bitmap_urls[row] or None,
            annotation_ids=annotation_ids,
            category_ids=category_ids,
            metadata=self.metadata(row),
            sequence=int(sequences.sequence[row]) if sequences is not None else None,
            frame_index=int(sequences.frame_index[row]) if sequences is not None else None,
        )

    def empty_selection(
        self,
        *,
        labelset: str | None = None,
        statuses: str | Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Why :meth:`select` with these filters keeps no sample, in one line: the
        labelset's samples per label status, the statuses kept and, where the statuses
        keep some, the metadata that none of them has.

        Example:
            >>> print(table.empty_selection(statuses=["verified"]))  # doctest: +SKIP
            flowers.json: no sample selected: labelset 'ground-truth' has 8 samples
            (UNLABELED 1, LABELED 3, REVIEWED 3, REJECTED 1) and the label statuses kept
            are VERIFIED
        """
        name = self.resolve_labelset(labelset)
        counts = self.labels[name].status_counts()
        found = ", ".join(f"{status} {count}" for status, count in counts.items())
        text = f"{self.source}: no sample selected: labelset {name!r} has " + (
            f"{_samples(len(self))} ({found})" if counts else "no sample"
        )
        if statuses is not None:
            kept = ", ".join(LABEL_STATUSES[code] for code in sorted(set(status_codes(statuses))))
            text += f" and the label statuses kept are {kept}"
        if metadata:
            passed = len(self.select(labelset=name, statuses=statuses))
            if passed:
                text += f"; of those {_samples(passed)}, none has metadata {dict(metadata)!r}"
        return text

    def select(
        self,
        *,
        labelset: str | None = None,
        statuses: str | Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> IntArray:
        """Row numbers, in release order, of the samples that pass every filter.

        Args:
            labelset: whose label statuses ``statuses`` refers to (see
                :meth:`resolve_labelset`).
            statuses: label statuses to keep, case-insensitive (``"UNLABELED"`` keeps
                samples whose label is ``null`` or absent); ``None`` keeps all.
            metadata: key/value pairs that must all equal the sample's ``metadata``
                entries, as the SDK's ``filter_by_metadata``.

        Example:
            >>> table.select(statuses="reviewed", metadata={"split": "val"})  # doctest: +SKIP
            array([ 4, 17, 30])
        """
        keep = np.ones(len(self), dtype=bool)
        if statuses is not None:
            codes = status_codes(statuses)
            keep &= np.isin(self.label_columns(labelset).status, codes)
        elif labelset is not None:
            self.resolve_labelset(labelset)
        if metadata:
            wanted = dict(metadata)
            offsets = self.metadata_json.offsets
            for row in np.flatnonzero(keep):
                if offsets[row] == offsets[row + 1]:  # no metadata: fails any filter
                    keep[row] = False
                    continue
                found = self.metadata(int(row))
                keep[row] = all(key in found and found[key] == v for key, v in wanted.items())
        return np.flatnonzero(keep).astype(np.int64)


def _samples(count: int) -> str:
    return f"{count} sample{'' if count == 1 else 's'}"
