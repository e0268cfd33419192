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
from .samples import LABEL_STATUSES

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
