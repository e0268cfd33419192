"""examples/evaluate.py: pycocotools and torchmetrics scores of predictions against the
demo release, with expected values worked out by hand for perturbed predictions."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from segments_torch import SegmentsDataset
from segments_torch.demo import RELEASE_PATH
from segments_torch.export import export_dataset
from tests.test_examples_training import EXAMPLES, load_example

pytest.importorskip("pycocotools")
pytest.importorskip("torchmetrics")

CIRCLE, SQUARE = 0, 1  # the demo's category ids (and training labels by default)


@pytest.fixture(scope="module")
def evaluate() -> Any:
    return load_example("evaluate")


class Demo:
    """The demo release's datasets, its ground truth export and perfect predictions."""

    def __init__(self, evaluate: Any, out: Path, categories: Any = None) -> None:
        self.instances = SegmentsDataset(RELEASE_PATH, categories=categories)
        self.semantics = SegmentsDataset(RELEASE_PATH, target="semantic", categories=categories)
        self.gt_path = export_dataset(self.instances, "coco-instance", out, progress=False)
        self.gt = json.loads(self.gt_path.read_text())
        self.results = evaluate.ground_truth_results(self.instances)
        self.evaluate = evaluate

    def scores(self, results: list[dict[str, Any]]) -> tuple[dict[str, float], Any]:
        """Both ways: COCOeval's figures and torchmetrics'."""
        checked = self.evaluate.check_results(copy.deepcopy(results), self.gt)
        coco = self.evaluate.coco_eval(self.gt_path, checked)
        return coco, self.evaluate.torchmetrics_scores(self.instances, self.semantics, checked)

    def label_pixels(self) -> Counter[int]:
        """Pixels of each training label over the semantic targets (ignore left out)."""
        counts: Counter[int] = Counter()
        for i in range(len(self.semantics)):
            semantic = self.semantics[i][1]["semantic"]
            counts.update(semantic[semantic != self.semantics.ignore_index].tolist())
        return counts


