"""Benchmark: ``SegmentsDataset`` items against decoding alone, the official SDK, a DataLoader.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_dataset.py            # 3 to 5 minutes on two cores
    .venv/bin/python benchmarks/bench_dataset.py --quick    # under a minute, sanity only

The design's promise is that building targets disappears under the cost of decoding the
two files of a sample. What is measured, in one run:

1. Generated samples (``--data-dir``, default ``benchmarks/data/``, git-ignored; made once
   and reused): photo-like JPEGs (quality 90) and 8-bit RGBA PNG bitmaps with 25 instances
   (ids 1-3 are three "stuff" bands, two sharing a category, ids 4-25 "things"; some
   pixels unlabelled), 8 distinct samples at 1280x720 and 4 at 3648x2736 (and 8 at 640x480
   with ``--sizes 640x480``), listed round-robin in release files of the current layout
   with asset URLs relative to the release folder.
2. **Floor** per size and target kind: reading the two files, decoding them with the very
   functions ``ds[i]`` uses (``codecs.decode_image``, ``codecs.decode_bitmap_pixels``), and
   one zero-fill of every tensor ``ds[i]`` returns besides the image (taken from a real
   item: masks, boxes, labels, semantic and instance maps) plus the H x W int32 id map.
   Then ``ds[i]`` for ``target="instance"``, ``"semantic"`` and ``"panoptic"`` as a ratio
   to the floor of its kind (target: 1.25 or less): the ratio of the two medians, and the
   median of paired ratios (each ``ds[i]`` call over the floor call just before it, on the
   same files), which the target is judged by: this machine's speed drifts by a third
   within minutes, which moves medians but not pairs. Also a breakdown of ``ds[i]`` made by
   calling the same functions in sequence: read, decode image, decode bitmap, ids,
   build_target (annotation lookup, ``targets.build_target``, the image wrapper).
3. Against the SDK at 1280x720, assets served over HTTP by a threaded ``http.server`` in a
   separate process on 127.0.0.1 (ephemeral port; nothing else is contacted): the SDK's
   ``segments.SegmentsDataset(release, labelset="ground-truth", filter_by=["LABELED",
   "REVIEWED"], segments_dir=None)`` (cache off) ``__getitem__``, the image to a tensor
   (``transforms.v2.functional.to_image``; the SDK returns a lazy PIL image), and the numpy
   an SDK user writes for Mask R-CNN targets (a mask per annotation by ``ids == id``,
   boxes from ``np.nonzero``, labels) or for a semantic map (``get_semantic_bitmap``),
   against ours reading the same server through fsspec (aiohttp), where the bitmap
   downloads, decodes and becomes the target in a thread of the storage while the image
   downloads and decodes in the caller (``Storage.read_each``; the SDK does one after the
   other). Targets: ours at least 2x
   faster for instance targets and 2.5x for semantic. Both give the same masks, boxes,
   labels and semantic labels (checked first). The server sets ``TCP_NODELAY``, as real
   ones do (without it, small files wait 40 ms on delayed ACKs). Also construction times:
   the SDK's default (``segments_dir`` set, ``preload=True``: it downloads every sample
   up front, into a temporary folder; with segments-ai 1.33 and Pillow 13 it fails on
   the first bitmap it caches, which is reported, with the time its preload loop takes
   without the cache writes as a lower bound) against ours (which reads no image).
4. DataLoader throughput from local files at 1280x720: items per second with 0 and 2
   workers, batch size 4, ``ds.collate_fn``, after one warm-up batch whose time (worker
   start-up included) is reported apart; median of ``--passes`` passes.

All times are wall-clock medians of interleaved repetitions (the machine is shared and
noisy); every ratio divides numbers measured in the same run. The timed process runs
``torch.set_num_threads(1)``, as each DataLoader worker does. Files are read from the page
cache after the first pass. Buffers of tens of MB come from the OS (page faults: about
half of a zero-fill's cost) or recycled from the heap, as glibc's adaptive mmap threshold
decides, so the 1280x720 floor's zero-fill varies between runs (seen: 4 to 12 ms). Every
timed call ends with its outputs alive and frees them after the clock stops, the floor's
zero-filled tensors included, so the floor writes as many distinct bytes as an item.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_decoders import make_ids, make_photo
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms.v2.functional import to_image

import segments_torch
from segments_torch import SegmentsDataset, codecs
from segments_torch.targets import allocate

#: Bumped whenever the generated files change, so old ones are not reused.
GENERATOR_VERSION = 1
COMMAND = ".venv/bin/python benchmarks/bench_dataset.py"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"
# width, height, distinct samples; 640x480 (where per-item costs that do not grow with the
# pixels weigh most) only when asked for with --sizes.
SIZES = {"640x480": (640, 480, 8), "1280x720": (1280, 720, 8), "3648x2736": (3648, 2736, 4)}
DEFAULT_SIZES = ["1280x720", "3648x2736"]
SDK_SIZE = "1280x720"  # the SDK comparison and the DataLoader run at this size
KINDS = ("instance", "semantic", "panoptic")
LABELSET = "ground-truth"
STATUSES = ["LABELED", "REVIEWED"]
INSTANCES = 25
CATEGORIES: list[dict[str, Any]] = [
    {"id": 0, "name": "person", "color": [220, 20, 60]},
    {"id": 1, "name": "car", "color": [0, 0, 142]},
    {"id": 2, "name": "bicycle"},
    {"id": 3, "name": "dog", "color": [250, 170, 30]},
    {"id": 4, "name": "sky", "color": [70, 130, 180], "has_instances": False},
    {"id": 5, "name": "road", "has_instances": False},
]
STUFF = {1: 4, 2: 5, 3: 5}  # instance id -> category of the three bands
FLOOR_TARGET, INSTANCE_TARGET, SEMANTIC_TARGET = 1.25, 2.0, 2.5
BATCH = 4
DEFAULT_REPEAT = 20


# -- data ------------------------------------------------------------------------------------


def asset_dir(data_dir: Path, size: str) -> Path:
    return data_dir / f"dataset-v{GENERATOR_VERSION}" / size


def category_of(instance: int, rng: np.random.Generator) -> int:
    return STUFF.get(instance, int(rng.integers(0, 4)))


def make_release(size: str, items: int, base_url: str = "") -> dict[str, Any]:
    """A release in the current layout: ``items`` samples over the size's distinct assets,
    round-robin; asset URLs are ``base_url`` + ``images/…`` (relative when empty)."""
    return release_document(f"bench-{size}", SIZES[size][2], INSTANCES, items, base_url)


def release_document(
    name: str, distinct: int, instances: int, items: int, base_url: str = ""
) -> dict[str, Any]:
    """A release named ``name`` in the current layout: ``items`` samples over ``distinct``
    assets ``images/a{k}.jpg`` and ``bitmaps/a{k}.png``, round-robin, each with
    ``instances`` annotations (ids 1 ..; categories drawn per asset, the three band ids
    stuff); asset URLs are ``base_url`` + the asset's path (relative when empty)."""
    samples = []
    for j in range(items):
        k = j % distinct
        rng = np.random.default_rng(k)  # the annotations of asset k, whatever j
        annotations = [
            {"id": i, "category_id": category_of(i, rng), "attributes": {}}
            for i in range(1, instances + 1)
        ]
        samples.append(
            {
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{j}")),
                "name": f"s{j:04d}.jpg",
                "attributes": {"image": {"url": f"{base_url}images/a{k}.jpg"}},
                "metadata": {"split": "train"},
                "labels": {
                    LABELSET: {
                        "label_status": STATUSES[j % 2],
                        "attributes": {
                            "format_version": "0.1",
                            "annotations": annotations,
                            "segmentation_bitmap": {"url": f"{base_url}bitmaps/a{k}.png"},
                        },
                    }
                },
            }
        )
    return {
        "name": f"v{GENERATOR_VERSION}-{items}",
        "description": "generated by the benchmarks",
        "created_at": "2024-06-07 12:00:00.000000+00:00",
        "dataset": {
            "name": name,
            "owner": "segments-torch",
            "task_type": "segmentation-bitmap",
            "task_attributes": {"format_version": "0.1", "categories": CATEGORIES},
            "labelsets": [{"name": LABELSET, "description": ""}],
            "samples": samples,
        },
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(document))
    os.replace(partial, path)  # an interrupted run leaves no file that looks complete


