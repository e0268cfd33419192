"""Releases and assets in a private S3 bucket, served by moto's standalone server.

moto's server runs as a process of its own on 127.0.0.1 and a free port (nothing else is
contacted: fake credentials, instance metadata off, every endpoint set to the server), and
is stopped for certain when the module ends (:mod:`tests.servers`). IAM authentication is
switched on once the bucket's reader exists, so the bucket is private for real: requests
signed with the reader's key pass; anonymous requests, a wrong secret and an unknown key id
are refused. The server's log (werkzeug's, one line per request, written and flushed before
the response is sent) counts what reached S3. The module skips when s3fs or moto is not
installed.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from segments_torch import SegmentsDataset, load_release
from segments_torch.errors import AssetError, ReleaseReadError
from segments_torch.storage import StorageError
from tests.items import assert_same_items
from tests.object_store import (
    Store,
    all_items,
    assert_instance_targets,
    asset_files,
    forked_items,
    missing_image_dataset,
    release_document,
    write_files,
)
from tests.servers import close_filesystems, free_port, serve

s3fs = pytest.importorskip("s3fs", reason="S3 tests need s3fs")
pytest.importorskip("moto.server", reason="S3 tests need moto[server]")
boto3 = pytest.importorskip("boto3", reason="S3 tests need boto3 (a dependency of moto)")

BUCKET = "bucket"
URL = f"s3://{BUCKET}/"
REGION = "us-east-1"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: A request in werkzeug's log: '127.0.0.1 - - [date] "GET /path?query HTTP/1.1" 200 -'.
_REQUEST_LINE = re.compile(r'"(\S+) (\S+) HTTP/[\d.]+" (\d{3}) ')


@dataclass(frozen=True)
class MotoS3:
    """The running server, the bucket reader's credentials and the server's log file."""

    endpoint: str
    key: str
    secret: str
    log: Path

    @property
    def requests(self) -> list[tuple[str, str, str]]:
        """Every request the server answered so far: method, path (no query), status."""
        text = _ANSI.sub("", self.log.read_text(errors="replace"))
        return [
            (method, path.partition("?")[0], status)
            for method, path, status in _REQUEST_LINE.findall(text)
        ]

    def options(self, **overrides: Any) -> dict[str, Any]:
        """s3fs options (fsspec.open keywords) for the reader, with ``overrides``."""
        options: dict[str, Any] = {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION},
        }
        options.update(overrides)
        return options

    def anonymous(self) -> dict[str, Any]:
        return {"anon": True, "client_kwargs": {"endpoint_url": self.endpoint}}

    def count(self, prefix: str = f"/{BUCKET}/", method: str | None = None) -> int:
        return sum(
            1
            for m, path, _ in self.requests
            if path.startswith(prefix) and (method is None or m == method)
        )


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # 127.0.0.1 only
        data: bytes = response.read()
        return data


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto on 127.0.0.1 with IAM authentication on and a reader allowed ``s3:*``."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with pytest.MonkeyPatch.context() as env:
        # Fake credentials and no configuration files: nothing here can reach AWS.
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
            "AWS_CONFIG_FILE": "/nonexistent/config",
            "AWS_ENDPOINT_URL": endpoint,  # any client without an endpoint
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        with serve("moto_server", command, port, log):
            try:
                iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION)
                iam.create_user(UserName="reader")
                policy = {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
                iam.put_user_policy(
                    UserName="reader", PolicyName="s3", PolicyDocument=json.dumps(policy)
                )
                access_key = iam.create_access_key(UserName="reader")["AccessKey"]
                iam.close()
                _post(f"{endpoint}/moto-api/reset-auth", b"0")  # authentication from now on
                yield MotoS3(
                    endpoint, access_key["AccessKeyId"], access_key["SecretAccessKey"], log
                )
            finally:
                close_filesystems(s3fs.S3FileSystem)


# -- the bucket's contents -------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(moto_s3: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A private bucket with the release (``.json`` and ``.json.gz``) and its assets, and
    a local copy of the same files."""
    document = json.dumps(release_document(URL, unlabelled=True)).encode()
    files = {
        **asset_files(),
        "release.json": document,
        "release.json.gz": gzip.compress(document),
    }
    client = boto3.client(
        "s3",
        endpoint_url=moto_s3.endpoint,
        region_name=REGION,
        aws_access_key_id=moto_s3.key,
        aws_secret_access_key=moto_s3.secret,
    )
    client.create_bucket(Bucket=BUCKET, ACL="private")
    for key, data in files.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
    client.close()
    store = Store("s3", BUCKET, moto_s3.options(), tmp_path_factory.mktemp("local"))
    write_files(store.local, files)
    return store


