"""Tests of the bundled demo releases: the files are what scripts/make_demo_release.py
makes, and every vector shape covers what the bitmap release draws."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np

from segments_torch import SegmentsDataset
from segments_torch.demo import RELEASE_PATH, VECTOR_RELEASE_PATH

SCRIPT = Path(__file__).parent.parent / "scripts" / "make_demo_release.py"


def test_the_release_files_are_what_the_script_writes(tmp_path):
    runpy.run_path(str(SCRIPT), run_name="demo")["main"](["--out", str(tmp_path)])
    for name in ("release.json", "vector.json", "README.md"):
        assert (tmp_path / name).read_text() == RELEASE_PATH.with_name(name).read_text(), name


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