def ensure_assets(data_dir: Path, size: str) -> Path:
    """The size's images and bitmaps, generated unless present; returns their folder."""
    width, height, distinct = SIZES[size]
    folder = asset_dir(data_dir, size)
    for k in range(distinct):
        image, bitmap = folder / "images" / f"a{k}.jpg", folder / "bitmaps" / f"a{k}.png"
        if image.is_file() and bitmap.is_file():
            continue
        print(f"generating {size} sample {k} ...", flush=True)
        image.parent.mkdir(parents=True, exist_ok=True)
        bitmap.parent.mkdir(parents=True, exist_ok=True)
        ids = make_ids(width, height, seed=100 + k, instances=INSTANCES)
        for path, data in (
            (image, make_photo(ids, seed=200 + k)),
            (bitmap, codecs.encode_bitmap(ids)),
        ):
            partial = path.with_name(f"{path.name}.partial")
            partial.write_bytes(data)
            os.replace(partial, path)
    return folder


def ensure_release(data_dir: Path, size: str, items: int) -> Path:
    path = ensure_assets(data_dir, size) / f"release-{items}.json"
    if not path.is_file():
        write_json(path, make_release(size, items))
    return path


# -- timing ----------------------------------------------------------------------------------


class Timings:
    """Milliseconds per named measure; medians at the end."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def add(self, name: str, ms: float) -> None:
        self.samples.setdefault(name, []).append(ms)

    def time(self, name: str, fn: Callable[[], object]) -> None:
        """Time making ``fn()``'s result, not freeing it: the result is dropped after the
        clock stops (giving tens of MB back to the OS costs milliseconds, and whether it
        happens at all depends on glibc's heap, not on the code measured)."""
        start = time.perf_counter()
        result = fn()
        self.add(name, (time.perf_counter() - start) * 1e3)
        del result  # only now

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def count(self, name: str) -> int:
        return len(self.samples[name])


class Steps:
    """Splits one call into named steps: ``mark(name)`` ends the step begun at the last mark."""

    def __init__(self, timings: Timings, prefix: str) -> None:
        self.timings, self.prefix = timings, prefix
        self.start = self.last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.timings.add(f"{self.prefix}{name}", (now - self.last) * 1e3)
        self.last = now

    def total(self, name: str) -> None:
        self.timings.add(f"{self.prefix}{name}", (time.perf_counter() - self.start) * 1e3)


# -- 2. floor and breakdown ------------------------------------------------------------------

Shapes = list[tuple[tuple[int, ...], torch.dtype]]
FLOOR_STEPS = ("read", "decode image", "decode bitmap", "zero-fill")
ITEM_STEPS = ("read", "decode image", "decode bitmap", "ids", "build_target")


def output_shapes(ds: SegmentsDataset, index: int) -> Shapes:
    """What ``ds[index]`` writes besides the image: every target tensor, and the id map."""
    image, target = ds[index]
    shapes: Shapes = [((image.shape[-2], image.shape[-1]), torch.int32)]
    shapes += [(tuple(t.shape), t.dtype) for t in target.values() if isinstance(t, torch.Tensor)]
    return shapes


def floor(timings: Timings, prefix: str, image_path: str, bitmap_path: str, shapes: Shapes) -> None:
    """Read and decode the two files as ``ds[i]`` does, then zero-fill its outputs. Like
    an item's, every output is alive at the end (so none reuses another's memory) and is
    freed after the clock stops."""
    steps = Steps(timings, prefix)
    image_bytes, bitmap_bytes = Path(image_path).read_bytes(), Path(bitmap_path).read_bytes()
    steps.mark("read")
    image = codecs.decode_image(image_bytes)
    steps.mark("decode image")
    pixels = codecs.decode_bitmap_pixels(bitmap_bytes)
    steps.mark("decode bitmap")
    outputs = [torch.zeros(shape, dtype=dtype) for shape, dtype in shapes]
    steps.mark("zero-fill")
    steps.total("floor")
    del image, pixels, outputs  # only now


def instrumented_item(timings: Timings, prefix: str, ds: SegmentsDataset, index: int) -> None:
    """``ds[index]`` step by step, with the functions ``SegmentsDataset.__getitem__`` calls."""
    steps = Steps(timings, prefix)
    row = int(ds.rows[index])
    table = ds.release.samples
    labels = table.label_columns(ds.labelset)
    image_bytes = ds.storage.read(table.image_urls[row])
    bitmap_bytes = ds.storage.read(labels.bitmap_urls[row])
    steps.mark("read")
    image = codecs.decode_image(image_bytes)
    steps.mark("decode image")
    pixels = codecs.decode_bitmap_pixels(bitmap_bytes)
    steps.mark("decode bitmap")
    ids = codecs.pixels_to_ids(pixels)
    steps.mark("ids")
    target = ds.target_for(row, ids)
    image = tv_tensors.Image(image)
    steps.mark("build_target")
    del image, target  # freed after the clock stops, as in ``Timings.time``


@dataclass
class FloorResult:
    size: str
    timings: Timings
    calls: int


def measure_floor(data_dir: Path, size: str, calls: int) -> FloorResult:
    """Part 2 for one size: ``calls`` timed calls of each measure, interleaved."""
    distinct = SIZES[size][2]
    release = ensure_release(data_dir, size, distinct)
    folder = release.parent
    datasets = {kind: SegmentsDataset(release, target=kind) for kind in KINDS}
    files = [
        (str(folder / f"images/a{k}.jpg"), str(folder / f"bitmaps/a{k}.png"))
        for k in range(distinct)
    ]
    shapes = {
        (kind, k): output_shapes(ds, k) for kind, ds in datasets.items() for k in range(distinct)
    }
    timings = Timings()
    rounds = -(-calls // distinct)
    # One kind at a time, as a DataLoader worker serves one: the allocator then reuses
    # buffers of the same sizes from call to call, for the floor and ds[i] alike.
    for kind, ds in datasets.items():
        for _ in range(rounds):
            for k in range(distinct):
                floor(timings, f"{kind}|floor|", *files[k], shapes[kind, k])
                timings.time(f"{kind}|ds[i]", functools.partial(ds.__getitem__, k))
                instrumented_item(timings, f"{kind}|item|", ds, k)
    return FloorResult(size, timings, rounds * distinct)


def floor_table(results: list[FloorResult]) -> list[str]:
    lines = [
        "| size | kind | floor ms | of which zero-fill | ds[i] ms | ratio of medians | "
        f"paired ratio (target <= {FLOOR_TARGET}) | " + " | ".join(ITEM_STEPS) + " |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(ITEM_STEPS),
    ]
    for result in results:
        t = result.timings
        for kind in KINDS:
            floor_ms, item_ms = t.median(f"{kind}|floor|floor"), t.median(f"{kind}|ds[i]")
            # Each ds[i] call against the floor call just before it, on the same files and
            # in the same state of the machine: the median of those ratios is not moved by
            # the machine slowing down or speeding up over the run, as the medians are.
            paired = statistics.median(
                item / bound
                for bound, item in zip(
                    t.samples[f"{kind}|floor|floor"], t.samples[f"{kind}|ds[i]"], strict=True
                )
            )
            verdict = "" if paired <= FLOOR_TARGET else " MISSED"
            steps = " | ".join(f"{t.median(f'{kind}|item|{s}'):.2f}" for s in ITEM_STEPS)
            zero_fill = t.median(f"{kind}|floor|zero-fill")
            lines.append(
                f"| {result.size} | {kind} | {floor_ms:.2f} | {zero_fill:.2f} | {item_ms:.2f} "
                f"| {item_ms / floor_ms:.2f} | {paired:.2f}{verdict} | {steps} |"
            )
    return lines


# -- 3. the SDK over HTTP --------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    """Files under ``directory``, keep-alive, and single ``Range: bytes=a-b`` requests."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers do; else small files wait on delayed ACKs

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = self.translate_path(self.path)
        try:
            data = Path(path).read_bytes()
        except OSError:
            self.send_error(404)
            return
        start, stop, status = 0, len(data), 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start, status = int(match[1]), 206
            stop = min(int(match[2]) + 1 if match[2] else stop, stop)
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start:stop])


