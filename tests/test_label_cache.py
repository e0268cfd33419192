"""Tests of segments_torch.label_cache: the entry format and its checks, the rule that ties
an entry to its bitmap, and a dataset reading through the cache (same targets, no PNG)."""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from segments_torch import SegmentsDataset, dataset, files, label_cache
from segments_torch.codecs import decode_bitmap, encode_bitmap
from segments_torch.demo import RELEASE_PATH
from segments_torch.errors import AssetError
from segments_torch.label_cache import FORMAT_VERSION, LabelCache
from segments_torch.targets import TARGET_KINDS, SegmentMap
from tests.http_server import FileServer
from tests.items import assert_same_items
from tests.oriented import oriented_release

DEMO = Path(RELEASE_PATH).parent
KINDS = list(TARGET_KINDS)


def ids_of(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int32)


def stored(cache: LabelCache, key: str, source: str, ids: torch.Tensor) -> bytes:
    """Put the label of ``ids`` and return the entry's bytes."""
    cache.put(key, source, SegmentMap.from_ids(ids))
    return cache.path(key).read_bytes()


def assert_same_label(got: SegmentMap | None, ids: torch.Tensor) -> None:
    assert got is not None
    expected = SegmentMap.from_ids(ids)
    assert got.segments.dtype == expected.segments.dtype
    assert torch.equal(got.segments, expected.segments)
    assert torch.equal(got.ids, expected.ids)
    assert torch.equal(got.to_ids(), ids)


# -- the entry ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 256, 257, 40000])
def test_a_label_comes_back_as_it_was_put(tmp_path, count):
    ids = (torch.arange(count, dtype=torch.int32) * 419).remainder(2**24).view(1, count)
    cache = LabelCache(tmp_path)
    size = cache.put("/data/a.png", "15:99", SegmentMap.from_ids(ids))
    assert size == cache.path("/data/a.png").stat().st_size
    assert_same_label(cache.get("/data/a.png", "15:99"), ids)


def test_labels_without_pixels_or_ids_come_back(tmp_path):
    cache = LabelCache(tmp_path)
    empty = torch.zeros((0, 4), dtype=torch.int32)
    cache.put("k", "", SegmentMap.from_ids(empty))
    got = cache.get("k", "")
    assert got is not None
    assert got.shape == (0, 4)
    assert got.ids.tolist() == []


def test_the_entry_layout_is_as_documented(tmp_path, monkeypatch):
    monkeypatch.setattr(label_cache, "_ZSTANDARD", None)  # zlib: a payload we can check
    ids = ids_of([[0, 7, 7], [70000, 0, 7]])
    data = stored(LabelCache(tmp_path), "https://cdn.example/a.png", "", ids)
    header = struct.unpack_from("<4sBBBBIIIIH", data)
    payload_size = header[8]
    assert header == (b"STLC", FORMAT_VERSION, 0, 1, 1, 2, 3, 3, payload_size, 0)
    body = data[:-4]
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(body)
    raw = zlib.decompress(body[26:])
    assert len(body) == 26 + payload_size
    extents = np.frombuffer(raw[:120], dtype="<i8").reshape(3, 5).tolist()
    assert extents == [[2, 0, 0, 2, 2], [3, 1, 0, 3, 2], [1, 0, 1, 1, 2]]
    assert np.frombuffer(raw[120:132], dtype="<i4").tolist() == [0, 7, 70000]
    assert list(raw[132:]) == [0, 1, 1, 2, 0, 1]
    assert LabelCache(tmp_path).path("https://cdn.example/a.png").suffix == ".stlc"


def test_a_label_comes_back_with_its_extents(tmp_path):
    ids = torch.zeros((40, 50), dtype=torch.int32)
    ids[3:9, 10:30] = 12
    ids[20:40, 0:5] = 900
    cache = LabelCache(tmp_path)
    cache.put("k", "", SegmentMap.from_ids(ids))
    got = cache.get("k", "")
    assert got is not None
    assert got.extents is not None
    assert got.extents.tolist() == [
        [2000 - 120 - 100, 0, 0, 50, 40],
        [120, 10, 3, 30, 9],
        [100, 0, 20, 5, 40],
    ]


