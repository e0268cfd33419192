"""Soak: three epochs of a DataLoader with two forked workers over a flaky HTTP server.

The release has 40 small generated samples served by :class:`~tests.http_server.FileServer`,
which misbehaves at random (seeded) on about 20% of the requests: status 500 and 503,
dropped connections, bodies cut short and stalls past the client's timeout. One sample's
image and another's bitmap are missing from the server for good (404). With
``on_error="skip"`` and six attempts per asset, every epoch must still yield every item,
each equal to the item read from the local files (a broken sample: the next sample, which
the skip policy serves in its place); exactly the two broken samples are counted as
failed; and once the loader is gone the test process holds no more file descriptors or
threads than before, and its memory has not grown from the first epoch to the third.
"""

from __future__ import annotations

import gc
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from torch.utils.data import DataLoader

from segments_torch import SegmentsDataset
from segments_torch.storage import RetryPolicy
from tests.http_server import FileServer
from tests.items import assert_same_item
from tests.object_store import bitmap, id_map, jpeg
from tests.releases import annotation, current_release, label, sample

pytest.importorskip("aiohttp", reason="the soak test reads over HTTP (aiohttp)")

SAMPLES = 40
#: Positions of the samples with a file missing from the server, and which file.
BROKEN = {7: "images", 23: "bitmaps"}
EPOCHS = 3
TIMEOUT = 0.5  # seconds per request; a stall lasts twice as long
RSS_GROWTH_BOUND = 50 * 2**20


def write_assets(folder: Path) -> list[dict[str, Any]]:
    """Each sample's image and bitmap under ``folder``; returns the samples' labels
    (names, annotations) for the release, URLs still to be set."""
    rng = np.random.default_rng(2024)
    samples = []
    for i in range(SAMPLES):
        name = f"s{i:02d}"
        height, width = int(rng.integers(24, 41)), int(rng.integers(32, 57))
        # Up to three instances, ids from small to past 2^16; one region left unannotated.
        ids = rng.choice([1, 2, 3, 255, 256, 70000, 2**24 - 1], size=3, replace=False)
        regions = []
        for k, instance_id in enumerate(ids):
            top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
            regions.append((int(instance_id), top, left, top + 8 + 2 * k, left + 10 + k))
        (folder / "images").mkdir(exist_ok=True)
        (folder / "bitmaps").mkdir(exist_ok=True)
        (folder / "images" / f"{name}.jpg").write_bytes(jpeg(height, width, seed=i))
        (folder / "bitmaps" / f"{name}.png").write_bytes(bitmap(id_map(height, width, regions)))
        annotations = [
            annotation(int(instance_id), int(rng.choice([0, 1, 5]))) for instance_id in ids[:2]
        ]
        samples.append(sample(f"{name}.jpg", {"ground-truth": label("LABELED", annotations)}))
    return samples


def release_at(samples: list[dict[str, Any]], url: str) -> dict[str, Any]:
    """The release with each sample's image and bitmap under ``url``."""
    document = current_release(samples)
    for i, entry in enumerate(document["dataset"]["samples"]):
        name = f"s{i:02d}"
        entry["attributes"]["image"]["url"] = f"{url}/images/{name}.jpg"
        attributes = entry["labels"]["ground-truth"]["attributes"]
        attributes["segmentation_bitmap"]["url"] = f"{url}/bitmaps/{name}.png"
    return document


def epoch(loader: DataLoader[Any]) -> Iterator[Any]:
    """The items of one pass over ``loader``, in order."""
    for images, targets in loader:
        yield from zip(images, targets, strict=True)


def settle(measure: Callable[[], Any], expected: Any, seconds: float = 10.0) -> Any:
    """``measure()`` once it equals ``expected``, or its last value after ``seconds``:
    the loader's queue threads and pipes end a moment after its workers."""
    deadline = time.monotonic() + seconds
    value = measure()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        value = measure()
    return value


def test_three_epochs_over_a_flaky_server_lose_nothing(tmp_path):
    local, served = tmp_path / "local", tmp_path / "served"
    local.mkdir()
    samples = write_assets(local)
    shutil.copytree(local, served)
    for position, folder in BROKEN.items():
        suffix = "jpg" if folder == "images" else "png"
        (served / folder / f"s{position:02d}.{suffix}").unlink()

    process = psutil.Process()
    # Earlier tests' garbage is collected now, not during the soak (where its thread
    # pools would stop and its files close); a leak is a thread or file that appears.
    gc.collect()
    threads_at_start = set(threading.enumerate())
    server = FileServer(served).start()
    try:
        server.chaos(0.2, seed=5, stall=2 * TIMEOUT)
        document = release_at(samples, server.url)
        ds = SegmentsDataset(
            document,
            on_error="skip",
            retry=RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05),
            timeout=TIMEOUT,
        )
        assert len(ds) == SAMPLES
        # What each position must yield: the sample's item read from the local files, or
        # for a broken sample the next sample's (the one the skip policy serves instead).
        local_ds = SegmentsDataset(document, url_map={f"{server.url}/": f"{local}/"})
        expected = [local_ds[p + 1 if p in BROKEN else p] for p in range(SAMPLES)]
        gc.collect()
        threads_before, fds_before = set(threading.enumerate()), process.num_fds()

        loader = DataLoader(
            ds,
            batch_size=4,
            num_workers=2,
            multiprocessing_context="fork",
            collate_fn=ds.collate_fn,
        )
        rss = []
        for _ in range(EPOCHS):
            items = list(epoch(loader))
            assert len(items) == SAMPLES
            for position, (item, reference) in enumerate(zip(items, expected, strict=True)):
                # The sample served (its release row), then its every tensor.
                assert item[1]["image_id"] == reference[1]["image_id"], position
                assert_same_item(item, reference)
            assert ds.failures == len(BROKEN)
            assert [s.name for s in ds.failed_samples()] == [f"s{p:02d}.jpg" for p in BROKEN]
            del items, item
            gc.collect()
            rss.append(process.memory_info().rss)
        del loader
        gc.collect()
        new_threads = settle(lambda: set(threading.enumerate()) - threads_before, set())
        fds_after = settle(process.num_fds, fds_before)
        faults = [r.fault for r in server.requests]
    finally:
        server.stop()

    assert new_threads == set()
    assert fds_after == fds_before
    assert rss[-1] - rss[0] < RSS_GROWTH_BOUND, [f"{r / 2**20:.1f} MiB" for r in rss]
    # Every kind of fault was met, on about a fifth of the requests.
    assert {"status", "drop", "truncate", "stall"} <= set(faults)
    assert 0.1 < sum(f != "" for f in faults) / len(faults) < 0.3
    assert set(threading.enumerate()) - threads_at_start == set()  # the server's too
