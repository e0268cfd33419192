"""Batching ``(image, target)`` pairs for a ``DataLoader``.

- :func:`collate_detection`: a tuple of images and a tuple of targets, as torchvision
  detection models take them (images may differ in size).
- :func:`collate_semantic`: images stacked into ``(B, 3, H, W)`` and semantic maps into
  ``(B, H, W)``, padded at the bottom and right to the largest size in the batch: images
  with 0, semantic maps with the ignore index, so padding never counts in the loss.

Example:
    >>> loader = DataLoader(ds, batch_size=8, collate_fn=collate_semantic(ignore_index=255))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import get_worker_info
from torchvision import tv_tensors

from ._compat import allocate

__all__ = ["collate_detection", "collate_semantic"]


def collate_detection(batch: Sequence[tuple[Any, Any]]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """``[(image, target), ...]`` -> ``((image, ...), (target, ...))``."""
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return tuple(images), tuple(targets)


def _pad_stack(tensors: Sequence[torch.Tensor], fill: int) -> torch.Tensor:
    """``tensors`` stacked, padded with ``fill`` at the bottom and right; in a DataLoader
    worker, in the shared memory the batch is sent through (as ``default_collate`` does)."""
    height = max(t.shape[-2] for t in tensors)
    width = max(t.shape[-1] for t in tensors)
    first = tensors[0]
    shape = (len(tensors), *first.shape[:-2], height, width)
    out = allocate(shape, first.dtype, first.device, shared=get_worker_info() is not None)
    if any(t.shape[-2:] != (height, width) for t in tensors):
        out.fill_(fill)
    for i, t in enumerate(tensors):
        out[i, ..., : t.shape[-2], : t.shape[-1]] = t
    return out


@dataclass(frozen=True)
class collate_semantic:  # noqa: N801 - used like a function: collate_semantic(ignore_index=...)
    """Stack images and semantic maps of a batch, padding unequal sizes.

    Returns ``(images, targets)``: ``images`` a ``tv_tensors.Image`` ``(B, 3, H, W)``;
    ``targets`` a dict with ``semantic`` (``tv_tensors.Mask`` ``(B, H, W)``, padding =
    ``ignore_index``), and ``image_id`` ``(B,)``, ``orig_size`` ``(B, 2)``, ``sequence``
    and ``frame_index`` ``(B,)`` (frames of a sequence release) where the items carry
    them. A dataclass, not a closure, so it pickles into spawn workers.
    """

    ignore_index: int = 255

    def __call__(self, batch: Sequence[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
        images = [image for image, _ in batch]
        targets = [target for _, target in batch]
        stacked: dict[str, Any] = {
            "semantic": tv_tensors.Mask(
                _pad_stack(
                    [t["semantic"].as_subclass(torch.Tensor) for t in targets], self.ignore_index
                )
            )
        }
        for key in ("image_id", "orig_size", "sequence", "frame_index"):
            if targets and all(key in t for t in targets):
                stacked[key] = torch.stack([torch.as_tensor(t[key]) for t in targets])
        plain = [torch.as_tensor(image).as_subclass(torch.Tensor) for image in images]
        return tv_tensors.Image(_pad_stack(plain, 0)), stacked