def test_noise_is_stored_without_extents(tmp_path, monkeypatch):
    monkeypatch.setattr(label_cache, "_ZSTANDARD", None)
    noise = torch.from_numpy(np.random.default_rng(2).integers(0, 200, size=(128, 128)))
    data = stored(LabelCache(tmp_path), "k", "", noise.to(torch.int32))
    assert data[7] == 0  # no extents flag
    got = LabelCache(tmp_path).get("k", "")
    assert got is not None
    assert got.extents is None
    assert torch.equal(got.to_ids(), noise.to(torch.int32))


@pytest.mark.parametrize(
    ("change", "row", "value"),
    [
        ("a box past the map's width", 1, [3, 1, 0, 4, 2]),
        ("a box past its height", 1, [3, 1, 0, 3, 3]),
        ("a box before the map", 2, [1, -1, 1, 1, 2]),
        ("an empty box", 2, [1, 1, 1, 1, 2]),
        ("a box too small for its area", 1, [3, 1, 0, 2, 2]),
        ("a segment without pixels", 2, [0, 0, 1, 1, 2]),
        ("areas that add up to more pixels", 0, [3, 0, 0, 2, 2]),
    ],
)
def test_extents_that_do_not_fit_the_map_are_never_served(tmp_path, change, row, value):
    # Written whole (the CRC holds) but wrong: the entry is removed as a corrupt one is.
    ids = ids_of([[0, 7, 7], [70000, 0, 7]])
    label = SegmentMap.from_ids(ids).measured()
    assert label.extents is not None
    extents = label.extents.clone()
    extents[row] = torch.tensor(value)
    cache = LabelCache(tmp_path)
    cache.put("k", "", SegmentMap(label.segments, label.ids, extents))
    assert cache.get("k", "") is None, change
    assert not cache.path("k").exists()


def test_the_source_record_is_kept_in_the_entry(tmp_path):
    data = stored(LabelCache(tmp_path), "/d/a.png", "1234:5678", ids_of([[1]]))
    (length,) = struct.unpack_from("<H", data, 24)
    assert data[26 : 26 + length] == b"1234:5678"


def test_a_missing_entry_is_none(tmp_path):
    assert LabelCache(tmp_path).get("/d/a.png", "") is None


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flipped-payload-byte":
        data[-6] ^= 0x40
    elif how == "flipped-header-byte":
        data[12] ^= 0x01  # the height
    elif how == "truncated":
        del data[len(data) // 2 :]
    elif how == "empty":
        data = bytearray()
    elif how == "other-magic":
        data[:4] = b"PNG!"
    elif how == "other-version":
        data[4] = FORMAT_VERSION + 1
    elif how == "extra-bytes":
        data += b"\x00"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "how",
    [
        "flipped-payload-byte",
        "flipped-header-byte",
        "truncated",
        "empty",
        "other-magic",
        "other-version",
        "extra-bytes",
    ],
)
def test_a_damaged_entry_is_removed_never_served(tmp_path, how, caplog):
    cache = LabelCache(tmp_path)
    stored(cache, "/d/a.png", "1:2", ids_of([[0, 5], [5, 9]]))
    damage(cache.path("/d/a.png"), how)
    with caplog.at_level(logging.DEBUG, logger="segments_torch.label_cache"):
        assert cache.get("/d/a.png", "1:2") is None
    assert not cache.path("/d/a.png").exists()
    assert f"dropping the label cache entry {cache.path('/d/a.png')} of /d/a.png: " in caplog.text


def test_an_entry_whose_payload_disagrees_with_its_header_is_refused(tmp_path, monkeypatch, caplog):
    # A whole entry, CRC right, whose header promises another shape than its payload holds.
    monkeypatch.setattr(label_cache, "_ZSTANDARD", None)
    cache = LabelCache(tmp_path)
    data = bytearray(stored(cache, "k", "", ids_of([[0, 5], [5, 9]])))
    struct.pack_into("<I", data, 12, 3)  # height 3 instead of 2
    body = bytes(data[:-4])
    cache.path("k").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with caplog.at_level(logging.DEBUG, logger="segments_torch.label_cache"):
        assert cache.get("k", "") is None
    assert caplog.messages == [
        f"dropping the label cache entry {cache.path('k')} of k: its payload does not hold "
        "the label its header describes"
    ]


