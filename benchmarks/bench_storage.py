"""Benchmark: assets over HTTP: no cache, filling the cache, a warm cache; the SDK; prefetch.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_storage.py            # 2 to 4 minutes on two cores
    .venv/bin/python benchmarks/bench_storage.py --quick    # under a minute, sanity only

What is measured, in one run, over loopback HTTP (a threaded ``http.server`` with
``TCP_NODELAY`` in a separate process, on 127.0.0.1 and an ephemeral port; nothing else is
contacted):

1. Data: ``bench_dataset.py``'s generated 1280x720 samples (photo-like JPEG, quality 90,
   and an 8-bit RGBA PNG bitmap with 25 instances; 8 distinct, under ``--data-dir``, made
   once and reused), served under ``--items`` (default 200) distinct URLs per kind
   (``images/s0000.jpg`` ... and ``bitmaps/s0000.png`` ..., symbolic links in a temporary
   server root), so that every cache sees ``2 x items`` different files. The release file
   (current layout, statuses LABELED and REVIEWED alternating) lists them by absolute URL.
2. ``SegmentsDataset(release, target="instance")`` through a ``DataLoader`` (batch 4,
   ``ds.collate_fn``) with 0 and 2 workers, in three regimes: **cold** (no ``cache_dir``:
   every epoch downloads), **fill** (the first epoch with ``cache_dir`` set to an empty
   folder) and **warm** (the second epoch, a new ``DataLoader`` over the same dataset and
   ``cache_dir``). Items per second over the whole epoch (a fresh ``DataLoader``: worker
   start-up included), over the epoch after its first batch, and the first batch's time.
   After each fill the cache must hold ``2 x items`` files.
3. The official SDK on the same server: ``segments.SegmentsDataset(release_file,
   labelset="ground-truth", filter_by=["LABELED", "REVIEWED"])`` with its default cache
   (``segments_dir`` in a temporary folder, ``preload=True``: it downloads every sample up
   front with 16 threads): its construction time, or, where it fails (segments-ai 1.33
   with Pillow 13 cannot save a bitmap: "cannot write mode I as PNG"), the failure and the
   time it took to fail; then per item from its cache where it succeeded. Always also
   ``segments_dir=None`` (nothing cached or preloaded): construction, and per item (each
   sample once over the rounds) ``__getitem__`` (the image stays a lazy PIL image) and the
   decode of that image to a tensor (``transforms.v2.functional.to_image``) apart. Ours per
   item (``ds[i]``, no cache, single process) is timed interleaved with it, and both are
   checked to give the same images, masks, boxes, labels and semantic labels first
   (``bench_dataset.check_same``).
   The SDK's item has no instance targets: ``bench_dataset.sdk_instance`` (the image to a
   tensor and the numpy an SDK user writes for masks, boxes and labels) is timed too.
4. ``segments_torch.storage.prefetch(Storage(cache_dir=...), urls, workers=8)`` (what
   ``segments-torch prefetch`` runs) for the ``2 x items`` assets into an empty folder: time
   and MB/s; then again over the filled cache (nothing to download).

Every measure is repeated ``--rounds`` times (default 3), regimes interleaved within each
round, and the tables give medians; ratios divide numbers of the same run. The timed process
runs ``torch.set_num_threads(1)``, as each DataLoader worker does. The server shares the two
cores with the client, and cached files are read back from the page cache.

This benchmark found a stall: after a ``DataLoader`` epoch with forked workers, the
parent's next read over HTTP sometimes waited for the whole request timeout, its response
unread in the socket. The workers dropped the inherited fsspec HTTP filesystems and closing
their sessions unregistered the shared keep-alive sockets from the parent's epoll;
``segments_torch.storage`` now keeps them in forked children
(``_hold_http_filesystems``), and tests/test_storage.py checks it.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from bench_dataset import (
    BATCH,
    CATEGORIES,
    DEFAULT_DATA_DIR,
    LABELSET,
    SDK_SIZE,
    SIZES,
    STATUSES,
    Timings,
    check_same,
    ensure_assets,
    file_server,
    make_release,
    quiet,
    sdk_instance,
    write_json,
)
from torch.utils.data import DataLoader
from torchvision.transforms.v2.functional import to_image

import segments_torch
from segments_torch import SegmentsDataset, codecs
from segments_torch.storage import Storage, prefetch

COMMAND = ".venv/bin/python benchmarks/bench_storage.py"
DEFAULT_ITEMS = 200
DEFAULT_ROUNDS = 3
WORKERS = (0, 2)
REGIMES = ("cold", "fill", "warm")
REGIME_TEXT = {
    "cold": "cold, no cache (every epoch downloads)",
    "fill": "cold, filling an empty `cache_dir` (1st epoch)",
    "warm": "warm `cache_dir` (2nd epoch)",
}
PREFETCH_WORKERS = 8


# -- data and server -------------------------------------------------------------------------


@dataclass
class Site:
    """The server root (links to the generated assets) and the release that lists them."""

    root: Path
    release: Path
    urls: list[str]  # image and bitmap of each sample, in order: 2 x items distinct URLs
    nbytes: int  # their total size


def make_site(folder: Path, tmp: Path, items: int) -> Path:
    """``tmp/site``: ``items`` links per kind to the ``folder``'s distinct assets."""
    distinct = SIZES[SDK_SIZE][2]
    root = tmp / "site"
    for kind, suffix in (("images", "jpg"), ("bitmaps", "png")):
        (root / kind).mkdir(parents=True)
        for j in range(items):
            target = folder / kind / f"a{j % distinct}.{suffix}"
            (root / kind / f"s{j:04d}.{suffix}").symlink_to(target)
    return root