def serve(root: str, port: Connection) -> None:
    """Serve ``root`` on 127.0.0.1 and an ephemeral port (sent back through ``port``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=root))
    server.daemon_threads = True
    port.send(server.server_address[1])
    server.serve_forever()


@contextlib.contextmanager
def file_server(root: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT/`` serving ``root`` from another process."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=serve, args=(str(root), sender), daemon=True)
    process.start()
    try:
        if not receiver.poll(60):
            raise RuntimeError("the HTTP server did not start")
        yield f"http://127.0.0.1:{receiver.recv()}/"
    finally:
        process.terminate()
        process.join()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The SDK prints progress and tqdm bars: keep them out of the report."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


SdkItem = tuple[torch.Tensor, dict[str, torch.Tensor]]


def sdk_instance(sdk: Any, index: int, label_of: dict[int, int]) -> SdkItem:
    """What an SDK user writes today for Mask R-CNN targets."""
    item = sdk[index]
    image = to_image(item["image"])  # the SDK's image is a lazy PIL image: decoded here
    ids = item["segmentation_bitmap"]
    annotations = item["annotations"]
    masks = np.stack([ids == a["id"] for a in annotations]).astype(np.uint8)
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    labels = np.array([label_of[a["category_id"]] for a in annotations], dtype=np.int64)
    return image, {
        "boxes": torch.as_tensor(np.array(boxes, dtype=np.float32)),
        "labels": torch.from_numpy(labels),
        "masks": torch.from_numpy(masks),
    }


def sdk_semantic(sdk: Any, index: int) -> SdkItem:
    """What an SDK user writes today for a semantic map (release category ids)."""
    from segments.utils import get_semantic_bitmap

    item = sdk[index]
    image = to_image(item["image"])
    semantic = get_semantic_bitmap(item["segmentation_bitmap"], item["annotations"])
    assert semantic is not None
    return image, {"semantic": torch.from_numpy(semantic)}


def check_same(
    sdk: Any, ours: dict[str, SegmentsDataset], index: int, label_of: dict[int, int]
) -> None:
    """The two sides give the same images and targets (up to conventions), else raise."""
    image, target = ours["instance"][index]
    sdk_image, sdk_target = sdk_instance(sdk, index, label_of)
    difference = (image.to(torch.int16) - sdk_image.to(torch.int16)).abs().max()
    if difference > 2:
        raise AssertionError(f"sample {index}: images differ by up to {int(difference)}")
    for key in ("boxes", "labels", "masks"):
        if not torch.equal(target[key].as_subclass(torch.Tensor), sdk_target[key]):
            raise AssertionError(f"sample {index}: {key} differ")
    _, semantic = ours["semantic"][index]
    ids = torch.from_numpy(sdk[index]["segmentation_bitmap"].astype(np.int64))
    _, sdk_semantic_target = sdk_semantic(sdk, index)
    labelled = ids > 0  # unlabelled pixels: 255 in ours, 0 in the SDK
    ours_labels = semantic["semantic"].as_subclass(torch.Tensor)[labelled]
    if not torch.equal(ours_labels, sdk_semantic_target["semantic"][labelled]):
        raise AssertionError(f"sample {index}: semantic maps differ")


@dataclass
class SdkResult:
    timings: Timings
    calls: int
    items: int
    construction: list[tuple[str, float | str]]  # what, seconds (or why it failed)


def measure_sdk(data_dir: Path, items: int, calls: int) -> SdkResult:
    """Part 3: per-item times over loopback HTTP, and construction times."""
    from segments import SegmentsDataset as SDKDataset

    folder = ensure_assets(data_dir, SDK_SIZE)
    distinct = SIZES[SDK_SIZE][2]
    by_id = sorted(CATEGORIES, key=lambda c: int(c["id"]))
    label_of = {int(c["id"]): label + 1 for label, c in enumerate(by_id)}
    # Passed untyped: the SDK annotates segments_dir as str (None is documented) and
    # filter_by as its LabelStatus enum (it upper-cases strings itself).
    options: dict[str, Any] = {"labelset": LABELSET, "filter_by": STATUSES}
    construction: list[tuple[str, float | str]] = []
    with file_server(folder) as url, tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp) / "release-http.json"
        write_json(release, make_release(SDK_SIZE, items, base_url=url))
        start = time.perf_counter()
        with quiet():
            sdk = SDKDataset(str(release), **(options | {"segments_dir": None}))
        sdk_no_cache = time.perf_counter() - start
        ours = {kind: SegmentsDataset(release, target=kind) for kind in ("instance", "semantic")}
        if not len(sdk) == len(ours["instance"]) == items:
            raise AssertionError(f"{len(sdk)} SDK items, {len(ours['instance'])} ours, not {items}")
        for k in range(distinct):
            check_same(sdk, ours, k, label_of)

        timings = Timings()
        rounds = -(-calls // distinct)
        for _ in range(rounds):
            for k in range(distinct):
                timings.time("sdk instance", functools.partial(sdk_instance, sdk, k, label_of))
                timings.time("sdk semantic", functools.partial(sdk_semantic, sdk, k))
                timings.time("ours instance", functools.partial(ours["instance"].__getitem__, k))
                timings.time("ours semantic", functools.partial(ours["semantic"].__getitem__, k))

        # The SDK's default: cache under segments_dir and preload every sample, 16 threads.
        start = time.perf_counter()
        outcome: float | str
        try:
            with quiet():
                SDKDataset(str(release), **options, segments_dir=str(Path(tmp) / "segments"))
            outcome = time.perf_counter() - start
        except Exception as exc:  # segments-ai 1.33 cannot cache bitmaps with Pillow 13
            outcome = (
                f"fails after {time.perf_counter() - start:.2f} s: {type(exc).__name__}: {exc}"
            )
        construction.append(("SDK default (`segments_dir`, `preload=True`)", outcome))
        # Its preload loop without the cache writes: a lower bound of what it costs.
        start = time.perf_counter()
        with ThreadPool(16) as pool:
            pool.map(sdk.__getitem__, range(len(sdk)))
        construction.append(
            (
                "SDK preload without its cache writes (`ThreadPool(16)` of `__getitem__`): "
                "a lower bound",
                time.perf_counter() - start,
            )
        )
        construction.append(("SDK `segments_dir=None` (nothing preloaded)", sdk_no_cache))
        ours_construction = Timings()
        for _ in range(5):
            ours_construction.time("ours", lambda: SegmentsDataset(release, target="instance"))
        construction.append(
            ("ours (reads no image), median of 5", ours_construction.median("ours") / 1e3)
        )
    return SdkResult(timings, rounds * distinct, items, construction)


def sdk_tables(result: SdkResult) -> list[str]:
    t = result.timings
    lines = [
        "| target | SDK ms/item | ours ms/item | speed-up | target |",
        "|---|---:|---:|---:|---|",
    ]
    for kind, goal in (("instance", INSTANCE_TARGET), ("semantic", SEMANTIC_TARGET)):
        sdk_ms, ours_ms = t.median(f"sdk {kind}"), t.median(f"ours {kind}")
        speedup = sdk_ms / ours_ms
        verdict = "met" if speedup >= goal else "MISSED"
        lines.append(
            f"| {kind} | {sdk_ms:.2f} | {ours_ms:.2f} | {speedup:.2f}x | >= {goal}x {verdict} |"
        )
    ours_s = result.construction[-1][1]
    assert isinstance(ours_s, float)
    lines += ["", f"| construction, {result.items} samples | time | / ours |", "|---|---:|---:|"]
    for what, outcome in result.construction:
        if isinstance(outcome, str):
            lines.append(f"| {what} | {outcome} | |")
        else:
            ratio = outcome / ours_s
            lines.append(
                f"| {what} | {outcome * 1e3:,.1f} ms | {ratio:,.{2 if ratio < 10 else 0}f}x |"
            )
    return lines


# -- 4. DataLoader ---------------------------------------------------------------------------


def unchanged(image: Any, target: Any) -> tuple[Any, Any]:
    """Transforms that change nothing. Given transforms, the dataset makes its masks in
    private memory (shared memory would be wasted on tensors that transforms replace), so
    a worker copies them into shared memory to send them, as every worker once did."""
    return image, target


@dataclass
class LoaderResult:
    kind: str
    workers: int
    transforms: bool  # `unchanged` given: masks made in private memory
    first_batch_s: float  # start-up (workers included) and the first batch: median of passes
    items_per_s: float  # after the first batch: median of passes
    items: int


def measure_loader(
    release: Path, kind: str, workers: int, passes: int, transforms: bool = False
) -> LoaderResult:
    ds = SegmentsDataset(release, target=kind, transforms=unchanged if transforms else None)
    first, rates, items = [], [], 0
    for _ in range(passes):
        loader = DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=ds.collate_fn)
        start = time.perf_counter()
        batches = iter(loader)
        next(batches)
        warm = time.perf_counter()
        items = sum(len(images) for images, _ in batches)
        rates.append(items / (time.perf_counter() - warm))
        first.append(warm - start)
    return LoaderResult(
        kind, workers, transforms, statistics.median(first), statistics.median(rates), items
    )


def measure_fresh_pages(shape: tuple[int, ...], calls: int) -> dict[str, float]:
    """Median ms to make and fill a uint8 tensor of ``shape``, in private memory (reused by
    the allocator) and in fresh shared memory, as a worker makes what it sends."""

    def fill(shared: bool) -> torch.Tensor:
        return allocate(shape, torch.uint8, shared=shared).fill_(1)

    timings = Timings()
    for _ in range(calls):
        timings.time("private", functools.partial(fill, False))
        timings.time("shared", functools.partial(fill, True))
    return {memory: timings.median(memory) for memory in ("private", "shared")}


def fill_line(shape: tuple[int, ...], fill: dict[str, float]) -> str:
    return (
        f"Making and filling a {' x '.join(map(str, shape))} uint8 tensor (the masks of one "
        f"item): {fill['private']:.2f} ms in private memory, {fill['shared']:.2f} ms in fresh "
        "shared memory (medians)."
    )


def loader_table(results: list[LoaderResult]) -> list[str]:
    lines = [
        "| target | workers | transforms | items/s | first batch s (start-up included) |",
        "|---|---:|---|---:|---:|",
    ]
    for r in results:
        transforms = "`unchanged`" if r.transforms else "none"
        lines.append(
            f"| {r.kind} | {r.workers} | {transforms} | {r.items_per_s:.1f} "
            f"| {r.first_batch_s:.2f} |"
        )
    return lines


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=DEFAULT_SIZES)
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help="timed calls per measure at 3648x2736 (4x as many at 1280x720); default %(default)s",
    )
    parser.add_argument("--items", type=int, default=200, help="DataLoader items timed per pass")
    parser.add_argument("--passes", type=int, default=3, help="DataLoader passes (median kept)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a sanity check")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.items, args.passes = 2, 40, 1
    if min(args.repeat, args.items, args.passes) < 1:
        parser.error("--repeat, --items and --passes must be at least 1")
    torch.set_num_threads(1)
    jpeg = "torchcodec" if codecs._TORCHCODEC is not None else "torchvision.io"
    png = "pyspng" if codecs._PYSPNG is not None else "torchvision.io"
    print(
        f"segments_torch {segments_torch.__version__}, torch {torch.__version__}, numpy "
        f"{np.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; decoders: "
        f"JPEG {jpeg}, PNG {png}; torch.set_num_threads(1) in the timed process (DataLoader "
        "workers are single-threaded)"
    )

    floors: list[FloorResult] = []
    for size in args.sizes:
        width, height, _ = SIZES[size]
        calls = args.repeat * max(1, 4_000_000 // (width * height))
        floors.append(measure_floor(args.data_dir, size, calls))
        print(f"\n## {size}: ds[i] against the floor ({floors[-1].calls} calls each, medians)")
        print("\n".join(floor_table(floors[-1:])))

    sdk: SdkResult | None = None
    loaders: list[LoaderResult] = []
    fresh_pages = ""
    if SDK_SIZE in args.sizes:
        total = args.items + BATCH
        sdk = measure_sdk(args.data_dir, total, args.repeat * 4)
        print(f"\n## {SDK_SIZE} over loopback HTTP: ours against the SDK ({sdk.calls} calls each)")
        print("\n".join(sdk_tables(sdk)))
        release = ensure_release(args.data_dir, SDK_SIZE, total)
        print(f"\n## DataLoader, {SDK_SIZE}, local files, batch {BATCH}")
        # Instance items with and without transforms, in workers: masks made in shared
        # memory and sent as they are, against masks copied there to be sent.
        runs = [("instance", 0, False), ("instance", 2, False), ("instance", 2, True)]
        runs += [("semantic", 0, False), ("semantic", 2, False)]
        for kind, workers, transforms in runs:
            loaders.append(measure_loader(release, kind, workers, args.passes, transforms))
            print(loader_table(loaders[-1:])[-1])
        width, height, _ = SIZES[SDK_SIZE]
        masks = (INSTANCES, height, width)
        fresh_pages = fill_line(masks, measure_fresh_pages(masks, args.repeat))
        print(fresh_pages)

    options = " --quick" if args.quick else ""
    if args.sizes != DEFAULT_SIZES:
        options += " --sizes " + " ".join(args.sizes)
    if not args.quick and args.repeat != DEFAULT_REPEAT:
        options += f" --repeat {args.repeat}"
    print("\n## Summary (markdown)\n")
    print(
        f"`{COMMAND}{options}` — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, torch "
        f"{torch.__version__}, decoders {jpeg} (JPEG) and {png} (PNG); one thread per process "
        "(`torch.set_num_threads(1)`, as in DataLoader workers); medians of interleaved calls, "
        "ratios from the same run.\n"
    )
    print(
        "`ds[i]` against the floor (read both files, decode them with the same decoders, "
        "zero-fill tensors of the sizes `ds[i]` returns plus the id map), and the steps of "
        "`ds[i]` (ms):\n"
    )
    print("\n".join(floor_table(floors)))
    if sdk is not None:
        print(
            f"\nPer item at {SDK_SIZE}, assets over loopback HTTP; SDK: `__getitem__` with cache "
            "off, image to tensor, and the user's numpy for the targets; ours: `ds[i]`:\n"
        )
        print("\n".join(sdk_tables(sdk)))
    if loaders:
        print(
            f"\nDataLoader at {SDK_SIZE}, local files, batch {BATCH}, `ds.collate_fn`: "
            f"{loaders[0].items} items after a warm-up batch, median of {args.passes} passes:\n"
        )
        print("\n".join(loader_table(loaders)))
        print(f"\n{fresh_pages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
