"""The ``segments-torch`` command line.

Example:
    $ segments-torch info flowers-v1.0.json
    $ segments-torch info s3://bucket/flowers-v1.0.json.gz --json
    $ segments-torch export flowers-v1.0.json --format coco-panoptic --out export --workers 4
    $ segments-torch preview flowers-v1.0.json --n 8 --out preview.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OutputError, SegmentsTorchError
from .export.formats import FORMAT_ALIASES, FORMATS, IMAGE_IDS
from .files import check_folder
from .progress import Progress
from .release import Release, load_release
from .samples import LABEL_STATUSES, SelectionError, status_codes
from .storage import Storage, prefetch
from .urls import release_base_url

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

    from .dataset import SegmentsDataset

__all__ = [
    "add_selection_options",
    "add_storage_options",
    "main",
    "parse_url_map",
    "release_summary",
    "selected_statuses",
    "storage_from_args",
]


def release_summary(
    release: Release,
    labelsets: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What ``segments-torch info`` reports, as JSON-ready data.

    Each labelset's ``statuses`` counts all its samples by label status; its
    ``categories`` count the instances (and the samples having one) of the samples whose
    label status is one of ``statuses`` (``None``: every sample), which ``counted`` names
    (``{"statuses": [...] or None, "samples": n}``); a vector labelset's ``shapes``
    counts the same samples' annotations by shape type. Of a sequence release,
    ``samples`` is its sequences, ``frames`` their frames, and every count of a labelset
    is of frames (a frame has its sequence's label status).

    Example:
        >>> release_summary(load_release("flowers.json"))["samples"]  # doctest: +SKIP
        51
        >>> summary = release_summary(load_release("flowers.json"), statuses=["reviewed"])
        >>> summary["labelsets"]["ground-truth"]["counted"]  # doctest: +SKIP
        {'statuses': ['REVIEWED'], 'samples': 8}
    """
    table = release.samples
    names = (
        [table.resolve_labelset(name) for name in labelsets]
        if labelsets
        else list(release.labelsets)
    )
    # In the format's order, each once: the order and repeats of --filter-by mean nothing.
    codes = None if statuses is None else sorted(set(status_codes(statuses)))
    counted = None if codes is None else [LABEL_STATUSES[c] for c in codes]
    per_labelset = {}
    for name in names:
        labelset = release.labelsets[name]
        columns = table.labels[name]
        rows = None if statuses is None else table.select(labelset=name, statuses=statuses)
        counts = columns.category_counts(rows)
        per_labelset[name] = {
            "task_type": labelset.task_type,
            "statuses": columns.status_counts(),
            "counted": {
                "statuses": counted,
                "samples": len(table) if rows is None else len(rows),
            },
            "categories": [
                {
                    "id": category.id,
                    "name": category.name,
                    "has_instances": category.has_instances,
                    "instances": counts.get(category.id, (0, 0))[0],
                    "samples": counts.get(category.id, (0, 0))[1],
                }
                for category in labelset.categories
            ],
        }
        if columns.shapes is not None:
            per_labelset[name]["shapes"] = columns.shape_counts(rows)
    summary: dict[str, Any] = {
        "source": release.source,
        "name": release.name,
        "created_at": release.created_at,
        "dataset": "/".join(p for p in (release.dataset_owner, release.dataset_name) if p),
        "layout": release.layout.value,
        "task_type": release.task_type,
        "samples": len(table),
    }
    if table.sequences is not None:  # one row per frame
        summary.update(samples=len(table.sequences), frames=len(table))
    summary["labelsets"] = per_labelset
    return summary


def _print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        # Text left, numbers right: the usual reading of a table.
        parts = [
            c.rjust(w) if c.lstrip("-").isdigit() else c.ljust(w)
            for c, w in zip(row, widths, strict=True)
        ]
        print("  " + "  ".join(parts).rstrip())


