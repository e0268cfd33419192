"""fill_label_cache: every bitmap decoded once into the label cache, where ds[i] finds it."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import segments_torch.dataset
from segments_torch import SegmentsDataset, SourceUnavailableError, StorageError
from segments_torch.demo import RELEASE_PATH, SEGMENTATION_SEQUENCE_RELEASE_PATH
from segments_torch.label_cache import LabelCache
from segments_torch.label_prefetch import LabelReport, fill_label_cache
from segments_torch.release import load_release
from segments_torch.storage import RetryPolicy
from tests.http_server import FileServer
from tests.items import assert_same_items

DEMO = Path(RELEASE_PATH).parent
#: The demo's seven bitmaps (shapes-006 has none).
BITMAPS = sorted((DEMO / "bitmaps").iterdir())
PNG_BYTES = sum(path.stat().st_size for path in BITMAPS)


def copy_demo(root: Path) -> Path:
    """The demo release and its assets copied into ``root / "served"``; its folder."""
    served = root / "served"
    for part in ("images", "bitmaps"):
        shutil.copytree(DEMO / part, served / part)
    shutil.copy(RELEASE_PATH, served / "release.json")
    return served


def entry_bytes(folder: Path) -> int:
    entries = list(folder.rglob("*.stlc"))
    return sum(path.stat().st_size for path in entries)


def refuse_bitmap_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on ``ds[i]`` fails if it decodes a PNG bitmap."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a bitmap was decoded")

    monkeypatch.setattr(segments_torch.dataset, "decode_bitmap", refuse)


def asset_requests(server: FileServer) -> list[str]:
    return sorted(r.path for r in server.requests if not r.path.endswith("release.json"))


def test_the_entries_made_are_those_items_read(tmp_path, monkeypatch):
    labels = tmp_path / "labels"
    # Panoptic targets read every field of a label; the EXIF sample is among them.
    ds = SegmentsDataset(RELEASE_PATH, filter_by=None, target="panoptic", label_cache=labels)
    plain = SegmentsDataset(RELEASE_PATH, filter_by=None, target="panoptic")
    reference = [plain[i] for i in range(len(plain))]
    report = fill_label_cache(ds, workers=0, progress=False)
    assert len(list(labels.rglob("*.stlc"))) == 7
    assert report == LabelReport(
        made=7, reused=0, failed={}, entry_bytes=entry_bytes(labels), png_bytes=PNG_BYTES
    )
    refuse_bitmap_decoding(monkeypatch)
    assert_same_items([ds[i] for i in range(len(ds))], reference)
    # A second fill finds every entry whole: it keeps them.
    assert fill_label_cache(ds, workers=0, progress=False) == replace(report, made=0, reused=7)


def test_a_bitmap_changed_since_is_decoded_again(tmp_path):
    served = copy_demo(tmp_path)
    ds = SegmentsDataset(served / "release.json", filter_by=None, label_cache=tmp_path / "l")
    fill_label_cache(ds, workers=0, progress=False)
    bitmap = served / "bitmaps" / "shapes-003.png"
    os.utime(bitmap, ns=(1, 1))  # rewritten in place, as far as its record can tell
    report = fill_label_cache(ds, workers=0, progress=False)
    assert (report.made, report.reused, report.failed) == (1, 6, {})


def test_remote_bitmaps_in_worker_processes(tmp_path, file_server: FileServer, monkeypatch):
    copy_demo(tmp_path)
    labels = tmp_path / "labels"
    url = file_server.url_for("served/release.json")
    ds = SegmentsDataset(url, filter_by=None, label_cache=labels)
    report = fill_label_cache(ds, workers=2, progress=False)
    assert report == LabelReport(
        made=7, reused=0, failed={}, entry_bytes=entry_bytes(labels), png_bytes=PNG_BYTES
    )
    # Each bitmap read once, and no image at all.
    assert asset_requests(file_server) == [f"served/bitmaps/{path.name}" for path in BITMAPS]
    file_server.reset()
    refuse_bitmap_decoding(monkeypatch)
    for i in range(len(ds)):
        ds[i]
    assert all(path.startswith("served/images/") for path in asset_requests(file_server))
    file_server.reset()
    # Kept, with no request: the size of a remote PNG that is in no cache is not known.
    again = fill_label_cache(ds, workers=0, progress=False)
    assert again == LabelReport(reused=7, unmeasured=7)
    assert file_server.requests == []


def test_bitmaps_are_read_through_the_asset_cache(tmp_path, file_server: FileServer):
    copy_demo(tmp_path)
    url = file_server.url_for("served/release.json")
    labels = tmp_path / "labels"
    ds = SegmentsDataset(url, filter_by=None, cache_dir=tmp_path / "cache", label_cache=labels)
    fill_label_cache(ds, workers=0, progress=False)
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 7
    file_server.reset()
    # The cached copies give the PNGs' sizes, and serve the entries made again.
    reused = fill_label_cache(ds, workers=0, progress=False)
    assert reused == LabelReport(reused=7, entry_bytes=entry_bytes(labels), png_bytes=PNG_BYTES)
    shutil.rmtree(labels)
    remade = fill_label_cache(ds, workers=0, progress=False)
    assert remade == replace(reused, made=7, reused=0)
    assert file_server.requests == []


def test_url_map_sends_the_reads_to_the_mirror(tmp_path, file_server: FileServer, monkeypatch):
    served = copy_demo(tmp_path)
    mirror = {f"{file_server.url}/served/": f"{served}/"}
    url = file_server.url_for("served/release.json")
    ds = SegmentsDataset(url, filter_by=None, url_map=mirror, label_cache=tmp_path / "labels")
    report = fill_label_cache(ds, workers=0, progress=False)
    assert (report.made, report.png_bytes) == (7, PNG_BYTES)
    assert file_server.requests == []
    plain = SegmentsDataset(RELEASE_PATH, filter_by=None)
    reference = [plain[i] for i in range(len(plain))]
    refuse_bitmap_decoding(monkeypatch)
    assert_same_items([ds[i] for i in range(len(ds))], reference)


def test_bad_bitmaps_are_reported_and_the_fill_goes_on(tmp_path):
    served = copy_demo(tmp_path)
    bitmaps = served / "bitmaps"
    (bitmaps / "shapes-001.png").unlink()
    (bitmaps / "shapes-003.png").write_bytes(b"<html>Forbidden</html>")
    ds = SegmentsDataset(served / "release.json", filter_by=None, label_cache=tmp_path / "l")
    report = fill_label_cache(ds, workers=0, progress=False)
    assert (report.made, report.reused) == (5, 0)
    assert report.failed == {
        "shapes-001.jpg": f"{bitmaps / 'shapes-001.png'}: not found",
        "shapes-003.png": f"{bitmaps / 'shapes-003.png'}: expected a PNG, found unknown data "
        "starting b'<html>Fo'",
    }
    # Entries made under a larger max_pixels are refused as ds[i] refuses them.
    small = SegmentsDataset(
        served / "release.json", filter_by=None, label_cache=tmp_path / "l", max_pixels=43_200
    )
    report = fill_label_cache(small, workers=0, progress=False)
    assert (report.made, report.reused) == (0, 2)  # 240x180 and 180x240 pass
    assert len(report.failed) == 5
    assert report.failed["shapes-000.jpg"] == (
        f"{bitmaps / 'shapes-000.png'}: the bitmap declares 320x240 pixels (76,800), more "
        "than max_pixels=43,200"
    )


def test_an_entry_that_cannot_be_written_is_a_failure(tmp_path, monkeypatch):
    labels = tmp_path / "labels"
    ds = SegmentsDataset(RELEASE_PATH, label_cache=labels)

    def disk_full(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    report = fill_label_cache(ds, workers=0, progress=False)
    assert report.made == 0
    entry = LabelCache(labels).path(ds.storage.identity("bitmaps/shapes-000.png")[0])
    assert report.failed["shapes-000.jpg"] == (
        f"{DEMO / 'bitmaps' / 'shapes-000.png'}: cannot write {entry}: No space left on device"
    )
    assert len(report.failed) == 6  # the LABELED and REVIEWED samples, all with a bitmap


def test_a_host_that_is_down_ends_the_fill(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ds = SegmentsDataset(
        load_release(RELEASE_PATH),
        asset_root=f"http://127.0.0.1:{port}",
        retry=RetryPolicy(attempts=1, outage_after=2),
        label_cache=tmp_path / "labels",
    )
    with pytest.raises(SourceUnavailableError) as info:
        fill_label_cache(ds, workers=1, progress=False)  # raised in the worker
    assert str(info.value).startswith(
        f"http://127.0.0.1:{port} is unavailable: 2 reads in a row failed to connect"
    )


def test_bad_arguments(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^fill_label_cache needs a dataset with a label cache: label_cache=DIR, or "
        r"storage=Storage\(label_cache=DIR\)$",
    ):
        fill_label_cache(SegmentsDataset(RELEASE_PATH))
    ds = SegmentsDataset(RELEASE_PATH, label_cache=tmp_path / "labels")
    with pytest.raises(ValueError, match=r"^workers must be >= 0, not -1$"):
        fill_label_cache(ds, workers=-1)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(StorageError) as info:
        fill_label_cache(SegmentsDataset(RELEASE_PATH, label_cache=a_file))
    assert str(info.value) == f"label cache folder {a_file}: not a folder"


def test_a_dataset_of_whole_sequences_fills_every_frame(tmp_path, monkeypatch):
    labels = tmp_path / "labels"
    ds = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH, sequence=True, label_cache=labels)
    reference = SegmentsDataset(SEGMENTATION_SEQUENCE_RELEASE_PATH, sequence=True)[1]
    report = fill_label_cache(ds, workers=0, progress=False)
    assert (report.made, report.failed) == (8, {})
    assert len(list(labels.rglob("*.stlc"))) == 8
    refuse_bitmap_decoding(monkeypatch)
    images, targets = ds[1]
    assert_same_items(list(zip(images, targets, strict=True)), list(zip(*reference, strict=True)))
