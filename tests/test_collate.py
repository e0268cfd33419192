from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch
from torchvision import tv_tensors

from segments_torch.collate import collate_detection, collate_semantic


def item(height: int, width: int, value: int, image_id: int) -> tuple[torch.Tensor, dict[str, Any]]:
    image = tv_tensors.Image(torch.full((3, height, width), value, dtype=torch.uint8))
    semantic = tv_tensors.Mask(torch.full((height, width), value, dtype=torch.int64))
    return image, {"semantic": semantic, "image_id": torch.tensor(image_id)}


def test_detection_collate_keeps_items_apart():
    batch = [item(2, 3, 1, 7), item(4, 1, 2, 9)]
    images, targets = collate_detection(batch)
    assert isinstance(images, tuple)
    assert [tuple(i.shape) for i in images] == [(3, 2, 3), (3, 4, 1)]
    assert [int(t["image_id"]) for t in targets] == [7, 9]
    assert images[0] is batch[0][0]
    assert collate_detection([]) == ((), ())


@pytest.fixture(params=[False, True], ids=["main", "worker"])
def in_worker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether collate runs as in a DataLoader worker, where a batch is made in the shared
    memory it is sent through (as default_collate makes it), or in the main process."""
    worker = object() if request.param else None
    monkeypatch.setattr("segments_torch.collate.get_worker_info", lambda: worker)
    return bool(request.param)


def test_semantic_collate_pads_images_with_zero_and_maps_with_ignore(in_worker):
    images, targets = collate_semantic(ignore_index=99)([item(2, 3, 1, 7), item(3, 2, 2, 9)])
    assert isinstance(images, tv_tensors.Image)
    assert isinstance(targets["semantic"], tv_tensors.Mask)
    assert (images.is_shared(), targets["semantic"].is_shared()) == (in_worker, in_worker)
    assert images.dtype == torch.uint8
    assert targets["semantic"].dtype == torch.int64
    assert images[:, 0].tolist() == [
        [[1, 1, 1], [1, 1, 1], [0, 0, 0]],
        [[2, 2, 0], [2, 2, 0], [2, 2, 0]],
    ]
    assert targets["semantic"].tolist() == [
        [[1, 1, 1], [1, 1, 1], [99, 99, 99]],
        [[2, 2, 99], [2, 2, 99], [2, 2, 99]],
    ]
    assert targets["image_id"].tolist() == [7, 9]


def test_semantic_collate_of_equal_sizes_pads_nothing(in_worker):
    images, targets = collate_semantic(ignore_index=9)([item(2, 3, 1, 0), item(2, 3, 2, 1)])
    assert (images.is_shared(), targets["semantic"].is_shared()) == (in_worker, in_worker)
    assert images[:, 0].tolist() == [[[1, 1, 1]] * 2, [[2, 2, 2]] * 2]
    assert targets["semantic"].tolist() == [[[1, 1, 1]] * 2, [[2, 2, 2]] * 2]


def test_semantic_collate_without_image_ids_and_pickling():
    image, target = item(2, 2, 5, 0)
    del target["image_id"]
    collate = pickle.loads(pickle.dumps(collate_semantic(ignore_index=7)))
    images, targets = collate([(image, target)])
    assert set(targets) == {"semantic"}
    assert tuple(images.shape) == (1, 3, 2, 2)
    assert collate == collate_semantic(ignore_index=7)
