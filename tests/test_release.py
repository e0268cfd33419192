from __future__ import annotations

import copy
import gzip
import io
import json
import pickle
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from segments_torch import (
    Category,
    Layout,
    OptionError,
    ReleaseFormatError,
    ReleaseReadError,
    SegmentsTorchError,
    UnknownLabelsetError,
    load_release,
    parse_release,
)
from segments_torch.release import BITMAP_TASK_TYPES, SEQUENCE_TASK_TYPES
from segments_torch.samples import LABEL_STATUSES, SHAPE_TYPES
from segments_torch.storage import RetryPolicy, Storage, StorageError
from tests.http_server import FileServer
from tests.releases import (
    annotation,
    current_release,
    dataset_tasks_release,
    label,
    sample,
    sequence_release,
    sequence_sample,
    tasks_release,
    with_boxes,
)

REAL = Path(__file__).parent / "fixtures" / "real"


def write_json(tmp_path: Path, document: Any, name: str = "release.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


# -- the three layouts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "layout", "labelset"),
    [
        (current_release(), Layout.LABELSETS, "ground-truth"),
        (dataset_tasks_release("dict"), Layout.DATASET_TASKS, "segmentation"),
        (dataset_tasks_release("list"), Layout.DATASET_TASKS, "segmentation"),
        (tasks_release(), Layout.TASKS, "segmentation"),
    ],
    ids=["labelsets", "dataset-tasks-dict", "dataset-tasks-list", "tasks"],
)
def test_every_layout_normalises_to_the_same_model(document, layout, labelset):
    release = parse_release(document)

    assert release.layout is layout
    assert release.task_type == "segmentation-bitmap"
    assert release.labelset_names == (labelset,)
    assert release.categories == (
        Category(0, "person", (220, 20, 60), True),
        Category(1, "donut", (250, 170, 30, 255), True),
        Category(5, "grass", None, False),
    )
    assert release.categories[2].attributes == ({"name": "wet"},)
    assert release.labelset().categories == release.categories

    table = release.samples
    assert len(table) == 4
    assert list(table.names) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert table.image_urls[1] == "https://cdn.example/images/b.jpg?sig=secret"
    columns = table.label_columns()
    assert columns.status_counts() == {"UNLABELED": 1, "LABELED": 1, "REVIEWED": 1, "SKIPPED": 1}
    first = table.record(0)
    assert first.status == "LABELED"
    assert first.bitmap_url == "https://cdn.example/bitmaps/b.png"
    assert first.annotation_ids.tolist() == [1, 2, 70000]
    assert first.category_ids.tolist() == [0, 1, 1]
    assert first.annotation_ids.dtype == np.int32
    null_label = table.record(2)
    assert (null_label.status, null_label.bitmap_url, null_label.annotation_ids.size) == (
        "UNLABELED",
        None,
        0,
    )
    assert table.record(3).status == "SKIPPED"
    assert columns.category_counts() == {0: (1, 1), 1: (2, 1), 5: (1, 1)}


def test_current_layout_metadata():
    release = parse_release(current_release(labelsets=("ground-truth", "predictions")))
    assert (release.name, release.description, release.created_at) == (
        "v1.0",
        "first release",
        "2024-05-01 10:00:00+00:00",
    )
    assert (release.dataset_name, release.dataset_owner) == ("flowers", "jane")
    assert release.labelset_names == ("ground-truth", "predictions")
    # Samples without a label in a labelset count as UNLABELED there.
    assert release.samples.label_columns("predictions").status_counts() == {"UNLABELED": 4}
    assert release.labelset().name == "ground-truth"


def test_tasks_layout_has_no_uuid_or_metadata():
    release = parse_release(tasks_release(), source="seed.json")
    assert release.samples.uuids[0] == ""
    assert release.samples.metadata(0) == {}
    assert (release.dataset_name, release.dataset_owner) == ("", "")
    assert release.name == "first release"


def test_layout_is_decided_by_labelsets_not_by_absent_tasks():
    document = current_release()
    document["dataset"]["tasks"] = {"segmentation": {"task_type": "bboxes"}}
    assert parse_release(document).layout is Layout.LABELSETS


def test_unknown_extra_keys_are_ignored():
    document = current_release()
    document["surprise"] = 1
    document["dataset"]["samples"][0]["labels"]["ground-truth"]["attributes"]["annotations"][0][
        "new_field"
    ] = [1, 2]
    document["dataset"]["samples"][0]["extra"] = {"x": 1}
    assert parse_release(document).samples.record(0).annotation_ids.tolist() == [1, 2, 70000]


def test_label_without_bitmap_or_annotations():
    document = current_release(
        [
            sample("a.jpg", {"ground-truth": label("LABELED", [], bitmap=None)}),
            sample("b.jpg", {"ground-truth": {"label_status": "LABELED"}}),
        ]
    )
    table = parse_release(document).samples
    for row in (0, 1):
        record = table.record(row)
        assert (record.status, record.bitmap_url, record.annotation_ids.tolist()) == (
            "LABELED",
            None,
            [],
        )


@pytest.mark.parametrize(
    "task_type", ["bboxes", "vector", "keypoints", "segmentation-bitmap-highres"]
)
def test_every_image_task_type_loads(task_type):
    document = current_release(task_type=task_type)
    if task_type != "segmentation-bitmap-highres":
        document = with_boxes(document)
    release = parse_release(document)
    assert release.task_type == task_type
    assert release.samples.record(0).annotation_ids.tolist() == [1, 2, 70000]


def test_non_bitmap_task_types_allow_annotation_id_zero():
    document = current_release(
        [sample("a.jpg", {"ground-truth": label("LABELED", [annotation(0, 1)])})],
        task_type="bboxes",
    )
    assert parse_release(with_boxes(document)).samples.record(0).annotation_ids.tolist() == [0]


# -- the real files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "instances"),
    [("arc_litter-v1.1.json", (388, 402)), ("arc_litter-v2.1.json", (390, 404))],
)
def test_real_release_files(name, instances):
    release = load_release(REAL / name)

    assert release.layout is Layout.DATASET_TASKS
    assert release.name == name.removeprefix("arc_litter-").removesuffix(".json")
    assert (release.dataset_owner, release.dataset_name) == ("festay", "arc_litter")
    assert release.labelset_names == ("segmentation",)
    assert [(c.id, c.name, c.color) for c in release.categories] == [
        (0, "plastic litter", None),
        (1, "other litter", None),
    ]
    table = release.samples
    assert len(table) == 51
    columns = table.label_columns()
    assert columns.status_counts() == {"LABELED": 35, "REVIEWED": 8, "SKIPPED": 8}
    assert columns.category_counts() == {0: (instances[0], 38), 1: (instances[1], 37)}
    assert len(table.select(statuses=["labeled", "reviewed"])) == 43
    assert sum(1 for url in columns.bitmap_urls if url) == 44


# -- sources -------------------------------------------------------------------------------


def test_sources_of_every_kind(tmp_path):
    document = current_release()
    path = write_json(tmp_path, document)
    gz = tmp_path / "release.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    misnamed = tmp_path / "gzipped.json"
    misnamed.write_bytes(gz.read_bytes())
    with fsspec.open("memory://bucket/release.json", "wb") as f:
        f.write(path.read_bytes())

    sources: list[Any] = [
        str(path),
        path,
        path.as_uri(),
        str(gz),
        misnamed,
        "memory://bucket/release.json",
        io.BytesIO(path.read_bytes()),
        document,
    ]
    for source in sources:
        release = load_release(source)
        assert release.samples.record(0).annotation_ids.tolist() == [1, 2, 70000], source
    with path.open("rb") as f:
        assert load_release(f).source == str(path)
    assert load_release(gz).source == str(gz)


def test_url_source_is_named_without_query_string():
    with pytest.raises(ReleaseReadError) as info:
        load_release("memory://bucket/missing.json?X-Amz-Signature=secret")
    assert str(info.value) == "memory://bucket/missing.json: cannot read the release: not found"


def test_missing_file(tmp_path):
    with pytest.raises(ReleaseReadError) as info:
        load_release(tmp_path / "nope.json")
    assert str(info.value) == f"{tmp_path / 'nope.json'}: no such file"


