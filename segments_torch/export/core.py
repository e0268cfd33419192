"""``export_dataset``: a :class:`~segments_torch.dataset.SegmentsDataset` to files.

The dataset's items are read and encoded (RLE, PNG) one sample at a time, in DataLoader
worker processes when ``num_workers > 0``; the main process writes each sample's files
and streams its JSON records to temporary files, so memory holds a few samples at most,
however large the release. The main JSON is written last, under a temporary name renamed
into place: when it exists, the export is complete.

Example:
    >>> from segments_torch import SegmentsDataset
    >>> ds = SegmentsDataset("flowers-v1.0.json", categories=["car", "person"])  # doctest: +SKIP
    >>> export_dataset(ds, "coco", out_dir="export", num_workers=4)  # doctest: +SKIP
    PosixPath('export/coco_instance.json')
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch.utils.data import DataLoader

from ..dataset import SegmentsDataset
from ..errors import SegmentsTorchError
from ..progress import Progress
from ..samples import StringColumn
from ..storage import display_url
from .base import Encoded, SampleRef, Writer
from .coco import CocoInstanceWriter
from .formats import resolve_format
from .names import unique_file_names
from .panoptic import CocoPanopticWriter
from .png import InstanceWriter, SemanticWriter

__all__ = ["EXPORT_FORMATS", "export_dataset"]

#: Export format name (one per name of ``formats.FORMATS``) -> its writer.
EXPORT_FORMATS: dict[str, type[Writer]] = {
    "coco-instance": CocoInstanceWriter,
    "coco-panoptic": CocoPanopticWriter,
    "semantic": SemanticWriter,
    "instance": InstanceWriter,
}


def export_dataset(
    dataset: SegmentsDataset,
    format: str = "coco-instance",  # shadows the builtin: the seed document names it so
    out_dir: str | os.PathLike[str] = ".",
    *,
    num_workers: int = 0,
    progress: bool = True,
) -> Path:
    """Write the dataset's samples and labels in an export format.

    The export follows the dataset: its labelset, its selected samples (filters), its
    category mapping and ignore index; its transforms are not applied. Samples that
    ``on_error="skip"`` skips are left out and listed in ``info.segments_skipped``.

    Args:
        dataset: the dataset to export.
        format: ``"coco-instance"`` (alias ``"coco"``), ``"coco-panoptic"``,
            ``"semantic"`` or ``"instance"``.
        out_dir: the folder to write into (made if missing; files of the same names are
            replaced).
        num_workers: DataLoader worker processes that read and encode samples
            (0: all in this process).
        progress: show a progress bar on stderr (tqdm's when installed).

    Returns:
        The main JSON file: ``coco_instance.json``, ``coco_panoptic.json``,
        ``semantic.json`` or ``instance.json`` in ``out_dir``.

    Raises:
        ExportError: an unknown format, or labels the format cannot hold.
        MissingExtraError: ``coco-instance`` without pycocotools.
        AssetError: a sample's image or bitmap cannot be read (``on_error="raise"``).

    Example:
        >>> path = export_dataset(ds, "coco-instance", out_dir="export")  # doctest: +SKIP
        >>> from pycocotools.coco import COCO  # doctest: +SKIP
        >>> gt = COCO(str(path))  # doctest: +SKIP
    """
    name = resolve_format(format)
    if not isinstance(dataset, SegmentsDataset):
        raise TypeError(f"export_dataset takes a SegmentsDataset, not {type(dataset).__name__}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, not {num_workers}")
    writer = EXPORT_FORMATS[name](dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if writer.folder is not None:
        (out / writer.folder).mkdir(exist_ok=True)

    samples = _Samples(dataset, writer)
    loader = DataLoader(samples, batch_size=None, num_workers=num_workers, collate_fn=_as_is)
    results = iter(loader)  # workers start before any thread of the progress bar does
    bar = Progress(len(samples), label=f"export {name}", unit="sample") if progress else None
    skipped: list[str] = []
    next_id = 1
    try:
        with _RecordStream(out) as images, _RecordStream(out) as annotations:
            for index, encoded in enumerate(results):
                if bar is not None:
                    bar(1)
                if isinstance(encoded, _Failure):
                    raise encoded.error  # as raised in the worker, without its traceback
                if encoded is None:
                    skipped.append(dataset.sample_info(index).name)
                    continue
                for relative, data in encoded.files:
                    (out / relative).write_bytes(data)
                images.add(encoded.image)
                for record in encoded.annotations:
                    if writer.numbered:
                        record = {"id": next_id, **record}
                        next_id += 1
                    annotations.add(record)
            header: dict[str, Any] = {"info": _info(dataset, len(samples) - len(skipped), skipped)}
            header.update(writer.header())
            lists = {"images": images}
            if writer.annotations:
                lists["annotations"] = annotations
            path = out / writer.json_name
            _write_json(path, header, lists)
    finally:
        if bar is not None:
            bar.close()
        # Workers end with their iterator; a traceback holding this frame would keep it.
        del results
    return path


def _as_is(item: Any) -> Any:
    """The DataLoader's collate: items go through untouched (no tensor conversion)."""
    return item


@dataclass(frozen=True)
class _Failure:
    """An error of ours raised while reading a sample, carried back from the worker (the
    DataLoader would re-raise it with the worker's traceback in its message)."""

    error: SegmentsTorchError


class _Samples(torch.utils.data.Dataset[Encoded | _Failure | None]):
    """The dataset's items encoded by the writer, in worker processes when there are
    some; ``None`` for a sample ``on_error="skip"`` replaced by another."""

    def __init__(self, dataset: SegmentsDataset, writer: Writer) -> None:
        # A shallow copy that serves the target kind the writer reads, untransformed, in
        # private memory (targets are encoded in the worker, not sent); it shares the
        # dataset's failure counts (ds.failures sees the export's skips).
        self.dataset = copy.copy(dataset)
        self.dataset.target = writer.target
        self.dataset.transforms = None
        self.dataset.shared_memory = False
        self.writer = writer
        table = dataset.release.samples
        rows = dataset.rows.tolist()
        names = unique_file_names([table.names[row] for row in rows], rows)
        # Columns, not lists of strings: workers read them without copying pages.
        self.stems = StringColumn.from_strings([stem for stem, _ in names])
        self.extensions = StringColumn.from_strings([extension for _, extension in names])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Encoded | _Failure | None:
        row = int(self.dataset.rows[index])
        try:
            image, target = self.dataset[index]
        except SegmentsTorchError as exc:
            return _Failure(exc)
        if int(target["image_id"]) != row:  # on_error="skip" served the next sample
            return None
        table = self.dataset.release.samples
        sample = SampleRef(
            row=row,
            uuid=table.uuids[row],
            name=table.names[row],
            image_url=table.image_urls[row],
            stem=self.stems[index],
            extension=self.extensions[index],
        )
        height, width = image.shape[-2:]
        return self.writer.encode(sample, int(height), int(width), target)


def _info(dataset: SegmentsDataset, exported: int, skipped: list[str]) -> dict[str, Any]:
    release = dataset.release
    owner = "/".join(part for part in (release.dataset_owner, release.dataset_name) if part)
    return {
        "description": f"{owner} {release.name}".strip(),
        "version": release.name,
        "date_created": release.created_at,
        "segments_release": display_url(release.source),
        "segments_labelset": dataset.labelset,
        "segments_samples": exported,
        "segments_skipped": skipped,
    }


class _RecordStream:
    """JSON records appended to an anonymous temporary file (comma-separated), so that a
    million samples' records never sit in memory."""

    def __init__(self, folder: Path) -> None:
        # Closed by __exit__: the stream is a context manager itself.
        self.file: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder)  # noqa: SIM115
        self.count = 0

    def add(self, record: dict[str, Any]) -> None:
        # One write per record: json.dump would write each token on its own.
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        self.file.write("," + text if self.count else text)
        self.count += 1

    def chunks(self) -> Iterator[str]:
        self.file.seek(0)
        while chunk := self.file.read(1 << 20):
            yield chunk

    def __enter__(self) -> _RecordStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _write_json(path: Path, header: dict[str, Any], lists: dict[str, _RecordStream]) -> None:
    """``header``'s keys, then each stream as a JSON list, written to a temporary file
    in the same folder and renamed to ``path`` (never a torn file under that name)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as out:
            out.write(json.dumps(header, ensure_ascii=False, separators=(",", ":"))[:-1])
            for key, stream in lists.items():
                out.write(f',"{key}":[')
                out.writelines(stream.chunks())
                out.write("]")
            out.write("}")
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
