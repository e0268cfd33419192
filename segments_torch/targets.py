"""Training targets from an instance-id map: pure tensor code, CPU or CUDA alike.

Every function takes tensors and returns tensors on the same device, so targets built in
CPU workers and on a GPU (``SegmentsDataset.target_for`` given an id map on CUDA) are
identical.

Per sample the work is a few passes over the pixels and one write of the masks:

1. each pixel's slot in a lookup table, found once per sample: the instance id itself
   when the largest annotation id is small (a table sized by it), else, when ids are
   large and sparse (a 16-million id on a small image), the annotation's rank found by
   ``torch.searchsorted`` over the sorted ids, so memory never scales with 2^24. Every
   per-pixel map (semantic labels, a one-byte segment code, the instance map) is then
   one ``index_select`` of a small table over those slots, or a plain conversion of
   the ids where each pixel's value is its id (instances numbered 1 .. N).
2. boxes and areas from the runs of equal codes along the rows of the segment map
   (:func:`_run_extents`): labels are regions, a few runs a row, so this reads one
   byte a pixel, not the masks' N.
3. masks, on CPU zeroed and then compared with the segment map within each box only
   (:func:`_compare_in_boxes`): zeroing runs at memory speed, and the boxes hold a few
   percent of the masks' bytes. On a GPU, or where runs are many (noise), by one
   broadcast comparison of the segment map with the segment numbers
   (:func:`_compare`), boxes and areas then from one read of the masks
   (:func:`_mask_extents`).

Per-annotation work (tens of values: segment numbers, lookup tables, which annotation
each mask is) is done in numpy on the host, whatever the device of the pixels: a sample
makes dozens of such calls, and each costs several times less in numpy than in torch.

With ``shared=True`` the masks and per-pixel maps are made in shared memory
(:func:`allocate`), where a DataLoader worker would otherwise copy them to send them.

Example:
    >>> ids = torch.tensor([[0, 7], [7, 300]], dtype=torch.int32)
    >>> map_ids(ids, torch.tensor([7, 300]), torch.tensor([1, 2]), fill=255).tolist()
    [[255, 1], [1, 2]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torchvision import tv_tensors

from ._compat import allocate

__all__ = [
    "INSTANCE_FIELDS",
    "TARGET_KINDS",
    "SegmentMap",
    "SegmentTargets",
    "allocate",
    "build_target",
    "instance_fields",
    "map_ids",
    "nearest_rows",
    "sample_nearest",
    "segment_targets",
]

#: What ``target=`` may be.
TARGET_KINDS = ("instance", "semantic", "panoptic", "boxes")
#: Target entries with one row per instance, which ``SanitizeBoundingBoxes`` must filter
#: together with the boxes (see :func:`instance_fields`).
INSTANCE_FIELDS = ("labels", "instance_ids", "area", "iscrowd", "is_thing")


#: Per-annotation inputs: a tensor (any device) or a numpy array.
Annotations = torch.Tensor | npt.NDArray[Any]


def _host(values: Annotations, dtype: npt.DTypeLike | None = None) -> npt.NDArray[Any]:
    """``values`` as a numpy array on the host (a view where it can be)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def _to_device(values: npt.NDArray[Any], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(values).to(device)


#: Widths of a segment map, narrowest first, with the most segments each holds.
_SEGMENT_DTYPES = ((torch.uint8, 1 << 8), (torch.int16, 1 << 15), (torch.int32, 1 << 31))


@dataclass(frozen=True)
class SegmentMap:
    """A bitmap's instance ids in compact form: each pixel's segment number, and the
    sorted table of the distinct ids, so that ``ids[segments]`` is the id map.

    A label is a few dozen regions, so the segments fit in one byte a pixel where the
    id map takes four; they compress several times smaller than the PNG and decompress
    in a fraction of its decoding (the label cache stores them), and every target is
    built from them as from the ids (:func:`build_target` takes either).

    Attributes:
        segments: ``(H, W)`` segment numbers, in the narrowest of uint8, int16, int32
            that holds the count of distinct ids; on any device.
        ids: ``(K,)`` int32 CPU tensor, the distinct ids ascending (``0``, unlabelled,
            among them where some pixel has it). Per-segment work reads it on the host.
        extents: ``(K, 5)`` int64 CPU tensor, or ``None`` where not measured: each
            segment's pixel count and XYXY box (``x1 = max x + 1``), as :meth:`measured`
            finds them. The label cache stores them, so that targets of a cached label
            get their boxes and areas without reading its pixels.

    Example:
        >>> compact = SegmentMap.from_ids(torch.tensor([[0, 70000], [70000, 3]], dtype=torch.int32))
        >>> compact.segments.tolist(), compact.ids.tolist()
        ([[0, 2], [2, 1]], [0, 3, 70000])
        >>> compact.to_ids().tolist()
        [[0, 70000], [70000, 3]]
    """

    segments: torch.Tensor
    ids: torch.Tensor
    extents: torch.Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        return self.segments.shape

    @property
    def device(self) -> torch.device:
        return self.segments.device

    @staticmethod
    def dtype_for(count: int) -> torch.dtype:
        """The narrowest segment dtype that numbers ``count`` segments."""
        return next(dtype for dtype, most in _SEGMENT_DTYPES if count <= most)

    @classmethod
    def from_ids(cls, ids: torch.Tensor) -> SegmentMap:
        """The compact form of an ``(H, W)`` int32 id map, on its device."""
        if ids.device.type != "cpu":
            table, inverse = torch.unique(ids, return_inverse=True)
            segments = inverse.to(cls.dtype_for(len(table)))
            return cls(segments, table.cpu().to(torch.int32))
        flat = ids.reshape(-1).numpy()
        if not flat.size:
            return cls(torch.zeros(ids.shape, dtype=torch.uint8), torch.zeros(0, dtype=torch.int32))
        # The distinct ids from the values of the runs of equal ids along the rows: labels
        # are regions, so a few thousand values stand for millions of pixels.
        starts = np.empty(flat.size, dtype=bool)
        starts[0] = True
        np.not_equal(flat[1:], flat[:-1], out=starts[1:])
        table = np.unique(flat[starts])
        # Each id's segment by one gather from a table indexed by id: at most 2^24 slots,
        # of which only the ids' pages are ever touched (np.zeros maps the rest lazily).
        dtype = cls.dtype_for(len(table))
        number = np.zeros(int(table[-1]) + 1, dtype=torch.empty(0, dtype=dtype).numpy().dtype)
        number[table] = np.arange(len(table))
        segments = torch.index_select(torch.from_numpy(number), 0, ids.reshape(-1))
        return cls(segments.view(ids.shape), torch.from_numpy(table.astype(np.int32)))

    def measured(self) -> SegmentMap:
        """This map with its :attr:`extents`, measured from the runs of equal segments
        along its rows (one read of the map); itself where they are known already, where
        the map is not on the CPU, or where its runs are so many (noise: past
        ``_FEW_RUNS``, more than one in 16 pixels) that measuring them would cost about
        what decoding the PNG does.

        Example:
            >>> ids = torch.tensor([[0, 5, 5], [0, 0, 5]], dtype=torch.int32)
            >>> SegmentMap.from_ids(ids).measured().extents.tolist()
            [[3, 0, 0, 2, 2], [3, 1, 0, 3, 2]]
        """
        if self.extents is not None or self.device.type != "cpu" or not self.segments.numel():
            return self
        pixels = self.segments.numel()
        # at most one run in 16 pixels (few runs of any map), see _FEW_RUNS
        budget = max(pixels, 16 * _FEW_RUNS)
        found = _value_extents(self.segments.numpy(), len(self.ids), run_cost=16, budget=budget)
        if found is None:
            return self
        extents = torch.from_numpy(np.column_stack(found))
        return SegmentMap(self.segments, self.ids, extents)

    def to_ids(self) -> torch.Tensor:
        """The ``(H, W)`` int32 id map, on the segments' device."""
        table = self.ids.to(self.device)
        index = self.segments.reshape(-1).to(torch.int32)
        return torch.index_select(table, 0, index).view(self.shape)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> SegmentMap:
        """The segments on ``device``; the id table and extents stay on the host."""
        segments = self.segments.to(device, non_blocking=non_blocking)
        return SegmentMap(segments, self.ids, self.extents)


def nearest_rows(length: int, count: int) -> torch.Tensor:
    """``(count,)`` int64: the source index of each of ``count`` positions when ``length``
    are sampled by nearest neighbour, exactly as ``torch.nn.functional.interpolate(...,
    mode="nearest")`` (and so ``v2.functional.resize(..., NEAREST)``) picks them: found by
    that very function on a ramp of indices (exact in float32 below 2^24).

    Example:
        >>> nearest_rows(5, 3).tolist()
        [0, 1, 3]
    """
    ramp = torch.arange(length, dtype=torch.float32).view(1, 1, length)
    return torch.nn.functional.interpolate(ramp, size=count, mode="nearest").view(count).long()


def sample_nearest(
    labels: torch.Tensor | SegmentMap, height: int, width: int
) -> torch.Tensor | SegmentMap:
    """An ``(H, W)`` id map, or a :class:`SegmentMap`, sampled at ``height`` x ``width`` by
    nearest neighbour as ``v2.functional.resize(ids, [height, width], NEAREST)`` samples it:
    reading only the pixels kept. A segment map's id table keeps the ids left.

    Example:
        >>> ids = torch.tensor([[1, 1, 2, 2], [3, 3, 4, 4]], dtype=torch.int32)
        >>> sample_nearest(ids, 1, 2).tolist()
        [[1, 2]]
    """
    rows_in, columns_in = labels.shape
    if (rows_in, columns_in) == (height, width):
        return labels
    device = labels.device
    rows = nearest_rows(rows_in, height).to(device)
    columns = nearest_rows(columns_in, width).to(device)
    if isinstance(labels, torch.Tensor):
        return _take(labels, rows, columns)
    segments = _take(labels.segments, rows, columns)
    count = len(labels.ids)
    # counted in their own dtype: a conversion to int64 first costs more than the count
    present = torch.bincount(segments.reshape(-1), minlength=count).cpu() > 0
    if bool(present.all()):
        return SegmentMap(segments, labels.ids)
    # Renumber the segments left, so that the table holds exactly the ids of the pixels.
    number = (torch.cumsum(present, 0) - 1).to(segments.dtype)
    renumbered = torch.index_select(number.to(device), 0, segments.reshape(-1).to(torch.int32))
    return SegmentMap(renumbered.view(height, width), labels.ids[present])


#: Bytes of whole source rows :func:`_take` copies per step: a block that stays in cache.
_TAKE_BLOCK = 1 << 18


def _take(pixels: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``pixels[rows][:, columns]`` of an ``(H, W)`` map. On CPU by numpy, a block of rows
    at a time: the rows copied whole (one memcpy each), then their columns taken, which
    is faster than outer indexing (3x on a one-byte map: docs/benchmarks.md) and makes no
    ``(rows, W)`` copy; on a GPU by two ``index_select``."""
    if pixels.device.type != "cpu":
        return pixels.index_select(0, rows).index_select(1, columns)
    source, picked, kept = pixels.numpy(), rows.numpy(), columns.numpy()
    out = np.empty((len(picked), len(kept)), dtype=source.dtype)
    step = max(1, _TAKE_BLOCK // max(1, source.shape[1] * source.itemsize))
    for start in range(0, len(picked), step):
        block = source[picked[start : start + step]]
        np.take(block, kept, axis=1, out=out[start : start + step])
    return torch.from_numpy(out)


def map_ids(
    ids: torch.Tensor | SegmentMap, annotation_ids: Annotations, values: Annotations, fill: int
) -> torch.Tensor:
    """Replace each pixel's instance id by the value of its annotation.

    Args:
        ids: ``(H, W)`` int32 instance ids (0 = unlabelled), or their :class:`SegmentMap`.
        annotation_ids: ``(N,)`` distinct ids of the label's annotations.
        values: ``(N,)`` the value for each annotation (a dtype numpy has).
        fill: the value of pixels whose id has no annotation (0 included).

    Returns:
        ``(H, W)`` tensor of the dtype of ``values``, on the device of ``ids``.
    """
    return _IdLookup(ids, _host(annotation_ids, np.int64)).map(_host(values), fill)


class _IdLookup:
    """Each pixel's slot in a table of per-annotation values, found once per sample, so
    that every per-pixel value a target needs costs one ``index_select`` of a small table.

    Dense (largest annotation id below ``max(2^16, H * W)``): the slot is the id itself.
    Sparse: the annotation's rank among the sorted ids, by ``torch.searchsorted``, and one
    slot past them for the fill, so tables never scale with 2^24.
    """

    def __init__(
        self, ids: torch.Tensor | SegmentMap, annotation_ids: npt.NDArray[np.int64]
    ) -> None:
        self.shape = ids.shape
        self.device = ids.device
        count = len(annotation_ids)
        #: ``(H * W,)`` slot of each pixel; ``None`` when there is no annotation.
        self.index: torch.Tensor | None = None
        #: ``(H * W,)`` the slots where they are the pixels' ids (see :meth:`_is_identity`).
        self.flat_ids: torch.Tensor | None = None
        #: ``(N,)`` slot of each annotation (host).
        self.slots = annotation_ids
        self.size = 0
        #: Whether every pixel's slot is known to be in the table (see :meth:`_fit`).
        self.fitted = True
        if count == 0:
            return
        if isinstance(ids, SegmentMap):
            self._segments(ids, annotation_ids)
            return
        flat = ids.reshape(-1)
        self.flat_ids = flat
        largest = int(annotation_ids.max())
        self.limit = max(1 << 16, ids.numel())
        if largest < self.limit:
            self.index, self.size = flat, largest + 1
            # A pixel id above every annotation id is rare (it has no annotation: the
            # fill). On CPU a gather checks its indices and finds one, so the ids are read
            # for their largest only then: see :meth:`map`. On CUDA
            # a bad index is a device-side assert that leaves the context unusable: read it now.
            self.fitted = False
            if ids.device.type != "cpu":
                self._fit()
            return
        order = np.argsort(annotation_ids, kind="stable")
        ordered = _to_device(annotation_ids[order], ids.device).to(ids.dtype)
        position = torch.searchsorted(ordered, flat).clamp_(max=count - 1)
        missing = ordered.index_select(0, position) != flat
        self.index = position.masked_fill_(missing, count)  # slot `count`: the fill
        self.slots = np.empty(count, dtype=np.int64)
        self.slots[order] = np.arange(count)
        self.size = count + 1

    def _segments(self, compact: SegmentMap, annotation_ids: npt.NDArray[np.int64]) -> None:
        """Slots of a :class:`SegmentMap`: a pixel's slot is its segment, an annotation's
        the segment of its id, or one past them all where no pixel has its id."""
        table = compact.ids.numpy().astype(np.int64)
        count = len(table)
        position = np.searchsorted(table, annotation_ids).clip(max=max(count - 1, 0))
        found = table[position] == annotation_ids if count else np.zeros(len(annotation_ids), bool)
        self.slots = np.where(found, position, count)
        self.size = count + int(not found.all())
        # The segments as they are: widened for index_select only by a gather (see
        # :meth:`_wide_index`), and never where each pixel's value is its segment.
        self.index = compact.segments.reshape(-1)
        if np.array_equal(table, np.arange(count)):  # each pixel's segment is its id
            self.flat_ids = self.index

    def _fit(self) -> None:
        """Make the dense table hold every pixel id, the ids above the largest annotation
        id on fill slots: sized by the largest pixel id (one read of the ids) where that
        is small enough for a table, else with the ids clamped (a copy of the ids: slower,
        so only then)."""
        if self.fitted:
            return
        self.fitted = True
        assert self.flat_ids is not None  # unfitted tables are dense tables of the ids
        top = int(self.flat_ids.max()) if self.flat_ids.numel() else 0
        if top < self.limit:
            self.size = max(self.size, top + 1)
        else:
            self.index = self.flat_ids.clamp(max=self.size)
            self.size += 1

    def map(self, values: npt.NDArray[Any], fill: int, *, shared: bool = False) -> torch.Tensor:
        """``(H, W)`` of the dtype of ``values`` (one per annotation): each pixel's
        annotation value, else ``fill``; in shared memory with ``shared`` (see
        :func:`allocate`)."""
        table = self._table(values, fill)
        out = allocate(self.shape, torch.from_numpy(table).dtype, self.device, shared=shared)
        if self.index is None:
            return out.fill_(fill)
        if self._is_identity(table):
            # Each pixel's value is its id (annotations 1 .. N numbered in order, the way
            # Segments.ai numbers them): on CPU a conversion is faster than a gather.
            return out.copy_(self.index.view(self.shape))
        if len(table) != self.size:  # the identity check fitted the table
            table = self._table(values, fill)
        try:
            self._gather(table, out)
        except IndexError:  # a pixel id past the table's end (CPU): fit the table to it
            self._fit()
            self._gather(self._table(values, fill), out)
        return out

    def _table(self, values: npt.NDArray[Any], fill: int) -> npt.NDArray[Any]:
        """The host table of ``values`` by slot, ``fill`` in the other slots."""
        table = np.full(self.size, fill, dtype=values.dtype)
        table[self.slots] = values
        return table

    def _gather(self, table: npt.NDArray[Any], out: torch.Tensor) -> None:
        # index_select, not table[index]: advanced indexing is slower on CPU. The
        # table goes to the pixels' device only here, where it is read.
        index = self._wide_index()
        torch.index_select(torch.from_numpy(table).to(self.device), 0, index, out=out.view(-1))

    def _wide_index(self) -> torch.Tensor:
        """The slots in a dtype ``index_select`` takes: a segment map's one- or two-byte
        segments are converted to int32 once, by the first gather."""
        assert self.index is not None
        if self.index.dtype not in (torch.int32, torch.int64):
            wide = self.index.to(torch.int32)
            if self.flat_ids is self.index:
                self.flat_ids = wide
            self.index = wide
        return self.index

    def _is_identity(self, table: npt.NDArray[Any]) -> bool:
        """Whether every pixel's value is its own id: the slots are the ids,
        ``table[k] == k`` for each of them and no pixel id lies past the table."""
        if self.index is not self.flat_ids or table.dtype.kind not in "iu":
            return False
        if self.size - 1 > np.iinfo(table.dtype).max:
            return False
        if not np.array_equal(table, np.arange(self.size)):
            return False
        size = self.size
        self._fit()  # the ids past the largest annotation id must be none
        return self.index is self.flat_ids and self.size == size


@dataclass(frozen=True)
class SegmentTargets:
    """Masks, boxes and areas of the segments that have pixels.

    Attributes:
        masks: ``(M, H, W)`` uint8, 1 inside the segment.
        boxes: ``(M, 4)`` float32 XYXY covering the segment's pixels (``x1 = max x + 1``),
            so a one-pixel segment has a box of size 1 x 1.
        area: ``(M,)`` int64 pixel counts.
        segments: ``(M,)`` int64, which of the requested segments each row is.
        segment_map: ``(H, W)`` int64, each pixel's row in ``masks`` or ``-1``.
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    area: torch.Tensor
    segments: torch.Tensor
    segment_map: torch.Tensor


def segment_targets(segment_map: torch.Tensor, num_segments: int) -> SegmentTargets:
    """Masks, boxes and areas of segments ``0 .. num_segments - 1``.

    Args:
        segment_map: ``(H, W)`` int64, each pixel's segment or ``-1``.
        num_segments: how many segments were assigned; those without pixels are dropped.
    """
    height, width = segment_map.shape
    flat = segment_map.reshape(-1)
    code = (flat + 1).to(_code_dtype(num_segments)).view(height, width)
    masks, boxes, area, present = _segment_masks(code, num_segments)
    count = len(present)
    if count < num_segments:  # renumber the segments that have pixels
        renumber = torch.full((num_segments + 1,), -1, dtype=torch.int64, device=flat.device)
        renumber[present + 1] = torch.arange(count, device=flat.device)
        flat = renumber.index_select(0, flat + 1)
    return SegmentTargets(
        masks=masks, boxes=boxes, area=area, segments=present, segment_map=flat.view(height, width)
    )


#: Codes per one-byte code map in :func:`_compare` (code 0 is "none").
_GROUP = 255


def _code_dtype(num_segments: int) -> torch.dtype:
    """The dtype of a segment code map (segment + 1, 0 = none): one byte where it fits, so
    counting and comparing read 1 byte a pixel."""
    return torch.uint8 if num_segments < 255 else torch.int32


def _segment_masks(
    code: torch.Tensor,
    num_segments: int,
    *,
    shared: bool = False,
    all_present: bool = False,
    masks_wanted: bool = True,
    extents: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masks, float32 boxes, areas and segment numbers of the segments with pixels.

    Args:
        code: ``(H, W)`` segment + 1 (0 = none), in :func:`_code_dtype`.
        num_segments: segments ``0 .. num_segments - 1`` were assigned.
        shared: make the masks in shared memory (see :func:`allocate`).
        all_present: every segment is known to have pixels: the areas are not read to
            find out (on a GPU, that read would wait for the device).
        masks_wanted: ``False``: boxes and areas only; the masks come back empty
            (``(0, H, W)``), made only where the runs of the code map cannot give the
            extents (a GPU, a noisy map).
        extents: the segments' areas and int64 XYXY boxes where known (CPU), else found
            here.
    """
    if extents is None:
        extents = _run_extents(code, num_segments, masks_made=masks_wanted)
    if extents is not None and not masks_wanted:
        masks = code.new_zeros((0, *code.shape), dtype=torch.uint8)
        area, boxes = extents
    elif extents is not None:
        area, boxes = extents
        masks = _compare_in_boxes(code, boxes, shared=shared)
    else:
        masks = _compare(code, num_segments, shared=shared)
        area, boxes = _mask_extents(masks)
        if not masks_wanted:
            masks = masks[:0]
    if all_present:
        present = torch.arange(num_segments, device=code.device)
        return masks, boxes.to(torch.float32), area, present
    present = torch.nonzero(area).squeeze(1)
    count = len(present)
    if count < num_segments:  # annotations absent from the bitmap (rare): move the masks
        # kept to the front, one memcpy each (not indexing hundreds of MB of masks into a
        # new tensor); the absent ones' bytes stay unused at the storage's end.
        if len(masks):
            for row, segment in enumerate(present.tolist()):
                if row != segment:
                    masks[row] = masks[segment]
            masks = masks[:count]
        area, boxes = area[present], boxes[present]
    return masks, boxes.to(torch.float32), area, present


#: Mask bytes per run of equal codes below which :func:`_run_extents` gives up: on CPU a
#: run costs about what reading this many mask bytes does, so maps with more runs than
#: that (noise) are measured from the masks (docs/benchmarks.md gives the measurement).
_MASK_BYTES_PER_RUN = 256
#: Runs a segment map may have and still be measured for the label cache whatever its
#: size (:meth:`SegmentMap.measured`); past them, only maps whose runs are 16 pixels long
#: on average, so that measuring costs at most about what decoding the PNG does.
_FEW_RUNS = 4096


def _run_extents(
    code: torch.Tensor, num_segments: int, *, masks_made: bool = True
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Areas and int64 XYXY boxes of segments ``0 .. num_segments - 1`` from the runs of
    equal codes along the rows of a CPU code map; ``None`` on other devices, or when there
    are too many runs for that to pay against reading the masks (``masks_made``: they
    exist anyway). Boxes of segments without pixels are meaningless.

    Labels are regions: a row of a 1280 x 720 map with 25 instances holds a few runs, so
    reducing runs reads the one-byte code map once instead of the masks' N bytes a pixel.
    numpy, not torch: the per-run reductions are a dozen small operations, each cheaper in
    numpy. A GPU reads the masks at full speed.
    """
    if code.device.type != "cpu" or not code.numel():
        return None
    # a run costs what reading _MASK_BYTES_PER_RUN bytes of masks made anyway does
    budget = num_segments * code.numel() if masks_made else math.inf
    found = _value_extents(
        code.numpy(), num_segments + 1, run_cost=_MASK_BYTES_PER_RUN, budget=budget
    )
    if found is None:
        return None
    area, boxes = found
    return torch.from_numpy(area[1:]), torch.from_numpy(boxes[1:])


def _value_extents(
    values: npt.NDArray[Any], count: int, *, run_cost: int, budget: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """Areas ``(count,)`` and XYXY boxes ``(count, 4)`` of the values ``0 .. count - 1`` of
    a non-empty ``(H, W)`` map, from its runs along the rows (see :func:`_run_extents`);
    ``None`` where its runs times ``run_cost`` exceed ``budget``."""
    height, width = values.shape
    flat = values.reshape(-1)
    starts = np.empty(flat.size, dtype=bool)
    starts[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    starts[::width] = True  # every row starts a run, so no run crosses a row's end
    first = np.flatnonzero(starts)
    if len(first) * run_cost > budget:
        return None
    # Each run ends where the next begins (cheaper than np.diff with append=).
    length = np.empty_like(first)
    np.subtract(first[1:], first[:-1], out=length[:-1])
    length[-1] = flat.size - first[-1]
    row, column = np.divmod(first, width)
    return _gathered(
        flat[first], length, column, row, column + length, row + 1, count, (height, width)
    )


def _gathered(
    number: npt.NDArray[Any],
    area: npt.NDArray[np.int64],
    left: npt.NDArray[np.int64],
    top: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    bottom: npt.NDArray[np.int64],
    count: int,
    shape: tuple[int, int],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Areas ``(count,)`` and XYXY boxes ``(count, 4)`` of the unions of parts (runs, or
    segments), part ``k`` belonging to ``number[k]``: areas added, boxes' sides min and
    max. A number with no part gets area 0 and the box ``(W, H, 0, 0)``."""
    height, width = shape
    total = np.zeros(count, dtype=np.int64)
    np.add.at(total, number, area)
    boxes = np.empty((4, count), dtype=np.int64)
    boxes[0], boxes[1], boxes[2:] = width, height, 0
    np.minimum.at(boxes[0], number, left)
    np.minimum.at(boxes[1], number, top)
    np.maximum.at(boxes[2], number, right)
    np.maximum.at(boxes[3], number, bottom)
    return total, boxes.T.copy()


def _segment_extents(
    extents: npt.NDArray[np.int64],
    slots: npt.NDArray[np.int64],
    segment_of: npt.NDArray[np.int64],
    num_segments: int,
    shape: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Areas and int64 XYXY boxes of target segments ``0 .. num_segments - 1`` from a
    segment map's :attr:`~SegmentMap.extents`: each the union of those of its
    annotations' map segments (``slots``: each annotation's, past the table for an id
    no pixel has; ``segment_of``: each annotation's target segment or ``-1``)."""
    kept = (segment_of >= 0) & (slots < len(extents))
    area, left, top, right, bottom = extents[slots[kept]].T
    area, boxes = _gathered(segment_of[kept], area, left, top, right, bottom, num_segments, shape)
    return torch.from_numpy(area), torch.from_numpy(boxes)


def _mask_extents(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Areas and int64 XYXY boxes of ``(N, H, W)`` 0/1 masks: rows and areas from one read
    of the masks, then columns within each mask's rows only. Boxes of empty masks are
    meaningless."""
    count, height, width = masks.shape
    device = masks.device
    row_counts = _ones_per_row(masks)
    boxes = torch.empty((count, 4), dtype=torch.int64, device=device)
    rows = row_counts > 0
    position = torch.arange(height, device=device)
    boxes[:, 1] = torch.where(rows, position, height).amin(dim=1)
    boxes[:, 3] = torch.where(rows, position, -1).amax(dim=1) + 1
    if device.type == "cpu":
        # Columns from each mask's own rows only: a segment spans a fraction of the
        # height, so this reads a fraction of the masks (on CPU faster than a second
        # reduction over all of them, in spite of the loop).
        columns = torch.zeros((count, width), dtype=torch.uint8, device=device)
        for row, (top, bottom) in enumerate(boxes[:, 1::2].tolist()):
            if top < bottom:
                torch.amax(masks[row, top:bottom], dim=0, out=columns[row])
    else:  # one reduction of every mask: reading the rows to the host would wait for it
        columns = masks.amax(dim=1) if height else masks.new_zeros((count, width))
    hit = columns > 0
    position = torch.arange(width, device=device)
    boxes[:, 0] = torch.where(hit, position, width).amin(dim=1)
    boxes[:, 2] = torch.where(hit, position, -1).amax(dim=1) + 1
    return row_counts.sum(dim=1), boxes


def _compare(code: torch.Tensor, num_segments: int, *, shared: bool = False) -> torch.Tensor:
    """``(num_segments, H, W)`` uint8 masks, 1 where ``code`` is the segment's number + 1.

    One broadcast comparison that writes every byte once (no zero-fill, no scatter), always
    of a one-byte code into one-byte masks: torch compares on its vectorised path only when
    both have one dtype (an int32 code into uint8 masks leaves it). A wider code is
    compared 255 segments at a time, each group against a one-byte code of its own.

    Args:
        code: ``(H, W)`` segment + 1 (0 = none), in :func:`_code_dtype`.
        num_segments: segments ``0 .. num_segments - 1``.
        shared: make the masks in shared memory (see :func:`allocate`).
    """
    height, width = code.shape
    device = code.device
    masks = allocate((num_segments, height, width), torch.uint8, device, shared=shared)
    for start in range(0, num_segments, _GROUP):
        stop = min(start + _GROUP, num_segments)
        group_code = code
        if code.dtype != torch.uint8:
            local = code - start  # the group's segments become 1 .. stop - start
            group_code = torch.where((local > 0) & (local <= _GROUP), local, 0).to(torch.uint8)
        numbers = torch.arange(1, stop - start + 1, device=device, dtype=torch.uint8)
        torch.eq(
            group_code.view(1, height, width),
            numbers.view(stop - start, 1, 1),
            out=masks[start:stop],
        )
    return masks


def _compare_in_boxes(
    code: torch.Tensor, boxes: torch.Tensor, *, shared: bool = False
) -> torch.Tensor:
    """The masks of :func:`_compare`, from a CPU code map and the segments' int64 XYXY
    ``boxes``: zeroed, then compared within each box only.

    A segment covers a small part of the picture (at 1280 x 720 with 25 instances, the
    boxes hold 4 % of the masks' bytes). Zeroing is a memset, or nothing at all where the
    memory is fresh from the system (already zero); made and then read once, the masks
    cost 0.4-0.7 of the broadcast comparison's (``benchmarks/bench_targets.py``). Boxes of
    segments without pixels have ``x1 <= x0`` and stay zero.
    """
    height, width = code.shape
    shape = (len(boxes), height, width)
    if shared:  # filled here, so that the receiving process finds its pages made
        masks = allocate(shape, torch.uint8, shared=True)
        masks.numpy().fill(0)
    else:  # calloc: memory fresh from the system comes zeroed, without a pass over it
        masks = torch.from_numpy(np.zeros(shape, dtype=np.uint8))
    planes, pixels = masks.numpy(), code.numpy()
    for segment, (left, top, right, bottom) in enumerate(boxes.tolist()):
        # numpy: one call costs a fraction of torch's, and there is one per segment.
        np.equal(
            pixels[top:bottom, left:right],
            segment + 1,
            out=planes[segment, top:bottom, left:right].view(bool),
        )
    return masks


#: Words of 8 mask bytes summed per step of :func:`_ones_per_row`: each byte of the sum
#: adds at most this many 0/1 bytes, so it never carries into the next byte.
_WORDS_PER_SUM = 255


def _ones_per_row(masks: torch.Tensor) -> torch.Tensor:
    """``(N, H)`` int64: the ones in each row of ``(N, H, W)`` 0/1 uint8 masks.

    Torch reduces uint8 along an axis with a slow widening loop (on CPU far slower than
    reading the masks), so the rows are summed as int64 words, eight mask bytes side by
    side, at most ``_WORDS_PER_SUM`` words at a time, and the eight byte sums of each
    result are added at the end. Rows whose width is not a multiple of 8 are copied into
    zero-padded ones first.

    Example:
        >>> _ones_per_row(torch.tensor([[[1, 0, 1], [0, 0, 0]]], dtype=torch.uint8)).tolist()
        [[2, 0]]
    """
    count, height, width = masks.shape
    if width % 8:
        padded = masks.new_zeros((count, height, width + 8 - width % 8))
        padded[:, :, :width] = masks
        masks = padded
    words = masks.view(torch.int64)
    sums = [
        words[:, :, start : start + _WORDS_PER_SUM].sum(dim=2, keepdim=True)
        for start in range(0, words.shape[2], _WORDS_PER_SUM)
    ]
    lanes = torch.cat(sums, dim=2) if len(sums) > 1 else sums[0]
    return lanes.view(torch.uint8).view(count, height, lanes.shape[2] * 8).sum(dim=2)


def build_target(
    kind: str,
    ids: torch.Tensor | SegmentMap,
    annotation_ids: Annotations,
    labels: Annotations,
    is_thing: Annotations,
    *,
    ignore_index: int = 255,
    label_offset: int = 1,
    shared: bool = False,
    background: int | None = None,
) -> dict[str, torch.Tensor]:
    """The target of one sample, as torchvision models and ``transforms.v2`` expect.

    Args:
        kind: ``"instance"``, ``"semantic"``, ``"panoptic"`` or ``"boxes"``.
        ids: ``(H, W)`` int32 instance ids of the bitmap, or their :class:`SegmentMap`
            (the same target); the target is made on its device.
        annotation_ids: ``(N,)`` the label's annotation ids (tensors on any device, or
            numpy arrays, as ``labels`` and ``is_thing``).
        labels: ``(N,)`` training label of each annotation, ``-1`` when its category is
            not selected.
        is_thing: ``(N,)`` bool, the category's ``has_instances``.
        ignore_index: semantic value of unlabelled and unselected pixels.
        label_offset: added to training labels in ``labels`` (1 keeps 0 for background).
        shared: make the masks and the per-pixel maps in shared memory (CPU), for a
            DataLoader worker to send as they are (see :func:`allocate`).
        background: the training label of unlabelled pixels (id 0), a class of its own:
            their value in semantic maps, and in panoptic targets one stuff segment
            (``instance_ids`` 0, label ``background + label_offset``); ``None`` (the
            default): unlabelled pixels are ``ignore_index`` and no segment. Instance
            targets are the same either way.

    Returns:
        ``instance``: ``boxes``, ``labels``, ``masks``, ``instance_ids``, ``area``,
        ``iscrowd``. ``boxes``: the same without ``masks``, which are never made where
        the runs of the map give the extents (on the CPU): for detection models that take
        no masks. ``semantic``: ``semantic``. ``panoptic``: all of these plus
        ``is_thing`` and ``instance_map`` (``(H, W)`` int64, row in ``masks`` + 1, 0
        where no segment); things are one segment per annotation, stuff
        (``has_instances: false``) one segment per training label.
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"target kind must be one of {TARGET_KINDS}, not {kind!r}")
    device = ids.device
    annotation_ids = _host(annotation_ids, np.int64)
    labels = _host(labels, np.int64)
    is_thing = _host(is_thing, bool)
    detection = kind in ("instance", "boxes")  # one instance per selected annotation
    if background is not None and not detection:
        # Unlabelled pixels as one more annotation, of id 0 (no annotation has it) and a
        # stuff category: the lookups give them the label, panoptic targets one segment.
        annotation_ids = np.concatenate([[0], annotation_ids])
        labels = np.concatenate([[background], labels])
        is_thing = np.concatenate([[False], is_thing])
    selected = labels >= 0
    target: dict[str, torch.Tensor] = {}
    # Panoptic targets need three per-pixel maps: find each pixel's annotation once.
    lookup = _IdLookup(ids, annotation_ids)
    if not detection:
        semantic = lookup.map(np.where(selected, labels, ignore_index), ignore_index, shared=shared)
        target["semantic"] = tv_tensors.Mask(semantic)
    if kind == "semantic":
        return target

    if detection:
        thing = selected
        segment_of = np.where(selected, np.cumsum(selected) - 1, -1)
    else:
        thing = selected & is_thing
        segment_of = _panoptic_segments(labels, thing)
    num_segments = int(segment_of.max()) + 1 if len(segment_of) else 0
    if isinstance(ids, SegmentMap):
        # Which segments have pixels is known on the host, from the map's id table:
        # number only those, so the areas need not be read (on a GPU, a wait for it).
        has_pixels = np.isin(annotation_ids, ids.ids.numpy())
        present = np.unique(segment_of[(segment_of >= 0) & has_pixels])
        segment_of = _renumbered(segment_of, present, num_segments)
        num_segments = len(present)
    code_dtype = np.uint8 if _code_dtype(num_segments) == torch.uint8 else np.int32
    code = lookup.map((segment_of + 1).astype(code_dtype), 0)
    extents = None
    if isinstance(ids, SegmentMap) and ids.extents is not None and device.type == "cpu":
        # Measured once, when the label was cached: the pixels are not read for them.
        shape = (ids.shape[0], ids.shape[1])
        extents = _segment_extents(
            ids.extents.numpy(), lookup.slots, segment_of, num_segments, shape
        )
    masks, boxes, area, rows = _segment_masks(
        code,
        num_segments,
        shared=shared,
        all_present=isinstance(ids, SegmentMap),
        masks_wanted=kind != "boxes",
        extents=extents,
    )
    kept = rows.cpu().numpy()
    # The first annotation of each kept segment (the only one, for things).
    first = np.full(num_segments + 1, len(segment_of), dtype=np.int64)
    np.minimum.at(first, segment_of + 1, np.arange(len(segment_of)))
    annotation = first[kept + 1]
    target.update(
        boxes=tv_tensors.BoundingBoxes(
            boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=tuple(ids.shape)
        ),
        labels=_to_device(labels[annotation] + label_offset, device),
        masks=tv_tensors.Mask(masks),
        instance_ids=_to_device(annotation_ids[annotation], device),
        area=area,
        iscrowd=torch.zeros(len(annotation), dtype=torch.int64, device=device),
    )
    if kind == "boxes":
        del target["masks"]
    if kind == "panoptic":
        target["is_thing"] = _to_device(thing[annotation], device)
        if len(kept) == num_segments:  # the code is the row in masks + 1 already
            instance_map = allocate(code.shape, torch.int64, device, shared=shared).copy_(code)
        else:  # renumber the segments that have pixels: a table over segment codes
            row = np.zeros(num_segments + 1, dtype=np.int64)
            row[kept + 1] = np.arange(1, len(kept) + 1)
            instance_map = lookup.map(row[segment_of + 1], 0, shared=shared)
        target["instance_map"] = tv_tensors.Mask(instance_map)
    return target


def _renumbered(
    segment_of: npt.NDArray[np.int64], present: npt.NDArray[np.int64], count: int
) -> npt.NDArray[np.int64]:
    """``segment_of`` with the ``present`` segments (of ``count``) numbered 0, 1, ... in
    their order, the others and ``-1`` as ``-1``."""
    number = np.full(count + 1, -1, dtype=np.int64)
    number[present + 1] = np.arange(len(present))
    return number[segment_of + 1]


def _panoptic_segments(
    labels: npt.NDArray[np.int64], thing: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """Segment of each annotation: one per thing, one per stuff label, numbered in the
    order of their first annotation; ``-1`` for unselected annotations."""
    count = len(labels)
    position = np.arange(count)
    # Key of a stuff annotation: the position of the first annotation with its label.
    first_of_label = np.full(int(labels.max()) + 2 if count else 1, count, dtype=np.int64)
    # Only stuff annotations key their label (things and unselected ones go to slot 0),
    # so a thing sharing a stuff label ({"car": 0, "road": 0}) never absorbs the stuff.
    np.minimum.at(first_of_label, np.where(thing, 0, labels + 1), position)
    key = np.where(thing, position, first_of_label[labels + 1])
    key = np.where(labels >= 0, key, count)
    segment = np.searchsorted(np.unique(key), key)
    return np.where(labels >= 0, segment, -1)


def instance_fields(inputs: Any) -> tuple[torch.Tensor, ...]:
    """A ``labels_getter`` for ``transforms.v2.SanitizeBoundingBoxes`` that filters every
    per-instance entry of the target with the boxes, not only ``labels``.

    Example:
        >>> from torchvision.transforms import v2
        >>> sanitize = v2.SanitizeBoundingBoxes(labels_getter=instance_fields)
    """
    target = inputs[1] if isinstance(inputs, tuple) and len(inputs) == 2 else inputs[0][1]
    return tuple(target[key] for key in INSTANCE_FIELDS if key in target)