def test_a_stale_entry_is_removed(tmp_path):
    cache = LabelCache(tmp_path)
    stored(cache, "/d/a.png", "15:100", ids_of([[1, 2]]))
    assert cache.get("/d/a.png", "15:101") is None
    assert not cache.path("/d/a.png").exists()


def test_zstd_entries_without_zstandard_are_rebuilt_and_zlib_ones_read_anywhere(
    tmp_path, monkeypatch
):
    if label_cache._ZSTANDARD is None:
        pytest.skip("zstandard is not installed")
    cache = LabelCache(tmp_path)
    ids = ids_of([[0, 3], [3, 8]])
    stored(cache, "zstd", "", ids)
    monkeypatch.setattr(label_cache, "_ZSTANDARD", None)
    assert cache.get("zstd", "") is None  # removed: rebuilt with zlib by the next reader
    stored(cache, "zlib", "", ids)
    assert cache.path("zlib").read_bytes()[5] == 0  # codec byte: zlib
    monkeypatch.undo()
    assert_same_label(cache.get("zlib", ""), ids)


def test_an_entry_that_cannot_be_read_is_a_miss(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(files, "_WARNED", set())  # the warning comes once per process
    cache = LabelCache(tmp_path)
    cache.path("k").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="segments_torch.label_cache"):
        assert cache.get("k", "") is None
    assert "cannot read the label cache entry" in caplog.text
    assert cache.path("k").is_dir()  # left alone: a put cannot replace it either


def test_entries_follow_the_umask_and_leave_no_temporary(tmp_path):
    old = os.umask(0o002)
    try:
        path = LabelCache(tmp_path).path("k")
        LabelCache(tmp_path).put("k", "", SegmentMap.from_ids(ids_of([[1]])))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o664
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def _hammer(folder: str, key: str, rounds: int, seed: int) -> list[str]:
    """Put and get one key ``rounds`` times with labels of two shapes; what was read."""
    cache = LabelCache(folder)
    generator = np.random.default_rng(seed)
    seen = []
    for _ in range(rounds):
        height = int(generator.integers(1, 3))
        ids = torch.full((height, 64), height * 1000, dtype=torch.int32)
        if generator.random() < 0.5:
            cache.put(key, "", SegmentMap.from_ids(ids))
        got = cache.get(key, "")
        if got is not None:
            back = got.to_ids()
            seen.append("ok" if torch.all(back == back.shape[0] * 1000) else "WRONG")
    return seen


def test_processes_writing_and_reading_one_entry_never_read_a_wrong_label(tmp_path):
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        results = pool.starmap(_hammer, [(str(tmp_path), "k", 150, seed) for seed in range(4)])
    seen = [s for result in results for s in result]
    assert seen
    assert set(seen) == {"ok"}
    assert [p.name for p in LabelCache(tmp_path).path("k").parent.iterdir()] == [
        LabelCache(tmp_path).path("k").name
    ]


# -- a dataset through the cache ------------------------------------------------------------


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return tmp_path / "demo" / "release.json"


@pytest.fixture
def no_bitmap_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a bitmap was decoded")

    monkeypatch.setattr(dataset, "decode_bitmap", refuse)


def all_items(ds: SegmentsDataset) -> list[Any]:
    return [ds[i] for i in range(len(ds))]


@pytest.mark.parametrize("kind", KINDS)
def test_targets_are_the_same_with_the_cache_cold_and_warm(demo_copy, tmp_path, kind, monkeypatch):
    plain = all_items(SegmentsDataset(demo_copy, target=kind))
    cached = SegmentsDataset(demo_copy, target=kind, label_cache=tmp_path / "labels")
    assert_same_items(all_items(cached), plain)  # cold: decoded and stored
    assert len(list((tmp_path / "labels").rglob("*.stlc"))) == 6  # 6 selected bitmaps

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a bitmap was decoded")

    monkeypatch.setattr(dataset, "decode_bitmap", refuse)
    assert_same_items(all_items(cached), plain)  # warm: no PNG decoded
    # the EXIF sample (its image rotated; the bitmap matches the rotated image) among them
    names = [cached.sample_info(i).name for i in range(len(cached))]
    assert "shapes-002-exif.jpg" in names