def test_a_folder_names_the_release_files_in_it(tmp_path):
    for name in ("flowers-v1.0.json", "flowers-v0.9.json.gz", "notes.txt", "a.json.bak"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "old.json").mkdir()  # a folder, whatever its name
    expected = (
        f"{tmp_path}: is a folder; name a release file in it: flowers-v0.9.json.gz, "
        "flowers-v1.0.json"
    )
    for source in (tmp_path, str(tmp_path) + "/"):
        with pytest.raises(ReleaseReadError) as info:
            load_release(source)
        assert str(info.value) == expected.replace(f"{tmp_path}:", f"{source}:")
    with pytest.raises(ReleaseReadError) as info:
        load_release(tmp_path.as_uri())
    assert str(info.value) == expected.replace(f"{tmp_path}:", f"{tmp_path.as_uri()}:")


def test_a_folder_of_many_release_files_names_ten(tmp_path):
    for k in range(12):
        (tmp_path / f"r{k:02d}.json").write_text("{}")
    with pytest.raises(ReleaseReadError) as info:
        load_release(tmp_path)
    names = ", ".join(f"r{k:02d}.json" for k in range(10))
    assert (
        str(info.value) == f"{tmp_path}: is a folder; name a release file in it: {names} and 2 more"
    )


def test_a_folder_without_release_files_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ReleaseReadError) as info:
        load_release(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: is a folder, and holds no release file (*.json, *.json.gz)"
    )
    assert isinstance(info.value, SegmentsTorchError)
    assert isinstance(info.value, OSError)


# -- bad documents: exact messages -------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not valid JSON: the file is empty"),
        (
            b"{'name': 1}",
            "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (
            b'{"name": "v1", "dataset": {"samples": [',
            "not valid JSON: Expecting value at line 1 "
            "column 40 (the file ends early: is it truncated?)",
        ),
        (
            b'{"name": "v1", "dataset": {"samples": [{"name": "a.j',
            "not valid JSON: Unterminated string starting at line 1 "
            "column 49 (the file ends early: is it truncated?)",
        ),
        (
            b'{"name": "caf\xe9"}',
            "not valid JSON: not UTF-8 text ('utf-8' codec can't decode "
            "byte 0xe9 in position 13: invalid continuation byte)",
        ),
        (
            gzip.compress(b'{"dataset": {}}')[:-6],
            "not a valid gzip file (Compressed file ended "
            "before the end-of-stream marker was reached): is it truncated?",
        ),
        (b"[1, 2]", "expected a JSON object (a release), found a list of 2 items"),
        (
            b'{"nothing": 1, "here": 2}',
            'expected a release: an object with "dataset" (or with '
            '"tasks" and "samples"), found an object with the keys "nothing", "here"',
        ),
    ],
    ids=[
        "empty",
        "not-json",
        "truncated",
        "truncated-in-a-string",
        "not-utf8",
        "truncated-gzip",
        "not-object",
        "not-release",
    ],
)
def test_unreadable_documents(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ReleaseFormatError) as info:
        load_release(path)
    assert str(info.value) == f"{path}: {message}"
    assert info.value.path == ""


def first_label(document: dict[str, Any]) -> dict[str, Any]:
    return document["dataset"]["samples"][0]["labels"]["ground-truth"]  # type: ignore[no-any-return]


def set_in(document: dict[str, Any], path: list[Any], value: Any) -> None:
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def delete_in(document: dict[str, Any], path: list[Any]) -> None:
    target = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


ANNOTATIONS = ["dataset", "samples", 0, "labels", "ground-truth", "attributes", "annotations"]
P0 = "dataset.samples[0].labels.ground-truth.attributes.annotations"
STATUSES = (
    "UNLABELED, PRELABELED, LABELING_IN_PROGRESS, LABELED, REVIEWING_IN_PROGRESS, REVIEWED, "
    "VERIFIED, REJECTED, SKIPPED"
)


@pytest.mark.parametrize(
    ("edit", "path", "detail"),
    [
        (
            lambda d: set_in(d, [*ANNOTATIONS, 2, "category_id"], "3"),
            f"{P0}[2].category_id",
            'expected one of the category ids (0, 1, 5), found "3"',
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS, 1, "category_id"], 3),
            f"{P0}[1].category_id",
            "expected one of the category ids (0, 1, 5), found 3",
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS, 1, "id"], 1.0),
            f"{P0}[1].id",
            "expected an integer from 1 to 16777215, found 1.0",
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS, 0, "id"], True),
            f"{P0}[0].id",
            "expected an integer from 1 to 16777215, found true",
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS, 2, "id"], 2**24),
            f"{P0}[2].id",
            "expected an integer from 1 to 16777215, found 16777216",
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS, 0, "id"], 0),
            f"{P0}[0].id",
            "expected an integer from 1 to 16777215, found 0",
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS, 0, "id"], 10**30),
            f"{P0}[0].id",
            "expected an integer from 1 to 16777215, found 1000000000000000000000000000000",
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS, 2, "id"], 1),
            f"{P0}[2].id",
            "expected an id no other annotation of this label has, found 1 "
            "(annotations[0] has it too)",
        ),
        (
            lambda d: delete_in(d, [*ANNOTATIONS, 1, "category_id"]),
            f"{P0}[1].category_id",
            "expected an integer, found nothing (the field is missing)",
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS, 1], [1, 0]),
            f"{P0}[1]",
            "expected an object, found a list of 2 items",
        ),
        (
            lambda d: set_in(d, ANNOTATIONS, {"id": 1}),
            P0,
            "expected a list, found an object",
        ),
        (
            lambda d: set_in(
                d, ["dataset", "samples", 1, "labels", "ground-truth", "label_status"], "DONE"
            ),
            "dataset.samples[1].labels.ground-truth.label_status",
            f'expected a label status ({STATUSES}), found "DONE"',
        ),
        (
            lambda d: delete_in(
                d, ["dataset", "samples", 1, "labels", "ground-truth", "label_status"]
            ),
            "dataset.samples[1].labels.ground-truth.label_status",
            f"expected a label status ({STATUSES}), found nothing (the field is missing)",
        ),
        (
            lambda d: delete_in(d, ["dataset", "samples", 2, "name"]),
            "dataset.samples[2].name",
            "expected a string, found nothing (the field is missing)",
        ),
        (
            lambda d: set_in(d, ["dataset", "samples", 3, "uuid"], 7),
            "dataset.samples[3].uuid",
            "expected a string, found 7",
        ),
        (
            lambda d: set_in(d, ["dataset", "samples", 1, "attributes", "image"], None),
            "dataset.samples[1].attributes.image",
            "expected an object, found null",
        ),
        (
            lambda d: delete_in(d, ["dataset", "samples", 1, "attributes", "image", "url"]),
            "dataset.samples[1].attributes.image.url",
            "expected a string, found nothing (the field is missing)",
        ),
        (
            lambda d: set_in(d, ["dataset", "samples", 1, "metadata"], ["split"]),
            "dataset.samples[1].metadata",
            "expected an object or null, found a list of 1 items",
        ),
        (
            lambda d: delete_in(d, ["dataset", "samples", 0, "labels"]),
            "dataset.samples[0].labels",
            "expected an object, found nothing (the field is missing)",
        ),
        (
            lambda d: set_in(d, ["dataset", "samples", 1, "labels", "ground-truth"], "LABELED"),
            "dataset.samples[1].labels.ground-truth",
            'expected an object or null, found "LABELED"',
        ),
        (
            lambda d: set_in(d, ["dataset", "samples", 1, "labels", "gt"], None),
            "dataset.samples[1].labels",
            "expected labels keyed by the release's labelsets ('ground-truth'), found the key "
            '"gt"',
        ),
        (
            lambda d: set_in(d, [*ANNOTATIONS[:-1], "segmentation_bitmap"], {"url": 5}),
            "dataset.samples[0].labels.ground-truth.attributes.segmentation_bitmap.url",
            "expected an object with a URL string, or null, found 5",
        ),
        (
            lambda d: set_in(d, ["dataset", "samples"], {}),
            "dataset.samples",
            "expected a list, found an object",
        ),
        (
            lambda d: set_in(d, ["dataset", "samples", 2], "c.jpg"),
            "dataset.samples[2]",
            'expected an object, found "c.jpg"',
        ),
        (
            lambda d: set_in(d, ["dataset", "task_type"], "segmentation"),
            "dataset.task_type",
            "expected a task type (segmentation-bitmap, segmentation-bitmap-highres, bboxes, "
            "vector, keypoints, image-segmentation-sequence, image-vector-sequence, "
            "pointcloud-cuboid, pointcloud-cuboid-sequence, pointcloud-segmentation, "
            "pointcloud-segmentation-sequence, pointcloud-vector, pointcloud-vector-sequence, "
            "multisensor-sequence, text-named-entities, text-span-categorization), found "
            '"segmentation"',
        ),
        (
            lambda d: delete_in(d, ["dataset", "labelsets"]),
            "dataset.labelsets",
            "expected a list, found nothing (the field is missing)",
        ),
        (
            lambda d: set_in(d, ["dataset", "labelsets"], []),
            "dataset.labelsets",
            "expected at least one labelset, found a list of 0 items",
        ),
        (
            lambda d: set_in(d, ["dataset", "labelsets", 0], "ground-truth"),
            "dataset.labelsets[0]",
            'expected an object, found "ground-truth"',
        ),
        (
            lambda d: delete_in(d, ["dataset", "task_attributes", "categories"]),
            "dataset.task_attributes.categories",
            "expected a list, found nothing (the field is missing)",
        ),
        (
            lambda d: set_in(d, ["dataset", "task_attributes", "categories", 1, "id"], "1"),
            "dataset.task_attributes.categories[1].id",
            'expected an integer, found "1"',
        ),
        (
            lambda d: set_in(d, ["dataset", "task_attributes", "categories", 1, "id"], 0),
            "dataset.task_attributes.categories[1].id",
            "expected an id no other category has, found 0",
        ),
        (
            lambda d: set_in(d, ["dataset", "task_attributes", "categories", 0, "color"], "red"),
            "dataset.task_attributes.categories[0].color",
            'expected null or a list of 3 or 4 integers from 0 to 255, found "red"',
        ),
        (
            lambda d: set_in(
                d, ["dataset", "task_attributes", "categories", 2, "has_instances"], "no"
            ),
            "dataset.task_attributes.categories[2].has_instances",
            'expected true or false, found "no"',
        ),
        (
            lambda d: delete_in(d, ["dataset", "task_attributes", "categories", 2, "name"]),
            "dataset.task_attributes.categories[2].name",
            "expected a string, found nothing (the field is missing)",
        ),
        (
            lambda d: set_in(d, ["dataset", "owner"], 3),
            "dataset.owner",
            "expected a string or an object, found 3",
        ),
        (
            lambda d: set_in(d, ["name"], ["v1"]),
            "name",
            "expected a string or null, found a list of 1 items",
        ),
    ],
)
def test_invalid_fields_name_file_path_expected_and_found(tmp_path, edit, path, detail):
    document = current_release()
    edit(document)
    file = write_json(tmp_path, document, "flowers.json")
    with pytest.raises(ReleaseFormatError) as info:
        load_release(file)
    assert info.value.path == path
    assert str(info.value) == f"{file}: {path}: {detail}"


