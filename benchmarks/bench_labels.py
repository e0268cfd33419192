"""Benchmark: the label cache against decoding the bitmap's PNG every time.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_labels.py            # about 5 minutes on two cores
    .venv/bin/python benchmarks/bench_labels.py --quick    # a sanity check
    .venv/bin/python benchmarks/bench_labels.py --plot docs/img/bench_labels.png

What is measured, in one run, on generated samples (``--data-dir``, default
``benchmarks/data/``, git-ignored; made once and reused): photo-like JPEGs (quality 90) and
8-bit RGBA PNG bitmaps (``bench_decoders.make_ids``) at 1280x720 with 25 instances and at
3648x2736 with 5 and with 25, listed round-robin in a release with relative asset URLs:

1. **The bitmap stage**, per call, medians of interleaved rounds: today's path (read the
   PNG, ``codecs.decode_bitmap``); the warm label cache (``Storage.identity`` and
   ``LabelCache.get``: stat, read, check and decompress the entry); the cold one (decode,
   ``SegmentMap.from_ids``, ``LabelCache.put``). Goal: the warm stage under 1 ms at
   1280x720.
2. **``ds[i]``** for ``"instance"`` and ``"semantic"`` targets without a label cache and
   with a warm one, the ratio of paired calls; and the first ``ds[i]`` of each sample into
   an empty cache (cold), against the same call without a cache.
3. **DataLoader** items/s, 2 workers, batch 4, instance targets, after each epoch's first
   batch: no cache, an epoch into an empty cache (cold), one from a full cache (warm), in
   an order that turns from pass to pass; median of ``--passes``.
4. **Disk**: the entries' bytes against the PNGs' (zstd; zlib when zstandard is missing).
5. **Against an older checkout** (``--baseline DIR``, for instance one from before the label
   cache: ``git worktree add /tmp/before 490c9c6^``): the 1280x720 instance ``ds[i]`` of that
   checkout, of this one without a cache and of this one with a warm cache, each in a
   fresh process, the three in turn, ``--baseline-passes`` times. Goal: this checkout's
   warm item at most 0.6 of the item before the label cache. (Its no-cache item shares
   every speed-up of the target code, so it is not that baseline.)
6. **The SDK** at 1280x720 over loopback HTTP (``bench_dataset.py``'s server and the code
   an SDK user writes for Mask R-CNN targets) against ours over the same server with a warm
   label cache.

The timed process runs ``torch.set_num_threads(1)``, as each DataLoader worker does; files
are read from the page cache after the first pass. Every ratio divides numbers measured in
the same run.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_dataset import (
    BATCH,
    CATEGORIES,
    LABELSET,
    STATUSES,
    Timings,
    file_server,
    quiet,
    release_document,
    sdk_instance,
    write_json,
)
from bench_decoders import make_ids, make_photo
from plotting import Panel, save_bars
from torch.utils.data import DataLoader, Dataset

import segments_torch
from segments_torch import SegmentsDataset, codecs, label_cache
from segments_torch.label_cache import LabelCache
from segments_torch.label_prefetch import fill_label_cache
from segments_torch.storage import Storage
from segments_torch.targets import SegmentMap

COMMAND = ".venv/bin/python benchmarks/bench_labels.py"
GENERATOR_VERSION = 1
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Setting:
    """One kind of sample: its size, its instances and how many distinct samples."""

    width: int
    height: int
    instances: int
    distinct: int

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}, {self.instances} instances"

    @property
    def folder(self) -> str:
        return f"{self.width}x{self.height}-{self.instances}"


SETTINGS = (Setting(1280, 720, 25, 8), Setting(3648, 2736, 5, 4), Setting(3648, 2736, 25, 4))
STAGE_GOAL_MS, ITEM_GOAL = 1.0, 0.6


# -- data ------------------------------------------------------------------------------------


def release_for(setting: Setting, items: int, base_url: str = "") -> dict[str, Any]:
    """``items`` samples over the setting's distinct assets, round-robin."""
    name = f"bench-labels-{setting.folder}"
    return release_document(name, setting.distinct, setting.instances, items, base_url)


