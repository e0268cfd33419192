from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import segments_torch.dataset
from segments_torch.cli import (
    add_selection_options,
    add_storage_options,
    main,
    storage_from_args,
)
from segments_torch.codecs import encode_bitmap
from segments_torch.demo import (
    SEGMENTATION_SEQUENCE_RELEASE_PATH,
    SEQUENCE_RELEASE_PATH,
    VECTOR_RELEASE_PATH,
)
from tests.releases import current_release

REAL = Path(__file__).parent / "fixtures" / "real"


def test_info_prints_layout_statuses_and_categories(capsys):
    path = REAL / "arc_litter-v1.1.json"
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == (
        f"source      {path}\n"
        "name        v1.1\n"
        "created at  2020-12-14 18:49:59.081276+00:00\n"
        "dataset     festay/arc_litter\n"
        "layout      dataset-tasks\n"
        "task type   segmentation-bitmap\n"
        "samples     51\n"
        "labelsets   segmentation\n"
        "\n"
        "labelset 'segmentation' (segmentation-bitmap)\n"
        "  label status  samples\n"
        "  LABELED            35\n"
        "  REVIEWED            8\n"
        "  SKIPPED             8\n"
        "\n"
        "counted: samples whose label is LABELED or REVIEWED (--filter-by, --all)\n"
        "  id  category        instances  samples\n"
        "   0  plastic litter        387       37\n"
        "   1  other litter          402       37\n"
    )


def test_info_counts_a_vector_labelsets_shapes_by_type(capsys):
    assert main(["info", str(VECTOR_RELEASE_PATH)]) == 0
    assert capsys.readouterr().out.endswith(
        "  shape     annotations\n"
        "  bbox                3\n"
        "  polygon            18\n"
        "  polyline            4\n"
        "  point               8\n"
    )
    assert main(["info", str(VECTOR_RELEASE_PATH), "--json", "--filter-by", "reviewed"]) == 0
    shapes = json.loads(capsys.readouterr().out)["labelsets"]["ground-truth"]["shapes"]
    # shapes-001, shapes-003 and shapes-007 are REVIEWED.
    assert shapes == {"bbox": 1, "polygon": 11, "polyline": 2, "point": 5}


def test_info_counts_the_instances_of_the_selected_statuses(capsys):
    """A SKIPPED label's instance is counted only when its status is selected, as the
    other commands select samples; the line above the table says what was counted."""
    path = str(REAL / "arc_litter-v1.1.json")
    assert main(["info", path, "--all"]) == 0
    assert capsys.readouterr().out.endswith(
        "counted: every sample (--filter-by, --all)\n"
        "  id  category        instances  samples\n"
        "   0  plastic litter        388       38\n"
        "   1  other litter          402       37\n"
    )
    assert main(["info", path, "--filter-by", "skipped", "--filter-by", "Reviewed"]) == 0
    assert capsys.readouterr().out.endswith(
        "counted: samples whose label is REVIEWED or SKIPPED (--filter-by, --all)\n"
        "  id  category        instances  samples\n"
        "   0  plastic litter         24        9\n"
        "   1  other litter           21        7\n"
    )
    assert main(["info", path, "--filter-by", "skipped", "--json"]) == 0
    labelset = json.loads(capsys.readouterr().out)["labelsets"]["segmentation"]
    assert labelset["statuses"] == {"LABELED": 35, "REVIEWED": 8, "SKIPPED": 8}
    assert labelset["counted"] == {"statuses": ["SKIPPED"], "samples": 8}
    assert [(c["instances"], c["samples"]) for c in labelset["categories"]] == [(1, 1), (0, 0)]
    assert main(["info", path, "--all", "--json"]) == 0
    labelset = json.loads(capsys.readouterr().out)["labelsets"]["segmentation"]
    assert labelset["counted"] == {"statuses": None, "samples": 51}
    assert [(c["instances"], c["samples"]) for c in labelset["categories"]] == [
        (388, 38),
        (402, 37),
    ]
    assert main(["info", path, "--filter-by", "done"]) == 1
    assert capsys.readouterr().err == (
        "segments-torch: error: unknown label status 'done'; expected one of UNLABELED, "
        "PRELABELED, LABELING_IN_PROGRESS, LABELED, REVIEWING_IN_PROGRESS, REVIEWED, "
        "VERIFIED, REJECTED, SKIPPED\n"
    )