def test_errors_in_older_layouts_use_their_paths():
    document = dataset_tasks_release("dict")
    document["dataset"]["samples"][1]["labels"]["segmentation"]["attributes"]["annotations"][0][
        "category_id"
    ] = 9
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document, source="old.json")
    assert str(info.value) == (
        "old.json: dataset.samples[1].labels.segmentation.attributes.annotations[0].category_id: "
        "expected one of the category ids (0, 1, 5), found 9"
    )

    document = tasks_release()
    del document["tasks"][0]["task_type"]
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document, source="seed.json")
    assert str(info.value) == (
        "seed.json: tasks[0].task_type: expected a string, found nothing (the field is missing)"
    )

    document = dataset_tasks_release("dict")
    document["dataset"]["tasks"]["segmentation"]["attributes"] = None
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document, source="old.json")
    assert str(info.value) == (
        "old.json: dataset.tasks.segmentation.attributes: expected an object, found null"
    )


def test_error_in_a_later_sample_names_that_sample():
    samples = [
        sample(f"{i}.jpg", {"ground-truth": label("LABELED", [annotation(1, 0), annotation(2, 1)])})
        for i in range(30)
    ]
    samples[17]["labels"]["ground-truth"]["attributes"]["annotations"].append(annotation(3, "3"))
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(current_release(samples), source="big.json")
    assert str(info.value) == (
        "big.json: dataset.samples[17].labels.ground-truth.attributes.annotations[2].category_id: "
        'expected one of the category ids (0, 1, 5), found "3"'
    )


# -- hostile documents: never a raw error -----------------------------------------------

SURROGATE_DETAIL = (
    "a lone surrogate (\\ud800 to \\udfff) is no Unicode character, and no file or "
    "terminal can hold it"
)


def test_deeply_nested_json_says_how_deep_and_where(tmp_path):
    # A string holding brackets and an escaped quote does not count as nesting.
    text = '{"name": "a \\" [[{{", "dataset": {"samples": [\n  ' + "[" * 5000 + "]" * 5000
    path = tmp_path / "deep.json"
    path.write_text(text + "]}}")
    with pytest.raises(ReleaseFormatError) as info:
        load_release(path)
    assert str(info.value) == (
        f"{path}: not valid JSON for Python: lists and objects nested 5003 deep at line 2 "
        f"column 5002; Python's json module reads about {sys.getrecursionlimit()}"
    )


@pytest.mark.parametrize(
    ("keys", "path"),
    [
        ([*ANNOTATIONS, 1, "id"], f"{P0}[1].id"),
        (["dataset", "samples", 1, "metadata", "split"], "dataset.samples[1].metadata.split"),
        (
            ["dataset", "task_attributes", "categories", 2, "id"],
            "dataset.task_attributes.categories[2].id",
        ),
    ],
)
def test_integer_too_long_for_python_is_named_by_its_path(tmp_path, keys, path):
    document = current_release()
    set_in(document, keys, "PLACEHOLDER")
    file = tmp_path / "long.json"
    file.write_text(json.dumps(document).replace('"PLACEHOLDER"', "-" + "9" * 5000))
    with pytest.raises(ReleaseFormatError) as info:
        load_release(file)
    assert info.value.path == path
    assert str(info.value) == (
        f"{file}: {path}: expected a number Python can read (at most 4300 digits), "
        "found a number of 5000 digits"
    )


BITMAP = "dataset.samples[1].labels.ground-truth.attributes.segmentation_bitmap"
BITMAP_KEYS = [
    "dataset",
    "samples",
    1,
    "labels",
    "ground-truth",
    "attributes",
    "segmentation_bitmap",
]
CATEGORY_1 = "dataset.task_attributes.categories[1]"
CATEGORY_1_KEYS = ["dataset", "task_attributes", "categories", 1]


@pytest.mark.parametrize(
    ("keys", "path"),
    [
        (["dataset", "samples", 1, "name"], "dataset.samples[1].name"),
        (["dataset", "samples", 3, "uuid"], "dataset.samples[3].uuid"),
        (
            ["dataset", "samples", 2, "attributes", "image", "url"],
            "dataset.samples[2].attributes.image.url",
        ),
        (
            [*BITMAP_KEYS, "url"],
            f"{BITMAP}.url",
        ),
        (
            BITMAP_KEYS,
            BITMAP,
        ),
        (["name"], "name"),
        (["description"], "description"),
        (["dataset", "name"], "dataset.name"),
        (["dataset", "owner", "username"], "dataset.owner.username"),
        (["dataset", "labelsets", 0, "description"], "dataset.labelsets[0].description"),
        (
            ["dataset", "task_attributes", "categories", 1, "name"],
            "dataset.task_attributes.categories[1].name",
        ),
    ],
)
def test_lone_surrogate_in_a_stored_string_is_named_by_its_path(tmp_path, keys, path):
    document = current_release()
    set_in(document, keys, "x\ud800.png")
    file = write_json(tmp_path, document)  # json.dumps writes it as the escape \ud800
    assert "\\ud800" in file.read_text()
    with pytest.raises(ReleaseFormatError) as info:
        load_release(file)
    assert (
        str(info.value)
        == f'{file}: {path}: expected text, found "x\\ud800.png": {SURROGATE_DETAIL}'
    )


def test_lone_surrogate_in_names_of_labelsets_and_tasks():
    document = current_release(labelsets=("gt\udfff",))
    for item in document["dataset"]["samples"]:
        item["labels"] = {"gt\udfff": item["labels"]["ground-truth"]}
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document, source="r.json")
    assert str(info.value) == (
        f'r.json: dataset.labelsets[0].name: expected text, found "gt\\udfff": {SURROGATE_DETAIL}'
    )
    document = dataset_tasks_release("dict")
    document["dataset"]["tasks"]["seg\ud800"] = document["dataset"]["tasks"].pop("segmentation")
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document, source="old.json")
    # The path shows the name escaped, so the message itself can be printed anywhere.
    assert str(info.value) == (
        f'old.json: dataset.tasks.seg\\ud800: expected text, found "seg\\ud800": {SURROGATE_DETAIL}'
    )
    str(info.value).encode()


