"""Benchmark: ``export_dataset`` per format, against reading the items, with 0 and 2 workers.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_export.py            # about 2 minutes on two cores
    .venv/bin/python benchmarks/bench_export.py --quick    # a sanity check

What is measured, in one run, on the generated 1280x720 samples of
``benchmarks/bench_dataset.py`` (25 instances each, JPEG images and RGBA PNG bitmaps on
local disk, made once under ``--data-dir``):

1. Per format, milliseconds per sample: reading every item of the matching target kind
   (``ds[i]``: what any export must at least do), then ``export_dataset`` with
   ``num_workers=0`` and with ``num_workers=2`` into a fresh temporary folder; medians of
   ``--rounds`` interleaved rounds. The ratio of the two exports is what the worker
   processes buy on this machine.
2. Memory: the peak resident set of a fresh process exporting ``--small`` samples and one
   exporting ``--large`` samples to ``coco-instance`` and ``coco-panoptic``, before the
   export (the release loaded and one instance item read) and after it: an export holds
   one sample at a time, so its peak must not grow with the number of samples.

The timed process runs ``torch.set_num_threads(1)``, as DataLoader workers do.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from bench_dataset import DEFAULT_DATA_DIR, ensure_release

from segments_torch import SegmentsDataset
from segments_torch.export import FORMATS, export_dataset

#: The target kind whose items each format's export reads.
KIND_OF = {
    "coco-instance": "instance",
    "coco-panoptic": "panoptic",
    "semantic": "semantic",
    "instance": "instance",
}


def ms_per_sample(function: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) / count * 1e3


def export_ms(ds: SegmentsDataset, fmt: str, workers: int) -> float:
    out = tempfile.mkdtemp(prefix="bench-export-")
    try:
        return ms_per_sample(
            lambda: export_dataset(ds, fmt, out_dir=out, num_workers=workers, progress=False),
            len(ds),
        )
    finally:
        shutil.rmtree(out)


def read_all(ds: SegmentsDataset) -> None:
    for i in range(len(ds)):
        ds[i]


def timings(release: Path, rounds: int) -> dict[tuple[str, str], list[float]]:
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for fmt in FORMATS:
            ds = SegmentsDataset(release, filter_by=None, target=KIND_OF[fmt])
            read = ms_per_sample(partial(read_all, ds), len(ds))
            results.setdefault((fmt, "read"), []).append(read)
            for workers in (0, 2):
                ms = export_ms(ds, fmt, workers)
                results.setdefault((fmt, f"workers={workers}"), []).append(ms)
    return results


def peak_rss_mb(release: Path, fmt: str) -> tuple[float, float]:
    """Peak RSS of a fresh process before and after exporting ``release`` (MB)."""
    code = (
        "import resource, sys, tempfile\n"
        "from segments_torch import SegmentsDataset\n"
        "from segments_torch.export import export_dataset\n"
        "ds = SegmentsDataset(sys.argv[1], filter_by=None)\n"
        "ds[0]\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "export_dataset(ds, sys.argv[2], out_dir=tempfile.mkdtemp(), progress=False)\n"
        "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(release), fmt],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    before, after = result.stdout.split()[-2:]
    return int(before) / 1024, int(after) / 1024  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=48, help="samples timed per export")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--small", type=int, default=16, help="samples of the small export")
    parser.add_argument("--large", type=int, default=400, help="samples of the large export")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--quick", action="store_true", help="few samples and one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.rounds, args.small, args.large = 8, 1, 4, 16
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"peak RSS of this process so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB"
    )
    release = ensure_release(args.data_dir, "1280x720", args.samples)
    results = timings(release, args.rounds)
    print(
        f"\n`export_dataset`, {args.samples} samples at 1280x720 (25 instances), ms per sample, "
        f"medians of {args.rounds} rounds:\n"
    )
    print("| format | `ds[i]` of its kind | export, 0 workers | export, 2 workers | 0 / 2 |")
    print("|---|---:|---:|---:|---:|")
    for fmt in FORMATS:
        read, single, double = (
            statistics.median(results[(fmt, key)]) for key in ("read", "workers=0", "workers=2")
        )
        print(f"| {fmt} | {read:.1f} | {single:.1f} | {double:.1f} | {single / double:.2f}x |")

    print(
        "\nPeak RSS of a fresh process before the export (release loaded, one instance item "
        "read) and after it; one sample at a time, so the export of more samples must not "
        "need more memory:\n"
    )
    print(f"| format | {args.small} samples: before, after | {args.large} samples: before, after |")
    print("|---|---:|---:|")
    small = ensure_release(args.data_dir, "1280x720", args.small)
    large = ensure_release(args.data_dir, "1280x720", args.large)
    for fmt in ("coco-instance", "coco-panoptic"):
        cells = ["{:.0f} MB, {:.0f} MB".format(*peak_rss_mb(path, fmt)) for path in (small, large)]
        print(f"| {fmt} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