def test_info_json(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(current_release(labelsets=("ground-truth", "model"))))
    assert main(["info", str(path), "--json", "--labelset", "ground-truth"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {
        "source": str(path),
        "name": "v1.0",
        "created_at": "2024-05-01 10:00:00+00:00",
        "dataset": "jane/flowers",
        "layout": "labelsets",
        "task_type": "segmentation-bitmap",
        "samples": 4,
        "labelsets": {
            "ground-truth": {
                "task_type": "segmentation-bitmap",
                "statuses": {"UNLABELED": 1, "LABELED": 1, "REVIEWED": 1, "SKIPPED": 1},
                "counted": {"statuses": ["LABELED", "REVIEWED"], "samples": 2},
                "categories": [
                    {
                        "id": 0,
                        "name": "person",
                        "has_instances": True,
                        "instances": 1,
                        "samples": 1,
                    },
                    {"id": 1, "name": "donut", "has_instances": True, "instances": 2, "samples": 1},
                    {
                        "id": 5,
                        "name": "grass",
                        "has_instances": False,
                        "instances": 1,
                        "samples": 1,
                    },
                ],
            }
        },
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "{path}: no such file"),
        (
            '{"name": ',
            "{path}: not valid JSON: Expecting value at line 1 column 10 (the file ends "
            "early: is it truncated?)",
        ),
    ],
)
def test_info_errors_are_one_line_without_traceback(tmp_path, capsys, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    assert main(["info", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"segments-torch: error: {message.format(path=path)}\n"


def test_info_unknown_labelset(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(current_release()))
    assert main(["info", str(path), "--labelset", "gt"]) == 1
    assert capsys.readouterr().err == (
        f"segments-torch: error: {path}: no labelset 'gt'; the release has: 'ground-truth'\n"
    )


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["info"])
    assert info.value.code == 2
    assert "the following arguments are required: release" in capsys.readouterr().err


def test_console_script_entry_point(tmp_path):
    """The installed ``segments-torch`` command: exit codes and streams of a real process."""
    script = Path(sys.executable).parent / "segments-torch"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    ok = subprocess.run(
        [script, "info", str(REAL / "arc_litter-v2.1.json"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["labelsets"]["segmentation"]["statuses"] == {
        "LABELED": 35,
        "REVIEWED": 8,
        "SKIPPED": 8,
    }
    bad = subprocess.run(
        [script, "info", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == f"segments-torch: error: {tmp_path / 'missing.json'}: no such file\n"


def test_demo_loads_the_bundled_release_and_draws_a_preview(tmp_path, capsys):
    out = tmp_path / "preview.png"
    assert main(["demo", "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "samples=6 (LABELED: 3, REVIEWED: 3), num_classes=5)" in printed
    table = printed[printed.index("  label  category  instances") :].splitlines()[:5]
    assert table == [
        "  label  category  instances",
        "      0  circle            8",
        "      1  square            6",
        "      2  triangle          6",
        "      3  grass             4",
    ]
    assert "6 samples through a DataLoader with 2 workers in " in printed
    # Six samples in 4:3 tiles of 256 x 192, three a row, drawn at that size.
    assert f"preview: {out} (784x422)" in printed
    with Image.open(out) as picture:
        assert picture.size == (784, 422)


def served_release(tmp_path, server, missing: str | None = None) -> Path:
    """A release of the four standard samples whose assets the server serves."""
    document = current_release()
    for k, sample in enumerate(document["dataset"]["samples"]):
        name = sample["name"]
        Image.new("RGB", (8, 6), (k, 2 * k, 3 * k)).save(tmp_path / name, format="JPEG")
        sample["attributes"]["image"]["url"] = server.url_for(name, query="sig=secret")
        label = sample["labels"]["ground-truth"]
        if label and label.get("attributes"):
            bitmap = f"{name}.png"
            (tmp_path / bitmap).write_bytes(encode_bitmap(torch.full((6, 8), k)))
            label["attributes"]["segmentation_bitmap"]["url"] = server.url_for(bitmap)
    if missing:
        (tmp_path / missing).unlink()
    path: Path = tmp_path / "release.json"
    path.write_text(json.dumps(document))
    return path


def test_prefetch_downloads_then_resumes(tmp_path, file_server, capsys):
    release = served_release(tmp_path, file_server)
    cache = tmp_path / "cache"
    assert main(["prefetch", str(release), "--cache-dir", str(cache), "--workers", "3"]) == 0
    assert capsys.readouterr().out == (
        "samples          2\n"
        "assets           4\n"
        "downloaded       4 (0.0 MB)\n"
        "already cached   0\n"
        "failed           0\n"
    )
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(files) == 4
    assert sorted(p.read_bytes() for p in files) == sorted(
        (tmp_path / n).read_bytes() for n in ("a.jpg", "b.jpg", "a.jpg.png", "b.jpg.png")
    )
    requests = file_server.count()
    # A second run finds everything cached and downloads nothing.
    assert main(["prefetch", str(release), "--cache-dir", str(cache), "--all"]) == 0
    out = capsys.readouterr().out
    assert "samples          4\nassets           6\ndownloaded       2 (0.0 MB)\n" in out
    assert "already cached   4\n" in out
    assert file_server.count() == requests + 2


def test_prefetch_reports_failures(tmp_path, file_server, capsys):
    release = served_release(tmp_path, file_server, missing="b.jpg")
    code = main(["prefetch", str(release), "--cache-dir", str(tmp_path / "cache")])
    assert code == 1
    out = capsys.readouterr().out
    assert out.endswith(
        f"failed           1\n  {file_server.url_for('b.jpg')}: not found (HTTP 404)\n"
    )
    assert "secret" not in out


def test_prefetch_url_map_and_usage_errors(tmp_path, file_server, capsys):
    release = served_release(tmp_path, file_server)
    mapped = ["--url-map", f"{file_server.url}/=file://{tmp_path}/"]
    cache = tmp_path / "c"
    assert main(["prefetch", str(release), "--cache-dir", str(cache), *mapped]) == 0
    # Local files are read where they are, never copied into the cache: counted apart.
    assert capsys.readouterr().out == (
        "samples          2\n"
        "assets           4\n"
        "downloaded       0 (0.0 MB)\n"
        "already cached   0\n"
        "local files      4 (read where they are: they need no prefetch)\n"
        "failed           0\n"
    )
    assert file_server.count() == 0
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    with pytest.raises(SystemExit) as info:
        main(["prefetch", str(release), "--cache-dir", "c", "--url-map", "nothing"])
    assert info.value.code == 2
    assert capsys.readouterr().err.endswith(
        "prefetch: error: argument --url-map: expected PREFIX=REPLACEMENT, not 'nothing'\n"
    )


def test_prefetch_into_a_folder_it_cannot_use_is_one_line(
    tmp_path, file_server, capsys, monkeypatch
):
    release = str(served_release(tmp_path, file_server))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    unwritable = tmp_path / "unwritable"
    real_open = os.open

    def refuse_in_unwritable(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(f"{unwritable}/"):  # as a read-only mount would
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_in_unwritable)
    for cache, why in [
        (a_file, "not a folder"),
        (a_file / "cache", "cannot create it (Not a directory)"),
        (unwritable, "cannot write in it (Permission denied)"),
    ]:
        assert main(["prefetch", release, "--cache-dir", str(cache)]) == 1
        assert capsys.readouterr() == ("", f"segments-torch: error: cache folder {cache}: {why}\n")
    assert file_server.count() == 0  # said before any download


def test_prefetch_counts_a_failed_cache_write_as_failed(tmp_path, file_server, capsys, monkeypatch):
    release = str(served_release(tmp_path, file_server))
    cache = tmp_path / "cache"

    def disk_full(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    assert main(["prefetch", release, "--cache-dir", str(cache)]) == 1
    out = capsys.readouterr().out
    assert "downloaded       0 (0.0 MB)\nalready cached   0\nfailed           4\n" in out
    failures = out.splitlines()[-4:]
    assert [line.split(": ")[0] for line in failures] == [
        f"  {file_server.url_for(name)}" for name in ("a.jpg", "a.jpg.png", "b.jpg", "b.jpg.png")
    ]
    assert all(": cannot write the cache file " in line for line in failures)
    assert all(line.endswith(": No space left on device") for line in failures)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def label_lines(made: int, reused: int, failed: int, left_out: str = "") -> str:
    """What prefetch --labels prints of the tests' tiny bitmaps (kilobytes: 0.0 MB)."""
    return (
        f"labels made      {made}\n"
        f"labels reused    {reused}\n"
        f"labels failed    {failed}\n"
        f"label cache 0.0 MB for 0.0 MB of PNGs{left_out}\n"
    )


def test_prefetch_labels_alone_reads_only_the_bitmaps(tmp_path, file_server, capsys):
    release = str(served_release(tmp_path, file_server))
    labels = tmp_path / "labels"
    command = ["prefetch", release, "--labels", "--label-cache", str(labels)]
    assert main([*command, "--label-workers", "2"]) == 0
    assert capsys.readouterr().out == "samples          2\n" + label_lines(2, 0, 0)
    assert len(list(labels.rglob("*.stlc"))) == 2
    assert sorted(r.path for r in file_server.requests) == ["a.jpg.png", "b.jpg.png"]
    # Again: every entry is kept, and no PNG is read.
    assert main([*command, "--label-workers", "0"]) == 0
    left_out = " (2 reused entries left out: remote PNGs not in --cache-dir)"
    assert capsys.readouterr().out == "samples          2\n" + label_lines(0, 2, 0, left_out)
    assert file_server.count() == 2


def test_prefetch_assets_and_labels_reads_each_file_once(tmp_path, file_server, capsys):
    release = str(served_release(tmp_path, file_server))
    cache, labels = tmp_path / "cache", tmp_path / "labels"
    command = ["prefetch", release, "--cache-dir", str(cache), "--labels"]
    assert main([*command, "--label-cache", str(labels), "--label-workers", "2"]) == 0
    assert capsys.readouterr().out == (
        "samples          2\n"
        "assets           4\n"
        "downloaded       4 (0.0 MB)\n"
        "already cached   0\n"
        "failed           0\n" + label_lines(2, 0, 0)
    )
    # The labels were decoded from the downloaded bitmaps.
    assert file_server.count() == 4
    assert len(list(labels.rglob("*.stlc"))) == 2


def test_prefetch_labels_lists_failures_and_exits_1(tmp_path, file_server, capsys):
    release = str(served_release(tmp_path, file_server, missing="b.jpg.png"))
    command = ["prefetch", release, "--labels", "--label-cache", str(tmp_path / "labels")]
    assert main([*command, "--label-workers", "0"]) == 1
    assert capsys.readouterr().out == (
        "samples          2\n"
        + label_lines(1, 0, 1)
        + f"  b.jpg: {file_server.url_for('b.jpg.png')}: not found (HTTP 404)\n"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--labels"], "--labels and --label-cache DIR go together"),
        (["--label-cache", "l", "--cache-dir", "c"], "--labels and --label-cache DIR go together"),
        ([], "the following arguments are required: --cache-dir (or --labels)"),
    ],
)
def test_prefetch_label_usage_errors_exit_2(options, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["prefetch", "release.json", *options])
    assert info.value.code == 2
    assert capsys.readouterr().err.endswith(f"prefetch: error: {message}\n")


def test_prefetch_into_a_label_cache_it_cannot_use_is_one_line(tmp_path, file_server, capsys):
    release = str(served_release(tmp_path, file_server))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for labels, cache in [(a_file, []), (a_file / "labels", ["--cache-dir", str(tmp_path / "c")])]:
        assert main(["prefetch", release, "--labels", "--label-cache", str(labels), *cache]) == 1
        why = "not a folder" if labels == a_file else "cannot create it (Not a directory)"
        assert capsys.readouterr() == (
            "",
            f"segments-torch: error: label cache folder {labels}: {why}\n",
        )
    assert file_server.count() == 0  # said before any download


def test_export_and_preview_read_through_the_label_cache(tmp_path, capsys, monkeypatch):
    labels = ["--label-cache", str(tmp_path / "labels")]
    out = tmp_path / "out"
    assert main(["export", str(DEMO_RELEASE), "--out", str(out), "--workers", "0", *labels]) == 0
    assert len(list((tmp_path / "labels").rglob("*.stlc"))) == 6
    expected = (out / "coco_instance.json").read_text()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a bitmap was decoded")

    monkeypatch.setattr(segments_torch.dataset, "decode_bitmap", refuse)
    again = tmp_path / "again"
    assert main(["export", str(DEMO_RELEASE), "--out", str(again), "--workers", "0", *labels]) == 0
    assert (again / "coco_instance.json").read_text() == expected
    assert main(["preview", str(DEMO_RELEASE), "--out", str(tmp_path / "p.png"), *labels]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"preview: {tmp_path / 'p.png'} (")


def test_export_on_error_skip_goes_on_past_a_nul_in_a_url(tmp_path, capsys):
    shutil.copytree(DEMO_RELEASE.parent, tmp_path / "demo", ignore=shutil.ignore_patterns("*.py"))
    release = tmp_path / "demo" / "release.json"
    text = release.read_text().replace('"images/shapes-003.png"', '"images/shapes-\\u0000003.png"')
    release.write_text(text)
    out = tmp_path / "out"
    args = ["export", str(release), "--out", str(out), "--on-error", "skip", "--workers", "0"]
    assert main(args) == 1
    assert capsys.readouterr().out == (
        f"exported 5 samples: {out / 'coco_instance.json'}\n"
        "skipped 1 sample whose assets failed (see the log above):\n"
        "  shapes-003.png\n"
    )


# -- export and preview ---------------------------------------------------------------------

DEMO_RELEASE = Path(__file__).parent.parent / "segments_torch" / "demo" / "release.json"
#: What every command says when --filter-by verified selects no sample of the demo.
NONE_VERIFIED = (
    f"{DEMO_RELEASE}: no sample selected: labelset 'ground-truth' has 8 samples (UNLABELED 1, "
    "LABELED 3, REVIEWED 3, REJECTED 1) and the label statuses kept are VERIFIED"
)


@pytest.mark.parametrize("command", ["export", "preview", "prefetch"])
def test_an_empty_selection_is_an_error_that_counts_the_statuses(tmp_path, capsys, command):
    out = tmp_path / "out"
    options = {
        "export": ["--out", str(out), "--workers", "0"],
        "preview": ["--out", str(tmp_path / "p.png")],
        "prefetch": ["--cache-dir", str(tmp_path / "cache")],
    }[command]
    code = main([command, str(DEMO_RELEASE), "--filter-by", "verified", *options])
    assert (code, *capsys.readouterr()) == (1, "", f"segments-torch: error: {NONE_VERIFIED}\n")
    assert not out.exists()
    assert not (tmp_path / "p.png").exists()


def test_export_numbers_images_as_the_sdk_with_image_ids_sdk(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["export", str(DEMO_RELEASE), "--out", str(out), "--workers", "0"]
    assert main([*base, "--image-ids", "sdk"]) == 0
    document = json.loads((out / "coco_instance.json").read_text())
    assert [(i["id"], i["segments_row"]) for i in document["images"]] == [
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 3),
        (5, 4),
        (6, 7),
    ]
    assert {a["image_id"] for a in document["annotations"]} == {1, 2, 3, 4, 5, 6}
    assert document["info"]["segments_image_ids"] == "sdk"
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([*base, "--image-ids", "position"])
    assert info.value.code == 2
    assert "argument --image-ids: invalid choice: 'position'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fmt", "json_name", "folder"),
    [
        ("coco-instance", "coco_instance.json", None),
        ("coco", "coco_instance.json", None),
        ("coco-panoptic", "coco_panoptic.json", "coco_panoptic"),
        ("semantic", "semantic.json", "semantic"),
        ("instance", "instance.json", "instance"),
    ],
)
def test_export_writes_the_format(tmp_path, capsys, fmt, json_name, folder):
    out = tmp_path / "out"
    code = main(["export", str(DEMO_RELEASE), "--format", fmt, "--out", str(out), "--workers", "0"])
    assert code == 0
    assert capsys.readouterr().out == f"exported 6 samples: {out / json_name}\n"
    document = json.loads((out / json_name).read_text())
    assert [image["id"] for image in document["images"]] == [0, 1, 2, 3, 4, 7]
    written = sorted(p.name for p in (out / folder).iterdir()) if folder else []
    expected = [f"shapes-00{k}.png" for k in (0, 1, 3, 4, 7)] + ["shapes-002-exif.png"]
    assert written == (sorted(expected) if folder else [])


def test_export_selection_storage_and_workers(tmp_path, capsys):
    """The selection and storage options are prefetch's: --all, --filter-by, --labelset,
    --asset-root, --url-map; --workers spreads the samples over processes."""
    release = tmp_path / "r" / "release.json"  # without its assets next to it
    release.parent.mkdir()
    shutil.copy(DEMO_RELEASE, release)
    out = tmp_path / "out"
    args = ["export", str(release), "--format", "semantic", "--out", str(out), "--workers", "2"]
    assert main([*args, "--all", "--asset-root", str(DEMO_RELEASE.parent)]) == 0
    assert capsys.readouterr().out == f"exported 8 samples: {out / 'semantic.json'}\n"
    mirror = ["--url-map", f"{release.parent}/=file://{DEMO_RELEASE.parent}/"]
    selection = ["--filter-by", "rejected", "--labelset", "ground-truth", "--overwrite"]
    assert main([*args, *mirror, *selection]) == 0
    document = json.loads((out / "semantic.json").read_text())
    assert [image["segments_name"] for image in document["images"]] == ["shapes-005.jpg"]
    # The assets are not where the release is: one line from a worker.
    assert main([*args, "--overwrite"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"segments-torch: error: sample 'shapes-000.jpg': {release.parent}/images/"
        "shapes-000.jpg: not found"
    )


def test_export_skips_broken_samples_and_exits_1(tmp_path, capsys):
    shutil.copytree(DEMO_RELEASE.parent, tmp_path / "demo", ignore=shutil.ignore_patterns("*.py"))
    (tmp_path / "demo" / "images" / "shapes-003.png").write_bytes(b"broken")
    release = str(tmp_path / "demo" / "release.json")
    out = tmp_path / "out"
    code = main(["export", release, "--out", str(out), "--on-error", "skip", "--workers", "0"])
    assert code == 1
    assert capsys.readouterr().out == (
        f"exported 5 samples: {out / 'coco_instance.json'}\n"
        "skipped 1 sample whose assets failed (see the log above):\n"
        "  shapes-003.png\n"
    )
    # Without --on-error skip, the first failure ends the export with one line.
    assert main(["export", release, "--out", str(out), "--workers", "0", "--overwrite"]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("segments-torch: error: sample 'shapes-003.png': ")
    assert err.endswith(
        "cannot decode the image (unknown data starting b'broken'): not a format "
        "Pillow reads either"
    )


def test_export_into_a_folder_holding_files_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("an earlier export")
    args = ["export", str(DEMO_RELEASE), "--format", "semantic", "--out", str(out)]
    assert main([*args, "--workers", "0"]) == 1
    assert capsys.readouterr().err == (
        f"segments-torch: error: cannot export into {out}: the folder is not empty; pass "
        "overwrite=True (export --overwrite) to replace it and everything in it\n"
    )
    assert main([*args, "--workers", "0", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["semantic", "semantic.json"]


def test_export_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        main(["export", str(DEMO_RELEASE), "--format", "yolo", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "argument --format: invalid choice: 'yolo'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", str(DEMO_RELEASE)])
    assert info.value.code == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", str(DEMO_RELEASE), "--out", str(tmp_path), "--workers", "-1"])
    assert info.value.code == 2
    assert "argument --workers: expected a number >= 0, not -1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    assert main(["export", str(DEMO_RELEASE), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "segments-torch: error: the coco-instance export needs pycocotools (import of "
        "pycocotools halted; None in sys.modules): pip install 'segments-torch[coco]'\n"
    )
    assert main(["export", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"segments-torch: error: {tmp_path / 'missing.json'}: no such file\n"
    )


def test_preview_draws_the_first_samples(tmp_path, capsys):
    out = tmp_path / "p.png"
    assert main(["preview", str(DEMO_RELEASE), "--n", "4", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"preview: {out} (1044x226, 4 samples)\n"
    with Image.open(out) as picture:
        assert picture.size == (1044, 226)  # 4:3 tiles of 256 x 192
        # The first tile (4 px from the border, scale 0.8): the circle of shapes-000,
        # centred at (79.5, 94.5), filled in its category's color (230, 57, 70).
        pixel = picture.getpixel((4 + 64, 4 + 76))
        assert max(abs(a - b) for a, b in zip(pixel, (230, 57, 70), strict=True)) <= 8
        plain = np.asarray(picture)
    # --boxes: each instance's box and name, white on black, which the photos lack.
    assert main(["preview", str(DEMO_RELEASE), "--n", "4", "--out", str(out), "--boxes"]) == 0
    capsys.readouterr()
    with Image.open(out) as picture:
        boxed = np.asarray(picture)
    assert not (plain[:196] == 0).all(axis=-1).any()
    assert (boxed[:196] == 0).all(axis=-1).sum() > 200
    # --n larger than the selection draws what there is; --tile sizes the tiles (one tile:
    # no grid border).
    assert main(["preview", str(DEMO_RELEASE), "--out", str(out), "--columns", "3",
                 "--tile", "64", "--filter-by", "rejected"]) == 0  # fmt: skip
    assert capsys.readouterr().out == f"preview: {out} (64x74, 1 sample)\n"


def test_outputs_that_cannot_be_written_are_one_line(tmp_path, capsys, monkeypatch):
    file = tmp_path / "file.txt"
    file.write_text("x")
    export = ["export", str(DEMO_RELEASE), "--format", "semantic", "--workers", "0", "--out"]
    cases = [
        (
            [*export, str(file)],
            f"cannot export into {file}: it exists and is not a folder",
        ),
        (
            [*export, str(file / "out")],
            f"cannot export into {file / 'out'}: {file} is not a folder",
        ),
        (
            ["preview", str(DEMO_RELEASE), "--out", str(tmp_path / "missing" / "p.png")],
            f"cannot write {tmp_path / 'missing' / 'p.png'}: there is no folder "
            f"{tmp_path / 'missing'}",
        ),
        (
            ["preview", str(DEMO_RELEASE), "--out", str(tmp_path)],
            f"cannot write {tmp_path}: it is a folder",
        ),
        (
            ["preview", str(DEMO_RELEASE), "--out", str(tmp_path / "p.pgn")],
            f"cannot write {tmp_path / 'p.pgn'}: Pillow writes no picture format of the "
            "extension '.pgn'; name a .png file",
        ),
        (
            ["preview", str(DEMO_RELEASE), "--out", str(tmp_path / "p.psd")],
            f"cannot write {tmp_path / 'p.psd'}: Pillow writes no picture format of the "
            "extension '.psd'; name a .png file",
        ),
        (  # demo refuses before its run: nothing printed but the error
            ["demo", "--workers", "0", "--out", str(tmp_path / "missing" / "d.png")],
            f"cannot write {tmp_path / 'missing' / 'd.png'}: there is no folder "
            f"{tmp_path / 'missing'}",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        assert capsys.readouterr() == ("", f"segments-torch: error: {message}\n"), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]

    # A place the user may not write: refused before anything is read.
    def denied(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    assert main([*export, str(tmp_path / "out")]) == 1
    assert capsys.readouterr() == (
        "",
        f"segments-torch: error: cannot write the export into {tmp_path / 'out'}: "
        "Permission denied\n",
    )
    monkeypatch.undo()

    def no_temporary_file(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_temporary_file)
    assert main(["demo", "--out", str(tmp_path / "d.png")]) == 1
    assert capsys.readouterr() == (
        "",
        f"segments-torch: error: cannot write {tmp_path / 'd.png'}: Permission denied\n",
    )


def test_a_picture_that_fails_to_save_is_one_line(tmp_path, capsys, monkeypatch):
    def full(self: Any, path: Any, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "p.png"
    assert main(["preview", str(DEMO_RELEASE), "--n", "1", "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"segments-torch: error: cannot write {out}: No space left on device\n"
    )


def test_usage_errors_of_demo_and_url_map_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--workers", "-1"])
    assert info.value.code == 2
    assert capsys.readouterr().err.endswith(
        "demo: error: argument --workers: expected a number >= 0, not -1\n"
    )
    export = ["export", str(DEMO_RELEASE), "--out", "x"]
    with pytest.raises(SystemExit) as info:
        main([*export, "--url-map", "https://bucket/", "--url-map", "=/data"])
    assert info.value.code == 2
    assert capsys.readouterr().err.endswith(
        "export: error: argument --url-map: expected PREFIX=REPLACEMENT, not 'https://bucket/'\n"
    )


def test_hostile_release_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 5000 + "]" * 5000)
    assert main(["info", str(path)]) == 1
    assert capsys.readouterr() == (
        "",
        f"segments-torch: error: {path}: not valid JSON for Python: lists and objects "
        f"nested 5000 deep at line 1 column 5000; Python's json module reads about "
        f"{sys.getrecursionlimit()}\n",
    )
    document = current_release()
    document["dataset"]["name"] = "flowers \ud800"
    path.write_text(json.dumps(document))  # the escape \ud800: valid JSON
    assert main(["info", str(path)]) == 1
    assert capsys.readouterr() == (
        "",
        f'segments-torch: error: {path}: dataset.name: expected text, found "flowers \\ud800": '
        "a lone surrogate (\\ud800 to \\udfff) is no Unicode character, and no file or "
        "terminal can hold it\n",
    )


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path):
    """``segments-torch info big.json --json | head -1``: no BrokenPipeError traceback."""
    categories = [{"id": i, "name": f"category {i}"} for i in range(5000)]  # > a pipe's buffer
    document = current_release()
    document["dataset"]["task_attributes"]["categories"] = categories
    for item in document["dataset"]["samples"]:
        item["labels"]["ground-truth"] = None
    path = tmp_path / "big.json"
    path.write_text(json.dumps(document))
    process = subprocess.Popen(
        [sys.executable, "-m", "segments_torch.cli", "info", str(path), "--json"],
        cwd=Path(__file__).parent.parent,  # this checkout's package
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdout.readline() == b"{\n"
    process.stdout.close()  # while the command is still writing
    assert process.stderr.read() == b""
    assert process.wait(timeout=60) == 1


def test_preview_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["preview", str(DEMO_RELEASE), "--n", "0"])
    assert info.value.code == 2
    assert "argument --n: expected a number >= 1, not 0" in capsys.readouterr().err
    out = tmp_path / "p.png"
    assert main(["preview", str(DEMO_RELEASE), "--out", str(out), "--filter-by", "verified"]) == 1
    assert capsys.readouterr() == ("", f"segments-torch: error: {NONE_VERIFIED}\n")
    assert not out.exists()


def test_max_pixels_reaches_export_and_preview(tmp_path, capsys):
    # The demo's images are at most 320 x 240 (76,800 pixels).
    base = ["--workers", "0"]
    assert main(["export", str(DEMO_RELEASE), "--out", str(tmp_path / "a"), *base]) == 0
    unlimited = ["--out", str(tmp_path / "b"), "--max-pixels", "0"]
    assert main(["export", str(DEMO_RELEASE), *unlimited, *base]) == 0
    capsys.readouterr()
    for command in (
        ["export", str(DEMO_RELEASE), "--out", str(tmp_path / "c"), *base],
        ["preview", str(DEMO_RELEASE), "--out", str(tmp_path / "p.png")],
    ):
        assert main([*command, "--max-pixels", "76799"]) == 1
        image = DEMO_RELEASE.parent / "images" / "shapes-000.jpg"
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"segments-torch: error: sample 'shapes-000.jpg': {image}: the image declares "
            "320x240 pixels (76,800), more than max_pixels=76,799"
        )
    assert not (tmp_path / "c").exists()
    with pytest.raises(SystemExit) as info:
        main(["preview", str(DEMO_RELEASE), "--max-pixels", "-1"])
    assert info.value.code == 2


def test_export_at_a_size_and_preview_at_the_tiles_size(tmp_path, capsys, monkeypatch):
    out = tmp_path / "small"
    args = ["export", str(DEMO_RELEASE), "--out", str(out), "--workers", "0", "--format"]
    assert main([*args, "instance", "--size", "60"]) == 0
    record = json.loads((out / "instance.json").read_text())["images"][0]
    assert (record["height"], record["width"]) == (60, 80)
    full = tmp_path / "full"
    assert main(["export", str(DEMO_RELEASE), "--out", str(full), "--workers", "0"]) == 0
    record = json.loads((full / "coco_instance.json").read_text())["images"][0]
    assert (record["height"], record["width"]) == (240, 320)  # full resolution by default
    picture = tmp_path / "p.png"
    seen: list[Any] = []
    real = segments_torch.dataset.SegmentsDataset.__getitem__

    def spy(dataset: Any, index: int) -> Any:
        seen.append((dataset.size, dataset.max_size))
        return real(dataset, index)

    monkeypatch.setattr(segments_torch.dataset.SegmentsDataset, "__getitem__", spy)
    preview = ["preview", str(DEMO_RELEASE), "--out", str(picture), "--n", "2", "--tile", "64"]
    assert main(preview) == 0
    assert seen == [(None, 64)] * 2  # samples read at the tile's size
    assert Image.open(picture).size[0] == 2 * 64 + 3 * 4  # two tiles, padding 4
    seen.clear()
    assert main([*preview, "--size", "100"]) == 0
    assert seen == [(100, None)] * 2  # or at the size asked for, then drawn at the tile's
    assert Image.open(picture).size == (2 * 64 + 3 * 4, 48 + 2 * 4 + 26)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["export", str(DEMO_RELEASE), "--out", str(tmp_path / "x"), "--size", "0"])
    assert info.value.code == 2


# -- the storage options make one Storage ---------------------------------------------------


def storage_parser(label_cache: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_selection_options(parser)
    add_storage_options(parser, cache_required=False)
    if label_cache:
        parser.add_argument("--label-cache", type=Path)
    return parser


def test_the_storage_options_make_one_storage(tmp_path):
    args = storage_parser(label_cache=True).parse_args(
        [
            "https://user:pw@cdn.example/r/release.json",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--cache-key",
            "url",
            "--url-map",
            "https://cdn.example/=/mirror/",
            "--label-cache",
            str(tmp_path / "labels"),
        ]
    )
    storage = storage_from_args(args)
    # Relative asset URLs resolve against the release's folder as given.
    assert storage.base_url == "https://user:pw@cdn.example/r"
    assert (storage.cache_dir, storage.cache_key) == (tmp_path / "cache", "url")
    assert storage.url_map == {"https://cdn.example/": "/mirror/"}
    assert storage.label_cache == tmp_path / "labels"


def test_asset_root_wins_and_commands_without_a_label_cache_have_none():
    args = storage_parser(label_cache=False).parse_args(["r.json", "--asset-root", "/assets"])
    storage = storage_from_args(args)
    assert (storage.base_url, storage.cache_dir, storage.label_cache) == ("/assets", None, None)


def test_info_counts_a_sequence_release_in_sequences_and_frames(capsys):
    assert main(["info", str(SEGMENTATION_SEQUENCE_RELEASE_PATH), "--filter-by", "reviewed"]) == 0
    assert capsys.readouterr().out == (
        f"source      {SEGMENTATION_SEQUENCE_RELEASE_PATH}\n"
        "name        v1.0\n"
        "created at  2024-06-07 12:00:00.000000+00:00\n"
        "dataset     segments-torch/demo-sequences\n"
        "layout      labelsets\n"
        "task type   image-segmentation-sequence\n"
        "samples     2\n"
        "frames      8\n"
        "labelsets   ground-truth\n"
        "\n"
        "labelset 'ground-truth' (image-segmentation-sequence)\n"
        "  label status  frames\n"
        "  LABELED            4\n"
        "  REVIEWED           4\n"
        "\n"
        "counted: frames whose label is REVIEWED (--filter-by, --all)\n"
        "  id  category  instances  frames\n"
        "   0  circle            3       3\n"
        "   1  square            4       4\n"
        "   2  triangle          0       0\n"
        "   3  grass             0       0\n"
    )
    assert main(["info", str(SEQUENCE_RELEASE_PATH), "--json", "--all"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["samples"], summary["frames"]) == (2, 8)
    labelset = summary["labelsets"]["ground-truth"]
    assert labelset["counted"] == {"statuses": None, "samples": 8}
    assert labelset["shapes"] == {"bbox": 4, "polygon": 11, "polyline": 0, "point": 0}