def _print_summary(summary: dict[str, Any]) -> None:
    keys = ("source", "name", "created_at", "dataset", "layout", "task_type", "samples", "frames")
    for key in keys:
        if key in summary:
            print(f"{key.replace('_', ' '):<11} {summary[key]}")
    print(f"{'labelsets':<11} {', '.join(summary['labelsets'])}")
    unit = "frames" if "frames" in summary else "samples"  # what labelsets count
    for name, labelset in summary["labelsets"].items():
        print(f"\nlabelset {name!r} ({labelset['task_type']})")
        statuses = labelset["statuses"]
        order = [s for s in LABEL_STATUSES if s in statuses]
        _print_table([(s, statuses[s]) for s in order], ("label status", unit))
        counted = labelset["counted"]["statuses"]
        which = f"every {unit[:-1]}" if counted is None else f"{unit} whose label is {_or(counted)}"
        print(f"\ncounted: {which} (--filter-by, --all)")
        rows = [(c["id"], c["name"], c["instances"], c["samples"]) for c in labelset["categories"]]
        _print_table(rows, ("id", "category", "instances", unit))
        if "shapes" in labelset:
            print()
            _print_table(list(labelset["shapes"].items()), ("shape", "annotations"))


def _or(words: Sequence[str]) -> str:
    """``"A"``, ``"A or B"``, ``"A, B or C"``."""
    return " or ".join(filter(None, (", ".join(words[:-1]), words[-1])))


def _info(args: argparse.Namespace) -> int:
    release = load_release(args.release)
    labelsets = None if args.labelset is None else [args.labelset]
    summary = release_summary(release, labelsets, selected_statuses(args))
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    else:
        _print_summary(summary)
    return 0


def _demo(args: argparse.Namespace) -> int:
    # Deferred: torch and torchvision take a second to import; `info` needs neither.
    from torch.utils.data import DataLoader

    from .dataset import SegmentsDataset
    from .demo import RELEASE_PATH
    from .preview import render_preview

    _check_picture_path(args.out)  # now, not after the whole run
    dataset = SegmentsDataset(RELEASE_PATH, target="instance")
    print(dataset)
    print(f"\n{dataset.categories}\n")
    loader = DataLoader(
        dataset,
        batch_size=2,
        num_workers=args.workers,
        collate_fn=dataset.collate_fn,
    )
    start = time.perf_counter()
    instances: Counter[int] = Counter()
    items = 0
    for images, targets in loader:
        items += len(images)
        for target in targets:
            instances.update(target["labels"].tolist())
    seconds = time.perf_counter() - start
    names = dataset.categories.label_names
    rows = [
        (label, names[label], instances[label + dataset.label_offset])
        for label in range(dataset.categories.num_labels)
    ]
    _print_table(rows, ("label", "category", "instances"))
    print(
        f"\n{items} samples through a DataLoader with {args.workers} workers in "
        f"{seconds:.2f} s ({items / seconds:.1f} items/s, worker start-up included)"
    )
    preview = render_preview(dataset, range(len(dataset)), columns=3)
    _save_picture(preview, args.out)
    print(f"preview: {args.out} ({preview.width}x{preview.height})")
    return 0


def _check_picture_path(path: Path) -> None:
    """Refuse at once, before any sample is read, a picture that could not be written:
    its folder missing or read-only, a folder of that name, an extension Pillow does
    not write."""
    from PIL import Image

    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: there is no folder {folder}")
    extension = path.suffix.lower()
    picture_format = Image.registered_extensions().get(extension, "")
    if picture_format.upper() not in Image.SAVE:  # unknown, or read-only (.psd)
        raise OutputError(
            f"cannot write {path}: Pillow writes no picture format of the extension "
            f"{extension or '(none)'!r}; name a .png file"
        )
    try:  # a real write: permissions, read-only file systems, quotas, whoever runs this
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _save_picture(picture: Image.Image, path: Path) -> None:
    try:
        picture.save(path)
    except (OSError, ValueError) as exc:  # a disk that filled up meanwhile, say
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise OutputError(f"cannot write {path}: {reason}") from exc


