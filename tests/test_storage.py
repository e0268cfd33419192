"""Storage: URL resolution, mirrors, HTTP reads with retries and timeouts, the atomic cache,
and worker safety, against a real threaded HTTP server on 127.0.0.1 (tests/http_server.py)
that fails on purpose: error statuses, dropped connections, stalls, truncated bodies.

Nothing here contacts any address but 127.0.0.1. Retries use delays of about 10 ms and
stall tests a 0.3 s timeout, so the file runs in seconds.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import json
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

import segments_torch.errors as errors_module
import segments_torch.storage as storage_module
from segments_torch import SegmentsDataset, files
from segments_torch._compat import cached_instances
from segments_torch.codecs import check_complete
from segments_torch.errors import (
    AssetError,
    DecodeError,
    OptionError,
    SegmentsTorchError,
    SourceUnavailableError,
)
from segments_torch.files import remove_stale_partials
from segments_torch.storage import (
    STORAGE_SETTINGS,
    RetryPolicy,
    Storage,
    StorageError,
    make_storage,
    prefetch,
)
from tests.http_server import FileServer
from tests.items import assert_same_item
from tests.releases import annotation, current_release, label, sample

REPO = Path(__file__).resolve().parents[1]
SECRET = "X-Amz-Signature=secret"
FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)


def payload(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def serve(root: Path, relative: str, data: bytes) -> bytes:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def read_error(url: str, attempts: int, **storage: Any) -> StorageError:
    """The StorageError that reading ``url`` raises with ``attempts`` attempts 10 ms apart
    (``storage``: Storage's other keywords)."""
    with pytest.raises(StorageError) as info:
        Storage(retry=RetryPolicy(attempts=attempts, base_delay=0.01), **storage).read(url)
    return info.value


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays Storage sleeps between attempts (the sleeps still happen, briefly), in
    this test's threads only: a read thread an earlier test left retrying (its item had
    failed on the other asset) may still sleep now, with that test's policy."""
    recorded: list[float] = []
    earlier = {t for t in threading.enumerate() if t is not threading.main_thread()}

    class RecordingTime:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            if threading.current_thread() not in earlier:
                recorded.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(storage_module, "time", RecordingTime())
    return recorded


# -- 1. resolve ---------------------------------------------------------------------------


def test_module_docstring_example():
    storage = Storage(
        base_url="/data/flowers", url_map={"https://bucket.s3.amazonaws.com/": "/mirror/"}
    )
    assert storage.resolve("images/a.jpg") == "/data/flowers/images/a.jpg"
    assert storage.resolve("https://bucket.s3.amazonaws.com/x/b.png?sig=1") == "/mirror/x/b.png"


@pytest.mark.parametrize("base", ["/data/flowers", "/data/flowers/"])
def test_resolve_relative_against_a_folder(base):
    storage = Storage(base_url=base)
    assert storage.resolve("images/a.jpg") == "/data/flowers/images/a.jpg"
    assert storage.resolve("a.jpg") == "/data/flowers/a.jpg"


@pytest.mark.parametrize("base", ["https://cdn.example/releases", "https://cdn.example/releases/"])
def test_resolve_relative_against_a_url(base):
    storage = Storage(base_url=base)
    assert storage.resolve("images/a.jpg") == "https://cdn.example/releases/images/a.jpg"
    # A remote URL keeps its query string: the server needs the signature.
    assert storage.resolve("b/c.png?sig=1") == "https://cdn.example/releases/b/c.png?sig=1"


@pytest.mark.parametrize(
    "url",
    [
        "/abs/images/a.jpg",
        "file:///abs/images/a.jpg",
        "https://cdn.example/images/a.jpg?X-Amz-Signature=secret",
        "http://127.0.0.1:9/a.png",
        "s3://bucket/key/a.png",
        "gs://bucket/a.png",
        "memory://a.png",
    ],
)
def test_resolve_leaves_absolute_paths_and_urls_unchanged(url):
    assert Storage(base_url="/data/flowers").resolve(url) == url
    assert Storage(base_url="https://other.example/r/").resolve(url) == url
    assert Storage().resolve(url) == url


def test_resolve_without_base_leaves_relative_urls_unchanged():
    assert Storage().resolve("images/a.jpg") == "images/a.jpg"


@pytest.mark.parametrize("reverse", [False, True])
def test_url_map_longest_prefix_wins_whatever_the_order(reverse):
    items = [
        ("https://cdn.example/", "/mirror/"),
        ("https://cdn.example/bitmaps/", "/bitmap-mirror/"),
        ("https://cdn.example/bitmaps/v2/", "https://team.example/v2/"),
    ]
    storage = Storage(url_map=dict(reversed(items) if reverse else items))
    assert storage.resolve("https://cdn.example/images/a.jpg?sig=1") == "/mirror/images/a.jpg"
    assert storage.resolve("https://cdn.example/bitmaps/b.png?sig=1") == "/bitmap-mirror/b.png"
    # Mapped to another remote URL, the query string stays (it may be what signs it).
    assert (
        storage.resolve("https://cdn.example/bitmaps/v2/c.png?sig=1")
        == "https://team.example/v2/c.png?sig=1"
    )


def test_url_map_to_a_local_path_drops_the_query_string():
    storage = Storage(
        url_map={"https://cdn.example/": "/mirror/", "https://b.example/": "file:///m2/"}
    )
    assert storage.resolve(f"https://cdn.example/a/b.jpg?{SECRET}&x=1") == "/mirror/a/b.jpg"
    assert storage.resolve(f"https://b.example/c.png?{SECRET}") == "file:///m2/c.png"


def test_url_map_without_a_match_leaves_the_url_unchanged():
    storage = Storage(url_map={"https://cdn.example/": "/mirror/"})
    url = f"https://elsewhere.example/cdn.example/a.jpg?{SECRET}"
    assert storage.resolve(url) == url
    # A prefix must match at the start, not anywhere.
    assert storage.resolve("http://cdn.example/a.jpg") == "http://cdn.example/a.jpg"


def test_url_map_is_applied_after_relative_resolution():
    storage = Storage(base_url="https://cdn.example/r", url_map={"https://cdn.example/": "/m/"})
    assert storage.resolve("images/a.jpg") == "/m/r/images/a.jpg"


def test_callable_url_map_gets_the_resolved_url_and_its_answer_is_used():
    seen: list[str] = []

    def mirror(url: str) -> str:
        seen.append(url)
        return url.replace("https://cdn.example/", "https://mirror.example/")

    storage = Storage(base_url="https://cdn.example/r/", url_map=mirror)
    assert storage.resolve("a.jpg?sig=1") == "https://mirror.example/r/a.jpg?sig=1"
    assert storage.resolve("https://x.example/b.png") == "https://x.example/b.png"
    assert seen == ["https://cdn.example/r/a.jpg?sig=1", "https://x.example/b.png"]


def test_a_url_no_prefix_covers_fails_saying_so_and_listing_the_prefixes(tmp_path, file_server):
    """A mapping of prefixes that misses a URL leaves it to its source (partial mirrors
    are allowed); when that read fails, the error says that no prefix matched and lists
    them as given, without user:password@ or query."""
    url_map = {
        "https://user:hunter2@cdn.example/": "/mirror/",
        "https://cdn.example/bitmaps/": "/bitmap-mirror/",
    }
    error = read_error(file_server.url_for("missing.jpg", query=SECRET), 1, url_map=url_map)
    assert str(error) == (
        "not found (HTTP 404); no url_map prefix matches this URL: "
        "https://cdn.example/, https://cdn.example/bitmaps/"
    )
    assert error.url == file_server.url_for("missing.jpg")
    assert error.note == (
        "no url_map prefix matches this URL: https://cdn.example/, https://cdn.example/bitmaps/"
    )
    # A relative URL is matched once joined to base_url, and said so when it fails.
    with pytest.raises(StorageError) as info:
        Storage(base_url=str(tmp_path), url_map=url_map).read("images/a.jpg")
    assert str(info.value) == (
        "not found; no url_map prefix matches this URL: https://cdn.example/, "
        "https://cdn.example/bitmaps/"
    )


def test_an_unmapped_url_on_an_unreachable_host_says_no_prefix_matched(sleeps):
    """What a user without network saw: five attempts, a connection error, and nothing to
    say that the URL was not the mirror's."""
    url_map = {"https://cdn.example/": "/mirror/"}
    error = read_error("http://127.0.0.1:9/assets/a.jpg?sig=1", 5, url_map=url_map)
    assert str(error).endswith(
        " after 5 attempts; no url_map prefix matches this URL: https://cdn.example/"
    )
    assert error.url == "http://127.0.0.1:9/assets/a.jpg"
    assert "sig=1" not in str(error)


def test_errors_of_a_mapped_url_show_the_original_url(tmp_path, file_server):
    url_map = {"https://cdn.example/": str(tmp_path / "mirror") + "/"}
    storage = Storage(url_map=url_map, retry=FAST)
    original = f"https://cdn.example/images/a.jpg?{SECRET}"
    with pytest.raises(StorageError) as info:
        storage.read(original)
    assert str(info.value) == "not found; mapped by url_map from https://cdn.example/images/a.jpg"
    assert info.value.url == str(tmp_path / "mirror" / "images" / "a.jpg")
    with pytest.raises(StorageError) as info:  # the label cache's look at a bitmap
        storage.identity(original)
    assert str(info.value) == "not found; mapped by url_map from https://cdn.example/images/a.jpg"
    # A remote mirror too, the mirror's query string kept for the request, shown nowhere.
    remote = Storage(url_map={"https://cdn.example/": file_server.url + "/"}, retry=FAST)
    with pytest.raises(StorageError) as info:
        remote.read(original)
    assert str(info.value) == (
        "not found (HTTP 404); mapped by url_map from https://cdn.example/images/a.jpg"
    )
    assert info.value.url == file_server.url_for("images/a.jpg")
    # A callable url_map: the original where it changed the URL, nothing where it did not.
    mirror = Storage(url_map=lambda url: url.replace("https://cdn.example/", "/nowhere/"))
    assert mirror.mirror_note(original) == "mapped by url_map from https://cdn.example/images/a.jpg"
    assert mirror.mirror_note("https://else.example/b.jpg") == ""
    assert Storage().mirror_note(original) == ""


def test_an_asset_error_shows_the_mapped_and_the_original_url(tmp_path):
    release = tmp_path / "release.json"
    item = sample("a.jpg", {"ground-truth": label("LABELED", [])})
    item["attributes"]["image"]["url"] = f"https://cdn.example/images/a.jpg?{SECRET}"
    release.write_text(json.dumps(current_release([item])))
    ds = SegmentsDataset(release, url_map={"https://cdn.example/": f"{tmp_path}/mirror/"})
    with pytest.raises(AssetError) as info:
        ds[0]
    assert str(info.value) == (
        f"sample 'a.jpg': {tmp_path}/mirror/images/a.jpg: not found; mapped by url_map from "
        "https://cdn.example/images/a.jpg"
    )


