"""Benchmark: items made at the training size (``size=800, max_size=1333``) against full-size
items resized by ``v2.Resize(800, max_size=1333)``.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_resize.py            # about a minute on two cores
    .venv/bin/python benchmarks/bench_resize.py --quick    # a sanity check
    .venv/bin/python benchmarks/bench_resize.py --plot docs/img/bench_resize.png

On generated 3648x2736 JPEG photos with RGBA PNG bitmaps of 5 and 25 instances
(``bench_labels.py``'s samples, under ``--data-dir``), instance targets, one thread:

1. **ms per item**: ``SegmentsDataset(size=800, max_size=1333)`` against
   ``SegmentsDataset(transforms=v2.Resize(800, max_size=1333))`` (every tensor decoded and
   built at full size, then resized: image bilinear with antialiasing, masks nearest),
   interleaved; and ours with a warm label cache.
2. **Peak memory per item**: the growth of the process's peak resident memory over one
   call (``/proc/self/clear_refs`` resets the peak; freed heap is returned to the system
   first with ``malloc_trim``), median over the samples.
3. **Where the time goes** in ours: the image decoded at the size (by simplejpeg when
   installed, and by Pillow's ``draft``), the bitmap's PNG inflated at full size (no PNG
   decoder reads a reduced scale), or its label cache entry read instead, its ids sampled,
   the target built, each timed alone on the same files.
4. **DataLoader** items/s with 2 workers, batch 4, after the first batch.

Goals: at least 2.5x faster per item and at most a quarter of the peak memory; reported
for a bitmap's first read (``size=``) and for later epochs (``size=`` + warm label cache).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from bench_dataset import Timings
from bench_labels import DEFAULT_DATA_DIR, Setting, ensure_data, epoch_rate
from plotting import Panel, save_bars
from torchvision.transforms import v2

import segments_torch
from segments_torch import SegmentsDataset, Storage, codecs
from segments_torch.label_cache import LabelCache
from segments_torch.sizes import output_size
from segments_torch.targets import sample_nearest

COMMAND = ".venv/bin/python benchmarks/bench_resize.py"
SETTINGS = (Setting(3648, 2736, 5, 4), Setting(3648, 2736, 25, 4))
SIZE, MAX_SIZE = 800, 1333
SPEED_GOAL, MEMORY_GOAL = 2.5, 0.25


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def peak_growth(fn: Callable[[], Any]) -> int:
    """How far the resident memory's peak rises above where it was during ``fn()``."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)  # freed heap back to the system: the peak starts from here
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident size
    result = fn()
    growth = _status("VmHWM") - before
    del result
    return growth


def datasets(release: Path, labels: Path) -> dict[str, SegmentsDataset]:
    resize = v2.Resize(SIZE, max_size=MAX_SIZE, antialias=True)
    return {
        "full + v2.Resize": SegmentsDataset(release, target="instance", transforms=resize),
        "size=": SegmentsDataset(release, target="instance", size=SIZE, max_size=MAX_SIZE),
        "size= + warm label cache": SegmentsDataset(
            release, target="instance", size=SIZE, max_size=MAX_SIZE, label_cache=labels
        ),
    }


def measure_items(ds: dict[str, SegmentsDataset], setting: Setting, rounds: int) -> Timings:
    for k in range(setting.distinct):
        ds["size= + warm label cache"][k]  # fills the cache
    timings = Timings()
    for _ in range(rounds):
        for k in range(setting.distinct):
            for name, dataset in ds.items():
                timings.time(name, functools.partial(dataset.__getitem__, k))
    return timings


def measure_memory(ds: dict[str, SegmentsDataset], setting: Setting) -> dict[str, float]:
    peaks: dict[str, list[int]] = {name: [] for name in ds}
    for k in range(setting.distinct):
        for name, dataset in ds.items():
            peaks[name].append(peak_growth(functools.partial(dataset.__getitem__, k)))
    return {name: statistics.median(values) for name, values in peaks.items()}


@contextlib.contextmanager
def without_simplejpeg() -> Iterator[None]:
    """JPEGs at a reduced scale decoded by Pillow's ``draft``, as without simplejpeg."""
    installed, codecs._SIMPLEJPEG = codecs._SIMPLEJPEG, None
    try:
        yield
    finally:
        codecs._SIMPLEJPEG = installed


def at_size(image: bytes) -> torch.Tensor:
    return codecs.decode_image(image, size=SIZE, max_size=MAX_SIZE)


def pillow_at_size(image: bytes) -> torch.Tensor:
    with without_simplejpeg():
        return at_size(image)