def test_a_warm_cache_reads_no_bitmap_over_http(tmp_path, file_server: FileServer):
    served = tmp_path / "served"
    shutil.copytree(DEMO, served, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    url = file_server.url_for("served/release.json")
    ds = SegmentsDataset(url, label_cache=tmp_path / "labels")
    first = all_items(ds)
    bitmaps = [r for r in file_server.requests if "/bitmaps/" in r.path]
    assert len(bitmaps) == 6
    assert_same_items(all_items(ds), first)
    assert [r for r in file_server.requests if "/bitmaps/" in r.path] == bitmaps


def test_a_bitmap_rewritten_in_place_is_decoded_again(demo_copy, tmp_path):
    ds = SegmentsDataset(demo_copy, target="semantic", label_cache=tmp_path / "labels")
    before = ds[0][1]["semantic"]
    bitmap = demo_copy.parent / "bitmaps" / "shapes-000.png"
    ids = decode_bitmap(bitmap.read_bytes())
    status = bitmap.stat()
    ids[ids != 0] = 0  # every pixel unlabelled now, the PNG's name unchanged
    bitmap.write_bytes(encode_bitmap(ids))
    os.utime(bitmap, ns=(status.st_atime_ns, status.st_mtime_ns + 1))
    after = ds[0][1]["semantic"]
    assert not torch.equal(after, before)
    assert torch.all(after == 255)
    assert torch.equal(after, SegmentsDataset(demo_copy, target="semantic")[0][1]["semantic"])


def test_a_bitmap_of_the_same_size_rewritten_in_place_is_decoded_again(demo_copy, tmp_path):
    # Same byte count, new content: the modification time tells.
    bitmap = demo_copy.parent / "bitmaps" / "shapes-000.png"
    ids = decode_bitmap(bitmap.read_bytes())
    changed = ids.clone()
    changed[0, 0] = 1 if int(ids[0, 0]) != 1 else 2
    size = max(len(encode_bitmap(ids)), len(encode_bitmap(changed))) + 64
    bitmap.write_bytes(pad_png(encode_bitmap(ids), size))
    ds = SegmentsDataset(demo_copy, target="semantic", label_cache=tmp_path / "labels")
    ds[0]  # stores the label of the first version
    status = bitmap.stat()
    bitmap.write_bytes(pad_png(encode_bitmap(changed), size))
    assert bitmap.stat().st_size == status.st_size
    os.utime(bitmap, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))
    reference = SegmentsDataset(demo_copy, target="semantic")[0][1]["semantic"]
    assert torch.equal(ds[0][1]["semantic"], reference)


def pad_png(data: bytes, size: int) -> bytes:
    """``data`` (a PNG) with a tEXt chunk before IEND making it ``size`` bytes long."""
    room = size - len(data) - 12
    assert room >= 2
    text = b"k\x00" + b"x" * (room - 2)
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + text))
    return data[:-12] + chunk + data[-12:]


def test_a_damaged_entry_is_rebuilt_by_the_dataset(demo_copy, tmp_path):
    ds = SegmentsDataset(demo_copy, target="panoptic", label_cache=tmp_path / "labels")
    reference = ds[0]
    assert ds.label_cache is not None
    key, source = ds.storage.identity(ds.sample_info(0).bitmap_url or "")
    entry = ds.label_cache.path(key)
    damage(entry, "flipped-payload-byte")
    assert_same_items([ds[0]], [reference])
    assert ds.label_cache.get(key, source) is not None  # written again, whole


def test_labels_made_in_workers_serve_later_epochs(demo_copy, tmp_path, monkeypatch):
    ds = SegmentsDataset(demo_copy, target="instance", label_cache=tmp_path / "labels")
    loader = DataLoader(
        ds, batch_size=2, num_workers=2, collate_fn=ds.collate_fn, multiprocessing_context="fork"
    )
    first = [item for images, targets in loader for item in zip(images, targets, strict=True)]
    assert len(list((tmp_path / "labels").rglob("*.stlc"))) == 6
    monkeypatch.setattr(dataset, "decode_bitmap", lambda *a, **k: pytest.fail("decoded"))
    second = [item for images, targets in loader for item in zip(images, targets, strict=True)]
    assert_same_items(second, first)