@pytest.mark.parametrize(
    ("prefix", "replacement", "separator"),
    [
        ("https://cdn.example/", "/data/mirror", "/"),
        ("https://cdn.example/assets", "/data/mirror/", "/"),
    ],
)
def test_a_prefix_and_replacement_that_disagree_on_the_separator_warn_once(
    monkeypatch, caplog, prefix, replacement, separator
):
    monkeypatch.setattr(files, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="segments_torch.storage"):
        storage = Storage(url_map={prefix: replacement, "https://b.example/": "/b/"})
        Storage(url_map={prefix: replacement})  # the release's storage, then the dataset's
    assert caplog.messages == [
        f"url_map: the prefix {prefix!r} and its replacement {replacement!r} disagree on a "
        f"trailing {separator!r}, so {prefix}a.jpg is read from {replacement}a.jpg; end both "
        f"with {separator!r} or neither (warned once per process)"
    ]
    # Warned, not changed: the mapping is what it says.
    assert storage.resolve(prefix + "x.jpg") == replacement + "x.jpg"


def test_a_prefix_and_replacement_that_agree_do_not_warn(monkeypatch, caplog):
    monkeypatch.setattr(files, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="segments_torch.storage"):
        Storage(url_map={"https://cdn.example/": "/m/", "https://b.example/x": "/b/x"})
        Storage(url_map=lambda url: url)
    assert caplog.messages == []


def test_invalid_cache_key():
    with pytest.raises(ValueError, match=r"^cache_key must be 'path' or 'url', not 'sha'$"):
        Storage(cache_key="sha")


# -- 2. local reads -----------------------------------------------------------------------


def test_local_reads(tmp_path):
    data = serve(tmp_path, "images/a.jpg", payload(1000))
    assert Storage().read(str(tmp_path / "images/a.jpg")) == data
    assert Storage().read((tmp_path / "images/a.jpg").as_uri()) == data
    assert Storage(base_url=str(tmp_path)).read("images/a.jpg") == data
    assert Storage().fetch(str(tmp_path / "images/a.jpg")) == data


def test_local_missing_file(tmp_path, sleeps):
    missing = tmp_path / "images" / "missing.jpg"
    with pytest.raises(StorageError) as info:
        Storage(retry=FAST).read(str(missing))
    assert str(info.value) == "not found"
    assert info.value.url == str(missing)
    assert info.value.attempts == 1
    assert info.value.retryable is False
    assert sleeps == []
    with pytest.raises(StorageError) as info:
        Storage(base_url=str(tmp_path)).read("images/missing.jpg")
    assert (str(info.value), info.value.url) == ("not found", str(missing))


def test_local_relative_url_without_a_base():
    with pytest.raises(StorageError) as info:
        Storage().read("images/a.jpg")
    assert str(info.value) == (
        "relative URL 'images/a.jpg' and no folder to resolve it against (the release was "
        "not read from a file): pass asset_root="
    )
    assert (info.value.url, info.value.attempts, info.value.status) == ("images/a.jpg", 1, None)


def test_a_signed_url_mapped_to_a_local_mirror_reads_the_mirror(tmp_path, file_server):
    data = serve(tmp_path, "mirror/images/a.jpg", payload(500))
    storage = Storage(url_map={file_server.url + "/": str(tmp_path / "mirror") + "/"})
    assert storage.read(file_server.url_for("images/a.jpg", query=SECRET)) == data
    assert file_server.count() == 0


# -- 3. HTTP reads ------------------------------------------------------------------------


def test_http_read_is_one_get(tmp_path, file_server):
    data = serve(tmp_path, "images/a.jpg", payload(100_000))
    url = file_server.url_for("images/a.jpg", query=SECRET)
    assert Storage().read(url) == data
    assert file_server.count() == 1
    assert file_server.count("images/a.jpg", "GET") == 1
    assert file_server.count(method="HEAD") == 0
    (request,) = file_server.requests
    assert request.query == SECRET  # the signature reaches the server
    assert "Range" not in request.headers
    # Without a cache every read is a request.
    assert Storage().read(url) == data
    assert file_server.count("images/a.jpg", "GET") == 2


def test_read_each_gives_every_asset_in_order(tmp_path, file_server):
    local = serve(tmp_path, "local/a.png", payload(1000, seed=1))
    remote = [serve(tmp_path, f"images/{i}.jpg", payload(5000, seed=i + 2)) for i in range(3)]
    storage = Storage(base_url=str(tmp_path), cache_dir=tmp_path / "cache")
    cached_url = file_server.url_for("images/2.jpg", query=SECRET)
    storage.read(cached_url)  # now cached: read from disk, no request
    urls = [
        file_server.url_for("images/0.jpg", query=SECRET),
        "local/a.png",
        file_server.url_for("images/1.jpg"),
        cached_url,
    ]
    assert list(storage.read_each(urls)) == [remote[0], local, remote[1], remote[2]]
    assert file_server.count("images/2.jpg") == 1
    assert list(storage.read_each([])) == []


def test_read_each_downloads_concurrently(tmp_path, file_server, monkeypatch):
    serve(tmp_path, "a.jpg", b"a")
    serve(tmp_path, "b.png", b"b")
    urls = [file_server.url_for("a.jpg"), file_server.url_for("b.png")]
    storage = Storage()
    # Each read waits for the other to start: read one after the other, they would break
    # the barrier after its timeout instead.
    both_started = threading.Barrier(2, timeout=10)
    threads: dict[str, str] = {}
    fetch = Storage.fetch

    def fetch_together(self: Storage, url: str) -> bytes:
        threads[url] = threading.current_thread().name
        both_started.wait()
        return fetch(self, url)

    monkeypatch.setattr(Storage, "fetch", fetch_together)
    assert list(storage.read_each(urls)) == [b"a", b"b"]
    assert threads[urls[0]] == threading.current_thread().name  # the first: the caller's
    assert threads[urls[1]].startswith("segments-torch-read")


def test_read_each_reads_local_and_cached_assets_in_the_callers_thread(tmp_path, file_server):
    serve(tmp_path, "a.jpg", b"a")
    serve(tmp_path, "b.png", b"b")
    storage = Storage(base_url=str(tmp_path), cache_dir=tmp_path / "cache")
    assert list(storage.read_each(["a.jpg", "b.png"])) == [b"a", b"b"]
    remote = [file_server.url_for("a.jpg"), file_server.url_for("b.png")]
    for url in remote:
        storage.read(url)
    assert list(storage.read_each(remote)) == [b"a", b"b"]
    assert storage._pool is None  # no thread was needed
    assert file_server.count() == 2


def test_read_each_raises_the_failing_assets_error_in_turn(tmp_path, file_server):
    serve(tmp_path, "a.jpg", b"a")
    storage = Storage(retry=FAST)
    reads = storage.read_each([file_server.url_for("a.jpg"), file_server.url_for("gone.png")])
    assert next(reads) == b"a"
    with pytest.raises(StorageError, match=r"^not found \(HTTP 404\)$") as caught:
        next(reads)
    assert caught.value.url == file_server.url_for("gone.png")


def test_read_each_decodes_each_asset_where_it_was_read(tmp_path, file_server):
    for name in ("a.jpg", "b.png", "c.png"):
        serve(tmp_path, name, name.encode())
    serve(tmp_path, "local/d.png", b"d.png")
    storage = Storage(base_url=str(tmp_path))
    urls = [file_server.url_for(name) for name in ("a.jpg", "b.png", "c.png")] + ["local/d.png"]
    decoded_by: dict[bytes, str] = {}

    def decode(data: bytes) -> str:
        decoded_by[data] = threading.current_thread().name
        return data.decode().upper()

    assert list(storage.read_each(urls, [decode] * 4)) == ["A.JPG", "B.PNG", "C.PNG", "D.PNG"]
    caller = threading.current_thread().name
    assert decoded_by[b"a.jpg"] == decoded_by[b"d.png"] == caller
    assert decoded_by[b"b.png"].startswith("segments-torch-read")
    assert decoded_by[b"c.png"].startswith("segments-torch-read")


def test_read_each_threads_decode_after_the_callers_download(tmp_path, file_server, monkeypatch):
    # A decoder may hold the GIL (pyspng does): the threads' decoding waits until the
    # caller's own download is in hand, however late it comes.
    serve(tmp_path, "a.jpg", b"a")
    serve(tmp_path, "b.png", b"b")
    urls = [file_server.url_for("a.jpg"), file_server.url_for("b.png")]
    events: list[str] = []
    fetch = Storage.fetch

    def slow_first(self: Storage, url: str) -> bytes:
        if url == urls[0]:
            time.sleep(0.3)
        data = fetch(self, url)
        events.append(f"read {data.decode()}")
        return data

    def decode(data: bytes) -> bytes:
        events.append(f"decode {data.decode()}")
        return data

    monkeypatch.setattr(Storage, "fetch", slow_first)
    assert list(Storage().read_each(urls, [decode, decode])) == [b"a", b"b"]
    assert events.index("read b") < events.index("read a")  # downloads run together
    assert events.index("read a") < events.index("decode b")


def test_read_each_releases_the_threads_when_the_caller_stops(tmp_path, file_server):
    serve(tmp_path, "b.png", b"b")
    storage = Storage(retry=FAST)
    decoded = threading.Event()

    def decode(data: bytes) -> bytes:
        decoded.set()
        return data

    assets = storage.read_each(
        [file_server.url_for("gone.jpg"), file_server.url_for("b.png")], [decode, decode]
    )
    with pytest.raises(StorageError, match=r"^not found \(HTTP 404\)$"):
        next(assets)
    del assets
    assert decoded.wait(timeout=10)  # the bitmap's thread was not left waiting


def test_a_pickled_storage_has_no_threads(tmp_path, file_server):
    for name in ("a.jpg", "b.png"):
        serve(tmp_path, name, name.encode())
    storage = Storage()
    list(storage.read_each([file_server.url_for("a.jpg"), file_server.url_for("b.png")]))
    assert storage._pool is not None
    clone = pickle.loads(pickle.dumps(storage))
    assert clone._pool is None
    assert list(clone.read_each([file_server.url_for("b.png")])) == [b"b.png"]


def test_the_timeout_reaches_azure_and_explicit_options_win():
    storage = Storage(storage_options={"az": {"account_name": "a", "read_timeout": 90}}, timeout=7)
    assert storage._options("az") == {
        "account_name": "a",
        "connection_timeout": 7,
        "read_timeout": 90,
    }
    assert Storage(timeout=7)._options("abfs") == {"connection_timeout": 7, "read_timeout": 7}


def test_http_query_strings_are_ignored_by_the_server(tmp_path, file_server):
    data = serve(tmp_path, "a b/c.png", payload(10))
    storage = Storage()
    assert storage.read(file_server.url_for("a b/c.png")) == data
    assert storage.read(file_server.url_for("a b/c.png", query="sig=1&t=2")) == data
    assert [r.query for r in file_server.requests] == ["", "sig=1&t=2"]
    assert file_server.count("a b/c.png") == 2


def test_http_relative_url_against_a_url_base(tmp_path, file_server):
    data = serve(tmp_path, "r/images/a.jpg", payload(10))
    assert Storage(base_url=file_server.url + "/r").read("images/a.jpg") == data
    assert file_server.count("r/images/a.jpg") == 1


def test_http_empty_file(tmp_path, file_server):
    serve(tmp_path, "empty.png", b"")
    assert Storage().read(file_server.url_for("empty.png")) == b""


