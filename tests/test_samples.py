from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segments_torch import SelectionError, UnknownLabelsetError, parse_release
from segments_torch.samples import LABEL_STATUSES, SampleTable, StringColumn, status_codes
from tests.releases import annotation, current_release, label, sample


@pytest.fixture
def table() -> SampleTable:
    release = parse_release(current_release(labelsets=("ground-truth", "model")))
    return release.samples


@given(st.lists(st.text()))
def test_string_column_round_trip(strings):
    column = StringColumn.from_strings(strings)
    assert len(column) == len(strings)
    assert list(column) == strings
    assert column.offsets.dtype == np.int64
    assert column.buffer.dtype == np.uint8


def test_string_column_bytes():
    column = StringColumn.from_strings(["ab", "", "ü"])
    assert column.buffer.tobytes() == b"ab\xc3\xbc"
    assert column.offsets.tolist() == [0, 2, 2, 4]
    assert column.nbytes == 4 + 4 * 8


def test_select_by_status_is_case_insensitive(table):
    assert table.select(statuses=["LABELED", "REVIEWED"]).tolist() == [0, 1]
    assert table.select(statuses=["labeled", "Reviewed"]).tolist() == [0, 1]
    assert table.select(statuses="skipped").tolist() == [3]
    assert table.select(statuses="UNLABELED").tolist() == [2]
    assert table.select().tolist() == [0, 1, 2, 3]
    assert table.select(statuses=[]).tolist() == []
    assert table.select().dtype == np.int64


def test_select_by_labelset(table):
    assert table.select(labelset="model", statuses="unlabeled").tolist() == [0, 1, 2, 3]
    assert table.select(labelset="model", statuses="labeled").tolist() == []
    with pytest.raises(UnknownLabelsetError, match="no labelset 'modle'; the release has: "):
        table.select(labelset="modle")


def test_select_by_metadata_like_the_sdk(table):
    # Key/value pairs must all match; samples without metadata never pass a filter.
    assert table.select(metadata={"split": "train"}).tolist() == [0, 3]
    assert table.select(metadata={"split": "train", "weather": "sun"}).tolist() == [0]
    assert table.select(metadata={"split": "test"}).tolist() == []
    assert table.select(metadata={"weather": None}).tolist() == []
    assert table.select(statuses="labeled", metadata={"split": "train"}).tolist() == [0]
    assert table.select(metadata={}).tolist() == [0, 1, 2, 3]


def test_select_by_metadata_compares_json_values():
    samples = [
        sample("a.jpg", {"ground-truth": None}, metadata={"n": 1, "tags": ["x"], "ok": True}),
        sample("b.jpg", {"ground-truth": None}, metadata={"n": "1", "tags": ["y"]}),
    ]
    table = parse_release(current_release(samples)).samples
    assert table.select(metadata={"n": 1}).tolist() == [0]
    assert table.select(metadata={"n": "1"}).tolist() == [1]
    assert table.select(metadata={"tags": ["y"]}).tolist() == [1]
    assert table.select(metadata={"ok": True}).tolist() == [0]
    assert table.metadata(0) == {"n": 1, "tags": ["x"], "ok": True}


def test_unknown_status_is_named():
    with pytest.raises(SelectionError) as info:
        status_codes(["labeled", "DONE"])
    assert (
        str(info.value)
        == f"unknown label status 'DONE'; expected one of {', '.join(LABEL_STATUSES)}"
    )


def test_record_and_label_columns(table):
    record = table.record(0)
    assert (record.row, record.uuid, record.name, record.labelset) == (
        0,
        "uuid-a.jpg",
        "a.jpg",
        "ground-truth",
    )
    assert record.metadata == {"split": "train", "weather": "sun"}
    columns = table.label_columns("ground-truth")
    assert columns.annotation_offsets.tolist() == [0, 3, 4, 4, 4]
    assert columns.annotation_ids.tolist() == [1, 2, 70000, 3]
    assert columns.category_ids.tolist() == [0, 1, 1, 5]
    ids, categories = columns.annotations(1)
    assert (ids.tolist(), categories.tolist()) == ([3], [5])
    assert table.record(0, "model").status == "UNLABELED"


def test_category_counts_count_samples_once():
    samples = [
        sample("a.jpg", {"ground-truth": label("LABELED", [annotation(i, 1) for i in (1, 2, 3)])}),
        sample("b.jpg", {"ground-truth": label("LABELED", [annotation(1, 1), annotation(2, 0)])}),
    ]
    columns = parse_release(current_release(samples)).samples.label_columns()
    assert columns.category_counts() == {0: (1, 1), 1: (4, 2)}
    # Of some rows only (segments-torch info counts the selected statuses).
    assert columns.category_counts(np.array([1])) == {0: (1, 1), 1: (1, 1)}
    assert columns.category_counts(np.array([0])) == {1: (3, 1)}
    assert columns.category_counts(np.array([], dtype=np.int64)) == {}


def test_an_empty_selection_says_why(table):
    source = table.source
    counts = "4 samples (UNLABELED 1, LABELED 1, REVIEWED 1, SKIPPED 1)"
    assert table.empty_selection(statuses=["verified", "Rejected", "VERIFIED"]) == (
        f"{source}: no sample selected: labelset 'ground-truth' has {counts} and the label "
        "statuses kept are VERIFIED, REJECTED"
    )
    assert table.empty_selection(statuses="labeled", metadata={"split": "test"}) == (
        f"{source}: no sample selected: labelset 'ground-truth' has {counts} and the label "
        "statuses kept are LABELED; of those 1 sample, none has metadata {'split': 'test'}"
    )
    assert table.empty_selection(labelset="model", metadata={"split": "x"}) == (
        f"{source}: no sample selected: labelset 'model' has 4 samples (UNLABELED 4); of "
        "those 4 samples, none has metadata {'split': 'x'}"
    )
    empty = parse_release(current_release([])).samples
    assert empty.empty_selection() == (
        f"{source}: no sample selected: labelset 'ground-truth' has no sample"
    )


def test_table_pickles_as_buffers(table):
    copy = pickle.loads(pickle.dumps(table, protocol=5))
    assert list(copy.names) == list(table.names)
    assert copy.labelsets == ("ground-truth", "model")
    assert copy.record(0).annotation_ids.tolist() == [1, 2, 70000]
    assert copy.source == table.source
    # A table is a few arrays, not one object per sample.
    assert len(pickle.dumps(table, protocol=5)) < table.nbytes + 3000
