"""``SegmentsDataset``: a map-style dataset of ``(image, target)`` pairs over a release.

Construction reads no image: it selects rows of the release's sample table and builds
the category lookup. Each item reads the sample's image and bitmap, decodes them and
builds the target the ``target=`` kind asks for (see :mod:`segments_torch.targets`).

Example:
    >>> from torch.utils.data import DataLoader
    >>> ds = SegmentsDataset("flowers-v1.0.json", target="instance")  # doctest: +SKIP
    >>> loader = DataLoader(ds, batch_size=4, num_workers=4, collate_fn=ds.collate_fn)
    >>> images, targets = next(iter(loader))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex, overload

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import get_worker_info
from torchvision import tv_tensors

from .categories import CategoryMap
from .codecs import (
    DEFAULT_MAX_PIXELS,
    DeviceImage,
    check_pixels,
    decode_bitmap,
    decode_image,
    oriented_size,
    prepare_image,
)
from .collate import collate_detection, collate_semantic
from .device import DeviceDecoder, EncodedSample, collate_device
from .errors import (
    AssetError,
    DecodeError,
    OptionError,
    SourceUnavailableError,
    UnsupportedTaskError,
)
from .files import warn_once
from .label_cache import LabelCache
from .release import (
    BITMAP_TASK_TYPES,
    SEQUENCE_TASK_TYPES,
    VECTOR_TASK_TYPES,
    Release,
    ReleaseSource,
    load_release,
)
from .samples import LABEL_STATUSES, SampleRecord, SequenceColumns
from .shapes import area_outlines, shape_target
from .sizes import Size, output_size
from .storage import STORAGE_SETTINGS, Storage, StorageError, StorageSettings, make_storage
from .targets import TARGET_KINDS, SegmentMap, build_target, sample_nearest
from .urls import display_url, release_base_url

if TYPE_CHECKING:
    from typing import Unpack

__all__ = ["SegmentsDataset", "UnsupportedTaskError"]

logger = logging.getLogger(__name__)

Item = tuple[tv_tensors.Image, dict[str, Any]]


class SegmentsDataset(torch.utils.data.Dataset[Any]):
    """A Segments.ai release as a map-style dataset of ``(image, target)`` pairs.

    Args:
        release: a :class:`~segments_torch.release.Release`, or anything
            :func:`~segments_torch.release.load_release` accepts (path, URL, dict, file),
            read through this dataset's ``storage``.
        storage: where the assets' bytes come from and where they are kept: a
            :class:`~segments_torch.storage.Storage` (mirrors, asset cache, retries,
            timeouts, fsspec options, label cache). Relative asset URLs resolve against
            its ``base_url``, or where it has none, against the release file's folder
            (``ds.storage`` is then a copy of it with that ``base_url``). Default
            ``Storage()``.
        labelset: which labelset's labels to serve; default ``"ground-truth"``, or the
            only labelset (in the older layouts, the only task).
        task: alias of ``labelset`` for the older layouts, whose labels are keyed by task.
        filter_by: label statuses to keep, case-insensitive; ``None`` keeps every sample.
        filter_by_metadata: metadata key/value pairs a sample must all have.
        rows: keep only these rows of ``release.samples`` (indices, e.g. a split made by
            :mod:`~segments_torch.splits`) among those the filters keep; the table's order
            is kept. ``None`` keeps every row the filters keep. A selection that keeps no
            sample logs a warning with the labelset's samples per label status (see
            :meth:`~segments_torch.samples.SampleTable.empty_selection`).
        target: ``"instance"``, ``"semantic"``, ``"panoptic"`` or ``"boxes"`` (see
            :func:`~segments_torch.targets.build_target`).
        categories: ``None`` (all, contiguous training labels in release-id order), a list
            of names (subset, order gives labels) or a dict name -> label.
        ignore_index: semantic value of unlabelled and unselected pixels.
        background: a name (e.g. ``"background"``) makes unlabelled pixels (id 0) a class
            of their own, label 0 in semantic maps, the categories' labels after it (see
            ``ds.categories``, ``ds.num_classes``); ids without an annotation and
            unselected categories stay ``ignore_index``. Panoptic targets get it as one
            stuff segment; detection ``labels`` are the same with or without it. Leave it
            out where unlabelled pixels are not known to be background (partly labelled
            images: a model would learn to call unlabelled objects background).
        label_offset: added to training labels in detection ``labels`` (1 keeps 0 for
            background, as torchvision detection models expect).
        transforms: called as ``transforms(image, target)``, e.g. a
            ``torchvision.transforms.v2`` joint transform.
        shared_memory: in DataLoader workers, make the masks and per-pixel maps of
            ``"instance"`` and ``"panoptic"`` targets in the shared memory through which the
            worker sends them, instead of copying them there (not when ``transforms``
            replace them). ``False`` where items are used inside the worker.
        on_error: ``"raise"`` (the default) raises :class:`AssetError` for a sample whose
            image or bitmap cannot be read or used; ``"skip"`` serves the next sample that
            works instead (deterministically), logs the failure once and counts it in
            :attr:`failures`, so a long training run survives a handful of broken files.
            A host that is down is no broken file: its
            :class:`~segments_torch.errors.SourceUnavailableError` is raised either way
            (see :class:`~segments_torch.storage.RetryPolicy`).
        max_pixels: the most pixels a sample's image or bitmap may declare in its header;
            larger ones are refused before decoding (an :class:`AssetError`, skipped under
            ``on_error="skip"``), so a small hostile file cannot take gigabytes. The
            default, 2^28 (16384 x 16384), passes any camera photo; ``None``: no limit.
        decode: ``"host"`` (the default): ``ds[i]`` is a decoded ``(image, target)``.
            ``"device"``: ``ds[i]`` is an :class:`~segments_torch.device.EncodedSample`
            (the JPEG still encoded, the bitmap as a one-byte segment map) for
            :meth:`device_decoder` to finish on the GPU (see :mod:`segments_torch.device`).
        size: serve every item at the size
            ``torchvision.transforms.v2.Resize(size, max_size=max_size)`` gives its oriented
            image (an int: the shorter side; ``(h, w)``: exact; ``None`` with ``max_size``:
            the longer side capped), made at that size from the start: a JPEG decoded at a
            reduced DCT scale and resized with antialiasing, the bitmap's ids sampled by
            nearest neighbour before any mask exists, so the targets equal those built from
            ``v2.functional.resize(ids, ..., NEAREST)`` (areas and boxes at that size;
            instances that vanish are dropped). Targets then hold ``orig_size``, the
            oriented image's full ``(height, width)``. ``None`` (the default): full size.
        max_size: the longest side, as ``v2.Resize``'s ``max_size`` (see ``size``).
        sequence: of a sequence release (task types ``image-vector-sequence``,
            ``image-segmentation-sequence``), serve one item per sequence instead of one
            per frame: ``(images, targets)``, the lists of its selected frames' images and
            targets in frame order, and ``transforms`` called once on those lists (so a
            ``torchvision.transforms.v2`` transform draws one set of random parameters
            for the whole sequence: the same crop and flip on every frame). Per frame
            (the default), targets of a sequence release hold ``sequence`` and
            ``frame_index`` (see :meth:`sequence_fields`).
        storage_settings: instead of ``storage``, its settings as keywords
            (:class:`~segments_torch.storage.StorageSettings`; not together with
            ``storage``):

            - ``asset_root``: folder or URL that relative asset URLs resolve against
              (the Storage's ``base_url``); default the release file's folder.
            - ``storage_options``: fsspec options per protocol, ``{"s3": {...}}``.
            - ``url_map``: mirrors: URL prefix -> replacement (longest prefix wins), or a
              callable.
            - ``cache_dir``: keep each downloaded asset's bytes here (atomic writes; safe
              to share between workers and processes of one machine).
            - ``cache_key``: ``"path"`` (URL without query string) or ``"url"``.
            - ``timeout``: seconds per HTTP request (default 60).
            - ``retry``: the :class:`~segments_torch.storage.RetryPolicy`.
            - ``label_cache``: keep each bitmap's decoded label in this folder (a few KB
              each, see :mod:`~segments_torch.label_cache`): later reads take it from
              there and never read or decode the PNG again. Targets are the same with or
              without it. Safe to share between workers and processes of one machine.

    Attributes:
        storage: the :class:`~segments_torch.storage.Storage` the assets are read with.
        label_cache: the :class:`~segments_torch.label_cache.LabelCache` of the storage's
            ``label_cache`` folder, or ``None``.
        rows: the release rows served, in table order: ``ds[i]`` is row ``ds.rows[i]``.

    Example:
        >>> ds = SegmentsDataset("flowers-v1.0.json", task="segmentation",
        ...                      filter_by=["labeled", "reviewed"])  # doctest: +SKIP
        >>> image, target = ds[0]  # doctest: +SKIP
        >>> target["masks"].shape, target["labels"]  # doctest: +SKIP
        (torch.Size([4, 480, 640]), tensor([2, 2, 2, 1]))
    """

    def __init__(
        self,
        release: Release | ReleaseSource,
        *,
        storage: Storage | None = None,
        labelset: str | None = None,
        task: str | None = None,
        filter_by: str | Sequence[str] | None = ("LABELED", "REVIEWED"),
        filter_by_metadata: Mapping[str, Any] | None = None,
        rows: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None,
        target: str = "instance",
        categories: Sequence[str] | Mapping[str, SupportsIndex] | None = None,
        ignore_index: int = 255,
        label_offset: int = 1,
        transforms: Callable[[Any, Any], Any] | None = None,
        shared_memory: bool = True,
        on_error: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        decode: str = "host",
        size: Size = None,
        max_size: int | None = None,
        background: str | None = None,
        sequence: bool = False,
        **storage_settings: Unpack[StorageSettings],
    ) -> None:
        storage = make_storage(storage, storage_settings, "SegmentsDataset")
        # Every argument but the release, for with_options() to vary.
        self._arguments: dict[str, Any] = {
            "storage": storage,
            "labelset": labelset,
            "task": task,
            "filter_by": filter_by,
            "filter_by_metadata": filter_by_metadata,
            "rows": rows,
            "target": target,
            "categories": categories,
            "ignore_index": ignore_index,
            "label_offset": label_offset,
            "transforms": transforms,
            "shared_memory": shared_memory,
            "on_error": on_error,
            "max_pixels": max_pixels,
            "decode": decode,
            "size": size,
            "max_size": max_size,
            "background": background,
            "sequence": sequence,
        }
        if target not in TARGET_KINDS:
            raise ValueError(f"target must be one of {', '.join(TARGET_KINDS)}, not {target!r}")
        if labelset is not None and task is not None and labelset != task:
            raise ValueError(f"labelset={labelset!r} and task={task!r} name different labelsets")
        # Relative asset URLs resolve against the release's folder as given: Release.source
        # is for showing, without user:password@ (or a query), which the assets may need.
        folder = None
        if isinstance(release, str | os.PathLike):
            folder = release_base_url(os.fspath(release))
        if not isinstance(release, Release):  # read as the assets are: same settings
            release = load_release(release, storage=storage)
        self.release = release
        table = self.release.samples
        self.labelset = table.resolve_labelset(labelset if labelset is not None else task)
        task_type = self.release.labelsets[self.labelset].task_type
        served = BITMAP_TASK_TYPES | VECTOR_TASK_TYPES
        if task_type not in served:
            raise UnsupportedTaskError(
                f"{self.release.source}: labelset {self.labelset!r} has task type "
                f"{task_type!r}; SegmentsDataset serves {', '.join(sorted(served))}"
            )
        #: Whether the labels are shapes (boxes, polygons, ...), not bitmaps.
        self.vector = task_type in VECTOR_TASK_TYPES
        if self.vector and (target == "panoptic" or decode != "host"):
            raise ValueError(
                f"labelset {self.labelset!r} holds shapes ({task_type}): it serves "
                "target='instance', 'semantic' or 'boxes', with decode='host'"
            )
        self.rows = table.select(
            labelset=self.labelset, statuses=filter_by, metadata=filter_by_metadata
        )
        passed = len(self.rows)
        if rows is not None:
            wanted = np.asarray(rows, dtype=np.int64).reshape(-1)
            outside = wanted[(wanted < 0) | (wanted >= len(table))]
            if len(outside):
                raise IndexError(
                    f"{self.release.source}: rows= holds {outside[:5].tolist()}, outside the "
                    f"release's {len(table)} samples"
                )
            self.rows = self.rows[np.isin(self.rows, wanted)]
        if not len(self.rows):  # an empty dataset says why, or a DataLoader yields nothing
            logger.warning(
                "%s",
                table.empty_selection(
                    labelset=self.labelset, statuses=filter_by, metadata=filter_by_metadata
                )
                if not passed
                else f"{self.release.source}: no sample selected: none of the "
                f"{passed} that pass the filters is among rows=",
            )
        #: Where each release row sits in its sequence (a sequence release's), else ``None``.
        self.sequences = table.sequences
        if sequence and task_type not in SEQUENCE_TASK_TYPES:
            raise ValueError(
                f"sequence=True serves the sequences of a sequence release "
                f"({', '.join(sorted(SEQUENCE_TASK_TYPES))}); labelset {self.labelset!r} has "
                f"task type {task_type!r}"
            )
        if sequence and decode != "host":
            raise ValueError("sequence=True serves decoded frames: decode='host'")
        self.sequence = sequence
        # With sequence=True, ds[i] serves the frames rows[groups[i]:groups[i + 1]].
        self._groups = _sequence_groups(table.sequences, self.rows) if sequence else None
        self.target = target
        self.categories = CategoryMap(
            self.release.labelsets[self.labelset].categories,
            categories,
            ignore_index=ignore_index,
            background=background,
        )
        if background is not None and label_offset < 1 and target == "panoptic":
            raise ValueError(
                "background= with target='panoptic' needs label_offset >= 1: the background "
                "segment takes label label_offset - 1"
            )
        self.ignore_index = ignore_index
        self.label_offset = label_offset
        self.transforms = transforms
        self.shared_memory = shared_memory
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.on_error = on_error
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be None or at least 1, not {max_pixels}")
        self.max_pixels = max_pixels
        if decode not in ("host", "device"):
            raise ValueError(f"decode must be 'host' or 'device', not {decode!r}")
        self.decode = decode
        if size is not None or max_size is not None:
            output_size(100, 100, size, max_size)  # checks the combination
        self.size = size
        self.max_size = max_size
        self.storage = storage.with_default_base_url(
            folder if folder is not None else release_base_url(self.release.source)
        )
        folder_of_labels = self.storage.label_cache
        self.label_cache = LabelCache(folder_of_labels) if folder_of_labels is not None else None
        # One flag per sample in shared memory: workers' failures count in the parent.
        failed = torch.zeros(len(self), dtype=torch.uint8)
        self._failed = failed.share_memory_()  # type: ignore[no-untyped-call]
        self._labels = table.labels[self.labelset]

    def __len__(self) -> int:
        """Items: frames (samples), or with ``sequence=True`` sequences."""
        return len(self.rows) if self._groups is None else len(self._groups) - 1

    @property
    def num_classes(self) -> int:
        """Classes a model needs: the training labels, plus ``label_offset`` for
        ``"instance"`` and ``"panoptic"`` targets (torchvision detection models count the
        background among their ``num_classes``)."""
        extra = 0 if self.target == "semantic" else self.label_offset
        if self.categories.background is not None:
            extra -= self.target != "semantic"  # the background is label 0 already
        return self.categories.num_labels + extra

    @property
    def collate_fn(self) -> Callable[[list[Any]], Any]:
        """The collate function of this dataset's items: with ``decode="host"``, lists of
        images and targets for ``"instance"`` and ``"panoptic"``, padded stacks for
        ``"semantic"``; with ``decode="device"``, a
        :class:`~segments_torch.device.DeviceBatch` for :meth:`device_decoder`; with
        ``sequence=True``, a tuple of each sequence's image list and a tuple of each
        sequence's target list, whatever the target kind (frames need not share a size)."""
        if self.decode == "device":
            return collate_device
        if self.sequence:
            return collate_detection
        return self.host_collate_fn

    @property
    def host_collate_fn(self) -> Callable[[list[Item]], Any]:
        """The collate function of decoded ``(image, target)`` items (what
        :attr:`collate_fn` is with ``decode="host"``; what the device decoder returns)."""
        if self.target == "semantic":
            return collate_semantic(ignore_index=self.ignore_index)
        return collate_detection

    def device_decoder(self) -> DeviceDecoder:
        """The decoder that finishes this dataset's ``decode="device"`` batches on their
        device: ``images, targets = ds.device_decoder()(batch.to("cuda"))`` gives what
        :attr:`collate_fn` gives with ``decode="host"`` (see :mod:`segments_torch.device`).
        """
        if self.decode != "device":
            raise ValueError("device_decoder() finishes the batches of decode='device' datasets")
        return DeviceDecoder(self)

    def with_options(self, **changes: Any) -> SegmentsDataset:
        """A variant of this dataset: the same release object (not read again) with some
        constructor arguments changed; the constructor's checks run on the result.

        ``changes`` are keyword arguments of the constructor. Storage keywords
        (``cache_dir=``, ``label_cache=``, ...) change a copy of :attr:`storage`;
        ``storage=`` replaces it. A variant that serves the same rows, per frame or
        whole sequences as this one, shares this dataset's failure counts
        (:attr:`failures`, :meth:`failed_samples`): a sample skipped by either counts for
        both.

        Raises:
            OptionError: a keyword the constructor does not take, or ``storage=`` with
                storage keywords.

        Example:
            >>> evaluation = ds.with_options(transforms=None, on_error="raise")
            >>> semantic = ds.with_options(target="semantic", cache_dir="/scratch/cache")
        """
        arguments = dict(self._arguments)
        settings = {name: changes[name] for name in changes if name in STORAGE_SETTINGS}
        others = {name: value for name, value in changes.items() if name not in settings}
        unknown = sorted(set(others) - set(arguments))
        if unknown:
            raise OptionError(
                f"with_options() takes the keywords of SegmentsDataset, not "
                f"{', '.join(map(repr, unknown))}"
            )
        arguments.update(others)
        arguments["storage"] = make_storage(
            others.get("storage"), settings, "with_options()", base=self.storage
        )
        variant = SegmentsDataset(self.release, **arguments)
        # Counts are per item: a variant of other items (whole sequences) keeps its own.
        if variant.sequence == self.sequence and np.array_equal(variant.rows, self.rows):
            variant._failed = self._failed
        return variant

    def bitmap_url(self, index: int) -> str | None:
        """The bitmap URL of ``ds[index]``'s sample as the release gives it (``None``:
        the sample has no bitmap; with ``sequence=True``, the sequence's first selected
        frame's); :meth:`storage.resolve <segments_torch.storage.Storage.resolve>` gives
        the location read.

        Example:
            >>> ds.bitmap_url(0)  # doctest: +SKIP
            'https://segmentsai-prod.s3.eu-west-2.amazonaws.com/assets/.../label.png'
        """
        return self._labels.bitmap_urls[self._row(index)] or None

    def max_instance_id(self) -> int:
        """The largest instance id (a bitmap's id, an annotation's ``id``; a segmentation
        sequence's track id) of any selected category's annotation among this dataset's
        samples, from the release alone (no bitmap is read); 0 where there is none. The
        ``instance_ids`` of any item, and a map of them, fit in an integer this large.

        Example:
            >>> ds.max_instance_id()  # doctest: +SKIP
            25
        """
        columns = self._labels
        counts = np.diff(columns.annotation_offsets)
        selected = np.zeros(len(counts), dtype=bool)
        selected[self.rows] = True
        keep = np.repeat(selected, counts)
        keep &= self.categories.labels_for(columns.category_ids) >= 0
        ids = columns.track_ids if columns.track_ids is not None else columns.annotation_ids
        return int(ids[keep].max()) if keep.any() else 0

    def sample_info(self, index: int) -> SampleRecord:
        """The sample behind ``ds[index]`` (uuid, name, URLs, status, metadata; of a
        sequence release, the frame's, with its ``sequence`` and ``frame_index``), without
        reading any asset. With ``sequence=True``, the sequence's first selected frame's.

        Example:
            >>> info = SegmentsDataset(SEQUENCE_RELEASE_PATH).sample_info(5)  # doctest: +SKIP
            >>> info.name, info.sequence, info.frame_index  # doctest: +SKIP
            ('drift/1', 1, 1)
        """
        return self.release.samples.record(self._row(index), self.labelset)

    def frames_of(self, index: int) -> range:
        """Where the frames of ``ds[index]`` are in the per-frame variant of this dataset
        (``ds.with_options(sequence=False)``): with ``sequence=True``, one position per
        selected frame of the sequence, in frame order; else ``index`` alone.

        Example:
            >>> sequences = SegmentsDataset(SEQUENCE_RELEASE_PATH, sequence=True)  # doctest: +SKIP
            >>> sequences.frames_of(1)  # doctest: +SKIP
            range(4, 8)
        """
        position = self._position(index)
        if self._groups is None:
            return range(position, position + 1)
        return range(int(self._groups[position]), int(self._groups[position + 1]))

    def _row(self, index: int) -> int:
        """The release row of ``ds[index]``: with ``sequence=True``, its first frame's."""
        position = self._position(index)
        if self._groups is not None:
            position = int(self._groups[position])
        return int(self.rows[position])

    def _position(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            what = "sequences" if self.sequence else "samples"
            raise IndexError(f"index {index} is out of range for {len(self)} {what}")
        return index % len(self)

    def __getitem__(self, index: int) -> Any:
        """``(image, target)``, or with ``decode="device"`` an
        :class:`~segments_torch.device.EncodedSample`."""
        position = self._position(index)
        if self.on_error == "raise":
            return self._item(position)
        # "skip": a sample whose assets fail is replaced by the next one that works, the
        # same one every time; each failure is logged once and counted.
        for offset in range(len(self)):
            candidate = (position + offset) % len(self)
            try:
                return self._item(candidate)
            except AssetError as error:
                self.count_failure(candidate, error)
                last = error
        raise AssetError(
            last.sample, last.url, f"{last.reason} (on_error='skip': all {len(self)} failed)"
        )

    def count_failure(self, index: int, error: AssetError) -> None:
        """Count ``ds[index]``'s sample as failed and skipped (``on_error="skip"``),
        logging ``error`` the first time."""
        if not self._failed[index]:
            self._failed[index] = 1
            logger.warning("skipping %s (on_error='skip')", error)

    @property
    def failures(self) -> int:
        """How many samples failed and were skipped so far, over every process that
        shares this dataset (DataLoader workers included)."""
        return int(self._failed.sum())

    def failed_samples(self) -> list[SampleRecord]:
        """The samples that failed and were skipped so far (see :attr:`failures`)."""
        return [self.sample_info(int(i)) for i in torch.nonzero(self._failed).flatten()]

    def _item(self, position: int) -> Any:
        if self.decode == "device":
            return self._encoded_item(position)
        if self._groups is not None:
            return self._sequence_item(position)
        item = self._frame_item(position)
        if self.transforms is not None:
            item = self.transforms(*item)
        return item

    def _sequence_item(self, position: int) -> tuple[list[Any], list[dict[str, Any]]]:
        """``ds[i]`` with ``sequence=True``: the lists of the sequence's frames' images
        and targets, ``transforms`` applied once to both."""
        frames = [self._frame_item(frame) for frame in self.frames_of(position)]
        images: list[Any] = [image for image, _ in frames]
        targets = [target for _, target in frames]
        if self.transforms is not None:
            images, targets = self.transforms(images, targets)
        return images, targets

    def _frame_item(self, position: int) -> Item:
        """The ``(image, target)`` of ``rows[position]``, before ``transforms``."""
        if self.vector:
            return self._shapes_item(position)
        row = int(self.rows[position])
        table = self.release.samples
        name = table.names[row]
        image_url, bitmap_url = table.image_urls[row], self._labels.bitmap_urls[row]
        # In a DataLoader worker, masks and maps are made in the shared memory they are
        # sent through; not where transforms replace them, nor semantic maps, which any
        # collate stacks into a batch of its own (the shared copy would be wasted).
        shared = (
            self.shared_memory
            and self.target != "semantic"
            and self.transforms is None
            and get_worker_info() is not None
        )

        identity, label = self._cached_label(name, bitmap_url)
        if label is not None:  # sampled at once: the full-size map is freed before the
            # image is decoded, not held through it (the item's peak memory)
            shape, label = label.shape, self._at_size(label)

        def decode_target(data: bytes) -> tuple[torch.Size, dict[str, Any]]:
            ids = decode_bitmap(data, max_pixels=self.max_pixels)
            if identity is not None:
                self._keep_label(identity, SegmentMap.from_ids(ids))
            shape, ids = ids.shape, self._at_size(ids)  # a full-size map freed before the masks
            return shape, self.target_for(row, ids, shared=shared)

        # Remote assets download at once: the bitmap is downloaded, decoded and made into
        # the target by a storage thread while this one downloads and decodes the image
        # (less time an item than building it here after both: see docs/benchmarks.md).
        assets = (
            self.storage.read_each([image_url, bitmap_url], [self._decoded_image, decode_target])
            if bitmap_url and label is None
            else self.storage.read_each([image_url], [self._decoded_image])
        )
        image, original = self._read(name, image_url, assets)
        if label is not None:  # decoded once before: the PNG is not read
            target = self.target_for(row, label, shared=shared)
        elif bitmap_url:
            shape, target = self._read(name, bitmap_url, assets)
        else:  # a selected sample without a bitmap: empty targets
            shape = torch.Size(original)
            empty = torch.zeros(image.shape[-2:], dtype=torch.int32)
            target = self.target_for(row, empty, shared=shared)
        self._check_size(name, bitmap_url, shape, original)
        return self._finished(image, target, original)

    def _finished(
        self, image: torch.Tensor, target: dict[str, Any], original: tuple[int, int]
    ) -> Item:
        """The untransformed item of ``image`` and ``target``, with ``orig_size`` when
        resizing."""
        if self.resizing:
            target["orig_size"] = torch.tensor(original)
        return tv_tensors.Image(image), target

    def _decoded_image(self, data: bytes) -> tuple[torch.Tensor, tuple[int, int]]:
        """An image decoded at the items' size, and its oriented full size."""
        image = decode_image(
            data, max_pixels=self.max_pixels, size=self.size, max_size=self.max_size
        )
        if not self.resizing:
            return image, (image.shape[-2], image.shape[-1])
        return image, oriented_size(data)

    def _shapes_item(self, position: int) -> Item:
        """The item of ``rows[position]`` of a vector labelset (before ``transforms``):
        the image, and the target of its shapes drawn at the image's size (see
        :func:`~segments_torch.shapes.shape_target`)."""
        row = int(self.rows[position])
        name, image_url = self.release.samples.names[row], self.release.samples.image_urls[row]

        assets = self.storage.read_each([image_url], [self._decoded_image])
        image, original = self._read(name, image_url, assets)
        height, width = image.shape[-2:]
        annotation_ids, labels, _ = self.annotation_tables(row)
        attributes, image_attributes, links = self._labels.attributes_of(row)
        options = self.target_options
        target = shape_target(
            self.target,
            *self._labels.shapes_of(row),
            annotation_ids,
            labels,
            height,
            width,
            attributes=attributes,
            ignore_index=options["ignore_index"],
            label_offset=options["label_offset"],
            background=options["background"],
            scale=(height / original[0], width / original[1]),
        )
        target["image_id"] = torch.tensor(row)
        self.sequence_fields(row, target)
        if self.target != "semantic":
            target["image_attributes"] = json.loads(image_attributes) if image_attributes else {}
            target["links"] = json.loads(links) if links else []
        return self._finished(image, target, original)

    def shape_outlines(
        self, row: int, scale: tuple[float, float] = (1.0, 1.0)
    ) -> list[npt.NDArray[np.float64]]:
        """The polygons of release row ``row``'s instances, in the order its target holds
        them: a box as its four corners (vector labelsets; ``scale`` as in
        :func:`~segments_torch.shapes.area_outlines`)."""
        _, labels, _ = self.annotation_tables(row)
        return list(area_outlines(*self._labels.shapes_of(row), labels, scale).values())

    def target_for(
        self, row: int, ids: torch.Tensor | SegmentMap, *, shared: bool = False
    ) -> dict[str, Any]:
        """The target of release row ``row`` from its ``(H, W)`` int32 id map (or its
        :class:`~segments_torch.targets.SegmentMap`), on the map's device (CPU or CUDA):
        what ``ds[i]`` returns for ``row = ds.rows[i]``. ``shared``: masks and per-pixel
        maps in shared memory (``targets.allocate``)."""
        target: dict[str, Any] = build_target(
            self.target, ids, *self.annotation_tables(row), shared=shared, **self.target_options
        )
        target["image_id"] = torch.tensor(row, device=ids.device)
        self.sequence_fields(row, target)
        return target

    def sequence_fields(self, row: int, target: dict[str, Any]) -> None:
        """Complete the target of release row ``row`` of a sequence release (nothing in
        other releases): ``sequence`` (the sequence's position among the release's
        samples) and ``frame_index`` (the frame's position in it), int64 scalars beside
        ``image_id``; and for a segmentation sequence, ``instance_ids`` made track ids
        (the bitmap's ids hold within one frame only), as a vector sequence's are.

        Example:
            >>> _, target = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH)[7]  # doctest: +SKIP
            >>> target["sequence"], target["frame_index"], target["instance_ids"]  # doctest: +SKIP
            (tensor(1), tensor(3), tensor([5]))
        """
        sequences = self.sequences
        if sequences is None:
            return
        device = target["image_id"].device if "image_id" in target else None
        target["sequence"] = torch.tensor(int(sequences.sequence[row]), device=device)
        target["frame_index"] = torch.tensor(int(sequences.frame_index[row]), device=device)
        tracks = self._labels.track_ids
        if tracks is None or "instance_ids" not in target:
            return
        start, stop = self._labels.annotation_offsets[row : row + 2]
        ids = self._labels.annotation_ids[start:stop].astype(np.int64)
        if not len(ids):  # no annotation: at most the background's id 0
            return
        found = target["instance_ids"]
        order = np.argsort(ids)
        place = np.searchsorted(ids[order], found.cpu().numpy()).clip(max=len(ids) - 1)
        matched = ids[order][place] == found.cpu().numpy()
        # The panoptic background segment (id 0) is no annotation: it keeps its 0.
        mapped = np.where(matched, tracks[start:stop][order][place], 0).astype(np.int64)
        target["instance_ids"] = torch.from_numpy(mapped).to(found.device)

    @property
    def target_options(self) -> dict[str, Any]:
        """The conventions ``build_target`` builds this dataset's targets with: the
        ignore index, the detection label offset and the background's label. With a
        background class the categories' labels start at 1, so the offset given to
        ``build_target`` is one less: detection labels stay what they are without it."""
        background = self.categories.background_label
        return {
            "ignore_index": self.ignore_index,
            "label_offset": self.label_offset - (background is not None),
            "background": background,
        }

    def annotation_tables(
        self, row: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Release row ``row``'s annotation ids, the training label of each (``-1``:
        category not selected) and whether its category has instances."""
        annotation_ids, category_ids = self._labels.annotations(row)
        return (
            np.asarray(annotation_ids, dtype=np.int64),
            self.categories.labels_for(category_ids),
            self.categories.things_for(category_ids),
        )

    def _encoded_item(self, position: int) -> EncodedSample:
        """``ds[i]`` with ``decode="device"``: the image as the worker ships it, the
        bitmap as its segment map (see :mod:`segments_torch.device`)."""
        row = int(self.rows[position])
        name = self.release.samples.names[row]
        image_url = self.release.samples.image_urls[row]
        bitmap_url = self._labels.bitmap_urls[row]

        def prepared(data: bytes) -> DeviceImage:
            return prepare_image(
                data, max_pixels=self.max_pixels, size=self.size, max_size=self.max_size
            )

        identity, label = self._cached_label(name, bitmap_url)

        def compact(data: bytes) -> SegmentMap:
            decoded = SegmentMap.from_ids(decode_bitmap(data, max_pixels=self.max_pixels))
            if identity is not None:
                self._keep_label(identity, decoded)
            return decoded

        reading = bitmap_url and label is None
        assets = (
            self.storage.read_each([image_url, bitmap_url], [prepared, compact])
            if reading
            else self.storage.read_each([image_url], [prepared])
        )
        image: DeviceImage = self._read(name, image_url, assets)
        size = (image.height, image.width)
        if reading:
            label = self._read(name, bitmap_url, assets)
        elif label is None:  # a selected sample without a bitmap: empty targets
            label = SegmentMap(
                torch.zeros(size, dtype=torch.uint8), torch.zeros(1, dtype=torch.int32)
            )
        self._check_size(name, bitmap_url, label.shape, size)
        return EncodedSample(
            image,
            self._at_size(label),
            *self.annotation_tables(row),
            image_id=row,
            index=position,
            name=name,
            url=display_url(self.storage.resolve(image_url)),
        )

    def _cached_label(
        self, name: str, bitmap_url: str
    ) -> tuple[tuple[str, str] | None, SegmentMap | None]:
        """The label cache's identity of a bitmap and the label stored for it; ``None``
        for each where there is no cache (or no bitmap), ``None`` label on a miss."""
        if not bitmap_url or self.label_cache is None:
            return None, None
        identity = self._identity(name, bitmap_url)
        label = self.label_cache.get(*identity)
        if label is not None:  # decoded before, maybe under another max_pixels
            try:
                check_pixels("bitmap", label.shape[1], label.shape[0], self.max_pixels)
            except DecodeError as exc:
                where = display_url(self.storage.resolve(bitmap_url))
                raise AssetError(name, where, str(exc)) from exc
        return identity, label

    @property
    def resizing(self) -> bool:
        """Whether items come at a size of their own (``size`` or ``max_size`` given)."""
        return self.size is not None or self.max_size is not None

    @overload
    def _at_size(self, labels: torch.Tensor) -> torch.Tensor: ...
    @overload
    def _at_size(self, labels: SegmentMap) -> SegmentMap: ...

    def _at_size(self, labels: torch.Tensor | SegmentMap) -> torch.Tensor | SegmentMap:
        """A full-size id map (or segment map) sampled at the items' size by nearest
        neighbour (:func:`~segments_torch.targets.sample_nearest`)."""
        if not self.resizing:
            return labels
        rows, columns = labels.shape
        height, width = output_size(rows, columns, self.size, self.max_size)
        return sample_nearest(labels, height, width)

    @staticmethod
    def _check_size(
        name: str, bitmap_url: str, shape: Sequence[int], size: tuple[int, int]
    ) -> None:
        """A bitmap must be the size of the oriented image it labels."""
        if tuple(shape) != size:
            raise AssetError(
                name,
                display_url(bitmap_url),
                f"the bitmap is {shape[1]}x{shape[0]} (width x height) but the "
                f"oriented image is {size[1]}x{size[0]}",
            )

    def _identity(self, name: str, url: str) -> tuple[str, str]:
        """The label cache's key of a bitmap and the record of its content (see
        :meth:`~segments_torch.storage.Storage.identity`)."""
        try:
            return self.storage.identity(url)
        except StorageError as exc:
            raise AssetError(name, exc.url, str(exc)) from exc

    def _keep_label(self, identity: tuple[str, str], label: SegmentMap) -> None:
        """Store a decoded label in the label cache; a cache that cannot be written is
        warned of once per process, and the item is served all the same."""
        assert self.label_cache is not None
        try:
            self.label_cache.put(*identity, label)
        except OSError as exc:
            warn_once(logger, "label-write", "cannot write to %s: %s", self.label_cache, exc)

    def _read(self, name: str, url: str, assets: Iterator[Any]) -> Any:
        """The next of ``assets``, what the decoder of ``url`` made of it. A host that is
        down is no failure of this sample: its error ends the run, skip or not."""
        try:
            return next(assets)
        except SourceUnavailableError:
            raise
        except StorageError as exc:
            raise AssetError(name, exc.url, str(exc)) from exc
        except DecodeError as exc:
            raise AssetError(name, display_url(self.storage.resolve(url)), str(exc)) from exc

    def __repr__(self) -> str:
        statuses = self._labels.status[self.rows]
        counts = np.bincount(statuses, minlength=len(LABEL_STATUSES))
        kept = ", ".join(f"{LABEL_STATUSES[c]}: {n}" for c, n in enumerate(counts) if n)
        sequences = ""
        if self.sequences is not None:  # samples are frames: say of how many sequences
            count = len(_sequence_groups(self.sequences, self.rows)) - 1
            sequences = f", sequences={count}" + (", sequence=True" if self.sequence else "")
        return (
            f"SegmentsDataset({self.release.source!r}, labelset={self.labelset!r}, "
            f"target={self.target!r}, samples={len(self.rows)} ({kept}){sequences}, "
            f"num_classes={self.num_classes})"
        )


def _sequence_groups(
    sequences: SequenceColumns | None, rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Where each sequence's frames start among ``rows`` (table order: a sequence's
    frames are consecutive), and ``len(rows)`` last."""
    assert sequences is not None
    sequence = sequences.sequence[rows]
    starts = np.flatnonzero(np.diff(sequence, prepend=-1)) if len(rows) else np.zeros(0, np.int64)
    return np.append(starts, len(rows)).astype(np.int64)