# -- 4. retries ---------------------------------------------------------------------------


def test_503_twice_then_ok(tmp_path, file_server, sleeps):
    data = serve(tmp_path, "a.jpg", payload(1000))
    file_server.fail("a.jpg", 503, times=2)
    assert Storage(retry=FAST).read(file_server.url_for("a.jpg", query=SECRET)) == data
    assert [r.status for r in file_server.requests] == [503, 503, 200]
    assert len(sleeps) == 2


def test_500_every_time_gives_up_after_the_attempts(tmp_path, file_server, sleeps):
    serve(tmp_path, "a.jpg", payload(10))
    file_server.fail("a.jpg", 500, times=10)
    with pytest.raises(StorageError) as info:
        Storage(retry=FAST).read(file_server.url_for("a.jpg", query=SECRET))
    error = info.value
    assert str(error) == "HTTP 500 Internal Server Error after 5 attempts"
    assert error.reason == "HTTP 500 Internal Server Error"
    assert (error.status, error.attempts, error.retryable) == (500, 5, True)
    assert error.url == file_server.url_for("a.jpg")
    assert file_server.count("a.jpg") == 5
    assert len(sleeps) == 4  # between attempts, none after the last


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "HTTP 429 Too Many Requests"), (502, "HTTP 502 Bad Gateway"), (408, None)],
)
def test_other_retryable_statuses(tmp_path, file_server, sleeps, status, reason):
    data = serve(tmp_path, "a.jpg", payload(10))
    file_server.fail("a.jpg", status, times=1)
    assert Storage(retry=FAST).read(file_server.url_for("a.jpg")) == data
    assert [r.status for r in file_server.requests] == [status, 200]
    assert len(sleeps) == 1
    if reason is not None:
        file_server.fail("a.jpg", status, times=2)
        with pytest.raises(StorageError) as info:
            Storage(retry=RetryPolicy(attempts=2, base_delay=0.01)).read(
                file_server.url_for("a.jpg")
            )
        assert str(info.value) == f"{reason} after 2 attempts"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (404, "not found (HTTP 404)"),
        (410, "not found (HTTP 410)"),
        (403, "access denied (HTTP 403)"),
        (401, "access denied (HTTP 401)"),
        (400, "HTTP 400 Bad Request"),
    ],
)
def test_client_errors_are_not_retried(tmp_path, file_server, sleeps, status, message):
    serve(tmp_path, "a.jpg", payload(10))
    file_server.fail("a.jpg", status, times=5)
    with pytest.raises(StorageError) as info:
        Storage(retry=FAST).read(file_server.url_for("a.jpg", query=SECRET))
    error = info.value
    assert str(error) == message
    assert (error.status, error.attempts, error.retryable) == (status, 1, False)
    assert error.url == file_server.url_for("a.jpg")
    assert file_server.count("a.jpg") == 1
    assert sleeps == []


def test_a_missing_http_file_is_not_found_http_404(file_server, sleeps):
    """A real 404 (no planned failure): the same message as any 404."""
    with pytest.raises(StorageError) as info:
        Storage(retry=FAST).read(file_server.url_for("images/missing.jpg", query=SECRET))
    assert str(info.value) == "not found (HTTP 404)"
    assert (info.value.status, info.value.attempts) == (404, 1)
    assert info.value.url == file_server.url_for("images/missing.jpg")
    assert file_server.count() == 1
    assert sleeps == []


def test_backoff_delays_are_bounded_full_jitter(tmp_path, file_server, sleeps):
    serve(tmp_path, "a.jpg", payload(10))
    policy = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.03)
    file_server.fail("a.jpg", 503, times=6)
    with pytest.raises(StorageError, match=r"^HTTP 503 Service Unavailable after 6 attempts$"):
        Storage(retry=policy).read(file_server.url_for("a.jpg"))
    caps = [0.01, 0.02, 0.03, 0.03, 0.03]  # min(max_delay, base * 2 ** (k - 1))
    assert len(sleeps) == len(caps)
    for delay, cap in zip(sleeps, caps, strict=True):
        assert 0 <= delay <= cap


def test_backoff_upper_bounds_grow_exponentially_to_the_cap(tmp_path, file_server, monkeypatch):
    """With the jitter pinned to its upper bound, the delays are exactly the caps."""
    bounds: list[tuple[float, float]] = []

    class UpperBound:
        @staticmethod
        def uniform(low: float, high: float) -> float:
            bounds.append((low, high))
            return high

    monkeypatch.setattr(storage_module, "random", UpperBound())
    policy = RetryPolicy(attempts=7, base_delay=0.001, max_delay=0.01)
    assert [policy.delay(k) for k in range(1, 7)] == [0.001, 0.002, 0.004, 0.008, 0.01, 0.01]
    assert all(low == 0 for low, _ in bounds)


def test_backoff_jitter_spans_zero_to_the_cap():
    policy = RetryPolicy()
    assert (policy.attempts, policy.base_delay, policy.max_delay) == (5, 0.5, 20.0)
    for attempt, cap in [(1, 0.5), (3, 2.0), (6, 16.0), (7, 20.0), (12, 20.0)]:
        delays = np.array([policy.delay(attempt) for _ in range(2000)])
        assert delays.min() >= 0
        assert delays.max() <= cap
        assert delays.min() < 0.02 * cap  # full jitter: down to zero, not cap/2
        assert delays.max() > 0.98 * cap
        assert abs(delays.mean() - cap / 2) < 0.05 * cap


# -- 5. failure modes ---------------------------------------------------------------------


def test_dropped_connections_are_retried(tmp_path, file_server, sleeps):
    data = serve(tmp_path, "a.jpg", payload(1000))
    # aiohttp itself resends an idempotent request once after a dropped connection, so two
    # drops make one failed attempt of Storage's.
    file_server.drop("a.jpg", times=2)
    assert Storage(retry=FAST).read(file_server.url_for("a.jpg", query=SECRET)) == data
    assert [(r.status, r.fault) for r in file_server.requests] == [
        (0, "drop"),
        (0, "drop"),
        (200, ""),
    ]
    assert len(sleeps) == 1


def test_dropped_connections_every_time(tmp_path, file_server, sleeps):
    serve(tmp_path, "a.jpg", payload(10))
    file_server.drop("a.jpg", times=100)
    error = read_error(file_server.url_for("a.jpg", query=SECRET), attempts=3)
    assert str(error) == "ServerDisconnectedError: Server disconnected after 3 attempts"
    assert (error.status, error.attempts, error.retryable) == (None, 3, True)
    assert file_server.count("a.jpg") == 6  # two requests an attempt (aiohttp resends once)
    assert len(sleeps) == 2


def test_stall_past_the_timeout_is_retried(tmp_path, file_server, sleeps):
    data = serve(tmp_path, "a.jpg", payload(1000))
    file_server.stall("a.jpg", 2.0, times=2)
    started = time.monotonic()
    assert Storage(timeout=0.3, retry=FAST).read(file_server.url_for("a.jpg")) == data
    assert time.monotonic() - started < 1.9  # two timeouts of 0.3 s, not a stall of 2 s
    assert [r.fault for r in file_server.requests] == ["stall", "stall", ""]
    assert len(sleeps) == 2


def test_stall_every_time_times_out(tmp_path, file_server, sleeps):
    serve(tmp_path, "a.jpg", payload(10))
    file_server.stall("a.jpg", 2.0, times=10)
    error = read_error(file_server.url_for("a.jpg", query=SECRET), attempts=2, timeout=0.3)
    assert str(error) == "timed out after 2 attempts"
    assert (error.status, error.attempts, error.retryable) == (None, 2, True)
    assert isinstance(error.__cause__ or error.__context__, TimeoutError)
    assert file_server.count("a.jpg") == 2
    assert len(sleeps) == 1


def test_a_slow_body_past_the_timeout_times_out(tmp_path, file_server):
    """The timeout bounds the whole request, not only the wait for the headers."""
    serve(tmp_path, "a.jpg", payload(100_000))
    file_server.bytes_per_second = 100_000  # one second for the body
    with pytest.raises(StorageError) as info:
        Storage(timeout=0.3, retry=RetryPolicy(attempts=1)).read(file_server.url_for("a.jpg"))
    assert str(info.value) == "timed out"
    assert file_server.bytes_sent("a.jpg") < 100_000


def test_truncated_body_is_retried(tmp_path, file_server, sleeps):
    data = serve(tmp_path, "a.jpg", payload(10_000))
    file_server.truncate("a.jpg", times=1)
    assert Storage(retry=FAST).read(file_server.url_for("a.jpg")) == data
    assert [r.fault for r in file_server.requests] == ["truncate", ""]
    assert len(sleeps) == 1


def test_truncated_body_every_time(tmp_path, file_server, sleeps):
    serve(tmp_path, "a.jpg", payload(10_000))
    file_server.truncate("a.jpg", times=10)
    error = read_error(file_server.url_for("a.jpg", query=SECRET), attempts=2)
    assert str(error).startswith("ClientPayloadError: Response payload is not completed")
    assert "received 5000 of 10000 bytes" in str(error)  # says what happened
    assert str(error).endswith(" after 2 attempts")
    assert (error.status, error.attempts, error.retryable) == (None, 2, True)
    assert file_server.count("a.jpg") == 2


def test_connection_refused_is_retried_then_reported(sleeps):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = read_error(f"http://127.0.0.1:{port}/a.jpg?{SECRET}", attempts=2)
    assert str(error).startswith(f"ClientConnectorError: Cannot connect to host 127.0.0.1:{port}")
    assert str(error).endswith(" after 2 attempts")
    assert (error.attempts, error.retryable, error.url) == (
        2,
        True,
        f"http://127.0.0.1:{port}/a.jpg",
    )
    assert len(sleeps) == 1


@pytest.mark.parametrize("mode", ["500", "404", "403", "drop", "stall", "truncate"])
def test_no_error_or_log_shows_the_query_string(tmp_path, file_server, caplog, mode):
    serve(tmp_path, "a.jpg", payload(10_000))
    if mode == "drop":
        file_server.drop("a.jpg", times=10)
    elif mode == "stall":
        file_server.stall("a.jpg", 2.0, times=10)
    elif mode == "truncate":
        file_server.truncate("a.jpg", times=10)
    else:
        file_server.fail("a.jpg", int(mode), times=10)
    caplog.set_level(logging.DEBUG, logger="segments_torch.storage")
    error = read_error(file_server.url_for("a.jpg", query=SECRET), attempts=2, timeout=0.3)
    assert "secret" not in str(error)
    assert "secret" not in repr(error)
    assert "secret" not in error.url
    assert "secret" not in error.reason
    assert "secret" not in caplog.text
    assert file_server.requests[0].query == SECRET


def shown_in_a_traceback(error: BaseException | None) -> list[str]:
    """The exception lines a printed traceback of ``error`` shows, chained ones included
    (``raise ... from exc`` prints ``exc`` too: a training log would hold them)."""
    lines = []
    while error is not None:
        lines.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return lines