def write_release(root: Path, tmp: Path, url: str, items: int) -> Site:
    """A release of ``items`` samples whose assets are the distinct URLs under ``url``
    (annotations as ``bench_dataset.make_release`` gives them for the linked asset)."""
    document = make_release(SDK_SIZE, items, base_url=url)
    urls = []
    for j, sample in enumerate(document["dataset"]["samples"]):
        image, bitmap = f"{url}images/s{j:04d}.jpg", f"{url}bitmaps/s{j:04d}.png"
        sample["attributes"]["image"]["url"] = image
        sample["labels"][LABELSET]["attributes"]["segmentation_bitmap"]["url"] = bitmap
        urls += [image, bitmap]
    release = tmp / "release-http.json"
    write_json(release, document)
    nbytes = sum((root / u.removeprefix(url)).stat().st_size for u in urls)
    return Site(root, release, urls, nbytes)


def cached_files(folder: Path) -> int:
    """Complete files in a cache folder (temporary ``.partial-*`` files not counted)."""
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".partial"))


# -- 2. DataLoader regimes -------------------------------------------------------------------


@dataclass
class Epoch:
    first_batch_s: float  # DataLoader start-up (workers included) and the first batch
    total_s: float
    items: int


def run_epoch(ds: SegmentsDataset, workers: int) -> Epoch:
    loader = DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=ds.collate_fn)
    start = time.perf_counter()
    batches = iter(loader)
    images, _ = next(batches)
    first = time.perf_counter() - start
    items = len(images) + sum(len(images) for images, _ in batches)
    epoch = Epoch(first, time.perf_counter() - start, items)
    return epoch


@dataclass
class LoaderResults:
    epochs: dict[tuple[str, int], list[Epoch]] = field(default_factory=dict)

    def add(self, regime: str, workers: int, epoch: Epoch) -> None:
        self.epochs.setdefault((regime, workers), []).append(epoch)

    def rate(self, regime: str, workers: int) -> float:
        """Items per second over the whole epoch, median of rounds."""
        return statistics.median(e.items / e.total_s for e in self.epochs[regime, workers])

    def steady_rate(self, regime: str, workers: int) -> float:
        """Items per second after the first batch, median of rounds."""
        return statistics.median(
            (e.items - BATCH) / (e.total_s - e.first_batch_s) for e in self.epochs[regime, workers]
        )

    def first_batch(self, regime: str, workers: int) -> float:
        return statistics.median(e.first_batch_s for e in self.epochs[regime, workers])