def test_metadata_keeps_lone_surrogates_as_the_file_has_them(tmp_path):
    """Metadata is handed back, never written by the library: kept as JSON escapes."""
    document = current_release()
    document["dataset"]["samples"][0]["metadata"] = {"note\ud800": "cut \udc00"}
    release = load_release(write_json(tmp_path, document))
    assert release.samples.metadata(0) == {"note\ud800": "cut \udc00"}
    assert release.samples.metadata_json[0] == '{"note\\ud800":"cut \\udc00"}'


def test_metadata_that_json_cannot_write_is_named_by_its_path():
    """Only a parsed dict can hold these: parse_release gets them from Python code."""
    import datetime

    def with_metadata(metadata: Any) -> dict[str, Any]:
        document = current_release()
        document["dataset"]["samples"][1]["metadata"] = metadata
        return document

    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(5000):
        inner["a"] = inner = {}
    cases = [
        (
            deep,
            "dataset.samples[1].metadata: expected JSON that Python can write, found lists "
            f"and objects nested more than about {sys.getrecursionlimit()} deep",
        ),
        (
            {"split": "val", "sizes": [1, 10**5000]},
            "dataset.samples[1].metadata.sizes[1]: expected a number Python can write (at most "
            "4300 digits), found an integer of 16610 bits",
        ),
        (
            {"taken": [{"at": datetime.date(2024, 5, 1)}]},
            "dataset.samples[1].metadata.taken[0].at: expected a JSON value, found a Python date",
        ),
    ]
    circular: dict[str, Any] = {"split": "val"}
    circular["self"] = circular
    cases.append(
        (
            circular,
            "dataset.samples[1].metadata: expected JSON that Python can write: Circular "
            "reference detected",
        )
    )
    for metadata, message in cases:
        with pytest.raises(ReleaseFormatError) as info:
            parse_release(with_metadata(metadata), source="r.json")
        assert str(info.value) == f"r.json: {message}"


def test_values_json_cannot_write_are_described_in_errors():
    import datetime

    document = current_release()
    document["dataset"]["samples"][2]["name"] = datetime.date(2024, 5, 1)
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document, source="r.json")
    assert (
        str(info.value) == "r.json: dataset.samples[2].name: expected a string, found a Python date"
    )
    document = current_release()
    document["dataset"]["task_attributes"]["categories"][0]["id"] = 10**5000
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document, source="r.json")
    assert str(info.value) == (
        "r.json: dataset.task_attributes.categories[0].id: expected an integer, found an "
        "integer of 16610 bits"
    )


@pytest.mark.parametrize(
    ("number", "keys", "path", "expected"),
    [
        ("NaN", [*CATEGORY_1_KEYS, "id"], f"{CATEGORY_1}.id", "an integer, found NaN"),
        ("1e999", [*CATEGORY_1_KEYS, "id"], f"{CATEGORY_1}.id", "an integer, found Infinity"),
        (
            "Infinity",
            [*ANNOTATIONS, 0, "id"],
            f"{P0}[0].id",
            "an integer from 1 to 16777215, found Infinity",
        ),
        (
            "-Infinity",
            [*ANNOTATIONS, 0, "category_id"],
            f"{P0}[0].category_id",
            "one of the category ids (0, 1, 5), found -Infinity",
        ),
        (
            "NaN",
            [*CATEGORY_1_KEYS, "color", 0],
            f"{CATEGORY_1}.color",
            "null or a list of 3 or 4 integers from 0 to 255, found a list of 4 items",
        ),
    ],
)
def test_nan_and_infinity_where_integers_belong(tmp_path, number, keys, path, expected):
    document = current_release()
    set_in(document, keys, "PLACEHOLDER")
    file = tmp_path / "r.json"
    file.write_text(json.dumps(document).replace('"PLACEHOLDER"', number))
    with pytest.raises(ReleaseFormatError) as info:
        load_release(file)
    assert str(info.value) == f"{file}: {path}: expected {expected}"


def test_nan_infinity_and_huge_floats_in_metadata_load(tmp_path):
    file = tmp_path / "r.json"
    document = current_release()
    document["dataset"]["samples"][0]["metadata"] = {"a": "A", "b": "B", "c": "C"}
    text = json.dumps(document).replace('"A"', "NaN").replace('"B"', "-Infinity")
    file.write_text(text.replace('"C"', "1e999"))
    metadata = load_release(file).samples.metadata(0)
    assert metadata["a"] != metadata["a"]  # NaN
    assert (metadata["b"], metadata["c"]) == (float("-inf"), float("inf"))


def test_format_error_survives_pickling():
    error = ReleaseFormatError("a.json", "dataset.samples[0].name", "expected a string, found 1")
    copy_ = pickle.loads(pickle.dumps(error))
    assert (copy_.source, copy_.path, str(copy_)) == (error.source, error.path, str(error))


def test_unknown_labelset_lists_the_existing_ones():
    release = parse_release(
        current_release(labelsets=("ground-truth", "model-v2")), source="r.json"
    )
    with pytest.raises(UnknownLabelsetError) as info:
        release.labelset("gt")
    assert (
        str(info.value) == "r.json: no labelset 'gt'; the release has: 'ground-truth', 'model-v2'"
    )
    assert isinstance(info.value, ReleaseFormatError)


def test_no_default_labelset_among_several_tasks():
    document = tasks_release()
    second = copy.deepcopy(document["tasks"][0])
    second["name"] = "boxes"
    document["tasks"].append(second)
    release = parse_release(document, source="seed.json")
    assert release.labelset_names == ("segmentation", "boxes")
    with pytest.raises(UnknownLabelsetError) as info:
        release.samples.select(statuses="labeled")
    assert str(info.value) == (
        "seed.json: no labelset was named and there is no default; the release has: "
        "'segmentation', 'boxes'"
    )
    assert release.samples.select(labelset="segmentation", statuses="labeled").tolist() == [0]


def test_release_over_http(tmp_path, file_server):
    (tmp_path / "release.json.gz").write_bytes(
        gzip.compress(json.dumps(current_release()).encode())
    )
    url = file_server.url_for("release.json.gz", query="X-Amz-Signature=secret")
    release = load_release(url)
    assert release.source == file_server.url_for("release.json.gz")
    assert release.samples.record(0).annotation_ids.tolist() == [1, 2, 70000]


FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)


@pytest.fixture
def served(tmp_path, file_server):
    """The URL (with a signature) of a release the file server serves."""
    write_json(tmp_path, current_release())
    return file_server.url_for("release.json", query="X-Amz-Signature=secret")


@pytest.mark.parametrize(
    ("status", "reason", "requests"),
    [
        (403, "access denied (HTTP 403)", 1),
        (401, "access denied (HTTP 401)", 1),
        (404, "not found (HTTP 404)", 1),
        (500, "HTTP 500 Internal Server Error after 3 attempts", 3),
        (503, "HTTP 503 Service Unavailable after 3 attempts", 3),
        (429, "HTTP 429 Too Many Requests after 3 attempts", 3),
    ],
)
def test_http_failures_say_why_and_retry_what_may_pass(
    served, file_server, status, reason, requests
):
    file_server.fail("release.json", status, times=3)
    with pytest.raises(ReleaseReadError) as info:
        load_release(served, retry=FAST)
    url = file_server.url_for("release.json")
    assert str(info.value) == f"{url}: cannot read the release: {reason}"
    assert file_server.count("release.json") == requests
    assert isinstance(info.value.__cause__, StorageError)
    assert (info.value.__cause__.status, info.value.__cause__.attempts) == (status, requests)


@pytest.mark.parametrize("fault", ["fail", "drop", "truncate"])
def test_transient_http_failures_are_retried(served, file_server, fault):
    getattr(file_server, fault)("release.json", times=2)
    release = load_release(served, retry=FAST)
    assert release.samples.record(0).annotation_ids.tolist() == [1, 2, 70000]
    assert file_server.count("release.json") == 3


