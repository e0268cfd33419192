"""``export_dataset``: a :class:`~segments_torch.dataset.SegmentsDataset` to files.

The dataset's items are read and encoded (RLE, PNG) one sample at a time, in DataLoader
worker processes when ``num_workers > 0``; the main process writes each sample's files
and streams its JSON records to temporary files, so memory holds a few samples at most,
however large the release.

An export is all there or not there: it is written into a new hidden folder beside
``out_dir`` (``.<name>.partial-<random>``) and moved into place at the end, so an export
that fails or is interrupted leaves ``out_dir`` as it was (and removes its partial
folder; only a killed process leaves one behind). ``out_dir`` must be missing or empty
unless ``overwrite=True``, which replaces the old folder whole: it is renamed aside, the
new one renamed in, then the old one deleted, so no moment shows old and new files side
by side. An empty ``out_dir`` is kept and filled, the main JSON last.

Example:
    >>> from segments_torch import SegmentsDataset
    >>> ds = SegmentsDataset("flowers-v1.0.json", categories=["car", "person"])  # doctest: +SKIP
    >>> export_dataset(ds, "coco", out_dir="export", num_workers=4)  # doctest: +SKIP
    PosixPath('export/coco_instance.json')
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch.utils.data import DataLoader

from ..dataset import SegmentsDataset
from ..errors import AssetError, ExportError, OutputError, SegmentsTorchError
from ..progress import Progress
from ..samples import StringColumn
from ..urls import display_url
from .base import Encoded, SampleRef, Writer
from .coco import CocoInstanceWriter
from .formats import FORMATS, IMAGE_IDS, resolve_format
from .names import unique_file_names
from .panoptic import CocoPanopticWriter
from .png import InstanceWriter, SemanticWriter

__all__ = ["EXPORT_FORMATS", "export_dataset"]

logger = logging.getLogger(__name__)

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
    overwrite: bool = False,
    image_ids: str = "row",
) -> Path:
    """Write the dataset's samples and labels in an export format.

    The export follows the dataset: its labelset, its selected samples (filters), its
    category mapping and ignore index; its transforms and ``background`` class are not
    applied (unlabelled pixels stay unlabelled, as in the release). Samples that
    ``on_error="skip"`` skips are left out and listed in ``info.segments_skipped``.

    Args:
        dataset: the dataset to export.
        format: ``"coco-instance"`` (alias ``"coco"``), ``"coco-panoptic"``,
            ``"semantic"`` or ``"instance"``.
        out_dir: the folder to write into: missing (it is made) or empty, unless
            ``overwrite``. The export appears there whole at the end, or not at all.
        num_workers: DataLoader worker processes that read and encode samples
            (0: all in this process).
        progress: show a progress bar on stderr (tqdm's when installed).
        overwrite: replace a non-empty ``out_dir`` and everything in it by the export
            (only once the export is complete).
        image_ids: the ``id`` of each image record (and the ``image_id`` of its
            annotations): ``"row"`` (the default), the sample's release row, which is the
            dataset's ``target["image_id"]``; or ``"sdk"``, as the segments-ai SDK's COCO
            exports number images: ``i + 1`` for ``ds[i]``, the same ids as the SDK's
            export of a ``segments.SegmentsDataset`` with the same ``filter_by`` and
            ``filter_by_metadata`` (the SDK's default ``filter_by`` is every sample,
            ours LABELED and REVIEWED). Either way each image record holds
            ``segments_row``, and ``info.segments_image_ids`` says which was used.

    Returns:
        The main JSON file: ``coco_instance.json``, ``coco_panoptic.json``,
        ``semantic.json`` or ``instance.json`` in ``out_dir``.

    Raises:
        ExportError: an unknown format, labels the format cannot hold, or a non-empty
            ``out_dir`` without ``overwrite``.
        OutputError: ``out_dir`` cannot be written (a file, a read-only place, a full
            disk).
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
    if image_ids not in IMAGE_IDS:
        raise ExportError(f"image_ids must be one of {', '.join(IMAGE_IDS)}, not {image_ids!r}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, not {num_workers}")
    if dataset.categories.background is not None:
        # A training convention: the export leaves unlabelled pixels unlabelled, as the
        # release has them, and labels its categories as without it.
        dataset = dataset.with_options(background=None)
    if dataset.sequence:  # the rows are frames: one file each, whole sequences or not
        dataset = dataset.with_options(sequence=False)
    if dataset.vector and not EXPORT_FORMATS[name].shapes:
        served = ", ".join(f for f in FORMATS if EXPORT_FORMATS[f].shapes)
        raise ExportError(
            f"{name} needs bitmap labels: labelset {dataset.labelset!r} holds shapes "
            f"(its formats: {served})"
        )
    writer = EXPORT_FORMATS[name](dataset)
    out = Path(out_dir)
    replace = _holds_files(out, overwrite)

    # The folder first: a place that cannot be written is refused before any work.
    with _staged(out, replace=replace, last=writer.json_name) as folder:
        with _writing(out):
            if writer.folder is not None:
                (folder / writer.folder).mkdir()
            images, annotations = _RecordStream(folder), _RecordStream(folder)
        samples = _Samples(dataset, writer, sdk_ids=image_ids == "sdk")
        loader = DataLoader(samples, batch_size=None, num_workers=num_workers, collate_fn=_as_is)
        results = iter(loader)  # workers start before any thread of the progress bar does
        bar = Progress(len(samples), label=f"export {name}", unit="sample") if progress else None
        skipped: list[str] = []
        next_id = 1
        try:
            with images, annotations:
                for index, encoded in enumerate(results):
                    if bar is not None:
                        bar(1)
                    if isinstance(encoded, _Failure):
                        raise encoded.error  # as raised in the worker, without its traceback
                    if isinstance(encoded, _Skipped):
                        # Logged here, not in the worker: the line goes around the bar.
                        dataset.count_failure(index, encoded.error)
                        skipped.append(dataset.sample_info(index).name)
                        continue
                    with _writing(out):
                        for relative, data in encoded.files:
                            (folder / relative).write_bytes(data)
                        images.add(encoded.image)
                        for record in encoded.annotations:
                            if writer.numbered:
                                record = {"id": next_id, **record}
                                next_id += 1
                            annotations.add(record)
                exported = len(samples) - len(skipped)
                header: dict[str, Any] = {"info": _info(dataset, exported, skipped, image_ids)}
                header.update(writer.header())
                lists = {"images": images}
                if writer.annotations:
                    lists["annotations"] = annotations
                with _writing(out):
                    _write_json(folder / writer.json_name, header, lists)
        finally:
            if bar is not None:
                bar.close()
            # Workers end with their iterator; a traceback holding this frame would keep it.
            del results
    return out / writer.json_name


def _holds_files(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` is a folder with something in it, which only ``overwrite`` may
    replace; refuses what can never be exported into."""
    if not out.is_dir():
        if out.exists() or out.is_symlink():
            raise OutputError(f"cannot export into {out}: it exists and is not a folder")
        above = next(folder for folder in out.absolute().parents if folder.exists())
        if not above.is_dir():
            raise OutputError(f"cannot export into {out}: {above} is not a folder")
        return False
    try:
        holds = any(out.iterdir())
    except OSError as exc:
        raise OutputError(f"cannot export into {out}: {exc.strerror or exc}") from exc
    if holds and not overwrite:
        raise ExportError(
            f"cannot export into {out}: the folder is not empty; pass overwrite=True "
            "(export --overwrite) to replace it and everything in it"
        )
    here = Path.cwd()
    if holds and (out.resolve() == here or out.resolve() in here.parents):
        raise ExportError(
            f"cannot replace {out}: this process works in it; export into another folder"
        )
    return holds


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """Turn a failure to write (a full disk, a read-only place) into an OutputError."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, SegmentsTorchError):
            raise
        raise OutputError(f"cannot write the export into {out}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _staged(out: Path, *, replace: bool, last: str) -> Iterator[Path]:
    """A new folder to write the export into, put in place of ``out`` when the block ends
    (``replace``: ``out`` holds files, replaced whole), or removed when it raises (an
    exception, KeyboardInterrupt). An existing empty ``out`` is kept (it may be a mount
    point, or the working directory) and the files are moved into it, ``last`` last."""
    place = Path(os.path.realpath(out))  # a symbolic link keeps pointing at the export
    fill = place.is_dir() and not replace
    with _writing(out):
        if fill:
            staging = _new_folder(place, ".partial-")
        else:
            place.parent.mkdir(parents=True, exist_ok=True)
            staging = _new_folder(place.parent, f".{place.name}.partial-")
    try:
        yield staging
        with _writing(out):
            if fill:
                _move_into(staging, place, last)
            elif replace:
                _swap(staging, place)
            else:
                os.rename(staging, place)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _new_folder(parent: Path, prefix: str) -> Path:
    """A folder of a new name in ``parent``, made with the umask's permissions (the
    export's final folder: not tempfile.mkdtemp's private 0700)."""
    while True:
        folder = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def _move_into(staging: Path, out: Path, last: str) -> None:
    """Every entry of ``staging`` into the empty folder ``out``, ``last`` last, so that
    when it is there the export is complete."""
    for entry in sorted(staging.iterdir()):
        if entry.name != last:
            os.rename(entry, out / entry.name)
    os.rename(staging / last, out / last)
    staging.rmdir()


def _swap(staging: Path, out: Path) -> None:
    """Put ``staging`` in place of the folder ``out``: ``out`` renamed aside, ``staging``
    renamed in (put back if that fails), then the old one deleted."""
    aside = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
    os.rename(out, aside)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    if aside.exists():
        logger.warning("could not delete all of the replaced export, left in %s", aside)


def _as_is(item: Any) -> Any:
    """The DataLoader's collate: items go through untouched (no tensor conversion)."""
    return item


@dataclass(frozen=True)
class _Failure:
    """An error of ours raised while reading a sample, carried back from the worker (the
    DataLoader would re-raise it with the worker's traceback in its message)."""

    error: SegmentsTorchError


@dataclass(frozen=True)
class _Skipped:
    """A sample whose assets failed under ``on_error="skip"``: left out of the export."""

    error: AssetError


class _Samples(torch.utils.data.Dataset[Encoded | _Failure | _Skipped]):
    """The dataset's items encoded by the writer, in worker processes when there are
    some; a :class:`_Skipped` for a sample that ``on_error="skip"`` leaves out."""

    def __init__(self, dataset: SegmentsDataset, writer: Writer, *, sdk_ids: bool = False) -> None:
        # A variant that serves the target kind the writer reads, decoded, untransformed, in
        # private memory (targets are encoded in the worker, not sent). It raises where
        # the dataset would serve the next sample instead: the export leaves the sample
        # out, and the main process counts and logs it.
        self.dataset = dataset.with_options(
            target=writer.target,
            transforms=None,
            shared_memory=False,
            on_error="raise",
            decode="host",
        )
        self.skip = dataset.on_error == "skip"
        self.sdk_ids = sdk_ids
        self.writer = writer
        table = dataset.release.samples
        rows = dataset.rows.tolist()
        names = unique_file_names([table.names[row] for row in rows], rows)
        # Columns, not lists of strings: workers read them without copying pages.
        self.stems = StringColumn.from_strings([stem for stem, _ in names])
        self.extensions = StringColumn.from_strings([extension for _, extension in names])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Encoded | _Failure | _Skipped:
        row = int(self.dataset.rows[index])
        try:
            image, target = self.dataset[index]
        except AssetError as exc:
            return _Skipped(exc) if self.skip else _Failure(exc)
        except SegmentsTorchError as exc:  # a host that is down, too: skip or not
            return _Failure(exc)
        table = self.dataset.release.samples
        sample = SampleRef(
            row=row,
            image_id=index + 1 if self.sdk_ids else row,
            uuid=table.uuids[row],
            name=table.names[row],
            image_url=table.image_urls[row],
            stem=self.stems[index],
            extension=self.extensions[index],
        )
        height, width = image.shape[-2:]
        return self.writer.encode(sample, int(height), int(width), target)


def _info(
    dataset: SegmentsDataset, exported: int, skipped: list[str], image_ids: str
) -> dict[str, Any]:
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
        "segments_image_ids": image_ids,
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
    """``header``'s keys, then each stream as a JSON list (into the staged folder: a torn
    file is never seen)."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(json.dumps(header, ensure_ascii=False, separators=(",", ":"))[:-1])
        for key, stream in lists.items():
            out.write(f',"{key}":[')
            out.writelines(stream.chunks())
            out.write("]")
        out.write("}")
