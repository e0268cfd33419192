"""Evaluate instance segmentation predictions against a release, both ways people do it.

1. pycocotools: the release's ground truth exported with
   ``segments_torch.export.export_dataset(ds, "coco-instance", out_dir=...)``, the
   predictions in COCO's results format, and ``COCOeval(gt, dt, "segm")``.
2. torchmetrics, straight from the dataset's targets: ``MeanAveragePrecision(iou_type=
   "segm")`` on the instance masks, and ``JaccardIndex(task="multiclass", ignore_index=...)``
   (mean IoU) on the semantic maps against the predictions painted into one label map
   (a higher score paints over a lower one).

Predictions are a JSON list of COCO segmentation results, one per detected instance::

    [{"image_id": 0, "category_id": 3, "score": 0.97,
      "segmentation": {"size": [240, 320], "counts": "<compressed RLE>"}}, ...]

``image_id`` is the sample's row in the release (the dataset's ``target["image_id"]``);
``category_id`` is the COCO category id of the export (the release's category id;
``segments_torch.export.category_ids_by_label`` maps a model's training labels to it).
Without ``--predictions`` the ground truth itself is scored (every score 1.0), which must
give 1.0 everywhere::

    python examples/evaluate.py
    python examples/evaluate.py flowers-v1.0.json --predictions results.json --out gt/

``--out`` must be a new or empty folder; ``--overwrite`` replaces the one an earlier run
wrote (and anything else in it).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _common import add_data_options, dataset_options, run
from torch.utils.data import DataLoader

from segments_torch import SegmentsDataset, SegmentsTorchError
from segments_torch.export import category_ids_by_label, export_dataset

try:
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from torchmetrics import JaccardIndex
    from torchmetrics.detection import MeanAveragePrecision
except ImportError as missing:
    raise SystemExit(
        f"evaluate.py needs pycocotools and torchmetrics ({missing}): "
        "pip install 'segments-torch[eval]'"
    ) from None

#: Names of ``COCOeval.stats``, in order.
COCO_STATS = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


class PredictionsError(SegmentsTorchError, ValueError):
    """Predictions that are not COCO segmentation results of the ground truth's images
    and categories; the message names the file, the result's index and the field."""


def ground_truth_results(dataset: SegmentsDataset, *, workers: int = 0) -> list[dict[str, Any]]:
    """Every instance of a ``target="instance"`` dataset as a COCO segmentation result
    with score 1.0: the perfect predictions.

    Example:
        >>> from segments_torch.demo import RELEASE_PATH
        >>> results = ground_truth_results(SegmentsDataset(RELEASE_PATH))
        >>> len(results), sorted(results[0])
        (24, ['category_id', 'image_id', 'score', 'segmentation'])
    """
    from segments_torch.export.coco import rle_encode  # the export's own RLE encoder

    coco_id = category_ids_by_label(dataset.categories)
    results = []
    for _, target in _items(dataset, workers):
        labels = (target["labels"] - dataset.label_offset).tolist()
        for label, rle in zip(labels, rle_encode(target["masks"]), strict=True):
            results.append(
                {
                    "image_id": int(target["image_id"]),
                    "category_id": coco_id[label],
                    "segmentation": rle,
                    "score": 1.0,
                }
            )
    return results


def load_results(
    path: str | os.PathLike[str], ground_truth: dict[str, Any]
) -> list[dict[str, Any]]:
    """Read and check a COCO results file against the exported ground truth (a parsed
    ``coco_instance.json``).

    Raises:
        PredictionsError: a file that does not parse, or a result that is not one of the
            ground truth's images and categories (see :func:`check_results`).
    """
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise PredictionsError(f"{path}: cannot read the predictions: {error}") from None
    return check_results(results, ground_truth, str(path))