def test_dropped_connections_fail_after_every_attempt(served, file_server):
    file_server.drop("release.json", times=100)  # aiohttp itself retries some drops once
    with pytest.raises(ReleaseReadError) as info:
        load_release(served, retry=FAST)
    url = file_server.url_for("release.json")
    assert str(info.value) == (
        f"{url}: cannot read the release: ServerDisconnectedError: Server disconnected "
        "after 3 attempts"
    )


def test_refused_connection_is_retried_and_named(tmp_path):
    with FileServer(tmp_path) as server:
        url = server.url_for("release.json", query="sig=secret")
    # The server is gone: the port refuses connections.
    with pytest.raises(ReleaseReadError) as info:
        load_release(url, retry=FAST)
    message = str(info.value)
    assert message.startswith(f"{url.partition('?')[0]}: cannot read the release: ")
    assert message.endswith(" after 3 attempts")
    assert "Cannot connect to host 127.0.0.1" in message
    assert "secret" not in message


def test_a_stalled_server_times_out(served, file_server):
    file_server.stall("release.json", seconds=30, times=2)
    with pytest.raises(ReleaseReadError) as info:
        load_release(served, timeout=0.2, retry=RetryPolicy(attempts=2, base_delay=0.001))
    url = file_server.url_for("release.json")
    assert str(info.value) == f"{url}: cannot read the release: timed out after 2 attempts"
    assert file_server.count("release.json") == 2


def test_url_map_reads_the_release_from_a_mirror(tmp_path):
    write_json(tmp_path, current_release())
    url = "https://bucket.example/releases/release.json?sig=secret"
    release = load_release(url, url_map={"https://bucket.example/releases/": f"{tmp_path}/"})
    assert release.source == "https://bucket.example/releases/release.json"
    assert len(release.samples) == 4
    with pytest.raises(ReleaseReadError) as info:
        load_release(
            url.replace("release.json", "gone.json"),
            url_map={"https://bucket.example/releases/": f"{tmp_path}/"},
        )
    assert str(info.value) == (
        "https://bucket.example/releases/gone.json: cannot read the release from "
        f"{tmp_path}/gone.json: not found"
    )


def test_a_release_url_no_url_map_prefix_covers_says_so_when_it_fails():
    with pytest.raises(ReleaseReadError) as info:
        load_release(
            "memory://bucket/gone.json?sig=secret",
            url_map={"https://bucket.example/releases/": "/mirror/"},
        )
    assert str(info.value) == (
        "memory://bucket/gone.json: cannot read the release: not found; no url_map prefix "
        "matches this URL: https://bucket.example/releases/"
    )


def test_storage_options_per_protocol_or_for_the_source_alone(monkeypatch):
    """SegmentsDataset's form ({"memory": {...}}) and the earlier one (the source's
    protocol's options alone) reach the filesystem the same way."""
    seen: list[dict[str, Any]] = []
    real = fsspec.core.url_to_fs

    def url_to_fs(url: str, **options: Any) -> Any:
        seen.append(options)
        return real(url, **options)

    monkeypatch.setattr(fsspec.core, "url_to_fs", url_to_fs)
    with fsspec.open("memory://bucket/options.json", "wb") as f:
        f.write(json.dumps(current_release()).encode())
    url = "memory://bucket/options.json"
    load_release(url, storage_options={"memory": {"skip_instance_cache": True}})
    load_release(url, storage_options={"skip_instance_cache": True})
    load_release(url, storage_options={"s3": {"anon": True}})  # another protocol's: unused
    assert seen == [{"skip_instance_cache": True}, {"skip_instance_cache": True}, {}]


def test_a_release_is_read_through_a_given_storage(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(current_release()))
    storage = Storage(url_map={"https://bucket.example/releases/": f"{tmp_path}/"})
    release = load_release("https://bucket.example/releases/r.json?sig=secret", storage=storage)
    assert release.source == "https://bucket.example/releases/r.json"
    assert len(release.samples) == 4
    local = Storage(storage_options={"file": {"skip_instance_cache": True}})
    assert len(load_release(tmp_path / "r.json", storage=local).samples) == 4


def test_storage_and_its_keywords_together_are_refused(tmp_path):
    with pytest.raises(OptionError) as info:
        load_release(tmp_path / "r.json", storage=Storage(), timeout=5, retry=RetryPolicy())
    assert str(info.value) == (
        "load_release: storage= and timeout=, retry= given together; set them on the "
        "Storage: Storage(timeout=..., retry=...)"
    )


# -- properties: generated releases and their corruptions ----------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=8)
NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
#: A value of each JSON type, for replacing a field with a value of another type.
JSON_VALUES: dict[str, Any] = {
    "null": None,
    "bool": True,
    "int": 7,
    "float": 1.5,
    "string": "x",
    "list": [1],
    "object": {"a": 1},
}


def json_type(value: Any) -> str:
    for name, cls in (("bool", bool), ("int", int), ("float", float), ("string", str)):
        if isinstance(value, cls):
            return name
    return "list" if isinstance(value, list) else "object" if isinstance(value, dict) else "null"


@dataclass
class GeneratedRelease:
    """A generated release document and what its SampleTable must hold per labelset:
    for each sample, (status, bitmap URL or "", annotation ids, category ids)."""

    document: dict[str, Any]
    layout: Layout
    names: list[str]
    uuids: list[str]
    image_urls: list[str]
    labels: dict[str, list[tuple[str, str, list[int], list[int]]]]


@st.composite
def categories_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=4, unique=True))
    categories = []
    for category_id in ids:
        category: dict[str, Any] = {"id": category_id, "name": draw(NAME)}
        color = draw(
            st.none() | st.lists(st.integers(0, 255), min_size=3, max_size=4) | st.just("absent")
        )
        if color != "absent":
            category["color"] = color
        if draw(st.booleans()):
            category["has_instances"] = draw(st.booleans())
        categories.append(category)
    return categories


@st.composite
def generated_labels(
    draw: st.DrawFn, category_ids: list[int]
) -> tuple[Any, tuple[str, str, list[int], list[int]]]:
    """A label in any of its forms, and the row it must become."""
    if draw(st.integers(0, 4)) == 0:
        return None, ("UNLABELED", "", [], [])
    status = draw(st.sampled_from(LABEL_STATUSES))
    spelled = draw(st.sampled_from([status, status.lower(), status.title()]))
    form = draw(st.sampled_from(["full", "empty attributes", "null attributes"]))
    if form != "full":
        return {
            "label_status": spelled,
            "attributes": {} if form == "empty attributes" else None,
        }, (
            status,
            "",
            [],
            [],
        )
    ids = draw(st.lists(st.integers(1, 2**24 - 1), max_size=4, unique=True))
    categories = [draw(st.sampled_from(category_ids)) for _ in ids]
    url = draw(st.none() | TEXT)
    bitmap = draw(st.sampled_from(["object", "bare"])) if url is not None else "object"
    full: dict[str, Any] = {
        "format_version": "0.1",
        "annotations": [
            {"id": i, "category_id": c, "attributes": {}}
            for i, c in zip(ids, categories, strict=True)
        ],
        "segmentation_bitmap": {"url": url} if bitmap == "object" else url,
    }
    label_document = {
        "label_status": spelled,
        "label_type": "segmentation-bitmap",
        "attributes": full,
    }
    return label_document, (status, url or "", ids, categories)


