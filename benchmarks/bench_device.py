"""Benchmark: decoding on the device (``decode="device"``) against the host path.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_device.py            # CPU: about 3 minutes
    .venv/bin/python benchmarks/bench_device.py --quick    # a sanity check
    .venv/bin/python benchmarks/bench_device.py --cuda     # adds the CUDA part (needs a GPU)

On generated JPEG + RGBA PNG samples (``bench_labels.py``'s, under ``--data-dir``), instance
targets:

1. **Worker time and bytes sent per item**, host path (``ds[i]``: decode both files, build
   the masks) against device path (``ds[i]``: read the JPEG's header, inflate the bitmap
   to a one-byte segment map), at 1280x720 and 3648x2736 with 25 instances; the bytes are
   those of every tensor an item holds, which a worker sends through shared memory.
2. **DataLoader items/s** with 2 workers, batch 4, both paths, the device decoder running
   on the CPU in the main process (what a CPU-only machine gets), after each epoch's first
   batch; median of ``--passes``.
3. With ``--cuda``: the training input pipeline on the GPU, batch 32, at 1280x720 (25
   instances) and 1920x1080 (40): items/s of host batches moved to the GPU against device
   batches moved and decoded there, DataLoader workers pinned to two CPU cores (as on a
   CPU-poor GPU node); the decoder's GPU time per batch (CUDA events); and the largest
   pixel difference between nvJPEG's images and the host's (libjpeg-turbo).

The timed process runs ``torch.set_num_threads(1)``; every ratio divides numbers measured in
the same run.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_dataset import Timings
from bench_labels import DEFAULT_DATA_DIR, Setting, ensure_data
from torch.utils.data import DataLoader

import segments_torch
from segments_torch import SegmentsDataset
from segments_torch.device import EncodedSample

COMMAND = ".venv/bin/python benchmarks/bench_device.py"
CPU_SETTINGS = (Setting(1280, 720, 25, 8), Setting(3648, 2736, 25, 4))
CUDA_SETTINGS = (Setting(1280, 720, 25, 8), Setting(1920, 1080, 40, 8))


def item_bytes(item: Any) -> int:
    """Bytes of every tensor in an item: what a worker sends through shared memory."""
    if isinstance(item, EncodedSample):
        return item.image.data.nbytes + item.label.segments.nbytes + item.label.ids.nbytes
    if isinstance(item, torch.Tensor):
        return item.nbytes
    if isinstance(item, dict):
        return sum(item_bytes(value) for value in item.values())
    if isinstance(item, tuple | list):
        return sum(item_bytes(value) for value in item)
    return 0


def measure_items(release: Path, setting: Setting, rounds: int) -> tuple[Timings, dict[str, int]]:
    paths = {
        "host": SegmentsDataset(release, target="instance"),
        "device": SegmentsDataset(release, target="instance", decode="device"),
    }
    timings = Timings()
    for _ in range(rounds):
        for k in range(setting.distinct):
            for name, ds in paths.items():
                timings.time(name, functools.partial(ds.__getitem__, k))
    sizes = {name: item_bytes(ds[0]) for name, ds in paths.items()}
    return timings, sizes


def epoch_rate(
    loader: DataLoader[Any], finish: Callable[[Any], Any], sync: Callable[[], None]
) -> float:
    """Items per second of one epoch after its first batch; ``finish`` is what the training
    loop does with a batch before the model (move it, decode it)."""
    batches = iter(loader)
    finish(next(batches))
    sync()
    start, items = time.perf_counter(), 0
    for batch in batches:
        images, _ = finish(batch)
        items += len(images)
    sync()
    return items / (time.perf_counter() - start)


def measure_loader(release: Path, passes: int, batch: int, device: str) -> dict[str, float]:
    host = SegmentsDataset(release, target="instance")
    shipped = SegmentsDataset(release, target="instance", decode="device")
    decoder = shipped.device_decoder()
    target = torch.device(device)
    cuda = target.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def host_batch(value: Any) -> Any:
        images, targets = value
        images = [image.to(target, non_blocking=True) for image in images]
        targets = [{k: v.to(target, non_blocking=True) for k, v in t.items()} for t in targets]
        return images, targets

    def device_batch(value: Any) -> Any:
        return decoder(value.to(target, non_blocking=True))

    def loader(ds: SegmentsDataset) -> DataLoader[Any]:
        return DataLoader(
            ds,
            batch_size=batch,
            num_workers=2,
            collate_fn=ds.collate_fn,
            pin_memory=cuda,
            worker_init_fn=_two_cores if cuda else None,
        )

    rates: dict[str, list[float]] = {"host": [], "device": []}
    for p in range(passes):
        order = [("host", host, host_batch), ("device", shipped, device_batch)]
        for name, ds, finish in order[p % 2 :] + order[: p % 2]:
            rates[name].append(epoch_rate(loader(ds), finish, sync))
    return {name: statistics.median(values) for name, values in rates.items()}


def _two_cores(worker_id: int) -> None:
    """DataLoader workers on CPUs 0 and 1 only: a GPU node with few cores per GPU."""
    del worker_id
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0, 1})


def measure_cuda(release: Path, setting: Setting, batch: int, rounds: int) -> dict[str, float]:
    """The decoder's GPU time per batch (CUDA events) and the largest pixel difference
    between its images and the host path's."""
    shipped = SegmentsDataset(release, target="instance", decode="device")
    host = SegmentsDataset(release, target="instance")
    decoder = shipped.device_decoder()
    samples = [shipped[k % setting.distinct] for k in range(batch)]
    on_gpu = shipped.collate_fn(samples).pin_memory().to("cuda", non_blocking=True)
    times = []
    for _ in range(rounds):
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        start.record()
        decoder(on_gpu)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    images, _ = decoder(on_gpu)
    difference = max(
        int(
            (image.cpu().to(torch.int16) - host[k % setting.distinct][0].to(torch.int16))
            .abs()
            .max()
        )
        for k, image in enumerate(images)
    )
    return {"gpu ms": statistics.median(times), "max difference": float(difference)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=10, help="rounds of timed calls")
    parser.add_argument("--items", type=int, default=96, help="samples in each release")
    parser.add_argument("--passes", type=int, default=3, help="DataLoader passes (median kept)")
    parser.add_argument("--cuda", action="store_true", help="add the CUDA part")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a sanity check")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.items, args.passes = 2, 16, 1
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda needs a CUDA device")
    torch.set_num_threads(1)
    gpu_name = f", {torch.cuda.get_device_name()}" if args.cuda else ""
    flags = "".join(f" --{flag}" for flag in ("cuda", "quick") if getattr(args, flag))
    print(
        f"segments_torch {segments_torch.__version__}, torch {torch.__version__}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs{gpu_name}\ncommand: {COMMAND}{flags}\n"
    )
    item_lines = [
        "| sample | host ds[i] ms | device ds[i] ms | host bytes/item | device bytes/item |",
        "|---|---:|---:|---:|---:|",
    ]
    loader_lines = [
        "| sample | host items/s | device items/s (decoder on the CPU) | device / host |",
        "|---|---:|---:|---:|",
    ]
    for setting in CPU_SETTINGS:
        print(setting.name, file=sys.stderr, flush=True)
        release = ensure_data(args.data_dir, setting, args.items)
        timings, sizes = measure_items(release, setting, args.rounds)
        item_lines.append(
            f"| {setting.name} | {timings.median('host'):.2f} | {timings.median('device'):.2f} "
            f"| {sizes['host']:,} | {sizes['device']:,} |"
        )
        rates = measure_loader(release, args.passes, 4, "cpu")
        loader_lines.append(
            f"| {setting.name} | {rates['host']:.1f} | {rates['device']:.1f} "
            f"| {rates['device'] / rates['host']:.2f} |"
        )
    print("## Worker time and bytes sent per item (instance targets, medians)\n")
    print("\n".join(item_lines))
    print("\n## DataLoader, 2 workers, batch 4, on the CPU\n")
    print("\n".join(loader_lines))
    if args.cuda:
        cuda_lines = [
            "| sample | host items/s | device items/s | device / host | decoder GPU ms/batch "
            "| max pixel difference |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for setting in CUDA_SETTINGS:
            print(setting.name, file=sys.stderr, flush=True)
            release = ensure_data(args.data_dir, setting, max(args.items, 64))
            rates = measure_loader(release, args.passes, 32, "cuda")
            gpu = measure_cuda(release, setting, 32, args.rounds)
            cuda_lines.append(
                f"| {setting.name} | {rates['host']:.1f} | {rates['device']:.1f} "
                f"| {rates['device'] / rates['host']:.2f} | {gpu['gpu ms']:.2f} "
                f"| {gpu['max difference']:.0f} |"
            )
        print("\n## CUDA: batch 32, DataLoader workers on two CPU cores\n")
        print("\n".join(cuda_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
