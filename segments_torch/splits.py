"""Which samples of a release train, validate and test: split rules over a sample table.

Three rules, each a small frozen object that turns a :class:`~segments_torch.samples.SampleTable`
into a :class:`SplitAssignment` (the split of every release row):

- :class:`RatioSplit`: by ratio with a seed. Each sample's split depends on its own uuid and
  the seed only, so it never changes when the release grows, samples are removed or
  reordered, or a label's status changes; and every process computes the same assignment
  without talking to the others (DDP ranks, DataLoader workers).
- :class:`MetadataSplit`: by a key of the sample metadata (``{"split": "val"}``).
- :class:`ListSplit`: by explicit lists of sample uuids or names.

Rules are applied to every row of the release, before any label-status filter, so a
sample's split is the same whatever the filters of the stage that reads it. In a sequence
release (one row per frame) every rule keeps the frames of a sequence together: they
share its uuid, name and metadata, so no sequence leaks from one split into another. This module is
plain numpy: it imports neither torch nor lightning.

Example:
    >>> from segments_torch import load_release
    >>> table = load_release("flowers-v1.0.json").samples  # doctest: +SKIP
    >>> splits = RatioSplit({"train": 0.8, "val": 0.1, "test": 0.1}, seed=0).assign(table)
    >>> splits.counts()  # doctest: +SKIP
    {'train': 815, 'val': 93, 'test': 92}
    >>> splits.rows("val")[:3]  # doctest: +SKIP
    array([ 4, 17, 30])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .errors import SplitError
from .samples import SampleTable

__all__ = [
    "ListSplit",
    "MetadataSplit",
    "RatioSplit",
    "Split",
    "SplitAssignment",
    "SplitError",
    "sample_keys",
    "split_from_dict",
    "unit_hash",
]

IntArray = npt.NDArray[np.int64]

#: How many offending names an error message lists before "and N more".
_SHOWN = 10


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(repr(item) for item in items[:_SHOWN])
    more = len(items) - _SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def sample_keys(table: SampleTable, rows: Iterable[int] | None = None) -> list[str]:
    """Each row's identity for splitting: its uuid, or its name where the release has no
    uuids (the oldest layout). The frames of a sequence have their sequence's: its uuid, or
    its sample's name. ``rows``: only these rows, in this order (default all).

    Example:
        >>> sample_keys(table, [0])  # doctest: +SKIP
        ['d5602f48-2ff7-5b0a-a8f4-2d61115552e3']
    """
    sequences = table.sequences
    if sequences is not None:
        rows = range(len(table)) if rows is None else rows
        names = sequences.sample_names
        return [table.uuids[row] or names[int(sequences.sequence[row])] for row in rows]
    if rows is None:
        return [uuid or name for uuid, name in zip(table.uuids, table.names, strict=True)]
    return [table.uuids[row] or table.names[row] for row in rows]


def _units(table: SampleTable) -> tuple[IntArray, IntArray, list[str], list[str]]:
    """What a split never divides: each sample, or in a sequence release each sequence
    (its frames' consecutive rows). Their first rows, their ends, uuids and names."""
    sequences = table.sequences
    if sequences is None:
        starts = np.arange(len(table), dtype=np.int64)
        return starts, starts + 1, list(table.uuids), list(table.names)
    starts, stops = sequences.offsets[:-1], sequences.offsets[1:]
    uuids = [
        table.uuids[int(start)] if stop > start else ""
        for start, stop in zip(starts, stops, strict=True)
    ]
    return starts, stops, uuids, list(sequences.sample_names)


def unit_hash(key: str, seed: int) -> float:
    """The number in ``[0, 1)`` that places ``key`` in a :class:`RatioSplit`.

    The first 8 bytes of ``sha256(f"{seed}:{key}")``, big-endian, divided by ``2**64``: a
    documented formula, so other tools (and later versions) reproduce the same splits.

    Example:
        >>> round(unit_hash("d5602f48-2ff7-5b0a-a8f4-2d61115552e3", seed=0), 6)
        0.049099
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class SplitAssignment:
    """The split of every release row.

    Attributes:
        names: the split names, in the rule's order.
        codes: one int16 per release row: the index of its split in ``names``, ``-1`` for
            rows in no split.
    """

    names: tuple[str, ...]
    codes: npt.NDArray[np.int16]

    def rows(self, name: str) -> IntArray:
        """Release rows in split ``name``, ascending.

        Raises:
            SplitError: there is no such split; the message lists those that exist.
        """
        if name not in self.names:
            raise SplitError(
                f"no split {name!r}; the splits are {', '.join(map(repr, self.names))}"
            )
        return np.flatnonzero(self.codes == self.names.index(name)).astype(np.int64)

    def counts(self) -> dict[str, int]:
        """Rows per split, in ``names`` order (rows in no split are not counted)."""
        found = np.bincount(self.codes[self.codes >= 0], minlength=len(self.names))
        return {name: int(n) for name, n in zip(self.names, found, strict=True)}

    @property
    def unassigned(self) -> int:
        """Rows in no split."""
        return int(np.count_nonzero(self.codes < 0))


class Split:
    """Base of the split rules: ``assign(table)`` and a JSON-ready ``to_dict()``
    (what a checkpoint keeps; :func:`split_from_dict` reads it back)."""

    kind: ClassVar[str]

    def assign(self, table: SampleTable) -> SplitAssignment:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class RatioSplit(Split):
    """Split by ratio with a seed, stable when the release grows.

    A sample goes to the split whose interval holds :func:`unit_hash` of its uuid (its name
    where the release has none): with ``{"train": 0.8, "val": 0.1, "test": 0.1}``, train
    below 0.8, val below 0.9, test above. Counts follow the ratios up to sampling noise
    (on 1,000 samples a 0.1 split holds 100 +- 10).

    Args:
        ratios: split name -> fraction; each in ``(0, 1]``, summing to 1. Their order
            matters: it lays out the intervals.
        seed: a different seed gives an independent split.

    Example:
        >>> split = RatioSplit({"train": 0.75, "val": 0.25}, seed=3)
        >>> split.assign(table).counts()  # doctest: +SKIP
        {'train': 751, 'val': 249}
    """

    ratios: Mapping[str, float]
    seed: int = 0
    kind: ClassVar[str] = "ratio"

    def __post_init__(self) -> None:
        ratios = dict(self.ratios)
        if not ratios:
            raise SplitError("RatioSplit needs at least one split, e.g. {'train': 0.8, 'val': 0.2}")
        for name, ratio in ratios.items():
            if not isinstance(name, str) or not name:
                raise SplitError(f"RatioSplit: split names are non-empty strings, not {name!r}")
            if isinstance(ratio, bool) or not isinstance(ratio, int | float):
                raise SplitError(f"RatioSplit: the ratio of {name!r} is {ratio!r}, not a number")
            if not 0 < ratio <= 1:
                raise SplitError(f"RatioSplit: the ratio of {name!r} is {ratio}, not in (0, 1]")
        total = math.fsum(ratios.values())
        if abs(total - 1) > 1e-9:
            raise SplitError(
                f"RatioSplit: the ratios sum to {total:g}, not 1: "
                + ", ".join(f"{k}={v:g}" for k, v in ratios.items())
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise SplitError(f"RatioSplit: the seed is {self.seed!r}, not an integer")
        object.__setattr__(self, "ratios", ratios)

    def assign(self, table: SampleTable) -> SplitAssignment:
        fractions = np.fromiter(
            (unit_hash(key, self.seed) for key in sample_keys(table)), np.float64, len(table)
        )
        bounds = np.cumsum(list(self.ratios.values()))
        bounds[-1] = np.inf  # no row falls past the last split through rounding
        codes = np.searchsorted(bounds, fractions, side="right").astype(np.int16)
        return SplitAssignment(tuple(self.ratios), codes)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ratios": dict(self.ratios), "seed": self.seed}


@dataclass(frozen=True)
class MetadataSplit(Split):
    """Split by a key of the sample metadata, as the SDK's ``filter_by_metadata``.

    Args:
        key: the metadata key (``"split"``).
        values: split name -> the metadata value(s) that put a sample in it, e.g.
            ``{"val": ["val", "validation"]}``. ``None``: a sample whose value is a string
            goes to the split of that name. Samples without the key, or whose value no
            split claims, are in no split.

    Example:
        >>> MetadataSplit("split").assign(table).counts()  # doctest: +SKIP
        {'train': 3, 'val': 3}
    """

    key: str = "split"
    values: Mapping[str, Any] | None = None
    kind: ClassVar[str] = "metadata"

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise SplitError(f"MetadataSplit: the key is {self.key!r}, not a non-empty string")
        if self.values is None:
            return
        values: dict[str, list[Any]] = {}
        owner: dict[str, str] = {}
        for name, wanted in self.values.items():
            listed = list(wanted) if isinstance(wanted, list | tuple) else [wanted]
            for value in listed:
                marker = repr(value)
                if marker in owner:
                    raise SplitError(
                        f"MetadataSplit: {self.key}={value!r} is claimed by both "
                        f"{owner[marker]!r} and {name!r}"
                    )
                owner[marker] = name
            values[name] = listed
        object.__setattr__(self, "values", values)

    def assign(self, table: SampleTable) -> SplitAssignment:
        codes = np.full(len(table), -1, dtype=np.int16)
        names: list[str] = list(self.values) if self.values is not None else []
        # repr() keys keep 1 and True and "1" apart, as the JSON had them.
        code_of = {
            repr(value): names.index(name)
            for name, listed in (self.values or {}).items()
            for value in listed
        }
        for row in range(len(table)):
            metadata = table.metadata(row)
            if self.key not in metadata:
                continue
            value = metadata[self.key]
            if self.values is not None:
                codes[row] = code_of.get(repr(value), -1)
            elif isinstance(value, str) and value:
                if value not in names:
                    names.append(value)
                codes[row] = names.index(value)
        return SplitAssignment(tuple(names), codes)

    def to_dict(self) -> dict[str, Any]:
        values = None if self.values is None else {k: list(v) for k, v in self.values.items()}
        return {"kind": self.kind, "key": self.key, "values": values}


@dataclass(frozen=True)
class ListSplit(Split):
    """Split by explicit lists of samples, each named by uuid or by name.

    Args:
        members: split name -> sample uuids or names (an entry is matched against the
            uuids first, then the names). A name that several samples share is refused
            (name them by uuid); so is a sample listed in two splits, and every entry that
            matches no sample (all are named in one error). In a sequence release an
            entry names a sequence (its uuid or its sample's name): all its frames go
            to that split.

    Example:
        >>> ListSplit({"train": ["a.jpg", "b.jpg"], "val": ["c.jpg"]}).assign(table).counts()
        ... # doctest: +SKIP
        {'train': 2, 'val': 1}
    """

    members: Mapping[str, Sequence[str]] = field(default_factory=dict)
    kind: ClassVar[str] = "list"

    def __post_init__(self) -> None:
        if not self.members:
            raise SplitError("ListSplit needs at least one split, e.g. {'val': ['a.jpg']}")
        members: dict[str, tuple[str, ...]] = {}
        for name, entries in self.members.items():
            if isinstance(entries, str):
                raise SplitError(
                    f"ListSplit: split {name!r} is the string {entries!r}, not a list of names"
                )
            members[name] = tuple(str(entry) for entry in entries)
        object.__setattr__(self, "members", members)

    def assign(self, table: SampleTable) -> SplitAssignment:
        starts, stops, uuids, unit_names = _units(table)
        by_uuid = {uuid: unit for unit, uuid in enumerate(uuids) if uuid}
        by_name: dict[str, list[int]] = {}
        for unit, name in enumerate(unit_names):
            by_name.setdefault(name, []).append(unit)
        codes = np.full(len(table), -1, dtype=np.int16)
        names = tuple(self.members)
        unknown: list[str] = []
        for code, (split, entries) in enumerate(self.members.items()):
            for entry in entries:
                if entry in by_uuid:
                    unit = by_uuid[entry]
                elif len(by_name.get(entry, ())) == 1:
                    unit = by_name[entry][0]
                elif entry in by_name:
                    raise SplitError(
                        f"{table.source}: ListSplit: split {split!r}: {len(by_name[entry])} "
                        f"samples are named {entry!r}; name them by uuid"
                    )
                else:
                    unknown.append(f"{split}: {entry}")
                    continue
                start, stop = int(starts[unit]), int(stops[unit])
                if start < stop and codes[start] >= 0:
                    first = names[codes[start]]
                    where = "twice" if first == split else f"in both {first!r} and {split!r}"
                    raise SplitError(
                        f"{table.source}: ListSplit: sample {unit_names[unit]!r} "
                        f"(uuid {uuids[unit]!r}) is listed {where}"
                    )
                codes[start:stop] = code
        if unknown:
            raise SplitError(
                f"{table.source}: ListSplit: {len(unknown)} entries match no sample's uuid "
                f"or name: {_listing(unknown)}"
            )
        return SplitAssignment(names, codes)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "members": {k: list(v) for k, v in self.members.items()}}


_KINDS: dict[str, type[Split]] = {
    RatioSplit.kind: RatioSplit,
    MetadataSplit.kind: MetadataSplit,
    ListSplit.kind: ListSplit,
}


def split_from_dict(data: Mapping[str, Any]) -> Split:
    """The rule a ``to_dict()`` describes (e.g. read back from a checkpoint).

    Example:
        >>> split_from_dict({"kind": "ratio", "ratios": {"train": 1.0}, "seed": 4})
        RatioSplit(ratios={'train': 1.0}, seed=4)
    """
    fields = dict(data)
    kind = fields.pop("kind", None)
    rule = _KINDS.get(str(kind))
    if rule is None:
        raise SplitError(f"unknown split kind {kind!r}; expected one of {', '.join(_KINDS)}")
    try:
        return rule(**fields)
    except TypeError as exc:
        raise SplitError(f"a {kind!r} split takes other fields than {sorted(fields)}") from exc