@pytest.mark.parametrize("status", [500, 404, 403])
def test_a_printed_traceback_does_not_show_the_query_string(tmp_path, file_server, status):
    serve(tmp_path, "a.jpg", payload(10))
    file_server.fail("a.jpg", status, times=10)
    with pytest.raises(StorageError) as info:
        Storage(retry=RetryPolicy(attempts=1)).read(file_server.url_for("a.jpg", query=SECRET))
    shown = shown_in_a_traceback(info.value)
    assert not [line for line in shown if "secret" in line]
    assert "secret" not in "".join(traceback.format_exception(info.value))


# -- 6. cache -----------------------------------------------------------------------------


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (24, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=93)
    return buffer.getvalue()


def test_cache_serves_the_second_read_from_disk(tmp_path, file_server):
    # Bytes no encoder would write back the same way: a JPEG with trailing garbage.
    data = serve(tmp_path, "srv/images/a.jpg", jpeg_bytes() + b"\x00trailing bytes kept")
    cache = tmp_path / "cache"
    storage = Storage(cache_dir=cache)
    url = file_server.url_for("srv/images/a.jpg", query=SECRET)
    assert storage.read(url) == data
    assert storage.read(url) == data
    assert file_server.count() == 1
    path = storage.cache_path(url)
    assert path is not None
    assert path.read_bytes() == data  # the original bytes, never re-encoded
    assert path.suffix == ".jpg"
    assert path.parent.parent == cache
    assert files_under(cache) == [path]  # nothing else: no temporary left
    # Another Storage (another process, another epoch) finds it, server or not.
    file_server.stop()
    assert Storage(cache_dir=cache).read(url) == data


def test_cache_path_is_keyed_by_the_url_without_query(tmp_path, file_server):
    data = serve(tmp_path, "a.png", payload(100))
    storage = Storage(cache_dir=tmp_path / "cache")
    first, second = file_server.url_for("a.png", "sig=1"), file_server.url_for("a.png", "sig=2")
    assert storage.cache_path(first) == storage.cache_path(second)
    assert storage.cache_path(first) == storage.cache_path(file_server.url_for("a.png"))
    assert storage.read(first) == data
    assert storage.read(second) == data
    assert file_server.count("a.png") == 1
    assert [r.query for r in file_server.requests] == ["sig=1"]


def test_cache_key_url_keys_by_the_full_url(tmp_path, file_server):
    data = serve(tmp_path, "a.png", payload(100))
    storage = Storage(cache_dir=tmp_path / "cache", cache_key="url")
    first, second = file_server.url_for("a.png", "sig=1"), file_server.url_for("a.png", "sig=2")
    assert storage.cache_path(first) != storage.cache_path(second)
    assert storage.read(first) == data
    assert storage.read(second) == data
    assert storage.read(second) == data
    assert file_server.count("a.png") == 2
    assert len(files_under(tmp_path / "cache")) == 2


def test_cache_paths_of_different_files_differ_and_keep_suffixes(tmp_path):
    storage = Storage(cache_dir=tmp_path / "cache")
    a = storage.cache_path("https://h.example/a/x.png?sig=1")
    b = storage.cache_path("https://h.example/b/x.png")
    c = storage.cache_path("s3://bucket/a/x.jpeg")
    d = storage.cache_path("https://h.example/no-suffix")
    assert None not in (a, b, c, d)
    assert len({a, b, c, d}) == 4
    assert [p.suffix for p in (a, b, c, d) if p is not None] == [".png", ".png", ".jpeg", ""]
    digest = hashlib.sha256(b"https://h.example/a/x.png").hexdigest()
    assert a == tmp_path / "cache" / digest[:2] / f"{digest}.png"


def test_a_failed_download_caches_nothing(tmp_path, file_server):
    serve(tmp_path, "srv/a.jpg", payload(10_000))
    cache = tmp_path / "cache"
    storage = Storage(cache_dir=cache, retry=RetryPolicy(attempts=2, base_delay=0.01))
    for fault in ("503", "truncate"):
        if fault == "503":
            file_server.fail("srv/a.jpg", 503, 2)
        else:
            file_server.truncate("srv/a.jpg", 2)
        with pytest.raises(StorageError):
            storage.read(file_server.url_for("srv/a.jpg"))
        assert files_under(cache) == []
    with pytest.raises(StorageError, match=r"^not found \(HTTP 404\)$"):
        storage.read(file_server.url_for("srv/missing.jpg"))
    assert files_under(cache) == []
    # The next good read caches the whole file.
    assert storage.read(file_server.url_for("srv/a.jpg")) == (tmp_path / "srv/a.jpg").read_bytes()
    assert len(files_under(cache)) == 1


def test_local_files_are_never_cached(tmp_path, file_server):
    data = serve(tmp_path, "mirror/a.jpg", payload(10))
    cache = tmp_path / "cache"
    storage = Storage(
        base_url=str(tmp_path / "mirror"),
        cache_dir=cache,
        url_map={file_server.url + "/": str(tmp_path / "mirror") + "/"},
    )
    for url in (
        "a.jpg",
        str(tmp_path / "mirror/a.jpg"),
        (tmp_path / "mirror/a.jpg").as_uri(),
        file_server.url_for("a.jpg", query=SECRET),  # mapped to the local mirror
    ):
        assert storage.cache_path(url) is None
        assert storage.read(url) == data
    assert not cache.exists()
    assert file_server.count() == 0
    assert Storage().cache_path(file_server.url_for("a.jpg")) is None  # no cache_dir


def test_a_failed_cache_write_leaves_no_temporary(tmp_path, file_server, monkeypatch):
    serve(tmp_path, "srv/a.jpg", payload(10))
    cache = tmp_path / "cache"

    def refuse(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    # Raising or serving the downloaded bytes uncached are both fair; a torn file is not.
    outcome: bytes | OSError
    try:
        outcome = Storage(cache_dir=cache).read(file_server.url_for("srv/a.jpg"))
    except OSError as exc:
        outcome = exc
    if isinstance(outcome, OSError):
        assert "No space left on device" in str(outcome)
    else:
        assert outcome == (tmp_path / "srv/a.jpg").read_bytes()
    assert files_under(cache) == []


# -- 7. atomicity under SIGKILL, concurrency ----------------------------------------------

CHILD = """
import sys
sys.path.insert(0, {repo!r})
from segments_torch.storage import Storage
data = Storage(cache_dir=sys.argv[1]).read(sys.argv[2])
import hashlib
print(hashlib.sha256(data).hexdigest(), flush=True)
"""

# The same, but writing the cache file slowly (64 KiB every 10 ms), so the test can kill the
# process while the temporary file is half written.
SLOW_WRITER = """
import os, sys, time
sys.path.insert(0, {repo!r})
from segments_torch.storage import Storage
real_fdopen = os.fdopen

class Slow:
    def __init__(self, f):
        self.f = f
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
    def write(self, data):
        view = memoryview(data)
        for start in range(0, len(view), 1 << 16):
            self.f.write(view[start : start + (1 << 16)])
            self.f.flush()
            time.sleep(0.01)

os.fdopen = lambda fd, mode="r", *args, **kwargs: Slow(real_fdopen(fd, mode, *args, **kwargs))
Storage(cache_dir=sys.argv[1]).read(sys.argv[2])
"""


def start_child(script: str, cache: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script.format(repo=str(REPO)), str(cache), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Any, what: str, child: subprocess.Popen[str]) -> None:
    """Poll ``condition`` until it holds; fail if ``child`` ends first or after 20 s."""
    deadline = time.monotonic() + 20
    while not condition():
        if child.poll() is not None:
            raise AssertionError(f"the child ended before {what}: {child.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def served_for_cache(
    root: Path, file_server: Any, name: str, size: int, seed: int
) -> tuple[bytes, Path, str, Path]:
    """Serves ``size`` random bytes as ``name``; returns them, a cache folder under
    ``root``, their URL (with the secret query) and the file of the cache they end in."""
    data = serve(root, name, payload(size, seed=seed))
    cache = root / "cache"
    url = file_server.url_for(name, query=SECRET)
    final = Storage(cache_dir=cache).cache_path(url)
    assert final is not None
    return data, cache, url, final


def kill_child_when(condition: Any, what: str, script: str, cache: Path, url: str) -> None:
    """Runs ``script`` on ``cache`` and ``url`` in a child, SIGKILLs it once ``condition``
    holds (while it still runs), and reaps it whatever happens."""
    child = start_child(script, cache, url)
    try:
        wait_for(condition, what, child)
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def test_sigkill_mid_download_leaves_no_partial_file(tmp_path, file_server):
    size = 16 << 20
    data, cache, url, final = served_for_cache(tmp_path, file_server, "srv/big.png", size, seed=7)
    file_server.bytes_per_second = 4 << 20  # four seconds for the whole file
    kill_child_when(
        lambda: file_server.bytes_sent("srv/big.png") > (1 << 20), "the download", CHILD, cache, url
    )
    assert file_server.bytes_sent("srv/big.png") < size
    assert not final.exists()
    assert all(p.name.startswith(".partial-") for p in files_under(cache))
    file_server.bytes_per_second = 0
    assert Storage(cache_dir=cache).read(url) == data
    assert final.read_bytes() == data
    assert file_server.count("srv/big.png") == 2


def test_sigkill_mid_cache_write_leaves_only_a_temporary(tmp_path, file_server):
    size = 4 << 20
    data, cache, url, final = served_for_cache(tmp_path, file_server, "srv/big.png", size, seed=8)

    def half_written() -> bool:
        try:
            return any(0 < p.stat().st_size < size for p in files_under(cache))
        except FileNotFoundError:  # renamed in between: too late, reported below
            return True

    kill_child_when(half_written, "the cache write", SLOW_WRITER, cache, url)
    leftovers = files_under(cache)
    assert not final.exists()
    assert len(leftovers) == 1
    assert leftovers[0].name.startswith(".partial-")
    assert leftovers[0].parent == final.parent  # same folder: the rename is atomic
    assert leftovers[0].stat().st_size < size  # torn, but under a name nobody reads
    assert Storage(cache_dir=cache).read(url) == data
    assert final.read_bytes() == data
    assert Storage(cache_dir=cache).read(url) == data
    assert file_server.count("srv/big.png") == 2


def test_concurrent_threads_reading_one_uncached_url(tmp_path, file_server):
    size = 1 << 20
    data, cache, url, final = served_for_cache(tmp_path, file_server, "srv/a.png", size, seed=3)
    file_server.bytes_per_second = 4 << 20
    readers = 6
    barrier = threading.Barrier(readers + 1)
    results: list[bytes | BaseException] = []
    seen_partial: list[int] = []
    done = threading.Event()

    def read() -> None:
        barrier.wait()
        try:
            results.append(Storage(cache_dir=cache).read(url))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    def watch() -> None:  # a reader of the final name never sees part of the file
        barrier.wait()
        while not done.is_set():
            try:
                content = final.read_bytes()
            except FileNotFoundError:
                continue
            if content != data:
                seen_partial.append(len(content))

    threads = [threading.Thread(target=read) for _ in range(readers)]
    watcher = threading.Thread(target=watch)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    done.set()
    watcher.join(timeout=30)
    assert len(results) == readers
    assert all(result == data for result in results), [type(r) for r in results]
    assert seen_partial == []
    assert final.read_bytes() == data
    assert files_under(cache) == [final]
    assert 1 <= file_server.count("srv/a.png") <= readers


def test_concurrent_processes_reading_one_uncached_url(tmp_path, file_server):
    size = 2 << 20
    data, cache, url, final = served_for_cache(tmp_path, file_server, "srv/a.png", size, seed=4)
    file_server.bytes_per_second = 8 << 20
    children = [start_child(CHILD, cache, url) for _ in range(3)]
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], outputs
    assert [out.strip() for out, _ in outputs] == [hashlib.sha256(data).hexdigest()] * 3
    assert final.read_bytes() == data
    assert files_under(cache) == [final]