@pytest.fixture(scope="module")
def demo(evaluate: Any, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return Demo(evaluate, tmp_path_factory.mktemp("gt"))


def _area(result: dict[str, Any]) -> int:
    from pycocotools import mask

    return int(mask.area(result["segmentation"]))


def test_ground_truth_predictions_are_the_exported_annotations(demo):
    assert len(demo.results) == len(demo.gt["annotations"]) == 24
    assert sorted(
        (r["image_id"], r["category_id"], r["segmentation"]["counts"], r["score"])
        for r in demo.results
    ) == sorted(
        (a["image_id"], a["category_id"], a["segmentation"]["counts"], 1.0)
        for a in demo.gt["annotations"]
    )


def test_ground_truth_scores_one_both_ways(demo):
    coco, metrics = demo.scores(demo.results)
    for name in ("AP", "AP50", "AP75", "AR10", "AR100"):
        assert coco[name] == 1.0, name
    for name in ("map", "map_50", "map_75", "mar_100"):
        assert metrics.map[name] == pytest.approx(1.0, abs=1e-12), name
    assert metrics.miou == 1.0
    assert metrics.iou == [1.0, 1.0, 1.0, 1.0]


def test_one_dropped_instance_scores_what_coco_says(demo):
    # The demo has 8 circles, 6 squares, 6 triangles, 4 grass regions.
    assert Counter(a["category_id"] for a in demo.gt["annotations"]) == {0: 8, 1: 6, 2: 6, 3: 4}
    dropped = next(r for r in demo.results if r["category_id"] == CIRCLE)
    results = [r for r in demo.results if r is not dropped]
    coco, metrics = demo.scores(results)
    # Circles: 7 of 8 found, all at precision 1, so recall tops out at 0.875 and 88 of
    # COCO's 101 recall thresholds (0.00 ... 0.87) see precision 1, the rest 0. Masks are
    # exact, so every IoU threshold agrees; the other three categories score 1.
    expected_ap = (88 / 101 + 3) / 4
    for name in ("AP", "AP50", "AP75"):
        assert coco[name] == pytest.approx(expected_ap, abs=1e-12), name
    assert coco["AR100"] == pytest.approx((7 / 8 + 3) / 4, abs=1e-12)
    assert metrics.map["map"] == pytest.approx(expected_ap, abs=1e-6)
    assert metrics.map["mar_100"] == pytest.approx((7 / 8 + 3) / 4, abs=1e-6)
    # The dropped circle's pixels are predicted as nothing: missed circle pixels.
    circle_pixels = demo.label_pixels()[CIRCLE]
    missed = _area(dropped)
    assert 0 < missed < circle_pixels
    circle_iou = (circle_pixels - missed) / circle_pixels
    assert metrics.iou == pytest.approx([circle_iou, 1.0, 1.0, 1.0], abs=1e-6)
    assert metrics.miou == pytest.approx((circle_iou + 3) / 4, abs=1e-6)


def test_scores_rank_predictions_and_paint_in_score_order(demo):
    circle = next(r for r in demo.results if r["category_id"] == CIRCLE)
    wrong = {**circle, "category_id": SQUARE}  # a circle's mask called a square
    truth = [{**r, "score": 0.9} for r in demo.results]

    # Ranked below every right answer: precision stays 1 up to full recall, and the
    # right label paints over the wrong one.
    coco, metrics = demo.scores([*truth, {**wrong, "score": 0.5}])
    assert coco["AP"] == 1.0
    assert metrics.map["map"] == pytest.approx(1.0, abs=1e-12)
    assert metrics.miou == 1.0

    # Ranked first: squares' precision is k / (k + 1) after k of their 6, so the
    # interpolated precision is 6/7 at every recall threshold; the wrong label now
    # paints the circle's pixels.
    coco, metrics = demo.scores([*truth, {**wrong, "score": 1.0}])
    expected_ap = (1 + 6 / 7 + 1 + 1) / 4
    assert coco["AP"] == pytest.approx(expected_ap, abs=1e-12)
    assert metrics.map["map"] == pytest.approx(expected_ap, abs=1e-6)
    pixels, area = demo.label_pixels(), _area(circle)
    circle_iou = (pixels[CIRCLE] - area) / pixels[CIRCLE]
    square_iou = pixels[SQUARE] / (pixels[SQUARE] + area)
    assert metrics.iou == pytest.approx([circle_iou, square_iou, 1.0, 1.0], abs=1e-6)
    assert metrics.miou == pytest.approx((circle_iou + square_iou + 2) / 4, abs=1e-6)


def test_no_predictions_score_zero(demo):
    coco, metrics = demo.scores([])
    assert coco["AP"] == 0.0
    assert coco["AR100"] == 0.0
    assert metrics.miou == 0.0
    assert metrics.iou == [0.0, 0.0, 0.0, 0.0]


def test_training_labels_are_not_category_ids(evaluate, tmp_path):
    # Labels square 0, circle 1 (the reverse of the category ids), triangle and grass left
    # out: predictions carry category ids, the metrics map them back to labels.
    demo = Demo(evaluate, tmp_path, categories=["square", "circle"])
    assert sorted(c["id"] for c in demo.gt["categories"]) == [CIRCLE, SQUARE]
    assert Counter(r["category_id"] for r in demo.results) == {CIRCLE: 8, SQUARE: 6}
    coco, metrics = demo.scores(demo.results)
    assert coco["AP"] == 1.0
    assert metrics.map["map"] == pytest.approx(1.0, abs=1e-12)
    assert metrics.iou == [1.0, 1.0]
    dropped = next(r for r in demo.results if r["category_id"] == SQUARE)
    coco, metrics = demo.scores([r for r in demo.results if r is not dropped])
    assert coco["AP"] == pytest.approx((84 / 101 + 1) / 2, abs=1e-12)  # 5 of 6: 0.00 ... 0.83
    square_pixels = demo.label_pixels()[0]
    assert metrics.iou[0] == pytest.approx((square_pixels - _area(dropped)) / square_pixels)
    assert metrics.iou[1] == 1.0


def test_uncompressed_rle_counts_are_accepted(demo, evaluate):
    from pycocotools import mask

    first = demo.results[0]
    height, width = first["segmentation"]["size"]
    pixels = mask.decode(first["segmentation"])
    flat = pixels.flatten(order="F").tolist()  # column-major runs, starting with zeros
    runs, value, length = [], 0, 0
    for pixel in flat:
        if pixel != value:
            runs.append(length)
            value, length = pixel, 0
        length += 1
    runs.append(length)
    plain = {**first, "segmentation": {"size": [height, width], "counts": runs}}
    (checked,) = evaluate.check_results([plain], demo.gt)
    assert checked["segmentation"] == first["segmentation"]


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({"image_id": 0}, "results.json: expected a JSON list of results, found dict"),
        ([7], "results.json: [0]: expected an object, found int"),
        (
            [{"image_id": 0, "category_id": 0, "score": 1}],
            "results.json: [0]: missing field 'segmentation'",
        ),
        (
            [{"image_id": 5, "category_id": 0, "score": 1, "segmentation": {}}],
            "results.json: [0].image_id: expected one of the ground truth's image ids "
            "(0, 1, 2, 3, 4, 7), found 5",
        ),
        (
            [{"image_id": 0, "category_id": "0", "score": 1, "segmentation": {}}],
            "results.json: [0].category_id: expected one of the ground truth's category ids "
            "(0, 1, 2, 3), found '0'",
        ),
        (
            [{"image_id": 0, "category_id": 0, "score": None, "segmentation": {}}],
            "results.json: [0].score: expected a number, found None",
        ),
        (
            [{"image_id": 0, "category_id": 0, "score": 1, "segmentation": [[1, 2, 3, 4, 5, 6]]}],
            "results.json: [0].segmentation: expected an RLE object {'size': [h, w], 'counts': "
            "...} (polygons are not supported), found list",
        ),
        (
            [
                {
                    "image_id": 0,
                    "category_id": 0,
                    "score": 1,
                    "segmentation": {"size": [320, 240], "counts": "PPYo1"},
                }
            ],
            "results.json: [0].segmentation.size: expected [240, 320] (height, width of "
            "image 0), found [320, 240]",
        ),
    ],
)
def test_bad_predictions_name_the_result_and_field(demo, evaluate, results, message):
    with pytest.raises(evaluate.PredictionsError) as caught:
        evaluate.check_results(results, demo.gt, "results.json")
    assert str(caught.value) == message