def ensure_data(data_dir: Path, setting: Setting, items: int) -> Path:
    """The setting's assets and a release of ``items`` samples (made unless present)."""
    folder = data_dir / f"labels-v{GENERATOR_VERSION}" / setting.folder
    for k in range(setting.distinct):
        image, bitmap = folder / "images" / f"a{k}.jpg", folder / "bitmaps" / f"a{k}.png"
        if image.is_file() and bitmap.is_file():
            continue
        print(f"generating {setting.name}, sample {k} ...", flush=True)
        ids = make_ids(setting.width, setting.height, seed=300 + k, instances=setting.instances)
        for path, data in (
            (image, make_photo(ids, seed=400 + k)),
            (bitmap, codecs.encode_bitmap(ids)),
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.partial")
            partial.write_bytes(data)
            os.replace(partial, path)
    release = folder / f"release-{items}.json"
    if not release.is_file():
        write_json(release, release_for(setting, items))
    return release


# -- 1. the bitmap stage ---------------------------------------------------------------------


def measure_stage(release: Path, setting: Setting, rounds: int, cache_dir: Path) -> Timings:
    folder = release.parent
    storage, cache = Storage(str(folder)), LabelCache(cache_dir)
    bitmaps = [f"bitmaps/a{k}.png" for k in range(setting.distinct)]
    identities = [storage.identity(url) for url in bitmaps]
    for url, identity in zip(bitmaps, identities, strict=True):
        cache.put(*identity, SegmentMap.from_ids(codecs.decode_bitmap(storage.read(url))))

    def today(url: str) -> torch.Tensor:
        return codecs.decode_bitmap(storage.read(url))

    def warm(url: str) -> SegmentMap | None:
        return cache.get(*storage.identity(url))

    def cold(url: str, identity: tuple[str, str]) -> int:
        return cache.put(*identity, SegmentMap.from_ids(codecs.decode_bitmap(storage.read(url))))

    timings = Timings()
    for _ in range(rounds):
        for url, identity in zip(bitmaps, identities, strict=True):
            timings.time("today", functools.partial(today, url))
            timings.time("warm", functools.partial(warm, url))
            cache.path(identity[0]).unlink()
            timings.time("cold", functools.partial(cold, url, identity))
    return timings


# -- 2. ds[i] --------------------------------------------------------------------------------


def measure_items(release: Path, setting: Setting, rounds: int, cache_dir: Path) -> Timings:
    timings = Timings()
    for kind in ("instance", "semantic"):
        plain = SegmentsDataset(release, target=kind)
        cached = SegmentsDataset(release, target=kind, label_cache=cache_dir / kind)
        for k in range(setting.distinct):  # cold: each sample's first read into an empty cache
            timings.time(f"{kind} plain first", functools.partial(plain.__getitem__, k))
            timings.time(f"{kind} cold", functools.partial(cached.__getitem__, k))
        for _ in range(rounds):
            for k in range(setting.distinct):
                timings.time(f"{kind} plain", functools.partial(plain.__getitem__, k))
                timings.time(f"{kind} warm", functools.partial(cached.__getitem__, k))
    return timings


def paired(timings: Timings, numerator: str, denominator: str) -> float:
    """The median of the ratios of calls made one after the other."""
    pairs = zip(timings.samples[numerator], timings.samples[denominator], strict=True)
    return statistics.median(a / b for a, b in pairs)


# -- 3. DataLoader ---------------------------------------------------------------------------


def epoch_rate(
    ds: Dataset[Any], workers: int, collate_fn: Callable[[Any], Any] | None = None
) -> float:
    """Items per second of one epoch after its first batch (worker start-up left out),
    batches made by ``collate_fn`` (default: the dataset's ``collate_fn``)."""
    collate = collate_fn if collate_fn is not None else ds.collate_fn  # type: ignore[attr-defined]
    loader = DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=collate)
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    items = sum(len(images) for images, _ in batches)
    return items / (time.perf_counter() - start)