def loader_round(site: Site, tmp: Path, round_: int, results: LoaderResults) -> None:
    """One epoch of each regime for each worker count."""
    items = len(site.urls) // 2
    options: dict[str, Any] = {"labelset": LABELSET, "filter_by": STATUSES, "target": "instance"}
    for workers in WORKERS:
        cold = SegmentsDataset(site.release, **options)
        results.add("cold", workers, run_epoch(cold, workers))
        cache = tmp / f"cache-{round_}-{workers}"
        cache.mkdir()
        cached = SegmentsDataset(site.release, **options, cache_dir=cache)
        results.add("fill", workers, run_epoch(cached, workers))
        if (found := cached_files(cache)) != 2 * items:
            raise AssertionError(f"the cache holds {found} files after the first epoch")
        results.add("warm", workers, run_epoch(cached, workers))
        if (found := cached_files(cache)) != 2 * items:
            raise AssertionError(f"the cache holds {found} files after the second epoch")
        shutil.rmtree(cache)
        for regime in REGIMES:
            epoch = results.epochs[regime, workers][-1]
            if epoch.items != items:
                raise AssertionError(f"{regime}, {workers} workers: {epoch.items} of {items}")


def loader_table(results: LoaderResults) -> list[str]:
    lines = [
        "| regime | workers | items/s (epoch) | items/s after 1st batch | 1st batch s | "
        "epoch / cold |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for workers in WORKERS:
        cold = results.rate("cold", workers)
        for regime in REGIMES:
            rate = results.rate(regime, workers)
            lines.append(
                f"| {REGIME_TEXT[regime]} | {workers} | {rate:.1f} | "
                f"{results.steady_rate(regime, workers):.1f} | "
                f"{results.first_batch(regime, workers):.2f} | {rate / cold:.2f}x |"
            )
    return lines


# -- 3. the SDK ------------------------------------------------------------------------------


def sdk_options() -> dict[str, Any]:
    # Passed untyped: the SDK annotates segments_dir as str (None is documented) and
    # filter_by as its LabelStatus enum (it upper-cases strings itself).
    return {"labelset": LABELSET, "filter_by": STATUSES}


@dataclass
class SdkResults:
    default_s: list[float] = field(default_factory=list)  # successful default constructions
    default_failures: list[tuple[float, str]] = field(default_factory=list)  # s, error
    no_cache_s: list[float] = field(default_factory=list)
    per_item: Timings = field(default_factory=Timings)  # ms per call


def sdk_default(site: Site, tmp: Path, round_: int, results: SdkResults) -> Any:
    """The SDK's default construction (cache in a fresh folder, preload); the dataset, or
    ``None`` where it failed."""
    from segments import SegmentsDataset as SDKDataset

    segments_dir = tmp / f"segments-{round_}"
    start = time.perf_counter()
    try:
        with quiet():
            sdk = SDKDataset(str(site.release), **sdk_options(), segments_dir=str(segments_dir))
    except Exception as exc:  # segments-ai 1.33 cannot cache bitmaps with Pillow 13
        elapsed = time.perf_counter() - start
        results.default_failures.append((elapsed, f"{type(exc).__name__}: {exc}"))
        shutil.rmtree(segments_dir, ignore_errors=True)
        return None
    results.default_s.append(time.perf_counter() - start)
    return sdk


def sdk_round(
    site: Site, tmp: Path, round_: int, rounds: int, results: SdkResults, label_of: dict[int, int]
) -> None:
    """The default construction, the uncached one, then items of the uncached SDK, of the
    cached one (where it was built) and of ours, interleaved: every ``rounds``-th item from
    ``round_``, so that each item is timed once over the rounds."""
    from segments import SegmentsDataset as SDKDataset

    cached_sdk = sdk_default(site, tmp, round_, results)
    start = time.perf_counter()
    with quiet():
        sdk = SDKDataset(str(site.release), **(sdk_options() | {"segments_dir": None}))
    results.no_cache_s.append(time.perf_counter() - start)
    ours = SegmentsDataset(site.release, labelset=LABELSET, filter_by=STATUSES, target="instance")
    if not len(sdk) == len(ours) == len(site.urls) // 2:
        raise AssertionError(f"{len(sdk)} SDK items, {len(ours)} ours, not {len(site.urls) // 2}")
    if round_ == 0:
        semantic = SegmentsDataset(site.release, filter_by=STATUSES, target="semantic")
        for index in range(min(2, len(ours))):
            check_same(sdk, {"instance": ours, "semantic": semantic}, index, label_of)

    t = results.per_item
    for index in range(round_, len(ours), rounds):
        start = time.perf_counter()
        item = sdk[index]
        middle = time.perf_counter()
        to_image(item["image"])
        end = time.perf_counter()
        t.add("sdk getitem", (middle - start) * 1e3)
        t.add("sdk decode", (end - middle) * 1e3)
        t.add("sdk getitem+decode", (end - start) * 1e3)
        t.time("sdk user targets", functools.partial(sdk_instance, sdk, index, label_of))
        if cached_sdk is not None:
            t.time("sdk cached getitem", functools.partial(cached_sdk.__getitem__, index))
        t.time("ours", functools.partial(ours.__getitem__, index))
    if cached_sdk is not None:
        shutil.rmtree(tmp / f"segments-{round_}", ignore_errors=True)


def sdk_table(results: SdkResults, items: int, loaders: LoaderResults) -> list[str]:
    lines = [f"| SDK, {items} samples | time |", "|---|---:|"]
    default = "SDK default (`segments_dir` in a temporary folder, `preload=True`): construction"
    if results.default_s:
        median = statistics.median(results.default_s)
        lines.append(f"| {default} | {median:.2f} s ({items / median:.1f} items/s) |")
    for elapsed, error in results.default_failures[:1]:
        lines.append(f"| {default} | fails after {elapsed:.2f} s: {error} |")
    if len(results.default_failures) > 1:
        failures = [elapsed for elapsed, _ in results.default_failures]
        lines.append(
            f"| {default}: time to failure, median of {len(failures)} | "
            f"{statistics.median(failures):.2f} s |"
        )
    no_cache = statistics.median(results.no_cache_s)
    lines.append(f"| SDK `segments_dir=None`: construction | {no_cache * 1e3:.1f} ms |")
    t = results.per_item
    rows = [
        ("SDK `segments_dir=None`: `sdk[i]` (image left a lazy PIL image)", "sdk getitem"),
        ("SDK `segments_dir=None`: decoding that image to a tensor (`to_image`)", "sdk decode"),
        ("SDK `segments_dir=None`: `sdk[i]` + image to tensor", "sdk getitem+decode"),
        (
            "SDK `segments_dir=None`: `sdk[i]`, image to tensor and the user's numpy for "
            "instance targets (masks, boxes, labels: `bench_dataset.sdk_instance`)",
            "sdk user targets",
        ),
        ("SDK default, from its cache: `sdk[i]`", "sdk cached getitem"),
        (
            "ours, no cache: `ds[i]` (`target='instance'`: image tensor, masks, boxes, labels; "
            "single process)",
            "ours",
        ),
    ]
    ours = t.median("ours")
    lines += ["", "| per item, medians | ms | / ours |", "|---|---:|---:|"]
    for what, name in rows:
        if name in t.samples:
            median = t.median(name)
            lines.append(f"| {what} | {median:.2f} | {median / ours:.2f}x |")
    cold = 1e3 / loaders.rate("cold", 0)
    lines.append(
        f"| ours, no cache, DataLoader with 0 workers (1 / items per s) | {cold:.2f} | "
        f"{cold / ours:.2f}x |"
    )
    return lines


# -- 4. prefetch -----------------------------------------------------------------------------


@dataclass
class PrefetchResults:
    fill_s: list[float] = field(default_factory=list)
    again_s: list[float] = field(default_factory=list)
    nbytes: int = 0


def prefetch_round(site: Site, tmp: Path, round_: int, results: PrefetchResults) -> None:
    cache = tmp / f"prefetch-{round_}"
    storage = Storage(cache_dir=cache)
    start = time.perf_counter()
    report = prefetch(storage, site.urls, workers=PREFETCH_WORKERS)
    results.fill_s.append(time.perf_counter() - start)
    if report.failed or report.downloaded != len(site.urls):
        raise AssertionError(f"prefetch: {report}")
    if report.bytes_downloaded != site.nbytes or cached_files(cache) != len(site.urls):
        raise AssertionError(f"prefetch: {report.bytes_downloaded} bytes, not {site.nbytes}")
    results.nbytes = report.bytes_downloaded
    start = time.perf_counter()
    report = prefetch(storage, site.urls, workers=PREFETCH_WORKERS)
    results.again_s.append(time.perf_counter() - start)
    if report.already_cached != len(site.urls) or report.downloaded:
        raise AssertionError(f"prefetch again: {report}")
    shutil.rmtree(cache)


def prefetch_table(results: PrefetchResults, assets: int) -> list[str]:
    fill, again = statistics.median(results.fill_s), statistics.median(results.again_s)
    megabytes = results.nbytes / 1e6
    return [
        "| `prefetch(Storage(cache_dir=...), urls, workers=8)` | time | assets/s | MB/s |",
        "|---|---:|---:|---:|",
        f"| {assets} assets ({megabytes:.1f} MB) into an empty folder | {fill:.2f} s | "
        f"{assets / fill:.0f} | {megabytes / fill:.1f} |",
        f"| again, all cached (nothing downloaded) | {again * 1e3:.1f} ms | "
        f"{assets / again:,.0f} | |",
    ]


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--items", type=int, default=DEFAULT_ITEMS, help="samples (default %(default)s)"
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="repetitions (default %(default)s)"
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--quick", action="store_true", help="40 samples, 1 round: sanity only")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.rounds = 40, 1
    if args.items < 2 * BATCH or args.rounds < 1:
        parser.error(f"--items must be at least {2 * BATCH} and --rounds at least 1")
    torch.set_num_threads(1)
    from importlib.metadata import version

    jpeg = "torchcodec" if codecs._TORCHCODEC is not None else "torchvision.io"
    png = "pyspng" if codecs._PYSPNG is not None else "torchvision.io"
    versions = (
        f"segments_torch {segments_torch.__version__}, segments-ai {version('segments-ai')}, "
        f"Pillow {version('Pillow')}, fsspec {version('fsspec')}, aiohttp {version('aiohttp')}, "
        f"torch {torch.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(f"{versions}; decoders: JPEG {jpeg}, PNG {png}", flush=True)

    by_id = sorted(CATEGORIES, key=lambda c: int(c["id"]))
    label_of = {int(c["id"]): label + 1 for label, c in enumerate(by_id)}
    folder = ensure_assets(args.data_dir, SDK_SIZE)
    loaders, sdk, prefetched = LoaderResults(), SdkResults(), PrefetchResults()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as name:
        tmp = Path(name)
        root = make_site(folder, tmp, args.items)
        with file_server(root) as url:
            site = write_release(root, tmp, url, args.items)
            steps: list[tuple[str, Callable[[int], None]]] = [
                ("DataLoader", lambda r: loader_round(site, tmp, r, loaders)),
                ("SDK", lambda r: sdk_round(site, tmp, r, args.rounds, sdk, label_of)),
                ("prefetch", lambda r: prefetch_round(site, tmp, r, prefetched)),
            ]
            for round_ in range(args.rounds):
                for what, step in steps:
                    print(
                        f"round {round_ + 1}/{args.rounds}: {what} "
                        f"({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
                    step(round_)
    elapsed = time.perf_counter() - started

    assets = len(site.urls)
    sections = [
        (
            f"`SegmentsDataset(..., target='instance')` through a `DataLoader` (batch {BATCH}, "
            f"`ds.collate_fn`), {args.items} samples, a fresh `DataLoader` per epoch; epoch "
            "rate includes worker start-up:",
            loader_table(loaders),
        ),
        (
            "The SDK, `segments.SegmentsDataset(release_file, labelset='ground-truth', "
            "filter_by=['LABELED', 'REVIEWED'], ...)`, on the same server; per item: each "
            "sample once over the rounds, interleaved with ours:",
            sdk_table(sdk, args.items, loaders),
        ),
        ("`segments-torch prefetch` equivalent:", prefetch_table(prefetched, assets)),
    ]
    options = " --quick" if args.quick else ""
    if not args.quick and args.items != DEFAULT_ITEMS:
        options += f" --items {args.items}"
    if not args.quick and args.rounds != DEFAULT_ROUNDS:
        options += f" --rounds {args.rounds}"
    print("\n## Summary (markdown)\n")
    print(
        f"`{COMMAND}{options}` — {versions}; decoders {jpeg} (JPEG) and {png} (PNG); "
        f"`torch.set_num_threads(1)` in the timed process. {args.items} samples at {SDK_SIZE} "
        f"(JPEG + RGBA PNG bitmap, 25 instances; {SIZES[SDK_SIZE][2]} distinct served under "
        f"{assets} distinct URLs, {site.nbytes / 1e6:.1f} MB) over loopback HTTP (threaded "
        "`http.server`, `TCP_NODELAY`, in another process on the same cores); medians of "
        f"{args.rounds} rounds, regimes interleaved, ratios from the same run; "
        f"{elapsed:.0f} s in all.\n"
    )
    for text, table in sections:
        print(f"{text}\n")
        print("\n".join(table))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