def measure_steps(release: Path, setting: Setting, rounds: int, labels: Path) -> Timings:
    """Ours, step by step, on the same files (``labels``: the warm label cache)."""
    ds = SegmentsDataset(release, target="instance", size=SIZE, max_size=MAX_SIZE)
    folder = release.parent
    storage, cache = Storage(str(folder)), LabelCache(labels)
    timings = Timings()
    for _ in range(rounds):
        for k in range(setting.distinct):
            image = (folder / "images" / f"a{k}.jpg").read_bytes()
            bitmap = (folder / "bitmaps" / f"a{k}.png").read_bytes()
            if codecs._SIMPLEJPEG is not None:
                timings.time("image at the size, simplejpeg", functools.partial(at_size, image))
            timings.time("image at the size, Pillow", functools.partial(pillow_at_size, image))
            timings.time("image, full decode", functools.partial(codecs.decode_image, image))
            identity = storage.identity(f"bitmaps/a{k}.png")
            assert cache.get(*identity) is not None, "the items filled the label cache"
            timings.time("label cache entry read", functools.partial(cache.get, *identity))
            start = time.perf_counter()
            ids = codecs.decode_bitmap(bitmap)
            timings.add("bitmap PNG inflated", (time.perf_counter() - start) * 1e3)
            out = output_size(ids.shape[0], ids.shape[1], SIZE, MAX_SIZE)
            start = time.perf_counter()
            small = sample_nearest(ids, *out)
            timings.add("ids sampled", (time.perf_counter() - start) * 1e3)
            assert isinstance(small, torch.Tensor)
            timings.time("target built", functools.partial(ds.target_for, k, small))
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=6, help="rounds of timed calls")
    parser.add_argument("--items", type=int, default=48, help="samples in each release")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a sanity check")
    parser.add_argument("--plot", type=Path, help="also draw this run's figures into a PNG")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.items = 1, 16
    torch.set_num_threads(1)
    print(
        f"segments_torch {segments_torch.__version__}, torch {torch.__version__}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs\ncommand: {COMMAND}"
        f"{' --quick' if args.quick else ''}\n"
    )
    item_lines = [
        "| sample | path | ms/item | speed-up | peak MB/item | share of the peak |",
        "|---|---|---:|---:|---:|---:|",
    ]
    step_lines = ["| sample | step | ms |", "|---|---|---:|"]
    loader_lines = ["| sample | path | items/s |", "|---|---|---:|"]
    notes = []
    ms_series: dict[str, list[float]] = {}
    peak_series: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in SETTINGS:
            print(setting.name, file=sys.stderr, flush=True)
            release = ensure_data(args.data_dir, setting, args.items)
            ds = datasets(release, Path(tmp) / setting.folder)
            timings = measure_items(ds, setting, args.rounds)
            peaks = measure_memory(ds, setting)
            base_ms, base_peak = timings.median("full + v2.Resize"), peaks["full + v2.Resize"]
            for name in ds:
                ms, peak = timings.median(name), peaks[name]
                ms_series.setdefault(name, []).append(ms)
                peak_series.setdefault(name, []).append(peak / 1e6)
                item_lines.append(
                    f"| {setting.name} | {name} | {ms:.1f} | {base_ms / ms:.2f}x "
                    f"| {peak / 1e6:.1f} | {peak / base_peak:.2f} |"
                )
            for name in ("size=", "size= + warm label cache"):
                ours_ms, ours_peak = timings.median(name), peaks[name]
                notes.append(
                    f"{setting.name}, {name}: {base_ms / ours_ms:.2f}x faster (goal "
                    f"{SPEED_GOAL}x), {ours_peak / base_peak:.2f} of the peak memory (goal "
                    f"{MEMORY_GOAL})"
                )
            steps = measure_steps(release, setting, args.rounds, Path(tmp) / setting.folder)
            for step in steps.samples:
                step_lines.append(f"| {setting.name} | {step} | {steps.median(step):.1f} |")
            for name, dataset in ds.items():
                loader_lines.append(f"| {setting.name} | {name} | {epoch_rate(dataset, 2):.1f} |")
    print("## Per item (instance targets, one thread, medians)\n")
    print("\n".join(item_lines))
    print("\n## Where an item's time goes at size=800, max_size=1333\n")
    print("\n".join(step_lines))
    print("\n## DataLoader, 2 workers, batch 4\n")
    print("\n".join(loader_lines))
    print()
    print("\n".join(notes))
    if args.plot:
        groups = [setting.name.replace(", ", "\n") for setting in SETTINGS]
        panels = [
            Panel("Time per item", "ms per item", groups, ms_series),
            Panel("Peak memory per item", "MB per item", groups, peak_series),
        ]
        title = f"3648x2736 photos at size={SIZE}, max_size={MAX_SIZE} (instance targets)"
        print(f"plot: {save_bars(args.plot, title, panels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