# -- 8. the dataset: worker safety, pickling, AssetError ----------------------------------


def bitmap_png(ids: np.ndarray) -> bytes:
    ids = ids.astype(np.uint32)
    rgba = np.stack(
        [ids & 255, (ids >> 8) & 255, (ids >> 16) & 255, np.full_like(ids, 255)], axis=-1
    ).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def http_release(root: Path, server: FileServer, count: int = 5) -> dict[str, Any]:
    """A current-layout release of ``count`` samples whose JPEG images and RGBA bitmaps are
    served by ``server`` under signed URLs."""
    samples = []
    for i in range(count):
        height, width = 24 + 2 * i, 32
        serve(root, f"images/s{i}.jpg", jpeg_bytes(seed=i, size=(height, width)))
        ids = np.zeros((height, width), dtype=np.int64)
        ids[2:10, 3:12] = 1
        ids[12:20, 14:30] = 2
        ids[20:, :] = 70000
        ids[0, 0] = 3  # in the bitmap but not annotated
        serve(root, f"bitmaps/s{i}.png", bitmap_png(ids))
        record = sample(
            f"s{i}.jpg",
            {
                "ground-truth": label(
                    "LABELED",
                    [annotation(1, 0), annotation(2, 1), annotation(70000, 5)],
                    bitmap=server.url_for(f"bitmaps/s{i}.png", query=SECRET),
                )
            },
        )
        record["attributes"]["image"]["url"] = server.url_for(f"images/s{i}.jpg", query=SECRET)
        samples.append(record)
    return current_release(samples)


def keep(item: Any) -> Any:
    return item


def test_forked_workers_after_the_parent_read_over_http(tmp_path, file_server):
    from fsspec.implementations.http import HTTPFileSystem

    ds = SegmentsDataset(http_release(tmp_path, file_server), target="instance")
    assert len(ds) == 5
    first = ds[0]  # the parent now holds an HTTP filesystem and its aiohttp session
    assert len(cached_instances(HTTPFileSystem)) >= 1
    assert set(vars(ds.storage)) == {
        "base_url",
        "storage_options",
        "url_map",
        "_prefixes",  # strings: the url_map prefixes, longest first
        "_shown_prefixes",  # a string: the url_map prefixes as given, for errors
        "cache_dir",
        "cache_key",
        "timeout",
        "retry",
        "label_cache",  # a path, or None
        "_pool",  # (pid, threads) of read_each: a forked worker makes its own
        "_outages",  # the hosts down in this process: a worker starts with none
    }
    assert ds.storage._pool is not None
    assert ds.storage._pool[0] == os.getpid()
    expected = [first] + [ds[i] for i in range(1, len(ds))]
    assert file_server.count() == 2 * len(ds)
    assert len(expected[1][1]["labels"]) == 3
    loader = DataLoader(
        ds,
        batch_size=None,
        collate_fn=keep,
        num_workers=2,
        multiprocessing_context="fork",
        timeout=60,
    )
    items = list(loader)
    assert len(items) == len(ds)
    for got, want in zip(items, expected, strict=True):
        assert_same_item(got, want)
    assert file_server.count() == 4 * len(ds)  # the workers read every asset themselves
    assert ds[1][1]["masks"].shape == expected[1][1]["masks"].shape  # the parent still reads


def test_forked_workers_fill_and_share_the_cache(tmp_path, file_server):
    cache = tmp_path / "cache"
    ds = SegmentsDataset(http_release(tmp_path, file_server, count=4), cache_dir=cache)
    expected = ds[0]
    loader = DataLoader(
        ds, batch_size=None, collate_fn=keep, num_workers=2, multiprocessing_context="fork"
    )
    first_epoch = list(loader)
    assert file_server.count() == 2 * 4  # ds[0]'s assets came from the cache
    assert not list(cache.rglob(".partial-*"))
    second_epoch = list(loader)
    assert file_server.count() == 2 * 4
    for a, b in zip(first_epoch, second_epoch, strict=True):
        assert_same_item(a, b)
    assert_same_item(first_epoch[0], expected)


def test_the_dataset_pickles_without_filesystems(tmp_path, file_server):
    ds = SegmentsDataset(http_release(tmp_path, file_server), target="semantic")
    expected = [ds[i] for i in range(len(ds))]  # sessions now exist in this process
    blob = pickle.dumps(ds)
    assert len(blob) < 50_000
    for name in (b"aiohttp", b"fsspec", b"ClientSession", b"HTTPFileSystem", b"_thread"):
        assert name not in blob
    storage_blob = pickle.dumps(ds.storage)
    assert len(storage_blob) < 1000
    clone = pickle.loads(blob)
    for i in range(len(ds)):
        assert_same_item(clone[i], expected[i])


def test_asset_error_for_a_missing_bitmap(tmp_path, file_server):
    document = http_release(tmp_path, file_server, count=2)
    bitmap = document["dataset"]["samples"][1]["labels"]["ground-truth"]["attributes"]
    bitmap["segmentation_bitmap"]["url"] = file_server.url_for("bitmaps/x.png", query=SECRET)
    ds = SegmentsDataset(document, retry=FAST)
    with pytest.raises(AssetError) as info:
        ds[1]
    error = info.value
    assert str(error) == f"sample 's1.jpg': {file_server.url}/bitmaps/x.png: not found (HTTP 404)"
    assert (error.sample, error.url) == ("s1.jpg", f"{file_server.url}/bitmaps/x.png")
    assert file_server.count("bitmaps/x.png") == 1
    assert "secret" not in str(error)
    assert pickle.loads(pickle.dumps(error)).args == error.args


def raised_in_a_worker(ds: SegmentsDataset, error: type[Exception]) -> str:
    """The message of the ``error`` that reading ``ds`` through one forked DataLoader
    worker raises: torch re-raises a worker's error as ``type(error)(message)``, the
    message holding the worker's formatted traceback."""
    loader = DataLoader(
        ds, batch_size=None, collate_fn=keep, num_workers=1, multiprocessing_context="fork"
    )
    batches = iter(loader)
    try:
        with pytest.raises(error) as raised:
            list(batches)
        return str(raised.value)
    finally:
        # Shut the worker down now, not when the garbage collector finds the iterator
        # (its __del__ then waits up to 5 s for the worker).
        batches._shutdown_workers()  # type: ignore[attr-defined]


def test_asset_errors_from_workers_do_not_show_the_query_string(tmp_path, file_server):
    document = http_release(tmp_path, file_server, count=2)
    bitmap = document["dataset"]["samples"][1]["labels"]["ground-truth"]["attributes"]
    bitmap["segmentation_bitmap"]["url"] = file_server.url_for("bitmaps/x.png", query=SECRET)
    ds = SegmentsDataset(document)
    with pytest.raises(AssetError) as info:
        ds[1]
    assert not [line for line in shown_in_a_traceback(info.value) if "secret" in line]
    text = raised_in_a_worker(ds, AssetError)
    assert f"sample 's1.jpg': {file_server.url}/bitmaps/x.png: not found (HTTP 404)" in text
    assert "secret" not in text


