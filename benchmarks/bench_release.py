"""Benchmark: loading a Segments.ai release, and DataLoader worker memory.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_release.py            # 200000 samples (make bench)
    .venv/bin/python benchmarks/bench_release.py --samples 2000   # quick sanity check

What is measured, in one run:

1. A synthetic release in the current layout (``dataset.task_type``, ``labelsets``,
   labelset ``"ground-truth"``) is generated once into ``--data-dir`` (default
   ``benchmarks/data/``, git-ignored) and reused by later runs with the same parameters:
   ``--samples`` samples with 15 to 35 annotations each (about 25), 10 categories.
2. Load time: ``json.load`` of the file against ``segments_torch.load_release`` (which
   parses the JSON and then validates it and builds the columnar :class:`SampleTable`),
   best of ``--repeat`` runs each, and their ratio.
3. Size of the index: ``SampleTable.nbytes`` and the pickled table (what a ``spawn`` or
   ``forkserver`` worker receives), per sample.
4. Worker memory. A Dataset that keeps its index as Python objects (``list[dict]``) is
   shared with forked DataLoader workers copy-on-write, but merely *reading* an object
   writes its reference count (and a garbage collection pass writes its GC header), so
   every page holding the index is copied into every worker that reads it: memory grows
   by the size of the index per worker (pytorch/pytorch#13246). :class:`SampleTable`
   keeps the index in a few numpy buffers whose pages reading never writes. Two
   map-style datasets over the same release, one holding the table and one a
   ``list[dict]`` (what a naive dataset keeps), read the same fields of every row; the
   parent builds each index before the DataLoader forks its workers (start method
   ``fork``), every worker reads every row once, and each worker reports its private
   memory (USS) before and after. The target: the table's workers grow by less than
   30 MB each while the ``list[dict]`` workers grow by hundreds of MB.

At the default size the file is about 300 MB, the run takes about four minutes on two
cores (one more the first time, to generate the file) and needs about 11 GB of free
memory while the ``list[dict]`` workers run (the index is copied into each of them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

import segments_torch
from segments_torch import LABEL_STATUSES, SampleTable

#: Bumped whenever the generated file's content changes, so an old file is not reused.
GENERATOR_VERSION = 1
SEED = 13246
LABELSET = "ground-truth"
NUM_CATEGORIES = 10
MIN_ANNOTATIONS, MAX_ANNOTATIONS = 15, 35
TABLE_TARGET_MB = 30.0
MB = 1024 * 1024
COMMAND = ".venv/bin/python benchmarks/bench_release.py"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

T = TypeVar("T")


# -- the synthetic release -------------------------------------------------------------------


def release_path(data_dir: Path, samples: int) -> Path:
    return data_dir / f"release-v{GENERATOR_VERSION}-seed{SEED}-{samples}.json"


def make_release(samples: int, seed: int = SEED) -> dict[str, Any]:
    """A release document in the current layout, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    categories: list[dict[str, Any]] = []
    for c in range(NUM_CATEGORIES):
        category: dict[str, Any] = {"id": c, "name": f"c{c}", "has_instances": c != 9}
        if c % 3 != 2:  # some categories set a color, the others leave it out
            category["color"] = [int(v) for v in rng.integers(0, 256, size=3)]
        categories.append(category)

    counts = rng.integers(MIN_ANNOTATIONS, MAX_ANNOTATIONS + 1, size=samples)
    category_ids = rng.integers(0, NUM_CATEGORIES, size=int(counts.sum())).tolist()
    uuid_bytes = rng.bytes(32 * samples)
    status_draw = rng.random(samples)
    split_draw = rng.random(samples)

    items: list[dict[str, Any]] = []
    position = 0
    for i in range(samples):
        sample_uuid = str(uuid.UUID(bytes=uuid_bytes[32 * i : 32 * i + 16], version=4))
        bitmap_uuid = str(uuid.UUID(bytes=uuid_bytes[32 * i + 16 : 32 * i + 32], version=4))
        label: dict[str, Any] | None
        if status_draw[i] < 0.03:
            label = None  # not labelled yet
        else:
            count = int(counts[i])
            annotations = [
                {"id": j + 1, "category_id": category_ids[position + j], "attributes": {}}
                for j in range(count)
            ]
            position += count
            label = {
                "label_status": "REVIEWED" if status_draw[i] < 0.18 else "LABELED",
                "attributes": {
                    "format_version": "0.1",
                    "annotations": annotations,
                    "segmentation_bitmap": {
                        "url": f"https://bucket.s3.amazonaws.com/assets/{bitmap_uuid}.png"
                    },
                },
            }
        items.append(
            {
                "uuid": sample_uuid,
                "name": f"img_{i + 1:06d}.jpg",
                "attributes": {
                    "image": {"url": f"https://bucket.s3.amazonaws.com/assets/{sample_uuid}.jpg"}
                },
                "metadata": {"split": "val" if split_draw[i] < 0.1 else "train"},
                "labels": {LABELSET: label},
            }
        )
    return {
        "name": "bench",
        "description": "",
        "created_at": "2026-01-01 00:00:00+00:00",
        "dataset": {
            "name": "bench",
            "owner": "bench",
            "task_type": "segmentation-bitmap",
            "task_attributes": {"format_version": "0.1", "categories": categories},
            "labelsets": [{"name": LABELSET, "description": ""}],
            "samples": items,
        },
    }