@st.composite
def generated_releases(draw: st.DrawFn) -> GeneratedRelease:
    """A valid release in one of the three layouts (dataset.tasks as a dict or a list)."""
    layout, tasks_as = draw(
        st.sampled_from(
            [
                (Layout.LABELSETS, ""),
                (Layout.DATASET_TASKS, "dict"),
                (Layout.DATASET_TASKS, "list"),
                (Layout.TASKS, "list"),
            ]
        )
    )
    labelsets = draw(st.lists(NAME, min_size=1, max_size=2, unique=True))
    categories = draw(categories_lists())
    category_ids = [c["id"] for c in categories]
    task_types = st.sampled_from(sorted(BITMAP_TASK_TYPES - SEQUENCE_TASK_TYPES))
    names, uuids, urls = [], [], []
    rows: dict[str, list[tuple[str, str, list[int], list[int]]]] = {ls: [] for ls in labelsets}
    samples = []
    for _ in range(draw(st.integers(0, 5))):
        name, image_url = draw(TEXT), draw(TEXT)
        entry: dict[str, Any] = {
            "name": name,
            "data_type": "IMAGE",
            "attributes": {"image": {"url": image_url}},
            "labels": {},
        }
        uuid = ""
        if layout is not Layout.TASKS:
            uuid = draw(TEXT)
            entry["uuid"] = uuid
            if draw(st.booleans()):
                entry["metadata"] = draw(st.dictionaries(NAME, st.integers(), max_size=2))
        for labelset in labelsets:
            if draw(st.integers(0, 5)) == 0:  # no label in this labelset: UNLABELED
                rows[labelset].append(("UNLABELED", "", [], []))
                continue
            label_document, row = draw(generated_labels(category_ids))
            entry["labels"][labelset] = label_document
            rows[labelset].append(row)
        samples.append(entry)
        names.append(name)
        uuids.append(uuid)
        urls.append(image_url)

    def task(name: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "description": "",
            "task_type": draw(task_types),
            "attributes": {"format_version": "0.1", "categories": copy.deepcopy(categories)},
        }
        return body if name is None else {"name": name, **body}

    head = {"name": draw(TEXT), "description": draw(TEXT), "created_at": draw(TEXT)}
    document: dict[str, Any]
    if layout is Layout.LABELSETS:
        dataset = {
            "name": draw(TEXT),
            "owner": draw(st.sampled_from([{"username": "jane"}, "jane"])),
            "task_type": draw(task_types),
            "task_attributes": {"format_version": "0.1", "categories": categories},
            "labelsets": [{"name": ls, "description": ""} for ls in labelsets],
            "samples": samples,
        }
        document = {**head, "dataset": dataset}
    elif layout is Layout.DATASET_TASKS:
        tasks: Any = (
            {ls: task(None) for ls in labelsets}
            if tasks_as == "dict"
            else [task(ls) for ls in labelsets]
        )
        document = {**head, "dataset": {"name": draw(TEXT), "tasks": tasks, "samples": samples}}
    else:
        document = {**head, "tasks": [task(ls) for ls in labelsets], "samples": samples}
    return GeneratedRelease(document, layout, names, uuids, urls, rows)


@settings(max_examples=100, deadline=None)
@given(generated=generated_releases())
def test_generated_releases_load_into_exactly_their_samples(generated):
    data = json.dumps(generated.document).encode()
    release = load_release(io.BytesIO(data))
    assert release.layout is generated.layout
    assert release.labelset_names == tuple(generated.labels)
    table = release.samples
    assert list(table.names) == generated.names
    assert list(table.uuids) == generated.uuids
    assert list(table.image_urls) == generated.image_urls
    for labelset, rows in generated.labels.items():
        columns = table.label_columns(labelset)
        assert [LABEL_STATUSES[code] for code in columns.status] == [r[0] for r in rows]
        assert list(columns.bitmap_urls) == [r[1] for r in rows]
        for row, (_, _, annotation_ids, category_ids) in enumerate(rows):
            ids, categories = columns.annotations(row)
            assert (ids.tolist(), categories.tolist()) == (annotation_ids, category_ids)
            assert ids.dtype == categories.dtype == np.dtype(np.int32)


def json_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and indices) of ``value`` and of everything inside it."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from json_paths(item, (*path, index))


def rendered(path: tuple[Any, ...]) -> str:
    """A path as ReleaseFormatError.path writes it: ``dataset.samples[2].name``."""
    text = ""
    for key in path:
        text = f"{text}[{key}]" if isinstance(key, int) else f"{text}.{key}" if text else key
    return text


def field_kind(path: tuple[Any, ...]) -> str:
    """``path`` with its indices, and the names of labelsets, tasks and metadata keys,
    as ``*``: ``dataset.samples[*].labels.*.label_status``."""
    named = ("labels", "tasks", "metadata")
    return rendered(
        tuple(
            "*" if isinstance(key, int) or (i and path[i - 1] in named) else key
            for i, key in enumerate(path)
        )
    )


def is_ancestor_or_self(ancestor: str, path: str) -> bool:
    return ancestor in ("", path) or path.startswith((f"{ancestor}.", f"{ancestor}["))


#: Where a category, labelset or task is defined: removing one leaves references to it
#: dangling, reported where they are (a label's key, an annotation's category_id).
VOCABULARY = re.compile(r"(^|\.)(categories|labelsets|tasks)$")
REFERENCES = re.compile(r"\.labels$|\.annotations\[\d+\]\.category_id$")


@settings(max_examples=100, deadline=None)
@given(generated=generated_releases(), data=st.data())
def test_corrupted_releases_raise_format_errors_at_the_change(generated, data):
    document = copy.deepcopy(generated.document)
    # A kind of field first (its path without indices and names), then one of that kind:
    # every kind is tried alike, not mostly the annotations that outnumber the rest.
    kinds_of_field: dict[str, list[tuple[Any, ...]]] = {}
    for candidate in json_paths(document):
        kinds_of_field.setdefault(field_kind(candidate), []).append(candidate)
    shape = data.draw(st.sampled_from(sorted(kinds_of_field)), label="field")
    path = data.draw(st.sampled_from(kinds_of_field[shape]), label="path")
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    value = parent[path[-1]] if path else document
    kinds = ["replace"]
    if path and isinstance(path[-1], str):
        kinds.append("remove")
    if isinstance(value, list) and value:
        kinds.append("truncate")
    kind = data.draw(st.sampled_from(kinds), label="kind")
    changed = rendered(path)
    if kind == "replace":
        other = data.draw(st.sampled_from([t for t in JSON_VALUES if t != json_type(value)]))
        replacement = copy.deepcopy(JSON_VALUES[other])
        if path:
            parent[path[-1]] = replacement
        else:
            document = replacement
    elif kind == "remove":
        del parent[path[-1]]
    else:
        del value[data.draw(st.integers(0, len(value) - 1), label="kept") :]

    error = format_error(document)
    event(f"{kind}: {'ReleaseFormatError' if error else 'still valid'}")
    if error is None:  # still a valid release (an optional field, fewer samples)
        return
    assert error.source == "generated.json"
    where = f"generated.json: {error.path}" if error.path else "generated.json"
    assert str(error).startswith(f"{where}: ")
    # The error is at the changed field or around it, or inside the value put there; a
    # definition removed (a task's key, a shortened list of categories or labelsets) is
    # reported where it was referred to (a label's key, an annotation's category_id).
    within = kind == "replace" and is_ancestor_or_self(changed, error.path)
    removed = changed if kind == "truncate" else rendered(path[:-1])
    dangling = kind != "replace" and VOCABULARY.search(removed) is not None
    assert (
        is_ancestor_or_self(error.path, changed)
        or within
        or (dangling and REFERENCES.search(error.path) is not None)
    ), (kind, changed, error.path)


def format_error(document: Any) -> ReleaseFormatError | None:
    """The ReleaseFormatError that parsing ``document`` raises (any other exception
    propagates and fails the test), or None where it parses."""
    try:
        parse_release(document, source="generated.json")
    except ReleaseFormatError as error:
        return error
    return None


# -- vector labels --------------------------------------------------------------------------


def vector_release(annotations: list[dict[str, Any]], **label_extra: Any) -> dict[str, Any]:
    """A current-layout "vector" release of one sample with these annotations."""
    labelled = sample("a.jpg", {"ground-truth": label("LABELED", annotations)})
    document = current_release([labelled], task_type="vector")
    attributes = document["dataset"]["samples"][0]["labels"]["ground-truth"]["attributes"]
    attributes.pop("segmentation_bitmap")
    attributes.update(label_extra)
    return document


def shape(kind: str, points: Any, **fields: Any) -> dict[str, Any]:
    track, category = fields.pop("track_id", 1), fields.pop("category_id", 0)
    return {"track_id": track, "category_id": category, "type": kind, "points": points, **fields}


