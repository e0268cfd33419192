"""What the examples share: the release and asset options, the dataset they describe, and
the plumbing of a plain PyTorch training loop that also runs under ``torchrun``.

Every example takes a release (a path or any fsspec URL; by default the demo release
bundled with the package) and the options ``segments-torch prefetch`` takes for selecting
samples and reading their assets (``--labelset``, ``--filter-by``, ``--all``,
``--cache-dir``, ``--url-map``, ``--cache-key``, ``--asset-root``), so that pointing an
example at your own data changes nothing but the command line. The training examples
also take ``--decode device`` (:func:`add_decode_option`): DataLoader workers then ship
JPEG bytes and one-byte segment maps, and :func:`train` moves each batch to the device and
decodes it there (``decoder(batch.to(device, non_blocking=True))``) before the model.

Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`setup_distributed` joins the process group
(``nccl`` on CUDA, ``gloo`` on CPU), :func:`wrap_model` wraps the model in
``DistributedDataParallel`` and :func:`make_loader` gives each rank a
``DistributedSampler`` share, reshuffled every epoch by :func:`train`.

Example:
    >>> parser = argparse.ArgumentParser()
    >>> add_data_options(parser)
    >>> args = parser.parse_args(["--filter-by", "REVIEWED", "--url-map", "s3://b/=/data/"])
    >>> options = dataset_options(args)
    >>> options["filter_by"], options["storage"].url_map
    (['REVIEWED'], {'s3://b/': '/data/'})
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from segments_torch import SegmentsDataset, SegmentsTorchError

# The command line's own parsing of the asset options: one definition of --url-map & co.
from segments_torch.cli import (
    add_selection_options,
    add_storage_options,
    selected_statuses,
    storage_from_args,
)
from segments_torch.demo import RELEASE_PATH
from segments_torch.device import DeviceDecoder

__all__ = [
    "Distributed",
    "add_data_options",
    "add_decode_option",
    "add_training_options",
    "dataset_options",
    "make_loader",
    "ready_batch",
    "run",
    "setup_distributed",
    "to_device",
    "train",
    "wrap_model",
]


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The release, which of its samples, where their assets come from, and DataLoader
    workers."""
    add_selection_options(parser, default_release=str(RELEASE_PATH))
    add_storage_options(parser, cache_required=False)
    parser.add_argument(
        "--workers", type=int, default=2, help="DataLoader workers per process (default 2)"
    )
    parser.set_defaults(decode="host")  # for the examples without --decode


def add_decode_option(parser: argparse.ArgumentParser) -> None:
    """``--decode {host,device}``: where images are decoded and targets built."""
    parser.add_argument(
        "--decode",
        choices=("host", "device"),
        default="host",
        help="host (default): DataLoader workers decode images and build targets; device: "
        "workers ship JPEG bytes and segment maps, the training device decodes them",
    )


def add_training_options(
    parser: argparse.ArgumentParser, *, size: int, batch_size: int, lr: float
) -> None:
    """Steps, batch size, learning rate, input size, seed, device and ``--overfit``."""
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps (default 20)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="per process")
    parser.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate ({lr})")
    parser.add_argument(
        "--size", type=int, default=size, help=f"side of the training crops in pixels ({size})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--overfit",
        action="store_true",
        help="train on the first batch over and over: a check that the model can learn",
    )


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """``SegmentsDataset`` keyword arguments from :func:`add_data_options`' options: the
    selection, the one ``storage`` the asset options describe, and ``decode``."""
    return {
        "labelset": args.labelset,
        "filter_by": selected_statuses(args),
        "storage": storage_from_args(args),
        "decode": args.decode,
    }


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints."""
        return self.rank == 0


def setup_distributed(device: str | None = None) -> Distributed:
    """Join the process group when run by ``torchrun`` with ``WORLD_SIZE`` > 1.

    The backend follows the device: ``nccl`` for CUDA (one GPU per process, picked by
    ``LOCAL_RANK``), ``gloo`` for CPU. Without ``torchrun`` nothing is initialised.

    Example:
        >>> setup_distributed("cpu")  # not under torchrun
        Distributed(rank=0, world_size=1, device=device(type='cpu'))
    """
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(0, 1, chosen)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), chosen)


def training_dataset(
    args: argparse.Namespace, where: Distributed, *, target: str, transforms: Any, **extra: Any
) -> SegmentsDataset:
    """The dataset the options select, with ``target``, ``transforms`` and any ``extra``
    keyword; the main process prints it, its categories and where it trains."""
    dataset = SegmentsDataset(
        args.release, target=target, transforms=transforms, **dataset_options(args), **extra
    )
    if where.is_main:
        print(dataset)
        print(dataset.categories)
        decoded = ", decode='device'" if dataset.decode == "device" else ""
        print(f"processes {where.world_size}, device {where.device}{decoded}")
    return dataset


def wrap_model(model: nn.Module, where: Distributed) -> nn.Module:
    """The model on its device; under ``torchrun``, inside ``DistributedDataParallel``
    (which also makes every rank start from rank 0's weights)."""
    model.to(where.device)
    if where.world_size == 1:
        return model
    device_ids = [where.device] if where.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def make_loader(
    dataset: SegmentsDataset,
    args: argparse.Namespace,
    where: Distributed,
    *,
    drop_last: bool = False,
) -> tuple[DataLoader[Any], Sampler[int]]:
    """A shuffling DataLoader over ``dataset`` with its ``collate_fn``: over this rank's
    ``DistributedSampler`` share under ``torchrun``, else over all samples."""
    if len(dataset) == 0:  # samplers refuse empty datasets with a less helpful message
        raise SystemExit(
            f"error: {dataset.release.source}: no sample selected; see --labelset, "
            "--filter-by and --all"
        )
    sampler: Sampler[int]
    if where.world_size > 1:
        sampler = DistributedSampler(
            dataset, num_replicas=where.world_size, rank=where.rank, shuffle=True, seed=args.seed
        )
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(args.seed))
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        collate_fn=dataset.collate_fn,
        pin_memory=where.device.type == "cuda",
        persistent_workers=args.workers > 0,
        drop_last=drop_last,
    )
    if len(loader) == 0:
        share = len(sampler) if isinstance(sampler, DistributedSampler) else len(dataset)
        raise SystemExit(
            f"error: no batch of {args.batch_size} from {share} sample"
            f"{'' if share == 1 else 's'} per process; select more samples or pass a "
            "smaller --batch-size"
        )
    return loader, sampler