def measure_loader(release: Path, passes: int, workers: int, cache_dir: Path) -> dict[str, float]:
    """Epochs without a cache, into an empty one and from a full one, in an order that
    turns from pass to pass (the first epoch of a pass may find colder caches)."""
    warm_dir = cache_dir / "loader-warm"
    fill_label_cache(SegmentsDataset(release, label_cache=warm_dir), workers=0, progress=False)
    regimes: list[tuple[str, Callable[[Path], SegmentsDataset]]] = [
        ("no cache", lambda _: SegmentsDataset(release)),
        ("cold", lambda folder: SegmentsDataset(release, label_cache=folder)),
        ("warm", lambda _: SegmentsDataset(release, label_cache=warm_dir)),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _ in regimes}
    for p in range(passes):
        for name, make in regimes[p % 3 :] + regimes[: p % 3]:
            folder = cache_dir / f"loader-cold-{p}"
            rates[name].append(epoch_rate(make(folder), workers))
            shutil.rmtree(folder, ignore_errors=True)
    return {name: statistics.median(values) for name, values in rates.items()}


# -- 4. disk ---------------------------------------------------------------------------------


def disk_bytes(release: Path, setting: Setting, cache_dir: Path) -> tuple[float, float]:
    """Mean bytes of a label entry and of its PNG."""
    storage, cache = Storage(str(release.parent)), LabelCache(cache_dir)
    entries, pngs = [], []
    for k in range(setting.distinct):
        url = f"bitmaps/a{k}.png"
        data = storage.read(url)
        entries.append(
            cache.put(*storage.identity(url), SegmentMap.from_ids(codecs.decode_bitmap(data)))
        )
        pngs.append(len(data))
    return float(np.mean(entries)), float(np.mean(pngs))


# -- 5. the SDK ------------------------------------------------------------------------------


def measure_sdk(
    release: Path, setting: Setting, items: int, rounds: int, cache_dir: Path
) -> Timings:
    """The SDK user's Mask R-CNN item against ours with a warm label cache, over HTTP."""
    from segments import SegmentsDataset as SDKDataset

    by_id = sorted(CATEGORIES, key=lambda c: int(c["id"]))
    label_of = {int(c["id"]): label + 1 for label, c in enumerate(by_id)}
    timings = Timings()
    with file_server(release.parent) as url, tempfile.TemporaryDirectory() as tmp:
        served = Path(tmp) / "release-http.json"
        write_json(served, release_for(setting, items, base_url=url))
        options: dict[str, Any] = {
            "labelset": LABELSET,
            "filter_by": STATUSES,
            "segments_dir": None,
        }
        with quiet():
            sdk = SDKDataset(str(served), **options)
        ours = SegmentsDataset(served, label_cache=cache_dir / "sdk")
        for k in range(setting.distinct):
            ours[k]  # fill the label cache
        for _ in range(rounds):
            for k in range(setting.distinct):
                timings.time("sdk", functools.partial(sdk_instance, sdk, k, label_of))
                timings.time("ours", functools.partial(ours.__getitem__, k))
    return timings


# -- main ------------------------------------------------------------------------------------

STAGE_HEADER = [
    "| sample | today ms | warm ms | cold ms | entry bytes | PNG bytes |",
    "|---|---:|---:|---:|---:|---:|",
]
ITEM_HEADER = [
    "| sample | target | no cache ms | warm ms | warm / no cache (paired) "
    "| first read, no cache ms | first read, cold ms |",
    "|---|---|---:|---:|---:|---:|---:|",
]
STAGE_SERIES = {"today": "PNG decoded", "warm": "warm cache", "cold": "cold (decode, store)"}
LOADER_HEADER = [
    "| sample | no cache items/s | cold items/s | warm items/s | warm / no cache |",
    "|---|---:|---:|---:|---:|",
]


