"""Benchmark: ``build_target`` as the number of instances grows, against writing its output.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_targets.py            # about a minute on two cores
    .venv/bin/python benchmarks/bench_targets.py --quick

For 10 to 1000 instances on a 1280x720 id map (square instances of equal size, placed at
random, overlapping; ids 1..N, one category each of 8; a fixed seed), the time of
``targets.build_target("instance")`` and of ``"panoptic"``, and of a zero-fill of the tensors
each returns (what any implementation must at least write), in one process with
``torch.set_num_threads(1)``, as DataLoader workers run. Medians of ``--repeat`` interleaved
calls; the ratio divides numbers of the same run. A second table times the masks alone,
made both ways the module has: one broadcast comparison of the whole map with every
segment number (``targets._compare``: a GPU's way, and the CPU's for noise, in groups of 255
segments past 254, a boundary the sizes straddle), and zeroed, then compared within each
segment's box (``targets._compare_in_boxes``: the CPU's way for labels), each time made
and then read once (a sum of every byte), as any consumer of the masks reads them: memory
the system maps lazily is paid for when it is first touched, by whoever touches it.
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

from segments_torch import targets
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
    print(
        "\n| instances | masks MB | broadcast: made ms | and read ms | in boxes: made ms "
        "| and read ms | ratio of the reads |\n|---:|---:|---:|---:|---:|---:|---:|"
    )
    for count in args.counts:
        code = id_map(count).to(torch.int32 if count > 254 else torch.uint8)
        extents = targets._run_extents(code, count, masks_made=False)
        assert extents is not None
        ways = {
            "broadcast": partial(targets._compare, code, count),
            "boxes": partial(targets._compare_in_boxes, code, extents[1]),
        }
        assert torch.equal(ways["broadcast"](), ways["boxes"]())
        made: dict[str, list[float]] = {way: [] for way in ways}
        read: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeat):
            for way, make in ways.items():
                start = time.perf_counter()
                masks = make()
                middle = time.perf_counter()
                masks.view(-1).view(torch.int64).sum()  # what any consumer does: read them
                made[way].append((middle - start) * 1e3)
                read[way].append((time.perf_counter() - start) * 1e3)
                del masks
        made_ms = {way: statistics.median(times) for way, times in made.items()}
        read_ms = {way: statistics.median(times) for way, times in read.items()}
        print(
            f"| {count} | {count * HEIGHT * WIDTH / 1e6:.0f} | {made_ms['broadcast']:.2f} "
            f"| {read_ms['broadcast']:.2f} | {made_ms['boxes']:.2f} | {read_ms['boxes']:.2f} "
            f"| {read_ms['boxes'] / read_ms['broadcast']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
