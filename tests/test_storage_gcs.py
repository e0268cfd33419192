"""Releases and assets in a Google Cloud Storage bucket, served by gcp-storage-emulator.

The emulator runs as a process of its own on 127.0.0.1, in memory, with the bucket made at
start, and is stopped for certain when the module ends (:mod:`tests.servers`). gcsfs reads
it with ``endpoint_url`` set to the server and ``token="anon"``, so it never looks for
credentials; the metadata server is pointed at a closed local port and
``STORAGE_EMULATOR_HOST`` at the emulator, so nothing here can reach Google. gcsfs's
experimental ``ExtendedGcsFileSystem`` (what ``gcsfs.GCSFileSystem`` is unless
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT`` is false when gcsfs is imported) first asks the Storage
Control gRPC API for the bucket's layout, which the emulator does not serve (60 s of retries
against 127.0.0.1): the fixture registers the plain ``gcsfs.core.GCSFileSystem``. The
module skips when gcsfs or gcp-storage-emulator is not installed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from segments_torch._compat import fsspec_registry
from segments_torch.errors import AssetError
from tests.items import assert_same_items
from tests.object_store import (
    Store,
    all_items,
    assert_instance_targets,
    empty,
    fill,
    forked_items,
    missing_image_dataset,
    not_found,
)
from tests.servers import close_filesystems, free_port, serve

gcsfs_core = pytest.importorskip("gcsfs.core", reason="GCS tests need gcsfs")
pytest.importorskip("gcp_storage_emulator", reason="GCS tests need gcp-storage-emulator")

BUCKET = "bucket"


@dataclass(frozen=True)
class FakeGcs:
    """The running emulator and gcsfs options (fsspec.open keywords) that read it."""

    endpoint: str

    def options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint, "token": "anon"}

    def fs(self) -> Any:
        return gcsfs_core.GCSFileSystem(**self.options())


@pytest.fixture(scope="module")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcs]:
    """gcp-storage-emulator on 127.0.0.1, in memory, with an empty ``bucket``."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        # No credentials, no metadata server, no Google endpoint.
        for name, value in {
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
            "NO_GCE_CHECK": "true",
            "STORAGE_EMULATOR_HOST": endpoint,  # any client without an endpoint
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }.items():
            env.setenv(name, value)
        env.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        # The plain filesystem for gs:// and gcs:// (forked workers inherit the registry;
        # the package attribute fsspec.registry is the read-only view, not the module).
        for protocol in ("gs", "gcs"):
            env.setitem(fsspec_registry(), protocol, gcsfs_core.GCSFileSystem)
        command = [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "--default-bucket",
            BUCKET,
        ]
        log = tmp_path_factory.mktemp("gcs") / "gcp-storage-emulator.log"
        with serve("gcp-storage-emulator", command, port, log):
            try:
                yield FakeGcs(endpoint)
            finally:
                close_filesystems(gcsfs_core.GCSFileSystem)


# -- the bucket's contents -------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(fake_gcs: FakeGcs, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The bucket with the release and its assets, and a local copy of the same files."""
    store = Store("gs", BUCKET, fake_gcs.options(), tmp_path_factory.mktemp("local"))
    fill(fake_gcs.fs(), store)
    return store


# -- tests ------------------------------------------------------------------------------


def test_load_release_from_bucket(bucket):
    release = bucket.release()
    assert release.source == bucket.release_url
    assert list(release.samples.names) == ["a.jpg", "b.jpg", "c.jpg"]
    assert [c.id for c in release.categories] == [0, 1, 5]


@pytest.mark.parametrize("target", ["instance", "semantic", "panoptic"])
def test_gcs_items_equal_local_items(bucket, target):
    ds = bucket.dataset(target=target)
    assert len(ds) == 3
    # b.jpg's relative image URL resolves against the release file's folder in the bucket
    assert ds.storage.resolve("images/b.jpg") == f"gs://{BUCKET}/images/b.jpg"
    items = all_items(ds)
    assert_same_items(items, all_items(bucket.local_dataset(ds.release, target=target)))
    if target == "instance":
        assert_instance_targets(items)


def test_missing_object_is_not_found_after_one_attempt(bucket):
    ds, missing = missing_image_dataset(bucket)
    assert missing == f"gs://{BUCKET}/images/missing.jpg"
    cause = not_found(ds, missing)
    assert (cause.attempts, cause.status, cause.retryable) == (1, 404, False)


def test_dataloader_fork_workers_read_gcs(bucket):
    ds = bucket.dataset(target="panoptic")
    reference = all_items(ds)  # the parent reads first: workers must not reuse its session
    items = forked_items(ds)
    assert_same_items(items, reference)


def test_cache_serves_the_second_epoch_after_the_objects_are_gone(fake_gcs, tmp_path):
    # A folder of its own: the module's objects stay for the other tests.
    store = Store("gs", BUCKET, fake_gcs.options(), tmp_path / "local", folder="cached/")
    files = fill(fake_gcs.fs(), store)
    release = store.release()
    ds = store.dataset(release, cache_dir=tmp_path / "cache")
    first = all_items(ds)
    assert len(list((tmp_path / "cache").rglob("*.*"))) == 5  # no partial files left

    fs = fake_gcs.fs()
    empty(fs, store, files)
    assert not fs.exists(store.path("images/a.jpg"))
    with pytest.raises(AssetError, match="not found"):  # the objects are gone for real
        store.dataset(release)[0]

    assert_same_items(all_items(ds), first)
    # a fresh dataset (a new process, another DataLoader) over the same cache, too
    fresh = store.dataset(release, cache_dir=tmp_path / "cache")
    assert_same_items(all_items(fresh), first)
