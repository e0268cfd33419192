"""``fill_label_cache``: every bitmap of a dataset decoded once into its label cache, in
worker processes, before training reads them.

A :class:`~segments_torch.dataset.SegmentsDataset` made with ``label_cache=`` fills its
cache as items are read, so the first epoch still inflates every PNG. This fills it ahead,
in parallel: each sample's bitmap is read as ``ds[i]`` reads it (its ``url_map``, asset
cache, retries and ``max_pixels``), decoded, and its entry written under the key and
record ``ds[i]`` looks for (:meth:`~segments_torch.storage.Storage.identity`), so that
``ds[i]`` then never reads the PNG. Images are never read. An entry already there and
made from the same bitmap is kept (an interrupted fill resumes); one that fails its checks
or is stale is made again.

PNG decoding holds the GIL, so the bitmaps are decoded in ``DataLoader`` worker
processes, which send back a few numbers per sample, never the label.

Example:
    >>> ds = SegmentsDataset("flowers-v1.0.json", label_cache="/scratch/labels")  # doctest: +SKIP
    >>> report = fill_label_cache(ds, workers=8)  # doctest: +SKIP
    >>> report.made, report.reused, report.failed  # doctest: +SKIP
    (412, 0, {})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .codecs import check_pixels, decode_bitmap
from .dataset import SegmentsDataset
from .errors import DecodeError, SourceUnavailableError, StorageError
from .files import check_folder
from .label_cache import LabelCache
from .progress import Progress
from .targets import SegmentMap
from .urls import display_url

__all__ = ["LabelReport", "fill_label_cache"]


@dataclass
class LabelReport:
    """What :func:`fill_label_cache` did. Samples without a bitmap count nowhere.

    Attributes:
        made: entries made: bitmaps read, decoded and stored.
        reused: entries already there, whole and made from the same bitmap: kept.
        failed: sample name -> why it has no entry (the bitmap's URL, without query
            string, and the reason).
        entry_bytes: the size on disk of the entries made and reused, but those counted
            in ``unmeasured``.
        png_bytes: the size of the PNGs those entries stand for.
        unmeasured: reused entries of remote bitmaps that are not in the asset cache:
            their PNG's size is unknown without a request, so they count in neither size.
    """

    made: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    entry_bytes: int = 0
    png_bytes: int = 0
    unmeasured: int = 0


def fill_label_cache(
    dataset: SegmentsDataset, *, workers: int = 4, progress: bool = True
) -> LabelReport:
    """Store the decoded label of every sample of ``dataset`` that has a bitmap in its
    label cache (see the module docstring).

    A bitmap that cannot be read, decoded or stored never stops the fill: the sample is
    reported in :attr:`LabelReport.failed`, whatever the dataset's ``on_error``.

    Args:
        dataset: a dataset made with ``label_cache=``; its samples, storage settings
            and ``max_pixels`` are those used.
        workers: worker processes that read and decode bitmaps (0: all in this process).
        progress: show a progress bar on stderr (tqdm's when installed).

    Returns:
        The counts of entries made, reused and failed, and their bytes against the PNGs'.

    Raises:
        ValueError: the dataset has no label cache, or ``workers`` is negative.
        StorageError: the label cache folder is a file, or cannot be made or written
            (checked before any bitmap is read).
        SourceUnavailableError: a host is down (see
            :class:`~segments_torch.storage.RetryPolicy`): the fill stops there, keeping
            the entries made so far.

    Example:
        >>> report = fill_label_cache(ds, workers=8)  # doctest: +SKIP
        >>> report.entry_bytes, report.png_bytes  # doctest: +SKIP
        (2469880, 6175122)
    """
    cache = dataset.label_cache
    if cache is None:
        raise ValueError(
            "fill_label_cache needs a dataset with a label cache: label_cache=DIR, or "
            "storage=Storage(label_cache=DIR)"
        )
    if workers < 0:
        raise ValueError(f"workers must be >= 0, not {workers}")
    check_folder(cache.folder, "label cache folder")  # one clear error, not one per sample
    if dataset.sequence:  # every frame's bitmap, one entry a frame
        dataset = dataset.with_options(sequence=False)
    entries = _Entries(dataset, cache)
    loader = DataLoader(entries, batch_size=None, num_workers=min(workers, len(entries)))
    outcomes = iter(loader)  # workers start before any thread of the progress bar does
    bar = Progress(len(entries), label="labels", unit="sample") if progress else None
    report = LabelReport()
    table = dataset.release.samples
    try:
        for index, outcome in enumerate(outcomes):
            if bar is not None:
                bar(1)
            if outcome.error is not None:
                raise outcome.error  # as raised in the worker, without its traceback
            if outcome.kind == "failed":
                report.failed[table.names[int(dataset.rows[index])]] = outcome.failure
            elif outcome.kind in ("made", "reused"):
                report.made += outcome.kind == "made"
                report.reused += outcome.kind == "reused"
                if outcome.png_bytes is None:
                    report.unmeasured += 1
                else:
                    report.entry_bytes += outcome.entry_bytes
                    report.png_bytes += outcome.png_bytes
    finally:
        if bar is not None:
            bar.close()
        del outcomes  # workers end with their iterator
    return report


@dataclass(frozen=True)
class _Outcome:
    """One sample's part in a fill, as a worker sends it back."""

    kind: str  # "made", "reused", "failed", "stop" (a host is down) or "none" (no bitmap)
    entry_bytes: int = 0
    png_bytes: int | None = None  # None: unknown without a request
    failure: str = ""
    error: SourceUnavailableError | None = None


class _Entries(torch.utils.data.Dataset[_Outcome]):
    """Item ``i`` makes (or finds) the label cache entry of ``dataset[i]``'s bitmap."""

    def __init__(self, dataset: SegmentsDataset, cache: LabelCache) -> None:
        self.dataset = dataset
        self.cache = cache

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> _Outcome:
        url = self.dataset.bitmap_url(index)
        if url is None:
            return _Outcome("none")
        try:
            return self._entry(url)
        except SourceUnavailableError as exc:  # no failure of this sample: it ends the fill
            return _Outcome("stop", error=exc)
        except StorageError as exc:
            return _Outcome("failed", failure=f"{exc.url}: {exc}")

    def _entry(self, url: str) -> _Outcome:
        storage, max_pixels = self.dataset.storage, self.dataset.max_pixels
        key, source = storage.identity(url)  # what ds[i] looks the entry up by
        shown = display_url(storage.resolve(url))
        label = self.cache.get(key, source)
        if label is not None:
            try:
                check_pixels("bitmap", label.shape[1], label.shape[0], max_pixels)
            except DecodeError as exc:  # made under a larger max_pixels: ds[i] refuses it too
                return _Outcome("failed", failure=f"{shown}: {exc}")
            size = _size(self.cache.path(key))
            if size is not None:  # else removed since by another process: made below
                return _Outcome("reused", entry_bytes=size, png_bytes=storage.known_size(url))

        def decode(data: bytes) -> tuple[int, SegmentMap]:
            return len(data), SegmentMap.from_ids(decode_bitmap(data, max_pixels=max_pixels))

        try:  # as ds[i] reads it: through the asset cache, which keeps only what decodes
            png_bytes, label = next(storage.read_each([url], [decode]))
        except DecodeError as exc:
            return _Outcome("failed", failure=f"{shown}: {exc}")
        try:
            entry_bytes = self.cache.put(key, source, label)
        except OSError as exc:
            why = exc.strerror or exc
            return _Outcome(
                "failed", failure=f"{shown}: cannot write {self.cache.path(key)}: {why}"
            )
        return _Outcome("made", entry_bytes=entry_bytes, png_bytes=png_bytes)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