def test_max_pixels_applies_to_cached_labels(demo_copy, tmp_path):
    labels = tmp_path / "labels"
    image = SegmentsDataset(demo_copy, label_cache=labels)[0][0]  # stores the label
    height, width = image.shape[-2:]
    # A smaller image passes the limit; the cached label, of the old size, must not.
    (demo_copy.parent / "images" / "shapes-000.jpg").write_bytes(jpeg(height // 2, width // 2))
    limit = height * width - 1
    with pytest.raises(AssetError) as info:
        SegmentsDataset(demo_copy, label_cache=labels, max_pixels=limit)[0]
    bitmap = demo_copy.parent / "bitmaps" / "shapes-000.png"
    assert str(info.value) == (
        f"sample 'shapes-000.jpg': {bitmap}: the bitmap declares {width}x{height} pixels "
        f"({height * width:,}), more than max_pixels={limit:,}"
    )


def jpeg(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_a_label_cache_that_cannot_be_written_warns_once_and_serves(
    demo_copy, tmp_path, caplog, monkeypatch
):
    blocker = tmp_path / "labels"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setattr(files, "_WARNED", set())
    ds = SegmentsDataset(demo_copy, target="semantic", label_cache=blocker)
    with caplog.at_level(logging.WARNING):
        items = all_items(ds)
    assert_same_items(items, all_items(SegmentsDataset(demo_copy, target="semantic")))
    assert [(r.name, r.getMessage().split(": ")[0]) for r in caplog.records] == [
        ("segments_torch.label_cache", f"cannot read the label cache entry {some_entry(ds)}"),
        ("segments_torch.dataset", f"cannot write to LabelCache('{blocker}')"),
    ]
    assert all(r.getMessage().endswith("(warned once per process)") for r in caplog.records)


def some_entry(ds: SegmentsDataset) -> Path:
    """The label cache entry of ``ds[0]``'s bitmap."""
    assert ds.label_cache is not None
    return ds.label_cache.path(ds.storage.identity(ds.sample_info(0).bitmap_url or "")[0])


def test_a_missing_bitmap_with_a_label_cache_is_an_asset_error(demo_copy, tmp_path):
    bitmap = demo_copy.parent / "bitmaps" / "shapes-000.png"
    bitmap.unlink()
    with pytest.raises(AssetError) as info:
        SegmentsDataset(demo_copy, label_cache=tmp_path / "labels")[0]
    assert str(info.value) == f"sample 'shapes-000.jpg': {bitmap}: not found"


def test_the_dataset_pickles_with_its_label_cache(demo_copy, tmp_path):
    ds = SegmentsDataset(demo_copy, label_cache=tmp_path / "labels")
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.label_cache is not None
    assert copy.label_cache.folder == tmp_path / "labels"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("decode", ["host", "device"])
def test_targets_at_a_size_are_the_same_with_the_cache(tmp_path, kind, decode, monkeypatch):
    oriented_release(tmp_path / "oriented")
    for release in (RELEASE_PATH, tmp_path / "oriented" / "release.json"):
        options = {"target": kind, "size": 9, "max_size": 13, "decode": decode}
        plain = SegmentsDataset(release, **options)
        cached = SegmentsDataset(release, label_cache=tmp_path / "labels", **options)
        if decode == "device":
            expected = plain.device_decoder()(plain.collate_fn(all_items(plain)))
            for _ in range(2):  # cold, then warm
                got = cached.device_decoder()(cached.collate_fn(all_items(cached)))
                assert_same_batch(got, expected)
        else:
            expected_items = all_items(plain)
            for _ in range(2):
                assert_same_items(all_items(cached), expected_items)


def assert_same_batch(got: Any, expected: Any) -> None:
    images, targets = got
    expected_images, expected_targets = expected
    if isinstance(targets, dict):  # semantic: stacked
        assert torch.equal(images, expected_images)
        assert targets.keys() == expected_targets.keys()
        for key in targets:
            assert torch.equal(targets[key], expected_targets[key]), key
        return
    assert_same_items(
        list(zip(images, targets, strict=True)),
        list(zip(expected_images, expected_targets, strict=True)),
    )