def ensure_release(data_dir: Path, samples: int) -> tuple[Path, bool]:
    """The release file for ``samples``, generated unless it exists; ``(path, reused)``."""
    path = release_path(data_dir, samples)
    if path.is_file():
        return path, True
    data_dir.mkdir(parents=True, exist_ok=True)
    document = make_release(samples)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    with partial.open("w", encoding="utf-8") as f:
        json.dump(document, f)
    os.replace(partial, path)  # an interrupted run leaves no file that looks complete
    return path, False


# -- load time -------------------------------------------------------------------------------


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The shortest wall time of ``repeat`` calls, and the last call's result."""
    times: list[float] = []
    result: T | None = None
    for _ in range(repeat):
        result = None  # free the previous result before the next call allocates its own
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    assert result is not None
    return min(times), result


def json_load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


# -- the two datasets ------------------------------------------------------------------------


class TableDataset(Dataset[int]):
    """Map-style dataset over a :class:`SampleTable`: reads every field of a row."""

    def __init__(self, table: SampleTable, labelset: str = LABELSET) -> None:
        self.table = table
        self.labels = table.label_columns(labelset)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, row: int) -> int:
        table, labels = self.table, self.labels
        name = table.names[row]
        sample_uuid = table.uuids[row]
        image_url = table.image_urls[row]
        metadata = table.metadata(row)
        status = LABEL_STATUSES[labels.status[row]]
        bitmap_url = labels.bitmap_urls[row]
        annotation_ids, category_ids = labels.annotations(row)
        return int(
            len(name)
            + len(sample_uuid)
            + len(image_url)
            + len(metadata.get("split", ""))
            + len(status)
            + len(bitmap_url)
            + sum(annotation_ids.tolist())
            + sum(category_ids.tolist())
        )


class ListDataset(Dataset[int]):
    """The naive baseline: the index as one ``dict`` of Python objects per sample."""

    def __init__(self, index: list[dict[str, Any]]) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int) -> int:
        sample = self.index[row]
        return int(
            len(sample["name"])
            + len(sample["uuid"])
            + len(sample["image_url"])
            + len(sample["metadata"].get("split", ""))
            + len(sample["status"])
            + len(sample["bitmap_url"])
            + sum(a["id"] for a in sample["annotations"])
            + sum(a["category_id"] for a in sample["annotations"])
        )


