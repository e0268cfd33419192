"""Tests of the bundled demo releases: the files are what scripts/make_demo_release.py
makes, and every vector shape covers what the bitmap release draws."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np

from segments_torch import SegmentsDataset, load_release
from segments_torch.demo import (
    RELEASE_PATH,
    SEGMENTATION_SEQUENCE_RELEASE_PATH,
    SEQUENCE_RELEASE_PATH,
    VECTOR_RELEASE_PATH,
)

SCRIPT = Path(__file__).parent.parent / "scripts" / "make_demo_release.py"


def test_the_release_files_are_what_the_script_writes(tmp_path):
    runpy.run_path(str(SCRIPT), run_name="demo")["main"](["--out", str(tmp_path)])
    names = ("release.json", "vector.json", "sequence.json", "segmentation-sequence.json")
    for name in (*names, "README.md"):
        assert (tmp_path / name).read_text() == RELEASE_PATH.with_name(name).read_text(), name
    for folder in ("images", "bitmaps", "frames"):
        written = sorted(path.name for path in (tmp_path / folder).iterdir())
        bundled = sorted(path.name for path in (RELEASE_PATH.parent / folder).iterdir())
        assert written == bundled, folder


def test_the_vector_release_has_every_shape_type():
    document = json.loads(VECTOR_RELEASE_PATH.read_text())
    assert document["dataset"]["task_type"] == "vector"
    types = {
        annotation["type"]
        for sample in document["dataset"]["samples"]
        for label in sample["labels"].values()
        if label is not None
        for annotation in label["attributes"]["annotations"]
    }
    assert types == {"bbox", "polygon", "polyline", "point"}


def test_vector_masks_agree_with_the_bitmaps_where_shapes_are_not_covered():
    # Same images, same ids: a shape's mask holds its visible bitmap pixels.
    bitmaps = SegmentsDataset(RELEASE_PATH)
    shapes = SegmentsDataset(VECTOR_RELEASE_PATH)
    assert bitmaps.rows.tolist() == shapes.rows.tolist()
    checked = 0
    for index in range(len(bitmaps)):
        _, drawn = bitmaps[index]
        _, outlined = shapes[index]
        for instance_id, mask in zip(outlined["instance_ids"], outlined["masks"], strict=True):
            rows = np.flatnonzero(drawn["instance_ids"].numpy() == int(instance_id))
            if not len(rows):  # shapes-004's square 9 has no annotation in the bitmap release
                continue
            visible = drawn["masks"][rows[0]].bool()
            inside = (mask.bool() & visible).sum() / visible.sum()
            assert inside > 0.95, (index, int(instance_id), float(inside))
            checked += 1
    assert checked == 20


def test_the_sequence_releases_are_two_sequences_of_four_frames():
    vector = load_release(SEQUENCE_RELEASE_PATH)
    bitmaps = load_release(SEGMENTATION_SEQUENCE_RELEASE_PATH)
    assert (vector.task_type, bitmaps.task_type) == (
        "image-vector-sequence",
        "image-segmentation-sequence",
    )
    for release in (vector, bitmaps):
        table = release.samples
        assert table.sequences is not None
        assert list(table.sequences.sample_names) == ["walk", "drift"]
        assert table.sequences.offsets.tolist() == [0, 4, 8]
        assert list(table.image_urls)[:2] == ["frames/walk-0.jpg", "frames/walk-1.jpg"]
    # drift's circle (track 3) leaves the view in its last frame: the square (track 5)
    # is bitmap id 2 before, 1 there.
    columns = bitmaps.samples.labels["ground-truth"]
    assert columns.track_ids is not None
    assert columns.annotation_ids[columns.annotation_offsets[4] :].tolist() == [1, 2] * 3 + [1]
    assert columns.track_ids[columns.annotation_offsets[4] :].tolist() == [3, 5] * 3 + [5]
    assert vector.samples.labels["ground-truth"].annotation_ids.tolist() == (
        [7, 12] * 4 + [3, 5] * 3 + [5]
    )
