"""Releases and assets in an Azure Blob Storage container (``az://``), served by Azurite.

Azurite (Microsoft's storage emulator, a Node.js program from the npm registry) runs its
blob service in memory on 127.0.0.1 and a free port, with its well-known development
account; adlfs reads it through a connection string whose blob endpoint is that port, so
nothing here can reach Azure. Azurite's telemetry is switched off: it is on by default, and
its Application Insights client then opens connections to Azure's instance metadata address
(169.254.169.254) that never complete without a network; those open sockets kept Azurite
running from 8 s to more than 35 s after SIGTERM, though its blob service had closed.
``make test`` installs Azurite under ``.tools/`` (git-ignored); the module skips when adlfs
or the ``azurite-blob`` program is missing (``AZURITE_BLOB`` names another one).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from segments_torch.errors import AssetError
from tests.items import assert_same_items
from tests.object_store import (
    Store,
    all_items,
    empty,
    fill,
    forked_items,
    missing_image_dataset,
    not_found,
)
from tests.servers import close_filesystems, free_port, serve

adlfs = pytest.importorskip("adlfs", reason="Azure tests need adlfs")

REPO = Path(__file__).resolve().parents[1]
AZURITE = os.environ.get("AZURITE_BLOB") or shutil.which("azurite-blob")
if AZURITE is None and (REPO / ".tools/azurite/node_modules/.bin/azurite-blob").exists():
    AZURITE = str(REPO / ".tools/azurite/node_modules/.bin/azurite-blob")
if AZURITE is None:
    pytest.skip("Azure tests need Azurite (make test installs it)", allow_module_level=True)

#: Azurite's documented development account (public; it opens nothing but the emulator).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
CONTAINER = "bucket"


@dataclass(frozen=True)
class FakeAzure:
    """The running emulator and the adlfs options (storage_options["az"]) that read it."""

    endpoint: str

    def options(self) -> dict[str, Any]:
        return {
            "connection_string": (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.endpoint}/{ACCOUNT};"
            )
        }

    def fs(self) -> Any:
        return adlfs.AzureBlobFileSystem(**self.options())


@pytest.fixture(scope="module")
def fake_azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAzure]:
    """Azurite's blob service on 127.0.0.1, in memory, with an empty container."""
    port = free_port()
    command = [
        str(AZURITE),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--silent",
        "--disableTelemetry",
    ]
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with serve("azurite-blob", command, port, log):
        try:
            azure = FakeAzure(f"http://127.0.0.1:{port}")
            azure.fs().mkdir(CONTAINER)
            yield azure
        finally:
            close_filesystems(adlfs.AzureBlobFileSystem)


@pytest.fixture(scope="module")
def container(fake_azure: FakeAzure, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The container with the release and its assets, and a local copy of the same files."""
    store = Store("az", CONTAINER, fake_azure.options(), tmp_path_factory.mktemp("local"))
    fill(fake_azure.fs(), store)
    return store


@pytest.mark.parametrize("target", ["instance", "panoptic"])
def test_azure_items_equal_local_items(container, target):
    ds = container.dataset(target=target)
    assert ds.release.source == container.release_url
    assert list(ds.release.samples.names) == ["a.jpg", "b.jpg", "c.jpg"]
    # b.jpg's relative image URL resolves against the release file's folder in the container
    assert ds.storage.resolve("images/b.jpg") == f"az://{CONTAINER}/images/b.jpg"
    local = container.local_dataset(ds.release, target=target)
    items = all_items(ds)
    assert_same_items(items, all_items(local))
    image, first = items[0]
    assert tuple(image.shape) == (3, 40, 56)
    assert first["instance_ids"].tolist()[-1] == 70000  # the bitmap's ids arrived intact


def test_missing_blob_is_not_found_after_one_attempt(container):
    ds, missing = missing_image_dataset(container)
    assert missing == f"az://{CONTAINER}/images/missing.jpg"
    cause = not_found(ds, missing)
    assert (cause.attempts, cause.retryable) == (1, False)


def test_forked_workers_fill_a_cache_that_serves_once_the_blobs_are_gone(fake_azure, tmp_path):
    # A folder of its own: the module's blobs stay for the other tests.
    store = Store("az", CONTAINER, fake_azure.options(), tmp_path / "local", folder="cached/")
    files = fill(fake_azure.fs(), store)
    release = store.release()
    ds = store.dataset(release, cache_dir=tmp_path / "cache")
    reference = all_items(ds)  # the parent reads first: workers must not reuse its session
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            path.unlink()
    items = forked_items(ds)
    assert_same_items(items, reference)
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == 5

    empty(fake_azure.fs(), store, files)
    with pytest.raises(AssetError, match="not found"):  # the blobs are gone for real
        store.dataset(release)[0]
    cached = store.dataset(release, cache_dir=tmp_path / "cache")
    assert_same_items(all_items(cached), reference)