def check_results(
    results: Any, ground_truth: dict[str, Any], source: str = "predictions"
) -> list[dict[str, Any]]:
    """The results, checked field by field against the ground truth, with uncompressed
    RLE counts (lists of run lengths) compressed as pycocotools' evaluation wants them.

    Example:
        >>> check_results([{"image_id": 99}], gt, "results.json")  # doctest: +SKIP
        PredictionsError: results.json: [0].image_id: expected one of the ground truth's
        image ids (0, 1, 2, 3, 4, 7), found 99
    """
    if not isinstance(results, list):
        raise PredictionsError(f"{source}: expected a JSON list of results, found {_kind(results)}")
    sizes = {image["id"]: [image["height"], image["width"]] for image in ground_truth["images"]}
    categories = {category["id"] for category in ground_truth["categories"]}
    checked = []
    for index, result in enumerate(results):
        where = f"{source}: [{index}]"
        if not isinstance(result, dict):
            raise PredictionsError(f"{where}: expected an object, found {_kind(result)}")
        for key in ("image_id", "category_id", "segmentation", "score"):
            if key not in result:
                raise PredictionsError(f"{where}: missing field {key!r}")
        image_id, category_id = result["image_id"], result["category_id"]
        if not _is_int(image_id) or image_id not in sizes:
            raise PredictionsError(
                f"{where}.image_id: expected one of the ground truth's image ids "
                f"({_listing(sizes)}), found {image_id!r}"
            )
        if not _is_int(category_id) or category_id not in categories:
            raise PredictionsError(
                f"{where}.category_id: expected one of the ground truth's category ids "
                f"({_listing(categories)}), found {category_id!r}"
            )
        score = result["score"]
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise PredictionsError(f"{where}.score: expected a number, found {score!r}")
        rle = result["segmentation"]
        if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str | list):
            raise PredictionsError(
                f"{where}.segmentation: expected an RLE object {{'size': [h, w], 'counts': ...}}"
                f" (polygons are not supported), found {_kind(rle)}"
            )
        if rle.get("size") != sizes[image_id]:
            raise PredictionsError(
                f"{where}.segmentation.size: expected {sizes[image_id]} (height, width of "
                f"image {image_id}), found {rle.get('size')!r}"
            )
        if isinstance(rle["counts"], list):
            height, width = rle["size"]
            compressed = mask_api.frPyObjects(rle, height, width)
            rle = {"size": rle["size"], "counts": compressed["counts"].decode()}
        checked.append({**result, "segmentation": rle})
    return checked


