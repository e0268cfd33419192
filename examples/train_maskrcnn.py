"""Train torchvision's Mask R-CNN on a release's instance targets.

The model starts from random weights (``weights=None, weights_backbone=None``) and works
on small images by default, so a step takes about a second on a CPU: enough to see the
loss fall on the demo release bundled with the package. Point it at your own release
unchanged, and on one or many GPUs with ``torchrun``::

    python examples/train_maskrcnn.py --steps 10 --workers 0
    python examples/train_maskrcnn.py --overfit --steps 10   # one batch: the loss must fall
    python examples/train_maskrcnn.py flowers-v1.0.json --size 512 --steps 5000 \\
        --cache-dir /scratch/segments-cache --workers 8
    torchrun --nproc_per_node 4 examples/train_maskrcnn.py s3://bucket/flowers-v1.0.json \\
        --url-map https://bucket.s3.amazonaws.com/=/data/mirror/ --batch-size 4
    python examples/train_maskrcnn.py flowers-v1.0.json --decode device --workers 2

With ``--decode device`` the DataLoader workers only read the files, keep each JPEG
encoded and reduce its bitmap to a one-byte segment map; the training loop moves each
batch to the GPU, decodes the images there and builds the masks and boxes, then applies
the augmentations below on the GPU (``_common.ready_batch``). The batches the model gets
have the same types, keys and dtypes either way.

Augmentations are ``torchvision.transforms.v2`` joint transforms: a horizontal flip and a
random resized crop move masks and boxes with the image, and ``SanitizeBoundingBoxes``
drops the instances a crop cut away, filtering every per-instance field with
``segments_torch.targets.instance_fields``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from _common import (
    add_data_options,
    add_decode_option,
    add_training_options,
    make_loader,
    run,
    setup_distributed,
    train,
    training_dataset,
    wrap_model,
)
from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.transforms import v2

from segments_torch.targets import instance_fields
from segments_torch.transforms import RecomputeArea


def train_transforms(size: int) -> v2.Compose:
    """Flip, crop a random part and resize it to ``size`` x ``size``, drop the instances
    left without a box, count the areas of the crop, and scale pixels to [0, 1] floats
    (the model normalises them).

    Example:
        >>> from segments_torch.demo import RELEASE_PATH
        >>> image, target = SegmentsDataset(RELEASE_PATH, transforms=train_transforms(96))[0]
        >>> image.shape, image.dtype
        (torch.Size([3, 96, 96]), torch.float32)
    """
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomResizedCrop((size, size), scale=(0.3, 1.0)),
            v2.SanitizeBoundingBoxes(labels_getter=instance_fields),
            RecomputeArea(),  # areas of the crop, not of the full image
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def build_model(num_classes: int, size: int) -> MaskRCNN:
    """Mask R-CNN (ResNet-50 FPN) from random weights for ``num_classes`` (background
    included: ``ds.num_classes``), resizing images to a short side of ``size``.

    Fewer sampled proposals than torchvision's defaults (64 instead of 512 per image for
    the box and mask heads) keep a CPU step short; for real training, raise them here.

    Example:
        >>> build_model(num_classes=5, size=128).roi_heads.box_predictor.cls_score.out_features
        5
    """
    return maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        min_size=size,
        max_size=size * 5 // 3,
        box_batch_size_per_image=64,
        rpn_pre_nms_top_n_train=500,
        rpn_post_nms_top_n_train=200,
    )


def loss_of(model: nn.Module, batch: tuple[Any, Any]) -> torch.Tensor:
    """The sum of Mask R-CNN's five training losses on a batch of ``collate_detection``."""
    images, targets = batch
    losses: dict[str, torch.Tensor] = model(list(images), list(targets))
    return torch.stack(list(losses.values())).sum()


def main(argv: Sequence[str] | None = None) -> list[float]:
    """Train as the command line says; returns each step's loss."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_data_options(parser)
    add_decode_option(parser)
    add_training_options(parser, size=128, batch_size=2, lr=1e-4)
    args = parser.parse_args(argv)
    where = setup_distributed(args.device)
    torch.manual_seed(args.seed)
    dataset = training_dataset(
        args, where, target="instance", transforms=train_transforms(args.size)
    )
    model = wrap_model(build_model(dataset.num_classes, args.size), where)
    loader, sampler = make_loader(dataset, args, where)
    return train(model, loss_of, loader, sampler, args, where)


if __name__ == "__main__":
    run(main, None)
