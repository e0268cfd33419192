"""Train a small semantic segmentation model with Lightning and ``SegmentsDataModule``.

A tiny fully convolutional network (two strided convolutions and a 1x1 classifier) on
semantic targets, with the ignore index left out of the loss and mIoU (torchmetrics) on
the validation split. It runs on the demo release bundled with the package by default;
point it at your own release (a path or any fsspec URL) unchanged::

    python examples/lightning_train.py --fast-dev-run
    python examples/lightning_train.py --devices 2          # DDP, 2 processes (CPU: gloo)
    python examples/lightning_train.py s3://bucket/flowers-v1.0.json \\
        --cache-dir /scratch/segments-cache --prefetch --workers 8 \\
        --accelerator gpu --devices 4 --max-epochs 50
    python examples/lightning_train.py flowers-v1.0.json \\
        --url-map https://bucket.s3.amazonaws.com/=/data/mirror/ --split metadata
    python examples/lightning_train.py flowers-v1.0.json --accelerator gpu --decode device

Resume with ``--resume path/to/checkpoint.ckpt``: the checkpoint holds the datamodule's split
rule and filters, so the resumed run trains and validates on the same splits.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from _common import add_data_options, add_decode_option, dataset_options, run
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual name

from segments_torch.lightning import SegmentsDataModule
from segments_torch.splits import MetadataSplit, RatioSplit, Split


class TinyFCN(pl.LightningModule):
    """Two strided 3x3 convolutions and a 1x1 classifier, upsampled to the image size.

    Example:
        >>> model = TinyFCN(num_classes=4, ignore_index=255)
        >>> model(torch.zeros(2, 3, 64, 48, dtype=torch.uint8)).shape
        torch.Size([2, 4, 64, 48])
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, num_classes, 1),
        )
        self.ignore_index = ignore_index
        self.lr = lr
        # Metrics keep sums over the epoch and add them up across DDP ranks once, at the end.
        self.val_loss = torchmetrics.MeanMetric()
        self.val_iou = torchmetrics.classification.MulticlassJaccardIndex(
            num_classes, ignore_index=ignore_index
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.as_subclass(torch.Tensor).float() / 255
        logits = self.net(x)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def _loss(self, batch: tuple[Any, dict[str, Any]]) -> tuple[torch.Tensor, Any, Any]:
        images, targets = batch
        semantic = targets["semantic"].as_subclass(torch.Tensor)
        logits = self(images)
        if bool((semantic != self.ignore_index).any()):
            loss = F.cross_entropy(logits, semantic, ignore_index=self.ignore_index)
        else:  # every pixel ignored (padding, unlabelled crops): a zero loss, not NaN
            loss = logits.sum() * 0
        return loss, logits, semantic

    def training_step(self, batch: tuple[Any, dict[str, Any]], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch: tuple[Any, dict[str, Any]], batch_idx: int) -> None:
        loss, logits, semantic = self._loss(batch)
        self.val_loss.update(loss, weight=len(batch[0]))
        self.val_iou.update(logits.argmax(1), semantic)
        # Logged as metric objects: computed once per epoch over every rank's samples.
        self.log("val_loss", self.val_loss, prog_bar=True)
        self.log("val_miou", self.val_iou, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    # The release, --labelset, --filter-by/--all (the train stage's statuses), --cache-dir,
    # --url-map, --cache-key, --asset-root and --workers: as every example and the CLI.
    add_data_options(p)
    add_decode_option(p)  # device: the datamodule decodes each batch on the accelerator
    p.add_argument(
        "--prefetch", action="store_true", help="download every asset into --cache-dir first"
    )
    data = p.add_argument_group("splits")
    data.add_argument("--split", choices=("ratio", "metadata"), default="ratio")
    data.add_argument("--val-fraction", type=float, default=0.25, help="with --split ratio")
    data.add_argument("--seed", type=int, default=0, help="split seed (and seed_everything)")
    data.add_argument("--split-key", default="split", help="metadata key with --split metadata")
    data.add_argument(
        "--val-filter-by",
        action="append",
        metavar="STATUS",
        help="label status to validate on (repeatable; default: those of --filter-by)",
    )
    run = p.add_argument_group("training")
    run.add_argument("--batch-size", type=int, default=2)
    run.add_argument("--lr", type=float, default=0.01)
    run.add_argument("--max-epochs", type=int, default=1)
    run.add_argument("--accelerator", default="cpu", help="cpu, gpu, auto, ...")
    run.add_argument("--devices", type=int, default=1, help="more than 1: DDP, one process each")
    run.add_argument("--fast-dev-run", action="store_true", help="one batch of each, no logs")
    run.add_argument("--root-dir", default=".", help="where logs and checkpoints go")
    run.add_argument("--resume", help="checkpoint to resume from")
    return p


def make_datamodule(args: argparse.Namespace) -> SegmentsDataModule:
    split: Split
    if args.split == "ratio":
        split = RatioSplit({"train": 1 - args.val_fraction, "val": args.val_fraction}, args.seed)
    else:
        split = MetadataSplit(args.split_key)
    options = dataset_options(args)
    train_statuses = options.pop("filter_by")
    return SegmentsDataModule(
        args.release,
        split=split,
        test_split=None,
        predict_split=None,
        filter_by={"train": train_statuses, "val": args.val_filter_by or train_statuses},
        target="semantic",
        prefetch=args.prefetch,
        batch_size=args.batch_size,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=args.accelerator != "cpu",
        **options,
    )


def main(argv: Sequence[str] | None = None, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    """Train; ``callbacks`` are added to the Trainer's (the tests record samples with one)."""
    args = parser().parse_args(argv)
    pl.seed_everything(args.seed, workers=True)
    dm = make_datamodule(args)
    # The model's size comes from the release's categories: the train dataset knows them.
    train = dm.dataset("train")
    print(train)
    model = TinyFCN(train.num_classes, ignore_index=train.ignore_index, lr=args.lr)
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_epochs=args.max_epochs,
        fast_dev_run=args.fast_dev_run,
        default_root_dir=args.root_dir,
        log_every_n_steps=1,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(model, datamodule=dm, ckpt_path=args.resume)
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        print(f"rank 0 of {trainer.world_size}: {metrics}")
    return trainer


if __name__ == "__main__":
    run(main, None)