def test_vector_labels_keep_every_shape_columnar():
    document = vector_release(
        [
            shape("bbox", [[10.5, 8.0], [2.0, 20.0]], track_id=3),  # corners in any order
            shape(
                "polygon",
                [[0, 0], [4, 0], [4, 3.5]],
                track_id=4,
                category_id=1,
                attributes={"occluded": True},
            ),
            shape("polyline", [[1, 1], [2, 2.5]], track_id=7),
            {"id": 9, "category_id": 5, "type": "point", "points": [[6.25, 7]]},  # older: id
        ],
        image_attributes={"weather": "rain"},
    )
    columns = parse_release(document).samples.labels["ground-truth"]
    assert columns.annotation_ids.tolist() == [3, 4, 7, 9]
    assert columns.category_ids.tolist() == [0, 1, 0, 5]
    types, points, offsets = columns.shapes_of(0)
    assert [SHAPE_TYPES[t] for t in types] == ["bbox", "polygon", "polyline", "point"]
    assert offsets.tolist() == [0, 2, 5, 7, 8]
    assert points.dtype == np.float32
    assert points.tolist() == [
        [2.0, 8.0], [10.5, 20.0], [0, 0], [4, 0], [4, 3.5], [1, 1], [2, 2.5], [6.25, 7]
    ]  # fmt: skip
    assert columns.shapes is not None
    assert list(columns.shapes.attributes_json) == ["", '{"occluded":true}', "", ""]
    assert columns.shapes.image_attributes_json[0] == '{"weather":"rain"}'
    assert parse_release(current_release()).samples.labels["ground-truth"].shapes is None


ANNOTATION = "dataset.samples[0].labels.ground-truth.attributes.annotations[0]"
A_SHAPE = "expected a shape type (bbox, polygon, polyline, point), found"
A_POINT = "expected a point [x, y] of two finite numbers, found a list of"


@pytest.mark.parametrize(
    ("annotation", "where", "message"),
    [
        (
            {"track_id": 1, "category_id": 0, "points": [[0, 0], [1, 1]]},
            "type",
            f"{A_SHAPE} nothing (the field is missing)",
        ),
        (shape("circle", [[0, 0]]), "type", f'{A_SHAPE} "circle"'),
        (shape("bbox", "0,0,1,1"), "points", 'expected a list of [x, y] points, found "0,0,1,1"'),
        (shape("bbox", [[0, 0], [1]]), "points[1]", f"{A_POINT} 1 items"),
        (shape("bbox", [[0, 0], [1, "2"]]), "points[1]", f"{A_POINT} 2 items"),
        (shape("bbox", [[0, 0], [1, float("nan")]]), "points[1]", f"{A_POINT} 2 items"),
        (
            shape("bbox", [[0, 0]]),
            "points",
            "expected 2 points for a bbox, found a list of 1 items",
        ),
        (
            shape("polygon", [[0, 0], [1, 1]]),
            "points",
            "expected at least 3 points for a polygon, found a list of 2 items",
        ),
        (
            shape("polyline", [[0, 0]]),
            "points",
            "expected at least 2 points for a polyline, found a list of 1 items",
        ),
        (
            shape("point", [[0, 0], [1, 1]]),
            "points",
            "expected 1 points for a point, found a list of 2 items",
        ),
        (
            shape("point", [[0, 0]], attributes=[1]),
            "attributes",
            "expected an object or null, found a list of 1 items",
        ),
    ],
    ids=[
        "no-type",
        "unknown-type",
        "points-a-string",
        "short-point",
        "string-coordinate",
        "nan",
        "bbox-of-1",
        "polygon-of-2",
        "polyline-of-1",
        "point-of-2",
        "attributes-a-list",
    ],
)
def test_bad_shapes_are_named_by_their_path(annotation, where, message):
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(vector_release([annotation]))
    assert info.value.path == f"{ANNOTATION}.{where}"
    assert info.value.detail == message


def test_bad_image_attributes_are_named_by_their_path():
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(vector_release([shape("point", [[0, 0]])], image_attributes="sunny"))
    assert info.value.path == "dataset.samples[0].labels.ground-truth.attributes.image_attributes"


LINKS = "dataset.samples[0].labels.ground-truth.attributes.links"
TWO_SHAPES = [shape("point", [[0, 0]], track_id=3), shape("point", [[1, 1]], track_id=8)]


def test_links_are_kept_as_json_text():
    links = [{"from_id": 3, "to_id": 8, "attributes": {"relation": "holds"}}]
    columns = parse_release(vector_release(TWO_SHAPES, links=links)).samples.labels
    shapes = columns["ground-truth"].shapes
    assert shapes is not None
    assert shapes.links_json[0] == '[{"from_id":3,"to_id":8,"attributes":{"relation":"holds"}}]'
    empty = parse_release(vector_release(TWO_SHAPES, links=[])).samples.labels["ground-truth"]
    assert empty.shapes is not None
    assert empty.shapes.links_json[0] == ""


@pytest.mark.parametrize(
    ("links", "where", "message"),
    [
        ({"from_id": 3}, "", "expected a list of links or null, found an object"),
        (["3-8"], "[0]", 'expected an object, found "3-8"'),
        (
            [{"to_id": 8}],
            "[0].from_id",
            "expected the track id of an annotation of this label, found nothing (the field "
            "is missing)",
        ),
        (
            [{"from_id": 3, "to_id": 9}],
            "[0].to_id",
            "expected the track id of an annotation of this label, found 9",
        ),
        (
            [{"from_id": 3, "to_id": 8}, {"from_id": "3", "to_id": 8}],
            "[1].from_id",
            'expected the track id of an annotation of this label, found "3"',
        ),
        (
            [{"from_id": 3, "to_id": 8, "attributes": "near"}],
            "[0].attributes",
            'expected an object or null, found "near"',
        ),
    ],
    ids=["an-object", "a-string", "no-from", "unknown-to", "string-id", "bad-attributes"],
)
def test_bad_links_are_named_by_their_path(links, where, message):
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(vector_release(TWO_SHAPES, links=links))
    assert (info.value.path, info.value.detail) == (f"{LINKS}{where}", message)


# -- sequences ------------------------------------------------------------------------------


def box(track_id: int, x: float, **fields: Any) -> dict[str, Any]:
    """A bbox annotation of a vector sequence frame."""
    return shape("bbox", [[x, 1.0], [x + 4, 5.0]], track_id=track_id, **fields)


def vector_sequences() -> dict[str, Any]:
    """Two vector sequences: three named frames with timestamps, two frames without."""
    return sequence_release(
        [
            sequence_sample(
                "walk",
                [
                    {"name": "f0.jpg", "timestamp": 0},
                    {"name": "f1.jpg", "timestamp": "2024-06-07T12:00:00.1Z"},
                    {"name": "f2.jpg", "timestamp": None},
                ],
                [
                    {"annotations": [box(7, 0, is_keyframe=True), box(9, 10)]},
                    {"annotations": [box(7, 2)], "image_attributes": {"light": "dim"}},
                    {"annotations": [], "timestamp": 2},
                ],
                metadata={"split": "train"},
            ),
            sequence_sample(
                "drift",
                [{}, {}],
                [{"annotations": [box(3, 20)]}, {"annotations": [box(3, 21)]}],
                status="REVIEWED",
            ),
        ]
    )


def test_a_sequence_release_has_one_row_per_frame():
    table = parse_release(vector_sequences()).samples
    assert list(table.names) == ["walk/f0.jpg", "walk/f1.jpg", "walk/f2.jpg", "drift/0", "drift/1"]
    assert list(table.uuids) == ["uuid-walk"] * 3 + ["uuid-drift"] * 2
    assert list(table.image_urls) == [
        "https://cdn.example/walk/0.jpg",
        "https://cdn.example/walk/1.jpg",
        "https://cdn.example/walk/2.jpg",
        "https://cdn.example/drift/0.jpg",
        "https://cdn.example/drift/1.jpg",
    ]
    assert list(table.metadata_json) == ['{"split":"train"}'] * 3 + [""] * 2
    sequences = table.sequences
    assert sequences is not None
    assert sequences.offsets.tolist() == [0, 3, 5]
    assert sequences.sequence.tolist() == [0, 0, 0, 1, 1]
    assert sequences.frame_index.tolist() == [0, 1, 2, 0, 1]
    assert list(sequences.frame_names) == ["f0.jpg", "f1.jpg", "f2.jpg", "", ""]
    assert list(sequences.timestamps) == ["0", "2024-06-07T12:00:00.1Z", "", "", ""]
    assert list(sequences.sample_names) == ["walk", "drift"]
    columns = table.labels["ground-truth"]
    assert columns.status_counts() == {"LABELED": 3, "REVIEWED": 2}
    assert columns.annotation_offsets.tolist() == [0, 2, 3, 3, 4, 5]
    assert columns.annotation_ids.tolist() == [7, 9, 7, 3, 3]  # track ids
    assert columns.track_ids is None
    types, points, _ = columns.shapes_of(1)
    assert types.tolist() == [0]
    assert points.tolist() == [[2.0, 1.0], [6.0, 5.0]]
    assert columns.shapes is not None
    assert list(columns.shapes.image_attributes_json) == ["", '{"light":"dim"}', "", "", ""]
    record = table.record(4)
    assert (record.name, record.sequence, record.frame_index) == ("drift/1", 1, 1)
    assert parse_release(current_release()).samples.sequences is None
    assert parse_release(current_release()).samples.record(0).sequence is None


