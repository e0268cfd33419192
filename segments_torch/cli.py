"""The ``segments-torch`` command line.

Example:
    $ segments-torch info flowers-v1.0.json
    $ segments-torch info s3://bucket/flowers-v1.0.json.gz --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import SegmentsTorchError
from .release import Release, load_release
from .samples import LABEL_STATUSES, SelectionError
from .storage import Storage, prefetch, release_base_url

__all__ = ["main", "release_summary"]


def release_summary(release: Release, labelsets: Sequence[str] | None = None) -> dict[str, Any]:
    """What ``segments-torch info`` reports, as JSON-ready data.

    Example:
        >>> release_summary(load_release("flowers.json"))["samples"]  # doctest: +SKIP
        51
    """
    table = release.samples
    names = (
        [table.resolve_labelset(name) for name in labelsets]
        if labelsets
        else list(release.labelsets)
    )
    per_labelset = {}
    for name in names:
        labelset = release.labelsets[name]
        columns = table.labels[name]
        counts = columns.category_counts()
        per_labelset[name] = {
            "task_type": labelset.task_type,
            "statuses": columns.status_counts(),
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
    return {
        "source": release.source,
        "name": release.name,
        "created_at": release.created_at,
        "dataset": "/".join(p for p in (release.dataset_owner, release.dataset_name) if p),
        "layout": release.layout.value,
        "task_type": release.task_type,
        "samples": len(table),
        "labelsets": per_labelset,
    }


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
    for key in ("source", "name", "created_at", "dataset", "layout", "task_type", "samples"):
        print(f"{key.replace('_', ' '):<11} {summary[key]}")
    print(f"{'labelsets':<11} {', '.join(summary['labelsets'])}")
    for name, labelset in summary["labelsets"].items():
        print(f"\nlabelset {name!r} ({labelset['task_type']})")
        statuses = labelset["statuses"]
        order = [s for s in LABEL_STATUSES if s in statuses]
        _print_table([(s, statuses[s]) for s in order], ("label status", "samples"))
        print()
        rows = [(c["id"], c["name"], c["instances"], c["samples"]) for c in labelset["categories"]]
        _print_table(rows, ("id", "category", "instances", "samples"))


def _info(args: argparse.Namespace) -> int:
    release = load_release(args.release)
    summary = release_summary(release, args.labelset)
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
    preview.save(args.out)
    print(f"preview: {args.out} ({preview.width}x{preview.height})")
    return 0


def _url_map(pairs: Sequence[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    mapping = {}
    for pair in pairs:
        prefix, separator, replacement = pair.partition("=")
        if not separator or not prefix:
            raise SelectionError(f"--url-map takes PREFIX=REPLACEMENT, not {pair!r}")
        mapping[prefix] = replacement
    return mapping


class _Progress:
    """A progress bar: tqdm's when installed, else a line on stderr every 5 %."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.shown = total, 0, -1
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit="file", file=sys.stderr)

    def __call__(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        percent = 100 * self.done // max(1, self.total)
        if percent // 5 != self.shown // 5 or self.done == self.total:
            self.shown = percent
            print(f"prefetch: {self.done}/{self.total} ({percent} %)", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _prefetch(args: argparse.Namespace) -> int:
    release = load_release(args.release)
    table = release.samples
    statuses = None if args.all else (args.filter_by or ["LABELED", "REVIEWED"])
    labelset = table.resolve_labelset(args.labelset)
    rows = table.select(labelset=labelset, statuses=statuses)
    bitmaps = table.labels[labelset].bitmap_urls
    urls = [url for row in rows.tolist() for url in (table.image_urls[row], bitmaps[row]) if url]
    storage = Storage(
        args.asset_root or release_base_url(release.source),
        url_map=_url_map(args.url_map),
        cache_dir=args.cache_dir,
        cache_key=args.cache_key,
    )
    progress = _Progress(len(dict.fromkeys(urls)))
    try:
        report = prefetch(storage, urls, workers=args.workers, progress=progress)
    finally:
        progress.close()
    megabytes = report.bytes_downloaded / 1e6
    print(f"samples          {len(rows)}")
    print(f"assets           {progress.total}")
    print(f"downloaded       {report.downloaded} ({megabytes:.1f} MB)")
    print(f"already cached   {report.already_cached}")
    print(f"failed           {len(report.failed)}")
    if report.stale_removed:
        print(f"removed {report.stale_removed} temporary files of interrupted writes")
    for url, reason in report.failed.items():
        print(f"  {url}: {reason}")
    return 1 if report.failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segments-torch", description="Inspect and use Segments.ai release files."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser(
        "info",
        help="summarise a release: layout, labelsets, label statuses, categories",
        description="Summarise a release file (a path or any fsspec URL).",
    )
    info.add_argument("release", help="release file: path, URL, .json or .json.gz")
    info.add_argument("--labelset", action="append", help="report only this labelset (repeatable)")
    info.add_argument("--json", action="store_true", help="print JSON for machines")
    info.set_defaults(run=_info)

    demo = commands.add_parser(
        "demo",
        help="load the bundled demo release through a DataLoader and draw a preview",
        description="Load the demo release bundled with the package through a DataLoader, "
        "print what came out and write a preview picture of the samples and their masks.",
    )
    demo.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    demo.add_argument(
        "--out", type=Path, default=Path("segments-demo-preview.png"), help="preview PNG to write"
    )
    demo.set_defaults(run=_demo)

    fetch = commands.add_parser(
        "prefetch",
        help="download a release's assets into a cache folder, in parallel",
        description="Download the images and bitmaps of the selected samples into --cache-dir "
        "(atomically; files already there are kept, so a second run resumes), then print "
        "what was downloaded, what was cached already and what failed.",
    )
    fetch.add_argument("release", help="release file: path, URL, .json or .json.gz")
    fetch.add_argument("--cache-dir", required=True, type=Path, help="the cache folder")
    fetch.add_argument("--labelset", help="labelset whose statuses --filter-by reads")
    fetch.add_argument(
        "--filter-by",
        action="append",
        metavar="STATUS",
        help="label status to keep (repeatable; default LABELED and REVIEWED)",
    )
    fetch.add_argument("--all", action="store_true", help="every sample, whatever its status")
    fetch.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    fetch.add_argument(
        "--url-map",
        action="append",
        metavar="PREFIX=REPLACEMENT",
        help="read URLs starting with PREFIX from REPLACEMENT instead (repeatable)",
    )
    fetch.add_argument(
        "--cache-key",
        choices=("path", "url"),
        default="path",
        help="key files by URL without query string (default) or full URL",
    )
    fetch.add_argument("--asset-root", help="folder or URL relative asset URLs resolve against")
    fetch.set_defaults(run=_prefetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 bad input, 2 bad usage)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except SegmentsTorchError as exc:
        print(f"segments-torch: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