def _batches(
    loader: DataLoader[Any],
    sampler: Sampler[int],
    steps: int,
    overfit: bool,
    ready: Callable[[Any], Any],
) -> Iterator[Any]:
    """``steps`` batches made ``ready`` for the model, epoch after epoch (each with its own
    shuffle), or the first batch ``steps`` times with ``overfit`` (made ready once: with
    ``decode="device"`` its random transforms run once, as a worker's would)."""
    if overfit:
        first = ready(next(iter(loader)))
        for _ in range(steps):
            yield first
        return
    epoch, served = 0, 0
    while served < steps:
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)  # else every epoch repeats the first one's order
        for batch in loader:
            yield ready(batch)
            served += 1
            if served == steps:
                return
        epoch += 1


def train(
    model: nn.Module,
    loss_of: Callable[[nn.Module, Any], torch.Tensor],
    loader: DataLoader[Any],
    sampler: Sampler[int],
    args: argparse.Namespace,
    where: Distributed,
) -> list[float]:
    """Run ``args.steps`` AdamW steps of ``loss_of(model, batch)`` (the batch moved to the
    device and, with ``decode="device"``, decoded there: see :func:`ready_batch`); print
    and return each step's loss, averaged over the ranks.

    Example:
        >>> losses = train(model, loss_of, loader, sampler, args, where)  # doctest: +SKIP
        step 1/20  loss 4.2113  0.84 s
    """
    dataset = loader.dataset
    decoder = None
    if isinstance(dataset, SegmentsDataset) and dataset.decode == "device":
        decoder = dataset.device_decoder()  # the dataset's target kind and transforms

    def ready(batch: Any) -> Any:
        return ready_batch(batch, where.device, decoder)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()
    losses = []
    for step, batch in enumerate(_batches(loader, sampler, args.steps, args.overfit, ready), 1):
        start = time.perf_counter()
        loss = loss_of(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        shown = loss.detach().clone()
        if where.world_size > 1:
            dist.all_reduce(shown)
            shown /= where.world_size
        losses.append(float(shown))
        if where.is_main:
            seconds = time.perf_counter() - start
            print(f"step {step}/{args.steps}  loss {losses[-1]:.4f}  {seconds:.2f} s", flush=True)
    return losses


def ready_batch(batch: Any, device: torch.device, decoder: DeviceDecoder | None) -> Any:
    """A loader's batch as the model takes it, on ``device``.

    With ``decode="device"`` (a ``decoder``), the batch is a
    :class:`~segments_torch.device.DeviceBatch` of JPEG bytes and segment maps: it moves to
    the device (pinned by the DataLoader on CUDA, so the copies do not block), then the decoder
    decodes the images and builds the targets there, giving what ``decode="host"`` gives.
    Otherwise the batch is decoded already and only its tensors move.

    Example:
        >>> decoder = dataset.device_decoder()  # doctest: +SKIP
        >>> images, targets = ready_batch(batch, torch.device("cuda"), decoder)  # doctest: +SKIP
    """
    if decoder is not None:
        return decoder(batch.to(device, non_blocking=True))
    return to_device(batch, device)


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors (tv_tensors keep their type) in nested tuples, lists and dicts moved to
    ``device``; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_device(item, device) for item in value)
    return value


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None) -> None:
    """Call ``main(argv)``; a ``SegmentsTorchError`` (bad release, unknown labelset, bad
    ``--url-map``, unreadable asset) exits with one line on stderr, and the process group
    is left however ``main`` ends."""
    try:
        main(argv)
    except SegmentsTorchError as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