@dataclass
class Report:
    stage: list[str]
    items: list[str]
    loader: list[str]
    notes: list[str]
    # the plot's figures: series name -> one median per setting
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    item_ms: dict[str, list[float]] = field(default_factory=dict)


#: ``ds[i]`` of one checkout of segments_torch, in a process of its own: the checkout, the
#: mode (``plain``, or ``warm``: a label cache filled first), the release and a cache
#: folder. Code any version of the dataset runs, so that it measures older checkouts too.
ITEM_PROBE = """
import statistics, sys, time
checkout, mode, release, cache = sys.argv[1:]
sys.path.insert(0, checkout)
import torch
torch.set_num_threads(1)
from segments_torch import SegmentsDataset
options = {"label_cache": cache} if mode == "warm" else {}
ds = SegmentsDataset(release, target="instance", **options)
count = min(len(ds), 8)
for k in range(count):
    ds[k]
times = []
for _ in range(15):
    for k in range(count):
        start = time.perf_counter()
        ds[k]
        times.append(time.perf_counter() - start)
print(statistics.median(times) * 1e3)
"""


def probe_item(checkout: Path, mode: str, release: Path, cache: Path) -> float:
    """The median ``ds[i]`` in ms of ``checkout``'s segments_torch (see ``ITEM_PROBE``)."""
    command = [sys.executable, "-c", ITEM_PROBE, str(checkout), mode, str(release), str(cache)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def measure_baseline(
    baseline: Path, release: Path, passes: int, cache: Path
) -> dict[str, list[float]]:
    """Each pass: the older checkout, this one without a cache, this one warm."""
    here = Path(__file__).resolve().parent.parent
    runs: dict[str, list[float]] = {"baseline": [], "no cache": [], "warm": []}
    for k in range(passes):
        runs["baseline"].append(probe_item(baseline, "plain", release, cache))
        runs["no cache"].append(probe_item(here, "plain", release, cache))
        runs["warm"].append(probe_item(here, "warm", release, cache / str(k)))
    return runs


def timed(label: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, saying on stderr how long it took (progress of a long run)."""
    start = time.perf_counter()
    result = fn()
    print(f"  {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return result


def measure_setting(setting: Setting, args: argparse.Namespace, tmp: Path, report: Report) -> None:
    """Every measure of one setting, its lines added to ``report``."""
    print(setting.name, file=sys.stderr, flush=True)
    release = ensure_data(args.data_dir, setting, args.items)
    here = tmp / setting.folder
    entry, png = disk_bytes(release, setting, here / "disk")
    stage = timed("stage", lambda: measure_stage(release, setting, args.rounds, here / "stage"))
    report.stage.append(
        f"| {setting.name} | {stage.median('today'):.2f} | {stage.median('warm'):.2f} "
        f"| {stage.median('cold'):.2f} | {entry:,.0f} | {png:,.0f} |"
    )
    for key, series in STAGE_SERIES.items():
        report.stage_ms.setdefault(series, []).append(stage.median(key))
    items = timed("ds[i]", lambda: measure_items(release, setting, args.rounds, here / "items"))
    for kind in ("instance", "semantic"):
        ratio = paired(items, f"{kind} warm", f"{kind} plain")
        for key, series in (("plain", "no cache"), ("warm", "warm cache")):
            report.item_ms.setdefault(f"{kind}, {series}", []).append(items.median(f"{kind} {key}"))
        report.items.append(
            f"| {setting.name} | {kind} | {items.median(f'{kind} plain'):.2f} "
            f"| {items.median(f'{kind} warm'):.2f} | {ratio:.2f} "
            f"| {items.median(f'{kind} plain first'):.2f} | {items.median(f'{kind} cold'):.2f} |"
        )
        if kind == "instance" and setting.width == 1280:
            goal = "" if args.baseline else "; the goal's ratio needs --baseline (see 5.)"
            report.notes.append(
                f"ds[i] with a warm cache / this checkout without one, instance, "
                f"{setting.name}: {ratio:.2f}{goal}"
            )
    rates = timed("DataLoader", lambda: measure_loader(release, args.passes, 2, here))
    report.loader.append(
        f"| {setting.name} | {rates['no cache']:.1f} | {rates['cold']:.1f} "
        f"| {rates['warm']:.1f} | {rates['warm'] / rates['no cache']:.2f} |"
    )
    if setting.width != 1280:
        return
    if args.baseline is not None:
        runs = timed(
            "baseline",
            lambda: measure_baseline(args.baseline, release, args.baseline_passes, here / "old"),
        )
        shown = {key: ", ".join(f"{ms:.2f}" for ms in values) for key, values in runs.items()}
        ratios = [w / b for w, b in zip(runs["warm"], runs["baseline"], strict=True)]
        report.notes.append(
            f"ds[i] instance, {setting.name}, ms per pass: {args.baseline} {shown['baseline']}; "
            f"this checkout, no cache {shown['no cache']}; warm cache {shown['warm']}. "
            f"Warm / {args.baseline}: {', '.join(f'{r:.2f}' for r in ratios)}, median "
            f"{statistics.median(ratios):.2f} (goal: at most {ITEM_GOAL})"
        )
    report.notes.insert(
        0,
        f"warm bitmap stage, {setting.name}: {stage.median('warm'):.2f} ms "
        f"(goal: under {STAGE_GOAL_MS} ms)",
    )
    sdk = timed("SDK", lambda: measure_sdk(release, setting, args.items, args.rounds, here))
    sdk_ms, ours_ms = sdk.median("sdk"), sdk.median("ours")
    report.notes.append(
        f"SDK user path (Mask R-CNN targets) over loopback HTTP, {setting.name}: "
        f"{sdk_ms:.2f} ms/item; ours with a warm label cache: {ours_ms:.2f} ms/item "
        f"({sdk_ms / ours_ms:.2f}x faster)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=10, help="rounds of timed calls")
    parser.add_argument("--items", type=int, default=96, help="samples in each release")
    parser.add_argument("--passes", type=int, default=3, help="DataLoader passes (median kept)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a sanity check")
    parser.add_argument("--plot", type=Path, help="also draw this run's figures into a PNG")
    parser.add_argument(
        "--baseline", type=Path, help="an older checkout to measure ds[i] against (see 5.)"
    )
    parser.add_argument("--baseline-passes", type=int, default=5, help="passes of 5.")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.items, args.passes = 2, 16, 1
    torch.set_num_threads(1)
    codec = "zstd" if label_cache._ZSTANDARD is not None else "zlib"
    png = "pyspng" if codecs._PYSPNG is not None else "torchcodec or Pillow"
    print(
        f"segments_torch {segments_torch.__version__}, torch {torch.__version__}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; label cache entries: {codec}; "
        f"bitmaps decoded by {png}\ncommand: {COMMAND}{' --quick' if args.quick else ''}\n"
    )
    report = Report(list(STAGE_HEADER), list(ITEM_HEADER), list(LOADER_HEADER), [])
    with tempfile.TemporaryDirectory() as tmp:
        for setting in SETTINGS:
            measure_setting(setting, args, Path(tmp), report)
    print("## The bitmap stage (ms per call, medians)\n")
    print("\n".join(report.stage))
    print("\n## ds[i] (ms, medians)\n")
    print("\n".join(report.items))
    print("\n## DataLoader, 2 workers, batch 4, instance targets (one epoch each)\n")
    print("\n".join(report.loader))
    print()
    print("\n".join(report.notes))
    if args.plot:
        groups = [setting.name.replace(", ", "\n") for setting in SETTINGS]
        panels = [
            Panel("The bitmap stage", "ms per call (log scale)", groups, report.stage_ms, log=True),
            Panel("ds[i]", "ms per item (log scale)", groups, report.item_ms, log=True),
        ]
        print(f"plot: {save_bars(args.plot, 'The label cache', panels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