def bitmap_frame(*annotations: dict[str, Any], bitmap: str = "b.png") -> dict[str, Any]:
    return {"annotations": list(annotations), "segmentation_bitmap": {"url": bitmap}}


def test_a_segmentation_sequence_keeps_frame_ids_and_track_ids():
    tracked = [
        bitmap_frame(
            {"id": 1, "category_id": 0, "track_id": 12}, {"id": 2, "category_id": 1, "track_id": 5}
        ),
        bitmap_frame({"id": 1, "category_id": 1, "track_id": 5, "is_keyframe": False}),
        bitmap_frame({"id": 4, "category_id": 0}, bitmap="c.png"),  # no track_id: its id
    ]
    document = sequence_release(
        [
            sequence_sample("walk", [{}, {}, {}], tracked),
            sequence_sample("empty", [{}, {}], None),
        ],
        task_type="image-segmentation-sequence",
    )
    columns = parse_release(document).samples.labels["ground-truth"]
    assert columns.annotation_ids.tolist() == [1, 2, 1, 4]
    assert columns.track_ids is not None
    assert columns.track_ids.tolist() == [12, 5, 5, 4]
    assert columns.annotation_offsets.tolist() == [0, 2, 3, 4, 4, 4]
    assert list(columns.bitmap_urls) == ["b.png", "b.png", "c.png", "", ""]
    assert [LABEL_STATUSES[s] for s in columns.status] == ["LABELED"] * 3 + ["UNLABELED"] * 2


FRAMES = "dataset.samples[0].labels.ground-truth.attributes.frames"


def set_label_frame(index: int, **fields: Any) -> Any:
    def edit(document: dict[str, Any]) -> None:
        frames = document["dataset"]["samples"][0]["labels"]["ground-truth"]["attributes"]
        frames["frames"][index].update(fields)

    return edit


def edit_sample(index: int, edit: Any) -> Any:
    def apply(document: dict[str, Any]) -> None:
        edit(document["dataset"]["samples"][index])

    return apply


@pytest.mark.parametrize(
    ("edit", "path", "detail"),
    [
        (
            edit_sample(0, lambda s: s["labels"]["ground-truth"]["attributes"]["frames"].pop()),
            FRAMES,
            "expected a list of 3 frames (one per sample frame), found a list of 2 items",
        ),
        (
            edit_sample(1, lambda s: s["labels"]["ground-truth"]["attributes"].pop("frames")),
            "dataset.samples[1].labels.ground-truth.attributes.frames",
            "expected a list of 2 frames (one per sample frame), found nothing (the field is "
            "missing)",
        ),
        (
            edit_sample(0, lambda s: s["attributes"]["frames"][1]["image"].pop("url")),
            "dataset.samples[0].attributes.frames[1].image.url",
            "expected a string, found nothing (the field is missing)",
        ),
        (
            edit_sample(1, lambda s: s["attributes"].pop("frames")),
            "dataset.samples[1].attributes.frames",
            "expected a list, found nothing (the field is missing)",
        ),
        (
            edit_sample(0, lambda s: s["attributes"]["frames"].__setitem__(2, "f2.jpg")),
            "dataset.samples[0].attributes.frames[2]",
            'expected an object, found "f2.jpg"',
        ),
        (
            edit_sample(0, lambda s: s["attributes"]["frames"][0].update(timestamp=True)),
            "dataset.samples[0].attributes.frames[0].timestamp",
            "expected a string, an integer or null, found true",
        ),
        (
            edit_sample(0, lambda s: s["attributes"]["frames"][0].update(name=3)),
            "dataset.samples[0].attributes.frames[0].name",
            "expected a string or null, found 3",
        ),
        (
            set_label_frame(1, annotations=[box(7, 0, is_keyframe="yes")]),
            f"{FRAMES}[1].annotations[0].is_keyframe",
            'expected true or false, found "yes"',
        ),
        (
            set_label_frame(2, annotations=[shape("polygon", [[0, 0], [1, 1]])]),
            f"{FRAMES}[2].annotations[0].points",
            "expected at least 3 points for a polygon, found a list of 2 items",
        ),
        (
            edit_sample(
                1,
                lambda s: s["labels"]["ground-truth"]["attributes"]["frames"][1].update(
                    annotations=[box(3, 21, category_id=8)]
                ),
            ),
            "dataset.samples[1].labels.ground-truth.attributes.frames[1].annotations[0]"
            ".category_id",
            "expected one of the category ids (0, 1, 5), found 8",
        ),
        (
            set_label_frame(1, annotations=[box(7, 0), box(7, 2)]),
            f"{FRAMES}[1].annotations[1].id",
            "expected an id no other annotation of this label has, found 7 "
            "(annotations[0] has it too)",
        ),
        (
            edit_sample(
                0, lambda s: s["labels"]["ground-truth"]["attributes"]["frames"].__setitem__(1, [])
            ),
            f"{FRAMES}[1]",
            "expected an object, found a list of 0 items",
        ),
    ],
    ids=[
        "fewer-label-frames",
        "no-label-frames",
        "frame-without-image-url",
        "sample-without-frames",
        "frame-not-an-object",
        "timestamp-a-bool",
        "frame-name-a-number",
        "is-keyframe-a-string",
        "bad-points-in-a-frame",
        "unknown-category-in-a-later-sequence",
        "a-track-twice-in-a-frame",
        "label-frame-not-an-object",
    ],
)
def test_bad_sequences_are_named_by_their_path(edit, path, detail):
    document = vector_sequences()
    edit(document)
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document)
    assert (info.value.path, info.value.detail) == (path, detail)


@pytest.mark.parametrize(
    ("annotations", "where", "detail"),
    [
        (
            [{"id": 1, "category_id": 0, "track_id": 0}],
            "annotations[0].track_id",
            "expected an integer from 1 to 16777215, found 0",
        ),
        (
            [
                {"id": 1, "category_id": 0, "track_id": 5},
                {"id": 2, "category_id": 0, "track_id": 5},
            ],
            "annotations[1].track_id",
            "expected a track id no other annotation of this label has, found 5 "
            "(annotations[0] has it too)",
        ),
        (
            [{"id": 1, "category_id": 0, "is_keyframe": 1}],
            "annotations[0].is_keyframe",
            "expected true or false, found 1",
        ),
    ],
    ids=["track-id-zero", "a-track-twice-in-a-frame", "is-keyframe-a-number"],
)
def test_bad_segmentation_sequence_tracks_are_named_by_their_path(annotations, where, detail):
    frames = [bitmap_frame({"id": 1, "category_id": 0, "track_id": 5}), bitmap_frame(*annotations)]
    document = sequence_release(
        [sequence_sample("walk", [{}, {}], frames)], task_type="image-segmentation-sequence"
    )
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document)
    assert (info.value.path, info.value.detail) == (f"{FRAMES}[1].{where}", detail)


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda s: s.update(name="seq-\ud800"), "dataset.samples[1].name"),
        (lambda s: s["attributes"]["frames"][1].update(name="\udc00"), "attributes.frames[1].name"),
        (
            lambda s: s["attributes"]["frames"][1]["image"].update(url="\ud800.jpg"),
            "attributes.frames[1].image.url",
        ),
    ],
    ids=["sample-name", "frame-name", "frame-image-url"],
)
def test_lone_surrogates_in_sequences_are_named_by_their_path(edit, path):
    document = vector_sequences()
    edit(document["dataset"]["samples"][1])
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document)
    expected = path if path.startswith("dataset") else f"dataset.samples[1].{path}"
    assert info.value.path == expected
    assert "a lone surrogate" in info.value.detail


def test_a_bad_bitmap_url_in_a_frame_is_named_by_its_path():
    frames = [bitmap_frame(), {"segmentation_bitmap": {"url": "\ud800.png"}}]
    document = sequence_release(
        [sequence_sample("walk", [{}, {}], frames)], task_type="image-segmentation-sequence"
    )
    with pytest.raises(ReleaseFormatError) as info:
        parse_release(document)
    assert info.value.path == f"{FRAMES}[1].segmentation_bitmap.url"