def parse_url_map(pairs: Sequence[str] | None) -> dict[str, str] | None:
    """The ``url_map`` of repeated ``--url-map PREFIX=REPLACEMENT`` options.

    Example:
        >>> parse_url_map(["https://bucket.s3.amazonaws.com/=/data/mirror/"])
        {'https://bucket.s3.amazonaws.com/': '/data/mirror/'}
    """
    if not pairs:
        return None
    mapping = {}
    for pair in pairs:
        split = _split_url_map(pair)
        if split is None:
            raise SelectionError(f"--url-map takes PREFIX=REPLACEMENT, not {pair!r}")
        mapping[split[0]] = split[1]
    return mapping


def _split_url_map(pair: str) -> tuple[str, str] | None:
    """``(PREFIX, REPLACEMENT)`` of ``PREFIX=REPLACEMENT``, ``None`` for anything else."""
    prefix, separator, replacement = pair.partition("=")
    return (prefix, replacement) if separator and prefix else None


def _url_map_option(text: str) -> str:
    """An argparse type: a malformed ``--url-map`` is a usage error (status 2)."""
    if _split_url_map(text) is None:
        raise argparse.ArgumentTypeError(f"expected PREFIX=REPLACEMENT, not {text!r}")
    return text


def selected_statuses(args: argparse.Namespace) -> list[str] | None:
    """The label statuses that ``--filter-by`` / ``--all`` select (``None``: all)."""
    return None if args.all else (args.filter_by or ["LABELED", "REVIEWED"])


def _prefetch(args: argparse.Namespace) -> int:
    if args.labels != (args.label_cache is not None):
        args.usage.error("--labels and --label-cache DIR go together")
    if args.cache_dir is None and not args.labels:
        args.usage.error("the following arguments are required: --cache-dir (or --labels)")
    storage = storage_from_args(args)
    release = load_release(args.release, storage=storage)
    table = release.samples
    labelset, rows = _selection(args, release)
    # The labels are read as a dataset reads them (it imports torch: only with --labels).
    dataset = _dataset(args, "instance", release=release) if args.labels else None
    # Both folders before any progress bar: an error is the only line.
    storage.check_cache_dir()
    if args.label_cache is not None:
        check_folder(args.label_cache, "label cache folder")
    print(f"samples          {len(rows)}")
    failed = False
    if args.cache_dir is not None:  # first the assets: the labels are then read from there
        bitmaps = table.labels[labelset].bitmap_urls
        urls = [u for row in rows.tolist() for u in (table.image_urls[row], bitmaps[row]) if u]
        failed |= _prefetch_assets(storage, urls, args.workers)
    if dataset is not None:
        failed |= _fill_labels(dataset, args.label_workers)
    return 1 if failed else 0


def _selection(args: argparse.Namespace, release: Release) -> tuple[str, npt.NDArray[np.int64]]:
    """The labelset and the rows that ``--labelset``, ``--filter-by`` and ``--all`` select.

    Raises:
        SelectionError: they select no sample; says how many samples of each label
            status there are.
    """
    table = release.samples
    labelset = table.resolve_labelset(args.labelset)
    statuses = selected_statuses(args)
    rows = table.select(labelset=labelset, statuses=statuses)
    if not len(rows):
        raise SelectionError(table.empty_selection(labelset=labelset, statuses=statuses))
    return labelset, rows


def _selected_release(args: argparse.Namespace) -> Release:
    """The release, read as the assets are (``--url-map``), once it is known that the
    options select some of its samples (:func:`_selection`)."""
    release = load_release(args.release, storage=storage_from_args(args))
    _selection(args, release)
    return release


def _prefetch_assets(storage: Storage, urls: list[str], workers: int) -> bool:
    """Download ``urls`` into the cache and print what happened; whether any failed."""
    progress = Progress(len(dict.fromkeys(urls)), label="prefetch", unit="file")
    try:
        report = prefetch(storage, urls, workers=workers, progress=progress)
    finally:
        progress.close()
    megabytes = report.bytes_downloaded / 1e6
    print(f"assets           {progress.total}")
    print(f"downloaded       {report.downloaded} ({megabytes:.1f} MB)")
    print(f"already cached   {report.already_cached}")
    if report.local:
        print(f"local files      {report.local} (read where they are: they need no prefetch)")
    print(f"failed           {len(report.failed)}")
    if report.stale_removed:
        print(f"removed {report.stale_removed} temporary files of interrupted writes")
    for url, reason in report.failed.items():
        print(f"  {url}: {reason}")
    return bool(report.failed)