def test_asset_error_names_the_attempts(tmp_path, file_server, sleeps):
    ds = SegmentsDataset(
        http_release(tmp_path, file_server, count=2),
        retry=RetryPolicy(attempts=3, base_delay=0.01),
        timeout=0.3,
    )
    file_server.fail("images/s0.jpg", 503, times=3)
    with pytest.raises(AssetError) as info:
        ds[0]
    assert str(info.value) == (
        f"sample 's0.jpg': {file_server.url}/images/s0.jpg: "
        "HTTP 503 Service Unavailable after 3 attempts"
    )
    file_server.reset()
    file_server.stall("bitmaps/s1.png", 2.0, times=3)
    with pytest.raises(AssetError) as info:
        ds[1]
    assert str(info.value) == (
        f"sample 's1.jpg': {file_server.url}/bitmaps/s1.png: timed out after 3 attempts"
    )
    # A transient failure the retries absorb is invisible to the dataset.
    file_server.reset()
    file_server.fail("images/s1.jpg", 503, times=2)
    assert ds[1][0].shape == (3, 26, 32)


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as real servers answer: the client pools connections."""

    protocol_version = "HTTP/1.1"
    body = b"k" * 200_000

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that drops its pooled connection is no error here


def _drop_inherited_filesystems() -> None:
    """What a forked DataLoader worker does: a new fsspec instance, a garbage collection."""
    fsspec.filesystem("http")
    gc.collect()


def test_a_forked_child_leaves_the_parents_http_connections_alone():
    # The child shares the parent's keep-alive sockets and its event loop's epoll; had it
    # closed the inherited sessions, the parent's next read on a pooled connection would
    # never hear its answer and stall until the timeout (reads here allow 2 s, no retry).
    server = _QuietServer(("127.0.0.1", 0), _KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/a.bin"
        storage = Storage(timeout=2.0, retry=RetryPolicy(attempts=1))
        assert storage.read(url) == _KeepAliveHandler.body
        context = multiprocessing.get_context("fork")
        for _ in range(5):
            child = context.Process(target=_drop_inherited_filesystems)
            child.start()
            child.join()
            assert child.exitcode == 0
            started = time.perf_counter()
            assert storage.read(url) == _KeepAliveHandler.body
            assert time.perf_counter() - started < 1.5
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_prefetch_counts_local_files_apart_and_caches_none(tmp_path, file_server):
    serve(tmp_path, "mirror/a.jpg", jpeg_bytes())
    serve(tmp_path, "b.jpg", jpeg_bytes())
    cache = tmp_path / "cache"
    storage = Storage(cache_dir=cache, url_map={file_server.url + "/": f"{tmp_path}/mirror/"})
    urls = [file_server.url_for("a.jpg", query=SECRET), str(tmp_path / "b.jpg")]
    report = prefetch(storage, [*urls, urls[0]])
    assert (report.local, report.already_cached, report.downloaded, report.failed) == (2, 0, 0, {})
    assert files_under(cache) == []
    assert file_server.count() == 0


def test_prefetch_removes_stale_partial_files_only(tmp_path, file_server):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    cache = tmp_path / "cache"
    folder = cache / "ab"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".partial-stale", folder / ".partial-fresh"
    stale.write_bytes(b"torn")
    fresh.write_bytes(b"being written")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    storage = Storage(cache_dir=cache)
    report = prefetch(storage, [file_server.url_for("a.jpg")])
    assert (report.stale_removed, report.downloaded, report.bytes_downloaded) == (1, 1, len(data))
    assert not stale.exists()
    assert fresh.read_bytes() == b"being written"
    assert remove_stale_partials(cache, older_than=0) == 1
    assert not fresh.exists()


# -- 9. the error tree ------------------------------------------------------------------------


def test_storage_error_is_a_segments_torch_error_and_an_os_error():
    assert storage_module.StorageError is errors_module.StorageError
    error = StorageError("https://h.example/a.jpg", "HTTP 503", status=503, attempts=5)
    assert isinstance(error, SegmentsTorchError)
    assert isinstance(error, OSError)
    assert str(error) == "HTTP 503 after 5 attempts"


def test_storage_error_pickles_with_its_attributes():
    error = StorageError(
        "https://h.example/a.jpg", "HTTP 503", status=503, attempts=5, retryable=True
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is StorageError
    assert str(copy) == "HTTP 503 after 5 attempts"
    assert (copy.url, copy.reason, copy.status, copy.attempts, copy.retryable) == (
        "https://h.example/a.jpg",
        "HTTP 503",
        503,
        5,
        True,
    )


def test_storage_error_keeps_its_note_across_processes():
    error = StorageError("/m/a.jpg", "not found", note="mapped by url_map from https://h/a.jpg")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == "not found; mapped by url_map from https://h/a.jpg"
    assert (copy.url, copy.reason, copy.note) == (
        "/m/a.jpg",
        "not found",
        "mapped by url_map from https://h/a.jpg",
    )


def test_storage_error_is_rebuilt_from_its_message_alone():
    # How a DataLoader re-raises a worker's error: type(error)(message).
    error = StorageError("Traceback ...\nnot found")
    assert str(error) == "Traceback ...\nnot found"
    assert (error.url, error.reason, error.status, error.attempts) == (
        "",
        "Traceback ...\nnot found",
        None,
        1,
    )
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


# -- 10. credentials are never shown ----------------------------------------------------------

PASSWORD = "hunter2"


def test_library_messages_lose_query_strings_and_passwords():
    reason, status, retryable = storage_module._classify(
        RuntimeError(f"GET http://user:{PASSWORD}@h.example/a.png?{SECRET} failed")
    )
    assert (reason, status, retryable) == ("RuntimeError: GET http://h.example/a.png", None, False)


@pytest.mark.parametrize("mode", ["404", "500"])
def test_a_password_in_a_url_is_never_shown(tmp_path, file_server, caplog, mode):
    serve(tmp_path, "a.jpg", payload(10))
    file_server.fail("a.jpg", int(mode), times=10)
    url = file_server.url_for("a.jpg", query=SECRET).replace("//", f"//user:{PASSWORD}@", 1)
    caplog.set_level(logging.DEBUG, logger="segments_torch.storage")
    error = read_error(url, attempts=2)
    assert error.url == file_server.url_for("a.jpg")
    shown = [*shown_in_a_traceback(error), repr(error), error.reason, caplog.text]
    assert not [text for text in shown if PASSWORD in text or "secret" in text]


def test_the_cache_key_has_no_user_or_password(tmp_path, file_server):
    data = serve(tmp_path, "a.png", payload(100))
    storage = Storage(cache_dir=tmp_path / "cache")
    with_password = file_server.url_for("a.png").replace("//", f"//user:{PASSWORD}@", 1)
    assert storage.cache_path(with_password) == storage.cache_path(file_server.url_for("a.png"))
    assert storage.read(with_password) == data
    assert storage.read(file_server.url_for("a.png")) == data
    assert file_server.count("a.png") == 1


def test_the_skip_log_and_asset_errors_show_no_password(tmp_path, file_server, caplog):
    document = http_release(tmp_path, file_server, count=2)
    for record in document["dataset"]["samples"]:
        image = record["attributes"]["image"]
        image["url"] = image["url"].replace("//", f"//user:{PASSWORD}@", 1)
    (tmp_path / "images" / "s0.jpg").unlink()
    ds = SegmentsDataset(document, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="segments_torch.dataset"):
        assert ds[0][1]["image_id"] == 1
    assert caplog.messages == [
        f"skipping sample 's0.jpg': {file_server.url}/images/s0.jpg: not found (HTTP 404) "
        "(on_error='skip')"
    ]
    (tmp_path / "images" / "s1.jpg").write_bytes(b"<html>")
    with pytest.raises(AssetError) as info:
        SegmentsDataset(document)[1]
    assert str(info.value).startswith(f"sample 's1.jpg': {file_server.url}/images/s1.jpg: ")
    assert PASSWORD not in str(info.value)


# -- 11. file:// URLs are URLs ----------------------------------------------------------------


def test_file_urls_are_percent_decoded(tmp_path):
    data = serve(tmp_path, "a b/c%d.jpg", payload(10))
    url = f"file://{tmp_path}/a%20b/c%25d.jpg"
    assert Storage().read(url) == data
    assert Storage().read(f"{url}?{SECRET}#top") == data
    assert Storage().read(str(tmp_path / "a b" / "c%d.jpg")) == data  # a path is a path
    assert Storage().read((tmp_path / "a b" / "c%d.jpg").as_uri()) == data


def test_a_missing_file_url_is_named_by_its_path_without_the_query(tmp_path):
    error = read_error(f"file://{tmp_path}/a%20b.jpg?{SECRET}", attempts=1)
    assert (str(error), error.url) == ("not found", f"{tmp_path}/a b.jpg")


def test_a_relative_url_error_shows_no_query_string():
    with pytest.raises(StorageError) as info:
        Storage().read(f"images/a.jpg?{SECRET}")
    assert "secret" not in str(info.value)
    assert info.value.url == "images/a.jpg"


def test_a_callable_url_map_to_local_files_drops_the_query(tmp_path, file_server):
    data = serve(tmp_path, "mirror/images/a.jpg", payload(10))

    def mirror(url: str) -> str:
        return url.replace(file_server.url, str(tmp_path / "mirror"))

    storage = Storage(url_map=mirror)
    url = file_server.url_for("images/a.jpg", query=SECRET)
    assert storage.resolve(url) == str(tmp_path / "mirror/images/a.jpg")
    assert storage.read(url) == data
    assert storage.cache_path(url) is None
    with pytest.raises(StorageError) as info:
        storage.read(file_server.url_for("images/b.jpg", query=SECRET))
    assert (str(info.value), info.value.url) == (
        f"not found; mapped by url_map from {file_server.url_for('images/b.jpg')}",
        str(tmp_path / "mirror/images/b.jpg"),
    )
    assert not [line for line in shown_in_a_traceback(info.value) if "secret" in line]
    assert file_server.count() == 0


# -- 12. URLs no file or server can have -----------------------------------------------------


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_a_nul_character_in_a_local_path_is_a_storage_error(tmp_path, form):
    path = f"{tmp_path}/a\x00b.jpg"
    url = path if form == "path" else f"file://{tmp_path}/a%00b.jpg"
    error = read_error(url, attempts=3)
    assert (str(error), error.url, error.attempts) == (
        "the system refuses this path: embedded null byte",
        path,
        1,
    )


def test_a_nul_character_in_a_remote_url_is_read_and_refused_by_the_server(tmp_path, file_server):
    storage = Storage(cache_dir=tmp_path / "cache", retry=FAST)
    url = file_server.url_for("images/a.jp") + "\x00g"
    cached = storage.cache_path(url)
    assert cached is not None
    assert cached.suffix == ""  # the cache file's name keeps only a plain suffix
    with pytest.raises(StorageError, match=r"^not found \(HTTP 404\)$"):
        storage.read(url)
    assert [r.status for r in file_server.requests] == [404]


def test_a_url_that_cannot_be_parsed_is_a_storage_error():
    with pytest.raises(StorageError) as info:
        Storage().read(f"http://user:{PASSWORD}@[::1/a.jpg?{SECRET}")
    assert (str(info.value), info.value.url) == (
        "not a valid URL: Invalid IPv6 URL",
        "http://[::1/a.jpg",
    )


def test_a_lone_surrogate_in_a_url_has_a_cache_path(tmp_path):
    storage = Storage(cache_dir=tmp_path / "cache")
    assert storage.cache_path("https://h.example/a\ud800.png") != storage.cache_path(
        "https://h.example/a\ud801.png"
    )
    with pytest.raises(StorageError, match=r"^the system refuses this path: .*surrogate"):
        storage.read(f"{tmp_path}/a\ud800.png")


def test_skip_passes_over_urls_no_file_or_server_can_have(tmp_path, file_server, caplog):
    document = http_release(tmp_path, file_server, count=4)
    samples = document["dataset"]["samples"]
    samples[0]["attributes"]["image"]["url"] = f"{tmp_path}/images/s\x000.jpg"
    samples[1]["attributes"]["image"]["url"] = file_server.url_for("images/s1.jp") + "\x00g"
    samples[2]["attributes"]["image"]["url"] = "http://[::1/s2.jpg"
    ds = SegmentsDataset(document, on_error="skip", cache_dir=tmp_path / "cache", retry=FAST)
    with caplog.at_level(logging.WARNING, logger="segments_torch.dataset"):
        assert int(ds[0][1]["image_id"]) == 3
    assert ds.failures == 3
    assert caplog.messages == [
        f"skipping sample 's0.jpg': {tmp_path}/images/s\x000.jpg: the system refuses this "
        "path: embedded null byte (on_error='skip')",
        f"skipping sample 's1.jpg': {file_server.url}/images/s1.jp\x00g: not found (HTTP 404) "
        "(on_error='skip')",
        "skipping sample 's2.jpg': http://[::1/s2.jpg: not a valid URL: Invalid IPv6 URL "
        "(on_error='skip')",
    ]


def test_prefetch_counts_urls_no_file_or_server_can_have_as_failed(tmp_path, file_server):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    urls = [
        file_server.url_for("b.jp") + "\x00g",
        "http://[::1/c.jpg",
        file_server.url_for("a.jpg"),
    ]
    report = prefetch(Storage(cache_dir=tmp_path / "cache", retry=FAST), urls)
    assert (report.downloaded, report.bytes_downloaded) == (1, len(data))
    assert report.failed == {
        f"{file_server.url}/b.jp\x00g": "not found (HTTP 404)",
        "http://[::1/c.jpg": "not a valid URL: Invalid IPv6 URL",
    }


# -- 13. cache poisoning: only checked bodies are cached --------------------------------------

ERROR_PAGE = b"<!DOCTYPE html>\n<html><title>502 Bad Gateway</title></html>\n"


def test_read_caches_only_what_its_check_passed(tmp_path, file_server):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    cache = tmp_path / "cache"
    storage = Storage(cache_dir=cache)
    url = file_server.url_for("a.jpg", query=SECRET)
    file_server.serve_instead("a.jpg", ERROR_PAGE)
    with pytest.raises(DecodeError, match=r"^expected an image, found HTML text$"):
        storage.read(url, check=check_complete)
    assert files_under(cache) == []
    assert storage.read(url, check=check_complete) == data  # the server has recovered
    assert storage.read(url, check=check_complete) == data
    assert [r.fault for r in file_server.requests] == ["instead", ""]
    assert storage.cache_path(url) == files_under(cache)[0]


def test_a_cache_entry_that_fails_its_check_is_dropped_and_fetched_again(
    tmp_path, file_server, caplog
):
    # An entry damaged on disk, or poisoned by a version that cached unchecked bodies.
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    storage = Storage(cache_dir=tmp_path / "cache")
    url = file_server.url_for("a.jpg", query=SECRET)
    entry = storage.cache_path(url)
    assert entry is not None
    entry.parent.mkdir(parents=True)
    entry.write_bytes(ERROR_PAGE)
    with caplog.at_level(logging.WARNING, logger="segments_torch.storage"):
        assert storage.read(url, check=check_complete) == data
    assert caplog.messages == [
        f"dropping the cache file {entry}, which fails: expected an image, found HTML text"
    ]
    assert entry.read_bytes() == data
    assert file_server.count("a.jpg") == 1
    # A good entry is served as it is; one failing a check the source fails too is gone.
    assert storage.read(url, check=check_complete) == data
    assert file_server.count("a.jpg") == 1
    entry.write_bytes(data[:-2])
    file_server.serve_instead("a.jpg", ERROR_PAGE)
    with pytest.raises(DecodeError, match=r"^expected an image, found HTML text$"):
        storage.read(url, check=check_complete)
    assert files_under(tmp_path / "cache") == []


def test_a_body_cut_short_without_content_length_is_not_cached(tmp_path, file_server):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    cache = tmp_path / "cache"
    storage = Storage(cache_dir=cache)
    url = file_server.url_for("a.jpg")
    file_server.cut("a.jpg")
    # The client cannot tell: without a check, the half body is what it reads.
    assert Storage().read(url) == data[: len(data) // 2]
    file_server.cut("a.jpg")
    with pytest.raises(DecodeError, match=r"^a JPEG without its end marker \(truncated\?\)$"):
        storage.read(url, check=check_complete)
    assert files_under(cache) == []
    assert storage.read(url, check=check_complete) == data
    assert len(files_under(cache)) == 1


def test_a_body_shorter_than_its_content_length_is_refused_by_the_client(tmp_path, file_server):
    serve(tmp_path, "a.jpg", jpeg_bytes())
    cache = tmp_path / "cache"
    file_server.truncate("a.jpg")
    storage = Storage(cache_dir=cache, retry=RetryPolicy(attempts=1))
    error = read_error(file_server.url_for("a.jpg"), attempts=1, cache_dir=cache)
    assert str(error).startswith("ClientPayloadError: Response payload is not completed")
    assert files_under(cache) == []
    file_server.truncate("a.jpg")
    report = prefetch(storage, [file_server.url_for("a.jpg")])
    assert (report.downloaded, list(report.failed)) == (0, [file_server.url_for("a.jpg")])
    assert report.failed[file_server.url_for("a.jpg")].startswith("ClientPayloadError: ")
    assert files_under(cache) == []


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("instead", "expected an image, found HTML text"),
        ("cut", "a JPEG without its end marker (truncated?)"),
    ],
)
def test_prefetch_reports_a_bad_body_as_failed_and_caches_it_later(
    tmp_path, file_server, fault, reason
):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    cache = tmp_path / "cache"
    storage = Storage(cache_dir=cache)
    url = file_server.url_for("a.jpg", query=SECRET)
    if fault == "instead":
        file_server.serve_instead("a.jpg", ERROR_PAGE)
    else:
        file_server.cut("a.jpg")
    report = prefetch(storage, [url])
    assert (report.downloaded, report.already_cached) == (0, 0)
    assert report.failed == {file_server.url_for("a.jpg"): reason}
    assert files_under(cache) == []
    report = prefetch(storage, [url])  # the server has recovered
    assert (report.downloaded, report.bytes_downloaded, report.failed) == (1, len(data), {})
    assert [p.read_bytes() for p in files_under(cache)] == [data]


@pytest.mark.parametrize(
    ("asset", "fault"), [("images/s0.jpg", "instead"), ("bitmaps/s0.png", "cut")]
)
def test_the_dataset_caches_an_asset_only_once_it_decoded(tmp_path, file_server, asset, fault):
    cache = tmp_path / "cache"
    ds = SegmentsDataset(http_release(tmp_path, file_server, count=1), cache_dir=cache)
    if fault == "instead":
        file_server.serve_instead(asset, ERROR_PAGE)
    else:
        file_server.cut(asset)
    with pytest.raises(AssetError, match=f"^sample 's0.jpg': {file_server.url}/{asset}: "):
        ds[0]
    assert ds.storage.cache_path(file_server.url_for(asset)) not in files_under(cache)
    expected = ds[0]  # the server has recovered: read, decoded, cached
    assert len(files_under(cache)) == 2
    requests = file_server.count()
    assert_same_item(ds[0], expected)
    assert file_server.count() == requests  # both from the cache


# -- 14. a cache entry that cannot be read, cache file modes ----------------------------------


@pytest.fixture
def warned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has not warned of any cache trouble yet."""
    monkeypatch.setattr(files, "_WARNED", set())


