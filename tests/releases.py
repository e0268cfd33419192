"""Builders of small release documents in each of the three layouts, for the tests."""

from __future__ import annotations

import copy
from typing import Any

CATEGORIES: list[dict[str, Any]] = [
    {"id": 0, "name": "person", "color": [220, 20, 60], "has_instances": True},
    {"id": 1, "name": "donut", "color": [250, 170, 30, 255]},
    {"id": 5, "name": "grass", "has_instances": False, "attributes": [{"name": "wet"}]},
]


def annotation(instance_id: Any, category_id: Any) -> dict[str, Any]:
    return {"id": instance_id, "category_id": category_id, "attributes": {}}


def label(
    status: Any = "LABELED",
    annotations: list[dict[str, Any]] | None = None,
    bitmap: str | None = "https://cdn.example/bitmaps/b.png",
) -> dict[str, Any]:
    return {
        "label_status": status,
        "label_type": "segmentation-bitmap",
        "attributes": {
            "format_version": "0.1",
            "annotations": annotations if annotations is not None else [],
            "segmentation_bitmap": {"url": bitmap},
        },
    }


def sample(
    name: str,
    labels: dict[str, Any],
    *,
    uuid: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "uuid": uuid or f"uuid-{name}",
        "name": name,
        "data_type": "IMAGE",
        "attributes": {"image": {"url": f"https://cdn.example/images/{name}?sig=secret"}},
        "labels": labels,
    }
    if metadata is not None:
        result["metadata"] = metadata
    return result


def standard_samples(labelset: str = "ground-truth") -> list[dict[str, Any]]:
    """Four samples: two labelled with instances, one null label, one SKIPPED with {}."""
    return [
        sample(
            "a.jpg",
            {
                labelset: label(
                    "LABELED", [annotation(1, 0), annotation(2, 1), annotation(70000, 1)]
                )
            },
            metadata={"split": "train", "weather": "sun"},
        ),
        sample(
            "b.jpg",
            {labelset: label("reviewed", [annotation(3, 5)])},
            metadata={"split": "val"},
        ),
        sample("c.jpg", {labelset: None}, metadata={}),
        sample(
            "d.jpg",
            {labelset: {"label_status": "SKIPPED", "attributes": {}}},
            metadata={"split": "train"},
        ),
    ]


def current_release(
    samples: list[dict[str, Any]] | None = None,
    labelsets: tuple[str, ...] = ("ground-truth",),
    task_type: str = "segmentation-bitmap",
) -> dict[str, Any]:
    """The current layout: ``dataset.task_type``, ``task_attributes``, ``labelsets``."""
    return {
        "name": "v1.0",
        "description": "first release",
        "created_at": "2024-05-01 10:00:00+00:00",
        "dataset": {
            "name": "flowers",
            "owner": {"username": "jane", "created_at": "2020-01-01"},
            "task_type": task_type,
            "task_attributes": {"format_version": "0.1", "categories": copy.deepcopy(CATEGORIES)},
            "labelsets": [{"name": name, "description": ""} for name in labelsets],
            "tasks": {},  # vestigial in current files
            "samples": samples if samples is not None else standard_samples(),
        },
    }


def _task(name: str | None) -> dict[str, Any]:
    task: dict[str, Any] = {
        "description": "",
        "task_type": "segmentation-bitmap",
        "attributes": {"format_version": "0.1", "categories": copy.deepcopy(CATEGORIES)},
    }
    if name is not None:
        task["name"] = name
    return task


def dataset_tasks_release(tasks_as: str = "dict") -> dict[str, Any]:
    """The nested layout: ``dataset.tasks`` (dict keyed by name, or a list), labels keyed
    by task name."""
    tasks: Any = {"segmentation": _task(None)} if tasks_as == "dict" else [_task("segmentation")]
    return {
        "name": "v0.2",
        "description": "",
        "created_at": "2021-01-01 00:00:00+00:00",
        "dataset": {
            "name": "flowers",
            "owner": "jane",
            "tasks": tasks,
            "samples": standard_samples("segmentation"),
        },
    }


def tasks_release() -> dict[str, Any]:
    """The oldest layout: top-level ``tasks`` list and ``samples``."""
    samples = standard_samples("segmentation")
    for s in samples:
        del s["uuid"], s["metadata"]  # the seed's samples have neither
    return {
        "name": "first release",
        "description": "",
        "created_at": "2020-07-09 10:20:19.888887+00:00",
        "tasks": [_task("segmentation")],
        "samples": samples,
    }


def with_boxes(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (current layout) with a bbox shape on every annotation: what a vector
    labelset's annotations need."""
    for record in document["dataset"]["samples"]:
        for value in record["labels"].values():
            attributes = (value or {}).get("attributes") or {}
            for k, item in enumerate(attributes.get("annotations") or []):
                item.setdefault("type", "bbox")
                item.setdefault("points", [[1.0 + k, 2.0], [5.0 + k, 6.5]])
    return document


def sequence_sample(
    name: str,
    frames: list[dict[str, Any]],
    label_frames: list[dict[str, Any]] | None,
    *,
    status: str = "LABELED",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A sequence sample: each of ``frames`` (``name``, ``timestamp``, ...) gets an image
    URL ``https://cdn.example/<name>/<index>.jpg``; ``label_frames``: its label's frames
    (``None``: a null label)."""
    result = sample(name, {}, metadata=metadata)
    result["attributes"] = {
        "frames": [
            {"image": {"url": f"https://cdn.example/{name}/{j}.jpg"}, **frame}
            for j, frame in enumerate(frames)
        ]
    }
    labels = None
    if label_frames is not None:
        labels = {
            "label_status": status,
            "attributes": {"format_version": "0.2", "frames": label_frames},
        }
    result["labels"] = {"ground-truth": labels}
    return result


def sequence_release(
    samples: list[dict[str, Any]], task_type: str = "image-vector-sequence"
) -> dict[str, Any]:
    """A current-layout sequence release of these samples."""
    return current_release(samples, task_type=task_type)