def test_unreadable_predictions_file(demo, evaluate, tmp_path):
    broken = tmp_path / "results.json"
    broken.write_text('[{"image_id": 0,')
    with pytest.raises(evaluate.PredictionsError, match=r"^.*results\.json: cannot read the "):
        evaluate.load_results(broken, demo.gt)
    with pytest.raises(evaluate.PredictionsError, match=r"missing\.json: cannot read the "):
        evaluate.load_results(tmp_path / "missing.json", demo.gt)
    # On the command line: one line on stderr, status 1.
    with pytest.raises(SystemExit) as caught:
        evaluate.run(evaluate.main, ["--workers", "0", "--predictions", str(broken)])
    assert str(caught.value).startswith(f"error: {broken}: cannot read the predictions: ")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "evaluate.py"), "--workers", "0", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_command_line_scores_ground_truth_then_a_predictions_file(demo, evaluate, tmp_path, capsys):
    # The default run in this process (the imports are paid already), then the script.
    figures = evaluate.main(["--workers", "0", "--out", str(tmp_path / "gt")])
    assert figures == {"AP": 1.0, "map": 1.0, "miou": 1.0}
    printed = capsys.readouterr().out
    assert f"ground truth: {tmp_path / 'gt' / 'coco_instance.json'} (6 images, 24 instances)\n" in (
        printed
    )
    assert "predictions: the ground truth itself (24, score 1.0)\n" in printed
    assert printed.endswith(
        "pycocotools COCOeval (segm): AP 1.0000  AP50 1.0000  AP75 1.0000  AR100 1.0000\n"
        "torchmetrics MeanAveragePrecision (segm): "
        "map 1.0000  map_50 1.0000  map_75 1.0000  mar_100 1.0000\n"
        "torchmetrics JaccardIndex: mIoU 1.0000\n"
        "  circle 1.0000  square 1.0000  triangle 1.0000  grass 1.0000\n"
    )
    # pycocotools' own table, without its progress chatter.
    assert " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000\n" in (
        printed
    )
    assert "index created" not in printed
    # A second run into the same folder: refused at once, or replacing it with --overwrite.
    with pytest.raises(SystemExit) as caught:
        evaluate.run(evaluate.main, ["--workers", "0", "--out", str(tmp_path / "gt")])
    assert str(caught.value) == (
        f"error: cannot export into {tmp_path / 'gt'}: the folder is not empty; pass "
        "overwrite=True (export --overwrite) to replace it and everything in it"
    )
    again = ["--workers", "0", "--out", str(tmp_path / "gt"), "--overwrite"]
    assert evaluate.main(again) == {"AP": 1.0, "map": 1.0, "miou": 1.0}

    dropped = next(r for r in demo.results if r["category_id"] == CIRCLE)
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps([r for r in demo.results if r is not dropped]))
    result = _run("--predictions", str(predictions))
    assert result.returncode == 0, result.stderr
    ap = (88 / 101 + 3) / 4
    assert f"predictions: {predictions} (23)\n" in result.stdout
    assert f"pycocotools COCOeval (segm): AP {ap:.4f}  AP50 {ap:.4f}  AP75 {ap:.4f}" in (
        result.stdout
    )
    assert f"torchmetrics MeanAveragePrecision (segm): map {ap:.4f}" in result.stdout


@pytest.mark.parametrize("extra", ["pycocotools", "torchmetrics"])
def test_a_missing_extra_is_named(extra, monkeypatch):
    monkeypatch.setitem(sys.modules, extra, None)  # what an absent package imports as
    monkeypatch.setitem(sys.modules, "example_evaluate", sys.modules.get("example_evaluate"))
    with pytest.raises(SystemExit) as caught:
        load_example("evaluate")
    assert str(caught.value).startswith("evaluate.py needs pycocotools and torchmetrics (")
    assert str(caught.value).endswith("): pip install 'segments-torch[eval]'")
    assert extra in str(caught.value)