def test_a_folder_in_place_of_a_cache_entry_is_read_around(tmp_path, file_server, caplog, warned):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    storage = Storage(cache_dir=tmp_path / "cache")
    url = file_server.url_for("a.jpg")
    entry = storage.cache_path(url)
    assert entry is not None
    entry.mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="segments_torch.storage"):
        assert storage.read(url) == data
        assert list(storage.read_each([url], [check_complete])) == [None]
    assert file_server.count("a.jpg") == 2  # served from the source, uncached
    assert entry.is_dir()  # a folder cannot be replaced by a file
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == [
        f"cannot read the cache file {entry}, reading the source",
        f"cannot write the cache file {entry}",
    ]
    assert all(r.getMessage().endswith("(warned once per process)") for r in caplog.records)


def test_an_unreadable_cache_entry_is_replaced(tmp_path, file_server, caplog, warned, monkeypatch):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    storage = Storage(cache_dir=tmp_path / "cache")
    url = file_server.url_for("a.jpg")
    entry = storage.cache_path(url)
    assert entry is not None
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"old bytes")
    read_bytes = Path.read_bytes
    refused: list[Path] = []

    def refuse_once(path: Path) -> bytes:  # as for a file of another user, mode 0600
        if path == entry and not refused:
            refused.append(path)
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse_once)
    with caplog.at_level(logging.WARNING, logger="segments_torch.storage"):
        assert storage.read(url) == data
    assert caplog.messages == [
        f"cannot read the cache file {entry}, reading the source: [Errno 13] Permission "
        f"denied: '{entry}' (warned once per process)"
    ]
    assert entry.read_bytes() == data  # replaced
    assert storage.read(url) == data
    assert file_server.count("a.jpg") == 1


def test_the_dataset_reads_around_a_folder_in_place_of_a_cache_entry(tmp_path, file_server, warned):
    cache = tmp_path / "cache"
    ds = SegmentsDataset(http_release(tmp_path, file_server, count=1), cache_dir=cache)
    for asset in ("images/s0.jpg", "bitmaps/s0.png"):
        entry = ds.storage.cache_path(file_server.url_for(asset))
        assert entry is not None
        entry.mkdir(parents=True)
    item = ds[0]
    assert item[0].shape == (3, 24, 32)
    assert_same_item(ds[0], item)
    assert file_server.count() == 4


@pytest.mark.parametrize(
    ("umask", "file_mode", "folder_mode"), [(0o002, 0o664, 0o775), (0o077, 0o600, 0o700)]
)
def test_cache_files_are_created_as_the_umask_says(
    tmp_path, file_server, umask, file_mode, folder_mode
):
    serve(tmp_path, "a.jpg", jpeg_bytes())
    storage = Storage(cache_dir=tmp_path / "cache")
    url = file_server.url_for("a.jpg")
    previous = os.umask(umask)
    try:
        storage.read(url)
    finally:
        os.umask(previous)
    entry = storage.cache_path(url)
    assert entry is not None
    assert entry.stat().st_mode & 0o777 == file_mode
    assert entry.parent.stat().st_mode & 0o777 == folder_mode


# -- 15. prefetch into a cache it cannot use --------------------------------------------------


def test_check_cache_dir_makes_the_folder_and_leaves_nothing(tmp_path):
    cache = tmp_path / "a" / "cache"
    Storage(cache_dir=cache).check_cache_dir()
    assert cache.is_dir()
    assert list(cache.iterdir()) == []
    Storage().check_cache_dir()  # no cache: nothing to check


def test_known_size_costs_no_request(tmp_path, file_server):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    storage = Storage(str(tmp_path), cache_dir=tmp_path / "cache")
    assert storage.known_size("a.jpg") == len(data)  # a local file
    assert storage.known_size("missing.jpg") is None
    assert Storage().known_size("relative.jpg") is None  # no folder to find it in
    url = file_server.url_for("a.jpg", query="sig=1")
    assert storage.known_size(url) is None  # remote, not cached
    assert Storage().known_size(url) is None  # remote, no cache
    assert file_server.count() == 0
    storage.read(url)
    assert storage.known_size(url) == len(data)  # the cached copy's
    assert file_server.count() == 1


def test_prefetch_into_a_file_raises_before_any_download(tmp_path, file_server):
    serve(tmp_path, "a.jpg", jpeg_bytes())
    (tmp_path / "cache").write_text("a file")
    with pytest.raises(StorageError) as info:
        prefetch(Storage(cache_dir=tmp_path / "cache"), [file_server.url_for("a.jpg")])
    assert str(info.value) == f"cache folder {tmp_path / 'cache'}: not a folder"
    assert isinstance(info.value, SegmentsTorchError)
    assert file_server.count() == 0