def _fill_labels(dataset: SegmentsDataset, workers: int) -> bool:
    """Fill the dataset's label cache and print what happened; whether any failed."""
    from .label_prefetch import fill_label_cache

    report = fill_label_cache(dataset, workers=workers)
    print(f"labels made      {report.made}")
    print(f"labels reused    {report.reused}")
    print(f"labels failed    {len(report.failed)}")
    entries, pngs = report.entry_bytes / 1e6, report.png_bytes / 1e6
    sizes = f"label cache {entries:.1f} MB for {pngs:.1f} MB of PNGs"
    if report.unmeasured:
        # Their size would cost a request each.
        sizes += f" ({report.unmeasured} reused entries left out: remote PNGs not in --cache-dir)"
    print(sizes)
    for name, reason in report.failed.items():
        print(f"  {name}: {reason}")
    return bool(report.failed)


def _dataset(
    args: argparse.Namespace,
    target: str,
    on_error: str = "raise",
    *,
    release: Release | None = None,
) -> SegmentsDataset:
    """The SegmentsDataset that the selection and storage options describe (over
    ``release`` when it is loaded already)."""
    # deferred: torch takes a second to import
    from .codecs import DEFAULT_MAX_PIXELS
    from .dataset import SegmentsDataset

    limit = args.max_pixels
    return SegmentsDataset(
        args.release if release is None else release,
        storage=storage_from_args(args),
        labelset=args.labelset,
        filter_by=selected_statuses(args),
        target=target,
        on_error=on_error,
        max_pixels=DEFAULT_MAX_PIXELS if limit is None else limit or None,  # 0: no limit
        size=getattr(args, "size", None),
        max_size=getattr(args, "max_size", None),
    )


def _export(args: argparse.Namespace) -> int:
    from .export import export_dataset

    dataset = _dataset(args, "instance", on_error=args.on_error, release=_selected_release(args))
    path = export_dataset(
        dataset,
        args.format,
        args.out,
        num_workers=args.workers,
        overwrite=args.overwrite,
        image_ids=args.image_ids,
    )
    skipped = dataset.failed_samples()
    print(f"exported {_samples(len(dataset) - len(skipped))}: {path}")
    if skipped:
        print(f"skipped {_samples(len(skipped))} whose assets failed (see the log above):")
        for sample in skipped:
            print(f"  {sample.name}")
    return 1 if skipped else 0


def _preview(args: argparse.Namespace) -> int:
    from .preview import render_preview

    _check_picture_path(args.out)
    dataset = _dataset(args, "instance", release=_selected_release(args))
    count = min(args.n, len(dataset))
    picture = render_preview(
        dataset, range(count), tile=args.tile, columns=args.columns, boxes=args.boxes
    )
    _save_picture(picture, args.out)
    print(f"preview: {args.out} ({picture.width}x{picture.height}, {_samples(count)})")
    return 0


def _samples(count: int) -> str:
    return f"{count} sample{'' if count == 1 else 's'}"


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, not {text}")
    return value


