"""Every hostile input of ``tests/hostile/inputs/`` gives the error its manifest names, with
the message fragment it names, through the entry point a user would meet it by (see
:mod:`tests.hostile.generate`); never a raw exception, a crash, or a lost sample."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from segments_torch import SegmentsDataset, cli, errors, load_release
from tests.hostile.generate import (
    INPUTS,
    MANIFEST,
    PASSWORD,
    base_files,
    base_release,
    write,
)
from tests.http_server import FileServer

RECORDS: list[dict[str, str]] = json.loads(MANIFEST.read_text())


def of_kind(*kinds: str) -> pytest.MarkDecorator:
    """Parametrize a test over the manifest's records of these kinds, named by file."""
    chosen = [r for r in RECORDS if r["kind"] in kinds]
    return pytest.mark.parametrize("record", chosen, ids=[r["name"] for r in chosen])


def error_class(record: dict[str, str]) -> type[BaseException]:
    error: type[BaseException] = getattr(errors, record["error"])
    return error


def lay_out(folder: Path, document: dict[str, Any]) -> Path:
    """The release ``document`` and the base assets in ``folder``; the release's path."""
    for name, data in base_files().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    path = folder / "release.json"
    path.write_text(json.dumps(document))
    return path


def assert_refused_and_skipped(
    release: Path | dict[str, Any],
    record: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    **options: Any,
) -> None:
    """``ds[0]`` (sample a.jpg) raises the record's error naming the sample and holding
    its fragment; under ``on_error="skip"`` b.jpg is served instead and one failure is
    counted; no message or log shows the record's hidden text."""
    with caplog.at_level(logging.WARNING):
        with pytest.raises(error_class(record)) as info:
            SegmentsDataset(release, **options)[0]
        assert str(info.value).startswith("sample 'a.jpg': ")
        assert record["fragment"] in str(info.value)
        ds = SegmentsDataset(release, on_error="skip", **options)
        image, target = ds[0]
        assert int(target["image_id"]) == 1
        assert tuple(image.shape) == (3, 16, 20)
        assert ds.failures == 1
    if record["hidden"]:
        assert record["hidden"] not in str(info.value)
        assert record["hidden"] not in caplog.text


def test_there_are_at_least_60_hostile_inputs():
    assert len(RECORDS) >= 60
    assert len({r["name"] for r in RECORDS}) == len(RECORDS)


def test_the_committed_inputs_are_what_the_generator_makes(tmp_path):
    made = write(tmp_path / "inputs", tmp_path / "manifest.json")
    assert (tmp_path / "manifest.json").read_text() == MANIFEST.read_text()
    assert sorted(p.name for p in INPUTS.iterdir()) == sorted(c.name for c in made)
    for case in made:
        assert (INPUTS / case.name).read_bytes() == case.data, case.name


@of_kind("release")
def test_a_hostile_release_is_one_clear_error(record, capsys):
    path = INPUTS / record["name"]
    with pytest.raises(error_class(record)) as info:
        load_release(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert record["fragment"] in message
    assert cli.main(["info", str(path)]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"segments-torch: error: {message}\n")


@of_kind("image", "bitmap")
def test_a_hostile_asset_fails_its_sample_alone(record, tmp_path, caplog):
    release = lay_out(tmp_path, base_release())
    target = "images/a.jpg" if record["kind"] == "image" else "bitmaps/a.png"
    (tmp_path / target).write_bytes((INPUTS / record["name"]).read_bytes())
    assert_refused_and_skipped(release, record, caplog)


@of_kind("url")
def test_a_hostile_url_fails_its_sample_alone(record, tmp_path, caplog, file_server: FileServer):
    url = (INPUTS / record["name"]).read_text()
    server = file_server.url_for("").rstrip("/")
    url = url.format(
        root=tmp_path,
        server=server,
        server_with_password=server.replace("//", f"//user:{PASSWORD}@", 1),
    )
    release = lay_out(tmp_path, base_release((url, "images/b.jpg")))
    assert_refused_and_skipped(release, record, caplog)


@of_kind("cache")
def test_a_hostile_cache_entry_loses_nothing(record, tmp_path, file_server: FileServer):
    served = tmp_path / "served"
    served.mkdir()
    lay_out(served, base_release())
    url = file_server.url_for("served/images/a.jpg", query="sig=1")
    document = base_release((url, file_server.url_for("served/images/b.jpg")))
    for sample in document["dataset"]["samples"]:
        bitmap = sample["labels"]["ground-truth"]["attributes"]["segmentation_bitmap"]
        bitmap["url"] = f"{served}/{bitmap['url']}"
    ds = SegmentsDataset(document, cache_dir=tmp_path / "cache")
    entry = ds.storage.cache_path(url)
    assert entry is not None
    entry.parent.mkdir(parents=True)
    if record["name"].startswith("cache-dir"):
        entry.mkdir()
        (entry / "inside").write_bytes(b"x")
    else:
        entry.write_bytes((INPUTS / record["name"]).read_bytes())
    image, target = ds[0]
    reference_image, reference = SegmentsDataset(document)[0]
    assert torch.equal(image, reference_image)
    assert torch.equal(target["masks"], reference["masks"])
    assert target["labels"].tolist() == [1, 2]
    if entry.is_file():  # replaced by the good bytes
        assert entry.read_bytes() == (served / "images" / "a.jpg").read_bytes()
    else:
        shutil.rmtree(entry)
