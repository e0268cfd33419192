"""Benchmark: ``build_target`` as the number of instances grows, against writing its output.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_targets.py            # about a minute on two cores
    .venv/bin/python benchmarks/bench_targets.py --quick

For 10 to 1000 instances on a 1280x720 id map (square instances of equal size, placed at
random, overlapping; ids 1..N, one category each of 8; a fixed seed), the time of
``targets.build_target("instance")`` and of ``"panoptic"``, and of a zero-fill of the tensors
each returns (what any implementation must at least write), in one process with
``torch.set_num_threads(1)``, as DataLoader workers run. Medians of ``--repeat`` interleaved
calls; the ratio divides numbers of the same run. Past 254 segments the masks are compared
in groups of 255 (see ``targets._compare``); the sizes straddle that boundary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import torch

from segments_torch.targets import build_target

HEIGHT, WIDTH = 720, 1280


def id_map(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` square instances of equal size at random places (later ones on top)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros((HEIGHT, WIDTH), dtype=torch.int32)
    side = max(4, int((HEIGHT * WIDTH / count) ** 0.5 * 0.8))
    tops = torch.randint(0, HEIGHT - side + 1, (count,), generator=generator).tolist()
    lefts = torch.randint(0, WIDTH - side + 1, (count,), generator=generator).tolist()
    for instance, (top, left) in enumerate(zip(tops, lefts, strict=True), start=1):
        ids[top : top + side, left : left + side] = instance
    return ids


def median_ms(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def zero_fill(target: dict[str, torch.Tensor]) -> Callable[[], object]:
    shapes = [(value.shape, value.dtype) for value in target.values()]
    return lambda: [torch.zeros(shape, dtype=dtype) for shape, dtype in shapes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 25, 100, 254, 400, 1000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and calls")
    args = parser.parse_args(argv)
    if args.quick:
        args.counts, args.repeat = [25, 400], 3
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        "one thread\n"
    )
    print(
        "| instances | kind | masks MB | zero-fill ms | build_target ms | ratio |\n"
        "|---:|---|---:|---:|---:|---:|"
    )
    for count in args.counts:
        ids = id_map(count)
        annotation_ids = torch.arange(1, count + 1)
        labels = annotation_ids % 8
        is_thing = torch.ones(count, dtype=torch.bool)
        for kind in ("instance", "panoptic"):
            build = partial(build_target, kind, ids, annotation_ids, labels, is_thing)
            target = build()
            fill = zero_fill(target)
            built, filled = [], []
            for _ in range(args.repeat):  # interleaved: the machine's noise hits both
                built.append(median_ms(build, 1))
                filled.append(median_ms(fill, 1))
            build_ms, fill_ms = statistics.median(built), statistics.median(filled)
            megabytes = target["masks"].numel() / 1e6
            print(
                f"| {count} | {kind} | {megabytes:.0f} | {fill_ms:.1f} | {build_ms:.1f} | "
                f"{build_ms / fill_ms:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
