"""Train torchvision's DeepLabV3 (MobileNetV3-Large backbone) on a release's semantic targets.

The model starts from random weights (``weights=None, weights_backbone=None``); pixels
that are unlabelled, or whose instance has no annotation or an unselected category, carry
the dataset's ignore index and stay out of the loss (``CrossEntropyLoss(ignore_index=...)``),
and so does the padding ``collate_semantic`` adds to unequal images. It runs on the demo
release bundled with the package in seconds on a CPU; point it at your own release
unchanged, and on one or many GPUs with ``torchrun``::

    python examples/train_deeplab.py --steps 10 --workers 0
    python examples/train_deeplab.py --overfit --steps 10   # one batch: the loss must fall
    python examples/train_deeplab.py flowers-v1.0.json --size 512 --steps 5000 \\
        --cache-dir /scratch/segments-cache --workers 8
    torchrun --nproc_per_node 4 examples/train_deeplab.py s3://bucket/flowers-v1.0.json \\
        --url-map https://bucket.s3.amazonaws.com/=/data/mirror/ --batch-size 8
    python examples/train_deeplab.py flowers-v1.0.json --decode device --workers 2

With ``--decode device`` the workers ship JPEG bytes and one-byte segment maps, and the
training loop decodes each batch on the GPU, semantic maps and augmentations included,
after moving it there (``_common.ready_batch``).
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
from torchvision.models.segmentation import DeepLabV3, deeplabv3_mobilenet_v3_large
from torchvision.transforms import v2

#: ImageNet statistics, which torchvision's pretrained backbones expect.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def train_transforms(size: int) -> v2.Compose:
    """Flip, crop a random part and resize it to ``size`` x ``size`` (nearest for the
    semantic map, so no label is invented), then float pixels normalised as ImageNet's.

    Example:
        >>> from segments_torch.demo import RELEASE_PATH
        >>> ds = SegmentsDataset(RELEASE_PATH, target="semantic", transforms=train_transforms(64))
        >>> image, target = ds[0]
        >>> image.dtype, tuple(target["semantic"].shape)
        (torch.float32, (64, 64))
    """
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomResizedCrop((size, size), scale=(0.3, 1.0)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def build_model(num_classes: int) -> DeepLabV3:
    """DeepLabV3 with a MobileNetV3-Large backbone, from random weights.

    Example:
        >>> build_model(4)(torch.zeros(2, 3, 64, 64))["out"].shape
        torch.Size([2, 4, 64, 64])
    """
    return deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
    )


class SemanticLoss(nn.Module):
    """Cross-entropy of the model's ``"out"`` logits against ``collate_semantic``'s
    ``semantic`` maps, pixels at ``ignore_index`` left out.

    Example:
        >>> loss_of = SemanticLoss(ignore_index=255)
        >>> loss = loss_of(model, (images, targets))  # doctest: +SKIP
    """

    def __init__(self, ignore_index: int) -> None:
        super().__init__()
        self.criterion = nn.CrossEntropyLoss(ignore_index=ignore_index)
        self.ignore_index = ignore_index

    def forward(self, model: nn.Module, batch: tuple[Any, dict[str, Any]]) -> torch.Tensor:
        images, targets = batch
        semantic = targets["semantic"].as_subclass(torch.Tensor)
        logits: torch.Tensor = model(images.as_subclass(torch.Tensor))["out"]
        if not bool((semantic != self.ignore_index).any()):
            # Every pixel ignored (crops of unlabelled areas): a zero loss that keeps
            # every parameter in the graph (DDP expects gradients for all), not NaN.
            return logits.sum() * 0
        loss: torch.Tensor = self.criterion(logits, semantic)
        return loss


def main(argv: Sequence[str] | None = None) -> list[float]:
    """Train as the command line says; returns each step's loss."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_data_options(parser)
    add_decode_option(parser)
    add_training_options(parser, size=128, batch_size=4, lr=1e-3)
    parser.add_argument(
        "--background",
        default="background",
        help="name of the class of unlabelled pixels (default 'background'); '' leaves them "
        "ignored, for releases whose unlabelled pixels are not known to be background",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        # BatchNorm after the ASPP's global pooling sees one value per channel and image:
        # training on a batch of one fails inside the model.
        parser.error(
            "--batch-size must be at least 2 (DeepLabV3 trains BatchNorm on pooled features)"
        )
    where = setup_distributed(args.device)
    torch.manual_seed(args.seed)
    dataset = training_dataset(
        args,
        where,
        target="semantic",
        transforms=train_transforms(args.size),
        background=args.background or None,
    )
    model = wrap_model(build_model(dataset.num_classes), where)
    # Whole batches only: a last batch of one would fail in the ASPP's BatchNorm.
    loader, sampler = make_loader(dataset, args, where, drop_last=True)
    return train(model, SemanticLoss(dataset.ignore_index), loader, sampler, args, where)


if __name__ == "__main__":
    run(main, None)