# -- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["release.json", "release.json.gz"])
def test_load_release_from_private_bucket(bucket, moto_s3, name):
    url = f"s3://{BUCKET}/{name}"
    release = load_release(url, storage_options=bucket.options)
    assert release.source == url
    assert len(release.samples) == 4
    assert [c.id for c in release.categories] == [0, 1, 5]

    with pytest.raises(ReleaseReadError, match=re.escape(url)):
        load_release(url, storage_options=moto_s3.anonymous())


def test_dataset_reads_its_release_with_its_storage_options(bucket, moto_s3):
    """The options that read the assets read the release file too: the bucket is private."""
    ds = SegmentsDataset(bucket.release_url, storage_options=bucket.storage_options)
    assert ds.release.source == bucket.release_url
    assert len(ds.release.samples) == 4
    with pytest.raises(ReleaseReadError) as info:
        SegmentsDataset(bucket.release_url, storage_options={"s3": moto_s3.anonymous()})
    assert str(info.value) == (
        f"{bucket.release_url}: cannot read the release: access denied (HTTP 403)"
    )


@pytest.mark.parametrize("target", ["instance", "semantic", "panoptic"])
def test_s3_items_equal_local_items(bucket, moto_s3, target):
    ds = bucket.dataset(target=target)
    assert len(ds) == 3  # d.jpg has no label
    # b.jpg's relative image URL resolves against the release file's folder in the bucket
    assert ds.storage.resolve("images/b.jpg") == f"s3://{BUCKET}/images/b.jpg"
    local = bucket.local_dataset(ds.release, target=target)
    assert local.storage.resolve(f"s3://{BUCKET}/images/a.jpg") == f"{bucket.local}/images/a.jpg"
    before = moto_s3.count(method="GET")
    items = all_items(ds)
    assert moto_s3.count(method="GET") - before == 5  # 3 images + 2 bitmaps, once each
    assert_same_items(items, all_items(local))
    if target == "instance":
        assert_instance_targets(items)


@pytest.mark.parametrize("who", ["anonymous", "wrong secret", "unknown key id"])
def test_private_bucket_refuses_without_credentials(bucket, moto_s3, who):
    options = {
        "anonymous": moto_s3.anonymous(),
        "wrong secret": moto_s3.options(secret="not-the-secret"),
        "unknown key id": moto_s3.options(key="AKIAUNKNOWNUNKNOWN00", secret="testing"),
    }[who]
    ds = SegmentsDataset(bucket.release(), storage_options={"s3": options})
    image = f"/{BUCKET}/images/a.jpg"
    before, image_before = moto_s3.count(), moto_s3.count(image)
    with pytest.raises(AssetError) as info:
        ds[0]
    error = info.value
    assert (error.sample, error.url) == ("a.jpg", f"s3://{BUCKET}/images/a.jpg")
    assert str(error).startswith(f"sample 'a.jpg': s3://{BUCKET}/images/a.jpg: access denied")
    cause = error.__cause__
    assert isinstance(cause, StorageError)
    assert (cause.attempts, cause.retryable) == (1, False)  # refusals are not retried
    assert moto_s3.count(image) - image_before == 1
    # The bitmap's download started with the image's (read_each) and may still be on its
    # way when the image's error is raised: at most one request for it, never a retry.
    assert moto_s3.count() - before <= 2


def test_missing_key_is_not_found_after_one_attempt(bucket, moto_s3):
    ds, _ = missing_image_dataset(bucket, unlabelled=True)
    before = moto_s3.count("/bucket/images/missing.jpg")
    with pytest.raises(AssetError) as info:
        ds[0]
    assert str(info.value).startswith(
        f"sample 'a.jpg': s3://{BUCKET}/images/missing.jpg: not found"
    )
    cause = info.value.__cause__
    assert isinstance(cause, StorageError)
    assert (cause.attempts, cause.status, cause.retryable) == (1, 404, False)
    assert moto_s3.count("/bucket/images/missing.jpg") - before == 1


def test_cache_serves_the_second_epoch_without_requests(bucket, moto_s3, tmp_path):
    ds = bucket.dataset(cache_dir=tmp_path / "cache")
    before = moto_s3.count(method="GET")
    first = all_items(ds)
    assert moto_s3.count(method="GET") - before == 5
    assert len(list((tmp_path / "cache").rglob("*.*"))) == 5  # no partial files left

    fresh = bucket.dataset(cache_dir=tmp_path / "cache")  # reads the release file
    before = moto_s3.count()
    assert_same_items(all_items(ds), first)
    # a fresh dataset (a new process, another DataLoader) over the same cache, too
    assert_same_items(all_items(fresh), first)
    assert moto_s3.count() - before == 0  # no GET, no HEAD


def test_dataloader_fork_workers_read_s3(bucket, moto_s3):
    ds = bucket.dataset(target="panoptic")
    reference = all_items(ds)  # the parent reads first: workers must not reuse its session
    before = moto_s3.count(method="GET")
    items = forked_items(ds)
    assert moto_s3.count(method="GET") - before == 5
    assert_same_items(items, reference)