def list_index(document: Any, labelset: str = LABELSET) -> list[dict[str, Any]]:
    """What a naive dataset keeps from ``json.load``: one dict per sample."""
    index: list[dict[str, Any]] = []
    for sample in document["dataset"]["samples"]:
        label = sample["labels"].get(labelset)
        attributes = (label or {}).get("attributes") or {}
        bitmap = attributes.get("segmentation_bitmap") or {}
        index.append(
            {
                "name": sample["name"],
                "uuid": sample["uuid"],
                "image_url": sample["attributes"]["image"]["url"],
                "metadata": sample.get("metadata") or {},
                "status": label["label_status"] if label else "UNLABELED",
                "bitmap_url": bitmap.get("url") or "",
                "annotations": [
                    {"id": a["id"], "category_id": a["category_id"]}
                    for a in attributes.get("annotations") or []
                ],
            }
        )
    return index


# -- worker memory ---------------------------------------------------------------------------


class WorkerReport(NamedTuple):
    worker: int
    rows: int
    checksum: int
    uss_before: int
    uss_after: int
    seconds: float


class EveryWorkerReadsAll(IterableDataset[WorkerReport]):
    """Each DataLoader worker reads every row of ``dataset`` once and yields one report."""

    def __init__(self, dataset: Dataset[int], rows: int) -> None:
        self.dataset = dataset
        self.rows = rows

    def __iter__(self) -> Iterator[WorkerReport]:
        info = get_worker_info()
        process = psutil.Process()
        before = process.memory_full_info().uss
        start = time.perf_counter()
        checksum = 0
        for row in range(self.rows):
            checksum += self.dataset[row]
        seconds = time.perf_counter() - start
        after = process.memory_full_info().uss
        worker = info.id if info is not None else -1
        yield WorkerReport(worker, self.rows, checksum, before, after, seconds)


def measure_workers(dataset: Dataset[int], rows: int, workers: int) -> list[WorkerReport]:
    """Fork ``workers`` DataLoader workers over ``dataset`` (already built) and collect
    their reports."""
    loader: DataLoader[WorkerReport] = DataLoader(
        EveryWorkerReadsAll(dataset, rows),
        batch_size=None,
        num_workers=workers,
        multiprocessing_context="fork",  # explicit: Python 3.14 defaults to forkserver
    )
    reports = sorted(loader, key=lambda r: r.worker)
    if len(reports) != workers:
        raise RuntimeError(f"expected {workers} worker reports, got {len(reports)}")
    return reports


# -- output ----------------------------------------------------------------------------------


def mb(nbytes: float) -> str:
    return f"{nbytes / MB:,.1f}"


def growth(report: WorkerReport) -> int:
    return report.uss_after - report.uss_before