def _add_size_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--size`` and ``--max-size``, as torchvision.transforms.v2.Resize takes them."""
    parser.add_argument(
        "--size",
        type=_positive,
        help=f"shorter side of every sample in pixels: {what}",
    )
    parser.add_argument(
        "--max-size", type=_positive, help="longer side at most, in pixels (with or without --size)"
    )


def _add_max_pixels(parser: argparse.ArgumentParser, what: str = "images and bitmaps") -> None:
    parser.add_argument(
        "--max-pixels",
        type=_count,
        help=f"refuse {what} that declare more pixels, before decoding "
        "(default 268435456, i.e. 2^28; 0: no limit)",
    )


def _add_label_cache(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--label-cache", type=Path, metavar="DIR", help=help)


def add_selection_options(
    parser: argparse.ArgumentParser,
    *,
    default_release: str | None = None,
    labelset_help: str = "labelset to read (default ground-truth, or the only one)",
) -> None:
    """The release and which of its samples: shared by info (which counts the instances
    of the selected samples), prefetch, export, preview and the examples (which default
    to the demo release: ``default_release``)."""
    if default_release is None:
        parser.add_argument("release", help="release file: path, URL, .json or .json.gz")
    else:
        parser.add_argument(
            "release",
            nargs="?",
            default=default_release,
            help=f"release file: path, URL, .json or .json.gz (default: {default_release})",
        )
    parser.add_argument("--labelset", help=labelset_help)
    parser.add_argument(
        "--filter-by",
        action="append",
        metavar="STATUS",
        help="label status to keep (repeatable; default LABELED and REVIEWED)",
    )
    parser.add_argument("--all", action="store_true", help="every sample, whatever its status")


def add_storage_options(parser: argparse.ArgumentParser, *, cache_required: bool) -> None:
    """Where asset bytes come from: shared by prefetch, export, preview and the examples;
    :func:`storage_from_args` makes the one :class:`~segments_torch.storage.Storage` they
    describe.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> parser.add_argument("release")  # doctest: +ELLIPSIS
        _StoreAction(...)
        >>> add_storage_options(parser, cache_required=False)
        >>> args = parser.parse_args(["r.json", "--cache-dir", "/c", "--url-map", "s3://b/=/m/"])
        >>> storage_from_args(args).cache_dir, storage_from_args(args).url_map
        (PosixPath('/c'), {'s3://b/': '/m/'})
    """
    parser.add_argument(
        "--cache-dir",
        required=cache_required,
        type=Path,
        help="the cache folder" if cache_required else "keep downloaded assets here",
    )
    parser.add_argument(
        "--url-map",
        action="append",
        type=_url_map_option,
        metavar="PREFIX=REPLACEMENT",
        help="read URLs starting with PREFIX from REPLACEMENT instead (repeatable)",
    )
    parser.add_argument(
        "--cache-key",
        choices=("path", "url"),
        default="path",
        help="key files by URL without query string (default) or full URL",
    )
    parser.add_argument("--asset-root", help="folder or URL relative asset URLs resolve against")


def storage_from_args(args: argparse.Namespace) -> Storage:
    """The :class:`~segments_torch.storage.Storage` of :func:`add_storage_options`'
    options (and ``--label-cache``, where the command has it): relative asset URLs
    resolve against ``--asset-root``, else the folder of the release as given (a
    ``user:password@`` in it kept, which assets may need).

    Raises:
        SelectionError: a ``--url-map`` that is not ``PREFIX=REPLACEMENT``.
    """
    storage = Storage(
        args.asset_root,
        url_map=parse_url_map(args.url_map),
        cache_dir=args.cache_dir,
        cache_key=args.cache_key,
        label_cache=getattr(args, "label_cache", None),
    )
    return storage.with_default_base_url(release_base_url(args.release))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segments-torch", description="Inspect and use Segments.ai release files."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser(
        "info",
        help="summarise a release: layout, labelsets, label statuses, categories",
        description="Summarise a release file (a path or any fsspec URL): its samples per "
        "label status, and its categories' instances in the samples of the selected "
        "statuses (default LABELED and REVIEWED, as the other commands select).",
    )
    add_selection_options(info, labelset_help="report only this labelset (default: every one)")
    info.add_argument("--json", action="store_true", help="print JSON for machines")
    info.set_defaults(run=_info)

    demo = commands.add_parser(
        "demo",
        help="load the bundled demo release through a DataLoader and draw a preview",
        description="Load the demo release bundled with the package through a DataLoader, "
        "print what came out and write a preview picture of the samples and their masks.",
    )
    demo.add_argument("--workers", type=_count, default=2, help="DataLoader workers (default 2)")
    demo.add_argument(
        "--out", type=Path, default=Path("segments-demo-preview.png"), help="preview PNG to write"
    )
    demo.set_defaults(run=_demo)

    fetch = commands.add_parser(
        "prefetch",
        help="download a release's assets into a cache folder, decode its bitmaps once",
        description="Download the images and bitmaps of the selected samples into --cache-dir "
        "(atomically; files already there are kept, so a second run resumes), then print "
        "what was downloaded, what was cached already and what failed. With --labels "
        "--label-cache DIR, also (or only, without --cache-dir) decode every bitmap into "
        "the label cache, which datasets made with label_cache=DIR then read instead of "
        "the PNGs.",
    )
    add_selection_options(fetch)
    fetch.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    add_storage_options(fetch, cache_required=False)
    fetch.add_argument(
        "--labels",
        action="store_true",
        help="fill --label-cache with every selected bitmap's decoded label",
    )
    _add_label_cache(fetch, "the label cache folder --labels fills")
    fetch.add_argument(
        "--label-workers",
        type=_count,
        default=4,
        help="worker processes that decode bitmaps for --labels (default 4; 0: none)",
    )
    _add_max_pixels(fetch, "bitmaps (with --labels)")
    fetch.set_defaults(run=_prefetch, usage=fetch)

    export = commands.add_parser(
        "export",
        help="export the selected samples' labels: COCO instance or panoptic, PNG label maps",
        description="Export the labels of the selected samples to --out: coco-instance (COCO "
        "JSON, RLE masks; needs pycocotools), coco-panoptic (JSON and RGB PNGs), semantic "
        "(8- or 16-bit PNGs of training labels and a label table) or instance (16-bit or "
        "RGBA PNGs of instance ids). Prints the main JSON file written.",
    )
    add_selection_options(export)
    export.add_argument(
        "--format",
        choices=[*FORMATS, *FORMAT_ALIASES],
        default="coco-instance",
        help="export format (default coco-instance; coco is its alias)",
    )
    export.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the folder to write into: missing or empty, unless --overwrite",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --out folder, and everything in it, once the export is "
        "complete (an export that fails or is interrupted leaves it as it was)",
    )
    export.add_argument(
        "--workers",
        type=_count,
        default=2,
        help="worker processes that read and encode samples (default 2; 0: none)",
    )
    export.add_argument(
        "--image-ids",
        choices=IMAGE_IDS,
        default="row",
        help="image ids: the sample's release row, as the dataset's target['image_id'] "
        "(default), or 1..N in selection order, as the segments-ai SDK's COCO export "
        "numbers the same selection",
    )
    export.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="a sample whose image or bitmap fails: stop (default), or leave it out, "
        "list it and exit with 1 at the end",
    )
    add_storage_options(export, cache_required=False)
    _add_label_cache(export, "read decoded labels from DIR, and keep those it decodes there")
    _add_max_pixels(export)
    _add_size_options(export, "export at this size (default: full resolution)")
    export.set_defaults(run=_export)

    preview = commands.add_parser(
        "preview",
        help="draw the first selected samples with their masks into a PNG",
        description="Draw the first --n selected samples in a grid, at the tiles' size, their "
        "masks filled in category colors (a color-blind-safe palette for categories the "
        "release gives none) and outlined, above a legend of the categories.",
    )
    add_selection_options(preview)
    preview.add_argument("--n", type=_positive, default=16, help="samples to draw (default 16)")
    preview.add_argument(
        "--out", type=Path, default=Path("preview.png"), help="PNG to write (default preview.png)"
    )
    preview.add_argument("--columns", type=_positive, default=4, help="tiles per row (default 4)")
    preview.add_argument(
        "--tile",
        type=_positive,
        default=256,
        help="the longer side of each tile in pixels (default 256); tiles take the "
        "samples' common aspect ratio",
    )
    preview.add_argument(
        "--boxes", action="store_true", help="draw each instance's box and category name"
    )
    add_storage_options(preview, cache_required=False)
    _add_label_cache(preview, "read decoded labels from DIR, and keep those it decodes there")
    _add_max_pixels(preview)
    _add_size_options(preview, "read the samples at this size (default: the tile's)")
    preview.set_defaults(run=_preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 bad input, 2 bad usage)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except SegmentsTorchError as exc:
        print(f"segments-torch: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of the output went away (`segments-torch info r.json | head`): end
        # quietly, as other tools do; stdout goes to devnull so that the interpreter's
        # last flush of it at exit does not fail again (Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