def test_prefetch_reports_a_failed_cache_write_and_read_serves_uncached(
    tmp_path, file_server, monkeypatch, caplog, warned
):
    data = serve(tmp_path, "a.jpg", jpeg_bytes())
    storage = Storage(cache_dir=tmp_path / "cache")
    url = file_server.url_for("a.jpg", query=SECRET)

    def disk_full(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    report = prefetch(storage, [url])
    assert (report.downloaded, report.bytes_downloaded) == (0, 0)
    assert report.failed == {
        file_server.url_for("a.jpg"): (
            f"cannot write the cache file {storage.cache_path(url)}: No space left on device"
        )
    }
    with caplog.at_level(logging.WARNING, logger="segments_torch.storage"):
        assert storage.read(url) == data  # a reader is served, uncached
        assert storage.read(url) == data
    assert len(caplog.records) == 1  # once per process
    assert files_under(tmp_path / "cache") == []


# -- 16. outages: a host that is evidently down ends the run ---------------------------------


def refused_port() -> int:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_source_unavailable_error_is_a_storage_error_and_crosses_processes():
    error = SourceUnavailableError(
        "http://h.example:81", 3, "timed out", url="http://h.example:81/a"
    )
    assert isinstance(error, StorageError)
    assert isinstance(error, SegmentsTorchError)
    assert str(error) == (
        "http://h.example:81 is unavailable: 3 reads in a row failed to connect (the last: "
        "timed out); not read again in this process until Storage.reset_outages()"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.url) == (SourceUnavailableError, str(error), error.url)
    assert (copy.source, copy.failures, copy.last_reason) == ("http://h.example:81", 3, "timed out")
    # How a DataLoader re-raises a worker's error: type(error)(message).
    rebuilt = SourceUnavailableError(f"Caught in worker:\n{error}")
    assert str(rebuilt) == f"Caught in worker:\n{error}"
    assert str(pickle.loads(pickle.dumps(rebuilt))) == str(rebuilt)


def test_skip_stops_at_an_outage_after_one_retry_cycle(tmp_path, file_server, sleeps):
    port = refused_port()
    text = json.dumps(http_release(tmp_path, file_server, count=20))
    text = text.replace(file_server.url, f"http://127.0.0.1:{port}")
    ds = SegmentsDataset(json.loads(text), on_error="skip", retry=FAST)
    with pytest.raises(SourceUnavailableError) as info:
        ds[0]
    assert ds.failures <= 3  # not 20 samples, each after its own retries
    assert len(sleeps) <= FAST.attempts - 1  # one retry cycle for the host
    error = info.value
    # The third failure makes the host down; a bitmap's read, in a thread, may add one.
    assert error.source == f"http://127.0.0.1:{port}"
    assert error.failures in (3, 4)
    assert str(error).startswith(
        f"http://127.0.0.1:{port} is unavailable: {error.failures} reads in a row failed to "
        f"connect (the last: ClientConnectorError: Cannot connect to host 127.0.0.1:{port} "
    )
    assert "secret" not in str(error)
    slept = len(sleeps)
    with pytest.raises(SourceUnavailableError):
        ds[7]  # at once: no more attempts, no more sleeps
    assert len(sleeps) == slept


def test_later_reads_of_a_down_host_try_once_then_not_at_all(tmp_path, file_server, sleeps):
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        serve(tmp_path, name, jpeg_bytes())
        file_server.drop(name, times=100)
    storage = Storage(retry=FAST)
    with pytest.raises(StorageError) as info:
        storage.read(file_server.url_for("a.jpg"))
    first = info.value
    assert (type(first), first.attempts, len(sleeps)) == (StorageError, 5, 4)
    # aiohttp itself resends an idempotent request once after a dropped connection.
    assert file_server.count("a.jpg") == 10
    with pytest.raises(StorageError) as info:
        storage.read(file_server.url_for("b.jpg", query=SECRET))
    assert (type(info.value), info.value.attempts, len(sleeps)) == (StorageError, 1, 4)
    with pytest.raises(SourceUnavailableError) as info:
        storage.read(file_server.url_for("c.jpg"))
    assert info.value.url == file_server.url_for("c.jpg")
    assert info.value.last_reason == "ServerDisconnectedError: Server disconnected"
    requests = file_server.count()
    for _ in range(3):
        with pytest.raises(SourceUnavailableError):
            storage.fetch(file_server.url_for("d.jpg"))
    assert file_server.count() == requests  # no request to a host that is down
    assert len(sleeps) == 4
    storage.reset_outages()
    file_server.reset()
    assert storage.read(file_server.url_for("d.jpg")) == (tmp_path / "d.jpg").read_bytes()


def test_an_answer_in_between_and_http_statuses_keep_a_host_up(tmp_path, file_server, sleeps):
    serve(tmp_path, "a.jpg", jpeg_bytes())
    storage = Storage(retry=RetryPolicy(attempts=2, base_delay=0.01, outage_after=2))
    url = file_server.url_for("a.jpg")
    for _ in range(3):
        file_server.drop("a.jpg", times=4)
        with pytest.raises(StorageError) as info:
            storage.read(url)
        assert type(info.value) is StorageError
        assert storage.read(url) == (tmp_path / "a.jpg").read_bytes()  # an answer: up
    for status in (404, 503, 403, 404, 500):
        file_server.fail("a.jpg", status, times=2 if status >= 500 else 1)
        with pytest.raises(StorageError) as info:
            storage.read(url)
        assert (type(info.value), info.value.status) == (StorageError, status)
    file_server.drop("a.jpg", times=4)
    with pytest.raises(StorageError) as info:
        storage.read(url)
    assert type(info.value) is StorageError  # the statuses in between were answers


def test_local_files_are_never_down(tmp_path):
    storage = Storage(retry=RetryPolicy(outage_after=1))
    for _ in range(5):
        with pytest.raises(StorageError) as info:
            storage.read(str(tmp_path / "missing.jpg"))
        assert type(info.value) is StorageError


def test_concurrent_reads_of_a_failing_host_back_off_once(tmp_path, file_server, sleeps):
    urls = []
    for name in ("a.jpg", "b.png", "c.png", "d.png"):
        serve(tmp_path, name, jpeg_bytes())
        file_server.drop(name, times=100)
        urls.append(file_server.url_for(name))
    storage = Storage(retry=FAST)
    reads = storage.read_each(urls)
    with pytest.raises(StorageError):
        next(reads)
    assert storage._pool is not None
    storage._pool[1].shutdown(wait=True)  # the other reads have ended too
    # One read backed off; the others waited for its outcome, then failed at once.
    assert len(sleeps) == FAST.attempts - 1
    # Two requests an attempt (aiohttp resends once): the others tried once, if at all.
    assert file_server.count() <= 2 * (FAST.attempts + len(urls) - 1)


def test_prefetch_stops_at_an_outage(tmp_path, file_server, sleeps):
    urls = []
    for k in range(30):
        serve(tmp_path, f"{k}.jpg", jpeg_bytes())
        file_server.drop(f"{k}.jpg", times=100)
        urls.append(file_server.url_for(f"{k}.jpg"))
    with pytest.raises(SourceUnavailableError):
        prefetch(Storage(cache_dir=tmp_path / "cache", retry=FAST), urls, workers=4)
    assert len(sleeps) == FAST.attempts - 1
    assert {r.path for r in file_server.requests} < {f"{k}.jpg" for k in range(30)}


def test_an_outage_crosses_dataloader_workers(tmp_path, file_server):
    port = refused_port()
    text = json.dumps(http_release(tmp_path, file_server, count=6))
    text = text.replace(file_server.url, f"http://127.0.0.1:{port}")
    retry = RetryPolicy(attempts=2, base_delay=0.01)
    ds = SegmentsDataset(json.loads(text), on_error="skip", retry=retry)
    text = raised_in_a_worker(ds, SourceUnavailableError)
    assert f"http://127.0.0.1:{port} is unavailable: " in text


def test_a_storage_repr_shows_no_password():
    storage = Storage(
        base_url=f"https://user:{PASSWORD}@h.example/r",
        url_map={f"https://user:{PASSWORD}@h.example/": "/mirror/"},
    )
    assert storage.base_url == f"https://user:{PASSWORD}@h.example/r"  # relative URLs need it
    assert repr(storage) == (
        "Storage(base_url='https://h.example/r', cache_dir=None, "
        "url_map={'https://h.example/': '/mirror/'}, label_cache=None)"
    )


def test_relative_assets_of_a_release_read_with_a_password_keep_it(tmp_path, file_server):
    # Release.source is for showing (no user:password@); relative asset URLs resolve
    # against the release's folder as given, credentials included.
    document = http_release(tmp_path, file_server, count=2)
    for record in document["dataset"]["samples"]:
        image = record["attributes"]["image"]
        image["url"] = image["url"].removeprefix(f"{file_server.url}/").partition("?")[0]
    (tmp_path / "release.json").write_text(json.dumps(document))
    url = file_server.url_for("release.json").replace("//", f"//user:{PASSWORD}@", 1)
    ds = SegmentsDataset(url)
    assert ds.release.source == file_server.url_for("release.json")
    assert ds.storage.base_url == url.rpartition("/")[0] + "/"
    assert ds[1][1]["image_id"] == 1
    image_requests = [r for r in file_server.requests if r.path == "images/s1.jpg"]
    assert [r.headers.get("Authorization") for r in image_requests] == [
        "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    ]
    assert PASSWORD not in repr(ds.storage)


# -- one storage object: replace, the release folder, the keywords ------------------------


def test_replace_changes_what_it_is_told_and_keeps_the_rest(tmp_path):
    retry = RetryPolicy(attempts=2)
    storage = Storage(
        "/data/r",
        {"s3": {"anon": True}},
        url_map={"https://cdn.example/": "/m/", "https://cdn.example/b/": "/b/"},
        cache_dir=tmp_path / "cache",
        cache_key="url",
        timeout=3.0,
        retry=retry,
        label_cache=tmp_path / "labels",
    )
    changed = storage.replace(cache_dir=tmp_path / "other", timeout=9.0)
    assert changed is not storage
    assert (changed.cache_dir, changed.timeout) == (tmp_path / "other", 9.0)
    assert (storage.cache_dir, storage.timeout) == (tmp_path / "cache", 3.0)
    assert (changed.base_url, changed.storage_options, changed.cache_key) == (
        "/data/r",
        {"s3": {"anon": True}},
        "url",
    )
    assert (changed.retry, changed.label_cache) == (retry, tmp_path / "labels")
    # The url_map as given: longest prefix wins, errors list them in the given order.
    assert changed.url_map == {"https://cdn.example/": "/m/", "https://cdn.example/b/": "/b/"}
    assert changed.resolve("https://cdn.example/b/x.png") == "/b/x.png"
    assert changed.mirror_note("https://other.example/a.png") == (
        "no url_map prefix matches this URL: https://cdn.example/, https://cdn.example/b/"
    )
    with pytest.raises(OptionError) as info:
        storage.replace(cache_dri="/c")
    assert str(info.value) == (
        "Storage.replace() takes base_url, storage_options, url_map, cache_dir, cache_key, "
        "timeout, retry, label_cache, not cache_dri"
    )


def test_with_default_base_url_fills_only_what_is_missing():
    storage = Storage(cache_dir="/c")
    filled = storage.with_default_base_url("/data/r")
    assert (filled.base_url, filled.cache_dir) == ("/data/r", Path("/c"))
    assert storage.base_url is None
    assert filled.with_default_base_url("/elsewhere") is filled
    assert storage.with_default_base_url(None) is storage


def test_make_storage_of_keywords_of_a_storage_or_of_a_base(tmp_path):
    made = make_storage(None, {"asset_root": "/a", "label_cache": tmp_path}, "SegmentsDataset")
    assert (made.base_url, made.label_cache) == ("/a", tmp_path)
    assert make_storage(made, {}, "SegmentsDataset") is made
    assert make_storage(None, {}, "x", base=made) is made
    changed = make_storage(None, {"cache_dir": tmp_path}, "x", base=made)
    assert (changed.base_url, changed.cache_dir, changed.label_cache) == ("/a", tmp_path, tmp_path)
    assert STORAGE_SETTINGS == (
        "asset_root",
        "storage_options",
        "url_map",
        "cache_dir",
        "cache_key",
        "timeout",
        "retry",
        "label_cache",
    )
    with pytest.raises(OptionError) as info:
        make_storage(made, {"timeout": 1}, "load_release")
    assert str(info.value) == (
        "load_release: storage= and timeout= given together; set them on the Storage: "
        "Storage(timeout=...)"
    )


def test_a_storage_with_a_label_cache_pickles_with_it(tmp_path):
    storage = Storage(label_cache=tmp_path / "labels")
    assert pickle.loads(pickle.dumps(storage)).label_cache == tmp_path / "labels"
    assert repr(storage) == (
        f"Storage(base_url=None, cache_dir=None, url_map=None, label_cache={tmp_path / 'labels'!r})"
    )