def coco_eval(
    ground_truth: str | os.PathLike[str],
    results: Sequence[dict[str, Any]],
    *,
    verbose: bool = False,
) -> dict[str, float]:
    """pycocotools' ``COCOeval`` of segmentation ``results`` against the ground truth
    COCO file; returns its 12 summary figures by name (``AP``, ``AP50``, ...,
    :data:`COCO_STATS`). With ``verbose``, prints pycocotools' summary table.

    Example:
        >>> coco_eval("gt/coco_instance.json", results)["AP"]  # doctest: +SKIP
        1.0
    """
    printed = io.StringIO()  # pycocotools talks as it works: keep only its summary
    with contextlib.redirect_stdout(printed):
        gt = COCO(str(ground_truth))
        if results:
            # loadRes writes ids and areas into the dicts it gets, and takes a "bbox" as
            # the area of every result when the first has one: give it copies without.
            copies = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
            dt = gt.loadRes(copy.deepcopy(copies))
        else:  # no prediction at all: loadRes cannot take [], COCOeval scores it 0
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"]}
            dt.dataset["annotations"] = []
            dt.createIndex()
        evaluation = COCOeval(gt, dt, iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    if verbose:
        print(
            "".join(line for line in printed.getvalue().splitlines(True) if " @[ " in line), end=""
        )
    return {name: float(value) for name, value in zip(COCO_STATS, evaluation.stats, strict=True)}


@dataclass(frozen=True)
class TorchmetricsScores:
    """What :func:`torchmetrics_scores` measures.

    Attributes:
        map: ``MeanAveragePrecision(iou_type="segm")``'s figures (``map``, ``map_50``, ...).
        miou: mean IoU over the training labels present in the targets or predictions.
        iou: IoU of each training label (``nan`` where neither has it).
    """

    map: dict[str, float]
    miou: float
    iou: list[float]


def torchmetrics_scores(
    instances: SegmentsDataset,
    semantics: SegmentsDataset,
    results: Sequence[dict[str, Any]],
    *,
    workers: int = 0,
) -> TorchmetricsScores:
    """Score ``results`` with torchmetrics against the targets of two datasets over the
    same samples: ``target="instance"`` for mAP and ``target="semantic"`` for mean IoU.

    For the IoU, each image's predictions are painted into a label map in ascending score
    order; pixels no prediction covers get a label of their own ("missed"), so they count
    against the true label, and that label is left out of the mean.

    Example:
        >>> scores = torchmetrics_scores(ds, SegmentsDataset(ds.release, target="semantic"),
        ...                              results)  # doctest: +SKIP
        >>> scores.map["map"], scores.miou  # doctest: +SKIP
        (1.0, 1.0)
    """
    if len(instances) != len(semantics) or not bool((instances.rows == semantics.rows).all()):
        raise ValueError("the instance and semantic datasets must select the same samples")
    label_of = {coco: label for label, coco in category_ids_by_label(instances.categories).items()}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for result in results:
        by_image.setdefault(result["image_id"], []).append(result)
    num_labels = instances.categories.num_labels
    ignore = semantics.ignore_index
    missed = num_labels if ignore != num_labels else num_labels + 1
    average_precision = MeanAveragePrecision(iou_type="segm")
    # Labels are in range by construction: skip the per-update validation (a torch.unique
    # of every image, which would take most of the time).
    jaccard = JaccardIndex(
        task="multiclass",
        num_classes=missed + 1,
        ignore_index=ignore,
        average="none",
        validate_args=False,
    )
    present = torch.zeros(missed + 1, dtype=torch.bool)
    pairs = zip(_items(instances, workers), _items(semantics, workers), strict=True)
    for (_, instance), (_, semantic) in pairs:
        truth = semantic["semantic"].as_subclass(torch.Tensor)
        mine = sorted(by_image.get(int(instance["image_id"]), []), key=lambda r: r["score"])
        masks = _decode([r["segmentation"] for r in mine], truth.shape)
        labels = torch.tensor([label_of[r["category_id"]] for r in mine], dtype=torch.int64)
        average_precision.update(
            [
                {
                    "masks": masks,
                    "scores": torch.tensor([float(r["score"]) for r in mine]),
                    "labels": labels,
                }
            ],
            [
                {
                    "masks": instance["masks"].bool(),
                    "labels": instance["labels"] - instances.label_offset,
                }
            ],
        )
        painted = torch.full_like(truth, missed)
        for mask, label in zip(masks, labels, strict=True):
            painted[mask] = label
        jaccard.update(painted[None], truth[None])
        valid = truth != ignore
        present[truth[valid]] = True
        present[painted[valid]] = True
    per_label = jaccard.compute()[:num_labels]
    iou = torch.where(present[:num_labels], per_label, float("nan"))
    figures = {k: float(v) for k, v in average_precision.compute().items() if v.numel() == 1}
    return TorchmetricsScores(figures, float(iou.nanmean()), iou.tolist())


def _items(dataset: SegmentsDataset, workers: int) -> Iterable[Any]:
    """The dataset's items in order, read by ``workers`` DataLoader processes."""
    return DataLoader(dataset, batch_size=None, num_workers=workers)


def _decode(rles: list[dict[str, Any]], shape: torch.Size) -> torch.Tensor:
    """Compressed RLEs -> ``(N, H, W)`` bool masks."""
    if not rles:
        return torch.zeros((0, *shape), dtype=torch.bool)
    coded = [{"size": r["size"], "counts": r["counts"].encode()} for r in rles]
    return torch.from_numpy(mask_api.decode(coded)).permute(2, 0, 1).bool()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _listing(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids))


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Evaluate as the command line says; prints and returns the headline figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_data_options(parser)
    parser.add_argument("--predictions", type=Path, help="COCO results JSON (default: the GT)")
    parser.add_argument(
        "--out", type=Path, help="where to write the ground truth export (default: a temp dir)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the --out folder of an earlier run"
    )
    args = parser.parse_args(argv)
    options = dataset_options(args)
    instances = SegmentsDataset(args.release, target="instance", **options)
    semantics = instances.with_options(target="semantic")  # the release is read once
    print(instances)
    with contextlib.ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        gt_path = export_dataset(
            instances,
            "coco-instance",
            out_dir=out,
            num_workers=args.workers,
            overwrite=args.overwrite,
        )
        ground_truth = json.loads(gt_path.read_text())
        print(
            f"ground truth: {gt_path} ({len(ground_truth['images'])} images, "
            f"{len(ground_truth['annotations'])} instances)"
        )
        if args.predictions is None:
            results = ground_truth_results(instances, workers=args.workers)
            print(f"predictions: the ground truth itself ({len(results)}, score 1.0)")
        else:
            results = load_results(args.predictions, ground_truth)
            print(f"predictions: {args.predictions} ({len(results)})")
        coco = coco_eval(gt_path, results, verbose=True)
    scores = torchmetrics_scores(instances, semantics, results, workers=args.workers)
    print("pycocotools COCOeval (segm): " + _figures(coco, ("AP", "AP50", "AP75", "AR100")))
    print(
        "torchmetrics MeanAveragePrecision (segm): "
        + _figures(scores.map, ("map", "map_50", "map_75", "mar_100"))
    )
    print(f"torchmetrics JaccardIndex: mIoU {scores.miou:.4f}")
    names = instances.categories.label_names
    print("  " + "  ".join(f"{n} {v:.4f}" for n, v in zip(names, scores.iou, strict=True)))
    return {"AP": coco["AP"], "map": scores.map["map"], "miou": scores.miou}


def _figures(values: dict[str, float], names: Sequence[str]) -> str:
    return "  ".join(f"{name} {values[name]:.4f}" for name in names)


if __name__ == "__main__":
    run(main, None)