def print_worker_table(table: list[WorkerReport], baseline: list[WorkerReport]) -> None:
    header = (
        f"{'worker':>6} | {'table USS before':>16} {'after':>9} {'growth':>9} {'rows/s':>9} | "
        f"{'list[dict] USS before':>21} {'after':>9} {'growth':>9} {'rows/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for t, b in zip(table, baseline, strict=True):
        print(
            f"{t.worker:>6} | {mb(t.uss_before):>16} {mb(t.uss_after):>9} {mb(growth(t)):>9} "
            f"{t.rows / t.seconds:>9,.0f} | {mb(b.uss_before):>21} {mb(b.uss_after):>9} "
            f"{mb(growth(b)):>9} {b.rows / b.seconds:>9,.0f}"
        )
    print("(MB = MiB of private memory, USS; rows/s = each worker's own pass over all rows)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=200_000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=4, help="default: %(default)s")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs, best kept")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    # More workers than CPUs is the point here (each one reads everything), not a mistake.
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    if args.samples < 1 or args.workers < 1 or args.repeat < 1:
        parser.error("--samples, --workers and --repeat must be at least 1")

    print(
        f"segments_torch {segments_torch.__version__}, torch {torch.__version__}, "
        f"numpy {np.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 1024**3:.0f} GiB RAM"
    )

    # 1. The release file.
    start = time.perf_counter()
    path, reused = ensure_release(args.data_dir, args.samples)
    file_bytes = path.stat().st_size
    how = "reused" if reused else f"generated in {time.perf_counter() - start:.1f} s"
    print(f"\n## Release file\n{path} ({how})")
    per_sample = file_bytes / args.samples
    print(f"{args.samples:,} samples, {file_bytes / MB:,.1f} MB ({per_sample:,.0f} B/sample)")

    # 2. Load time.
    n = args.repeat
    json_s, document = best_of(n, lambda: json_load(path))
    annotations = sum(
        len((s["labels"][LABELSET] or {}).get("attributes", {}).get("annotations", []))
        for s in document["dataset"]["samples"]
    )
    del document
    load_s, release = best_of(n, lambda: segments_torch.load_release(path))
    ratio = load_s / json_s
    print(f"\n## Load time (best of N={n})")
    print(f"json.load(file)                      {json_s:8.2f} s")
    print(f"segments_torch.load_release(path)    {load_s:8.2f} s")
    print(f"ratio load_release / json.load       {ratio:8.2f}")

    # 3. Size of the index.
    table = release.samples
    rows = len(table)
    assert rows == args.samples
    labels = table.label_columns(LABELSET)
    assert len(labels.annotation_ids) == annotations
    nbytes = table.nbytes
    pickled = len(pickle.dumps(table, protocol=5))
    print(f"\n## SampleTable ({rows:,} rows, {annotations:,} annotations)")
    print(f"nbytes              {nbytes / MB:8.1f} MB  {nbytes / rows:8.1f} B/sample")
    print(f"pickle (protocol 5) {pickled / MB:8.1f} MB  {pickled / rows:8.1f} B/sample")

    # 4. Worker memory: the table first, while no list[dict] exists in the parent.
    workers = args.workers
    table_reports = measure_workers(TableDataset(table), rows, workers)
    index = list_index(json_load(path))
    gc.collect()
    list_reports = measure_workers(ListDataset(index), rows, workers)
    del index
    gc.collect()
    checksums = {r.checksum for r in table_reports + list_reports}
    if len(checksums) != 1:
        raise RuntimeError(f"the two datasets read different values: checksums {checksums}")

    print(f"\n## Worker memory ({workers} forked DataLoader workers, each reads all {rows:,} rows)")
    print_worker_table(table_reports, list_reports)
    table_growth = [growth(r) / MB for r in table_reports]
    list_growth = [growth(r) / MB for r in list_reports]
    table_max, list_min = max(table_growth), min(list_growth)
    met = table_max < TABLE_TARGET_MB
    print(
        f"table:      growth per worker mean {statistics.mean(table_growth):7.1f} MB, "
        f"max {table_max:7.1f} MB  (target < {TABLE_TARGET_MB:.0f} MB: "
        f"{'met' if met else 'MISSED'})"
    )
    print(
        f"list[dict]: growth per worker mean {statistics.mean(list_growth):7.1f} MB, "
        f"min {list_min:7.1f} MB  (expected: hundreds of MB at 200,000 samples)"
    )

    # 5. Summary for the README.
    print("\n## Summary (markdown)\n")
    print(
        (f"`{COMMAND} --samples {rows}`" if rows != 200_000 else f"`{COMMAND}` (`make bench`)")
        + f" — {rows:,} samples, {annotations:,} annotations, "
        f"{file_bytes / MB:,.0f} MB of JSON; {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}, torch {torch.__version__}\n"
    )
    print("| measure | `SampleTable` | `list[dict]` / `json.load` |")
    print("|---|---:|---:|")
    print(f"| load time (best of {n}) | {load_s:.2f} s | {json_s:.2f} s (ratio {ratio:.2f}) |")
    print(f"| index size per sample (`nbytes`) | {nbytes / rows:.0f} B | |")
    print(f"| pickled size per sample | {pickled / rows:.0f} B | |")
    print(
        f"| USS growth per worker ({workers} workers, each reads every row) "
        f"| {statistics.mean(table_growth):.1f} MB (max {table_max:.1f}) "
        f"| {statistics.mean(list_growth):.1f} MB (min {list_min:.1f}) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
