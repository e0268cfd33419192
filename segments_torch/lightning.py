"""``SegmentsDataModule``: a release as a Lightning ``LightningDataModule`` (extra ``lightning``).

Lightning's conventions, with the release behind them:

- ``prepare_data()`` (once per node, on local rank 0): loads and validates the release and,
  with ``prefetch=True``, downloads every selected image and bitmap into ``cache_dir`` and
  decodes every bitmap into ``label_cache``.
- ``setup(stage)`` (on every rank): splits the release with the ``split`` rule (see
  :mod:`segments_torch.splits`) and builds one :class:`~segments_torch.dataset.SegmentsDataset`
  per stage, each with its own label-status filter and transforms.
- ``train/val/test/predict_dataloader()``: DataLoaders with the dataset's ``collate_fn``.
- With ``decode="device"``, ``on_after_batch_transfer()``: each batch, once Lightning has
  moved it to the model's device, decoded there by its stage's
  :meth:`~segments_torch.dataset.SegmentsDataset.device_decoder`, so ``training_step`` gets
  the ``(images, targets)`` of ``decode="host"`` (see :mod:`segments_torch.device`).
- ``state_dict()`` / ``load_state_dict()``: the split rule, the stages' split names and
  filters, and a fingerprint of each stage's samples, so a resumed run splits as the run
  that wrote the checkpoint (and says so when the release changed in between).

Under Lightning's DDP strategy each rank reads a disjoint share of every stage. Training
uses the ``DistributedSampler`` Lightning injects (shuffled per epoch; when the train split
does not divide by the number of ranks it repeats up to ``world_size - 1`` samples so
every rank runs as many steps). Validation and test use an unrepeated sampler instead,
so every sample is evaluated exactly once (``exact_distributed_eval``).

Example:
    >>> import lightning.pytorch as pl
    >>> from segments_torch.lightning import SegmentsDataModule
    >>> from segments_torch.splits import RatioSplit
    >>> dm = SegmentsDataModule(
    ...     "flowers-v1.0.json",
    ...     split=RatioSplit({"train": 0.8, "val": 0.2}, seed=0),
    ...     filter_by={"train": ["LABELED", "REVIEWED"], "val": ["REVIEWED"]},
    ...     target="semantic", batch_size=8, num_workers=4,
    ... )  # doctest: +SKIP
    >>> pl.Trainer(max_epochs=10).fit(model, datamodule=dm)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import MissingExtraError, OptionError, SegmentsTorchError

try:
    import lightning.pytorch as pl
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
except ImportError as exc:  # the extra is optional: say which one to install
    raise MissingExtraError(
        "segments_torch.lightning needs Lightning, which is not installed: "
        "pip install 'segments-torch[lightning]'"
    ) from exc
import numpy as np
from lightning.pytorch.trainer.states import RunningStage
from torch.utils.data import DataLoader, Sampler

from .dataset import SegmentsDataset
from .device import DeviceBatch
from .release import Release, ReleaseSource, load_release
from .splits import Split, SplitAssignment, SplitError, sample_keys, split_from_dict
from .storage import STORAGE_SETTINGS, Storage, make_storage, prefetch
from .urls import release_base_url

__all__ = ["STAGES", "SegmentsDataModule"]

logger = logging.getLogger(__name__)

#: The datamodule's stages: each has a split name, a label-status filter and a DataLoader.
STAGES: tuple[str, ...] = ("train", "val", "test", "predict")

#: Which stages each of Lightning's ``setup(stage)`` values builds.
_LIGHTNING_STAGES: dict[str | None, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: STAGES,
}

Statuses = str | Sequence[str] | None

#: The stage whose dataset a batch comes from, by what the Trainer is running.
_RUNNING_STAGES: dict[RunningStage | None, str] = {
    RunningStage.TRAINING: "train",
    RunningStage.SANITY_CHECKING: "val",
    RunningStage.VALIDATING: "val",
    RunningStage.TESTING: "test",
    RunningStage.PREDICTING: "predict",
}

#: Version of the ``state_dict()`` layout.
_STATE_VERSION = 1


#: What the datamodule gives each stage's dataset itself, and the argument to use instead.
_PER_STAGE = {
    "rows": "split= and the stage's *_split",
    "transforms": "train_transforms= and eval_transforms=",
}


def _check_dataset_options(options: Mapping[str, Any]) -> None:
    """Refuse, now rather than at the first stage's setup, a keyword that no
    SegmentsDataset takes, or one the datamodule sets per stage."""
    for name in options:
        if name in _PER_STAGE:
            raise OptionError(
                f"SegmentsDataModule sets {name}= per stage; use {_PER_STAGE[name]} instead"
            )
    parameters = inspect.signature(SegmentsDataset).parameters.values()
    taken = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = [name for name in options if name not in taken]
    if unknown:
        raise OptionError(
            f"SegmentsDataModule got unexpected keyword arguments "
            f"{', '.join(map(repr, unknown))}: neither its own nor SegmentsDataset's"
        )


def _statuses(value: Statuses) -> list[str] | None:
    """A status filter in JSON-ready form (checkpoints hold it)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


class SegmentsDataModule(pl.LightningDataModule):
    """A Segments.ai release as a ``LightningDataModule`` with train/val/test/predict splits.

    Args:
        release: a :class:`~segments_torch.release.Release`, or anything
            :func:`~segments_torch.release.load_release` accepts (path, fsspec URL, dict).
        split: the rule that puts each sample in a split: a
            :class:`~segments_torch.splits.RatioSplit` (by ratio with a seed, stable when
            the release grows), :class:`~segments_torch.splits.MetadataSplit` (by a
            metadata key) or :class:`~segments_torch.splits.ListSplit` (explicit uuids or
            names).
        train_split: the split the train stage reads; ``None`` turns the stage off (its
            dataloader is empty).
        val_split: the split the val stage reads (``None``: off).
        test_split: the split the test stage reads (``None``: off).
        predict_split: the split the predict stage reads (``None``: off).
        filter_by: label statuses to keep, for every stage (``["LABELED", "REVIEWED"]``),
            or per stage: ``{"train": ["LABELED", "REVIEWED"], "val": ["REVIEWED"]}``
            (stages left out keep LABELED and REVIEWED); ``None`` keeps every status.
        train_transforms: ``transforms(image, target)`` of the train stage.
        eval_transforms: those of the val, test and predict stages.
        batch_size: train batch size.
        eval_batch_size: the val, test and predict batch size (default ``batch_size``).
        num_workers: passed to every ``DataLoader``.
        pin_memory: passed to every ``DataLoader``.
        persistent_workers: passed to every ``DataLoader``.
        shuffle: of the train ``DataLoader`` (Lightning turns it into a shuffling
            ``DistributedSampler`` under DDP).
        drop_last: of the train ``DataLoader``.
        dataloader_options: more ``DataLoader`` arguments (``prefetch_factor``,
            ``multiprocessing_context``, ...).
        prefetch: in ``prepare_data()``, before training starts, download the assets of
            every stage's samples into ``cache_dir`` (``prefetch_workers`` at a time), and
            store their decoded labels in ``label_cache`` (``num_workers`` worker
            processes decode the bitmaps; see
            :func:`~segments_torch.label_prefetch.fill_label_cache`), where each is given.
        prefetch_workers: downloads at a time in ``prepare_data()``.
        prepare_data_per_node: Lightning's flag: ``True`` (a node-local ``cache_dir`` and
            ``label_cache``) runs ``prepare_data()`` on local rank 0 of every node, ``False``
            (folders on a file system all nodes share) on global rank 0 only.
        exact_distributed_eval: under DDP, validate and test every sample exactly once (an
            unrepeated sampler: ranks may run one batch fewer than others, so validation
            steps must not call collectives per step); ``False`` keeps Lightning's padding
            ``DistributedSampler``.
        decode: ``"host"`` (the default): workers decode every item. ``"device"``: workers
            ship JPEG bytes and segment maps (:class:`~segments_torch.device.DeviceBatch`)
            and :meth:`on_after_batch_transfer` decodes each batch on the model's device,
            then passes it to the LightningModule's own ``on_after_batch_transfer``.
            Lightning then warns, for a LightningModule that overrides that hook, that it
            uses the DataModule's: both run, the module's on decoded batches.
        filter_by_metadata: metadata key/value pairs a sample must all have, for every
            stage (as :class:`~segments_torch.dataset.SegmentsDataset`'s).
        storage: where assets come from and are kept, for every stage and for the
            release file itself (a :class:`~segments_torch.storage.Storage`: fsspec options,
            mirrors, ``cache_dir`` for ``prefetch``, ``label_cache``, retries); or its
            settings as keywords (``cache_dir=...``, see
            :class:`~segments_torch.storage.StorageSettings`), not both. Every stage's
            dataset shares it.
        dataset_options: every other keyword goes to each stage's
            :class:`~segments_torch.dataset.SegmentsDataset` as it is: ``labelset``,
            ``task``, ``target``, ``categories``, ``ignore_index``, ``label_offset``,
            ``shared_memory``, ``on_error``, ``max_pixels``, ``decode``, ``size``,
            ``max_size``, ``background``. Checked here: a keyword the dataset does not
            take, or one the datamodule sets per stage (``rows``, ``transforms``), is
            refused with :class:`~segments_torch.errors.OptionError`.

    Example:
        >>> dm = SegmentsDataModule("flowers.json", split=MetadataSplit("split"),
        ...                         target="instance", batch_size=4)  # doctest: +SKIP
        >>> dm.setup("fit")  # doctest: +SKIP
        >>> len(dm.dataset("train")), len(dm.dataset("val"))  # doctest: +SKIP
        (412, 51)
    """

    def __init__(
        self,
        release: Release | ReleaseSource,
        *,
        split: Split,
        train_split: str | None = "train",
        val_split: str | None = "val",
        test_split: str | None = "test",
        predict_split: str | None = "test",
        filter_by: Statuses | Mapping[str, Statuses] = ("LABELED", "REVIEWED"),
        filter_by_metadata: Mapping[str, Any] | None = None,
        train_transforms: Callable[[Any, Any], Any] | None = None,
        eval_transforms: Callable[[Any, Any], Any] | None = None,
        storage: Storage | None = None,
        batch_size: int = 2,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        shuffle: bool = True,
        drop_last: bool = False,
        dataloader_options: Mapping[str, Any] | None = None,
        prefetch: bool = False,
        prefetch_workers: int = 8,
        prepare_data_per_node: bool = True,
        exact_distributed_eval: bool = True,
        **dataset_options: Any,
    ) -> None:
        super().__init__()
        if not isinstance(split, Split):
            raise SplitError(
                f"split must be a RatioSplit, MetadataSplit or ListSplit, not {split!r}"
            )
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(
                f"batch sizes must be at least 1, not {batch_size} and {eval_batch_size}"
            )
        if persistent_workers and num_workers < 1:
            raise ValueError("persistent_workers=True needs num_workers > 0")
        settings = {k: dataset_options.pop(k) for k in STORAGE_SETTINGS if k in dataset_options}
        #: The storage of every stage's dataset and of the release file.
        self.storage = make_storage(storage, settings, "SegmentsDataModule")
        if isinstance(release, str | os.PathLike):
            # The folder as given, user:password@ included (Release.source drops it).
            self.storage = self.storage.with_default_base_url(release_base_url(os.fspath(release)))
        if prefetch and self.storage.cache_dir is None and self.storage.label_cache is None:
            raise ValueError("prefetch=True needs a cache_dir to download into or a label_cache")
        _check_dataset_options(dataset_options)
        #: What every stage's SegmentsDataset gets besides the storage; filters, rows and
        #: transforms vary by stage.
        self.dataset_options: dict[str, Any] = dataset_options
        self.release_source = release
        self.split = split
        self.split_names: dict[str, str | None] = {
            "train": train_split,
            "val": val_split,
            "test": test_split,
            "predict": predict_split,
        }
        self.filters = self._stage_filters(filter_by)
        self.filter_by_metadata = dict(filter_by_metadata) if filter_by_metadata else None
        self.transforms = {
            "train": train_transforms,
            "val": eval_transforms,
            "test": eval_transforms,
            "predict": eval_transforms,
        }
        if dataset_options.get("decode") == "device":
            # Lightning calls a DataModule's hook only where it overrides the base class's:
            # set on the instance, so that with decode="host" a LightningModule's own
            # on_after_batch_transfer runs as it did, without Lightning's warning.
            self.on_after_batch_transfer = self._decode_batch  # type: ignore[method-assign]
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.loader_options: dict[str, Any] = {
            "num_workers": num_workers,
            "pin_memory": pin_memory,
            "persistent_workers": persistent_workers,
            **(dataloader_options or {}),
        }
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.prefetch = prefetch
        self.prefetch_workers = prefetch_workers
        self.prepare_data_per_node = prepare_data_per_node
        self.exact_distributed_eval = exact_distributed_eval
        self._release: Release | None = None
        self._assignment: SplitAssignment | None = None
        self._datasets: dict[str, SegmentsDataset] = {}
        # Fingerprints of each stage's samples read from a checkpoint, checked on rebuild.
        self._restored: dict[str, dict[str, Any]] = {}
        # Each built stage's fingerprint, computed once (hashing 10^6 uuids takes a second).
        self._fingerprints: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _stage_filters(filter_by: Statuses | Mapping[str, Statuses]) -> dict[str, list[str] | None]:
        default: list[str] | None = ["LABELED", "REVIEWED"]
        if not isinstance(filter_by, Mapping):
            return dict.fromkeys(STAGES, _statuses(filter_by))
        unknown = sorted(set(filter_by) - set(STAGES))
        if unknown:
            raise ValueError(
                f"filter_by names unknown stages {', '.join(map(repr, unknown))}; the stages "
                f"are {', '.join(map(repr, STAGES))}"
            )
        return {stage: _statuses(filter_by.get(stage, default)) for stage in STAGES}

    # -- Lightning's hooks -----------------------------------------------------------------

    def prepare_data(self) -> None:
        """Load and validate the release; with ``prefetch=True`` download the assets of
        every stage's samples into ``cache_dir``, then store their decoded labels in
        ``label_cache`` (where each is given).

        Lightning runs it once per node (local rank 0) while the other ranks wait, so they
        start on a full node-local cache. Files and labels already cached are kept.

        Raises:
            SegmentsTorchError: some assets failed to download, or some labels to be
                made, and ``on_error="raise"``; the message names them and why.
        """
        release = self.release
        if not self.prefetch:
            return
        datasets = [self.dataset(stage) for stage in self._available(STAGES)]
        if not datasets:
            return
        if self.storage.cache_dir is not None:
            self._prefetch_assets(release, datasets)
        if self.storage.label_cache is not None:
            self._fill_label_cache(datasets)

    def _prefetch_assets(self, release: Release, datasets: list[SegmentsDataset]) -> None:
        images = release.samples.image_urls
        # By release row: with sequence=True, ds[i] is a sequence of rows.
        urls = [
            url
            for ds in datasets
            for row in ds.rows.tolist()
            for url in (images[row], release.samples.labels[ds.labelset].bitmap_urls[row])
            if url
        ]
        report = prefetch(self.storage, urls, workers=self.prefetch_workers)
        logger.info(
            "prefetch into %s: %d downloaded (%d bytes), %d already cached, %d failed",
            self.storage.cache_dir,
            report.downloaded,
            report.bytes_downloaded,
            report.already_cached,
            len(report.failed),
        )
        self._failed(
            f"prefetch into {self.storage.cache_dir}",
            report.failed,
            f"{len(dict.fromkeys(urls))} assets",
        )

    def _fill_label_cache(self, datasets: list[SegmentsDataset]) -> None:
        from .label_prefetch import fill_label_cache

        # One dataset of every stage's samples: a sample of two stages is decoded once.
        rows = np.unique(np.concatenate([ds.rows for ds in datasets]))
        everything = self._make_dataset(filter_by=None, rows=rows)
        report = fill_label_cache(
            everything, workers=self.loader_options["num_workers"], progress=False
        )
        folder = self.storage.label_cache
        logger.info(
            "label cache %s: %d made, %d reused, %d failed; %d bytes for %d bytes of PNGs",
            folder,
            report.made,
            report.reused,
            len(report.failed),
            report.entry_bytes,
            report.png_bytes,
        )
        labels = report.made + report.reused + len(report.failed)
        self._failed(f"label cache {folder}", report.failed, f"{labels} labels")

    def _failed(self, what: str, failed: Mapping[str, str], total: str) -> None:
        """Raise (``on_error="raise"``) or warn of the failures of a prefetch, if any:
        ``what`` did it, ``failed`` maps what failed to why, out of ``total``."""
        if not failed:
            return
        failures = "; ".join(f"{name}: {why}" for name, why in list(failed.items())[:5])
        more = len(failed) - 5
        message = f"{what}: {len(failed)} of {total} failed: {failures}" + (
            f" and {more} more" if more > 0 else ""
        )
        if self.dataset_options.get("on_error") != "skip":
            raise SegmentsTorchError(message)
        logger.warning("%s (on_error='skip': training goes on without them)", message)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of Lightning's ``stage`` (``"fit"``: train and val;
        ``"validate"``, ``"test"``, ``"predict"``; ``None``: all four) on this rank."""
        if stage not in _LIGHTNING_STAGES:
            raise ValueError(
                f"stage must be one of 'fit', 'validate', 'test', 'predict' or None, not {stage!r}"
            )
        stages = _LIGHTNING_STAGES[stage]
        # setup(None) builds what the split rule has; a named stage must exist.
        for name in self._available(stages) if stage is None else stages:
            if self.split_names[name] is not None:
                self.dataset(name)

    def train_dataloader(self) -> DataLoader[Any] | list[Any]:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader[Any] | list[Any]:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader[Any] | list[Any]:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader[Any] | list[Any]:
        return self._loader("predict")

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to split as this one: the split rule (with its seed),
        each stage's split name and filters, and per built stage the number of samples and
        a SHA-256 over their sorted uuids. JSON-ready; a few hundred bytes (plus the lists
        of a :class:`~segments_torch.splits.ListSplit`)."""
        return {
            "version": _STATE_VERSION,
            "split": self.split.to_dict(),
            "split_names": dict(self.split_names),
            "filter_by": dict(self.filters),
            "filter_by_metadata": self.filter_by_metadata,
            "samples": {stage: self._fingerprint(stage) for stage in self._datasets},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the split rule, split names and filters of a checkpoint (they win over
        the constructor's, with a warning when they differ) and rebuild the datasets with
        them. A stage whose samples differ from the checkpoint's (the release grew, or
        labels changed status) is reported with a warning when it is rebuilt."""
        version = state_dict.get("version")
        if version != _STATE_VERSION:
            raise SegmentsTorchError(
                f"SegmentsDataModule state version {version!r} is not the one this version "
                f"reads ({_STATE_VERSION})"
            )
        restored = {
            "split": split_from_dict(state_dict["split"]),
            "split_names": dict(state_dict["split_names"]),
            "filters": dict(state_dict["filter_by"]),
            "filter_by_metadata": state_dict["filter_by_metadata"],
        }
        for name, value in restored.items():
            if getattr(self, name) != value:
                logger.warning(
                    "SegmentsDataModule: the checkpoint's %s %r replaces this run's %r",
                    name,
                    value,
                    getattr(self, name),
                )
                setattr(self, name, value)
        self._assignment = None
        self._datasets.clear()  # rebuilt on demand with the restored settings
        self._fingerprints.clear()
        self._restored = dict(state_dict.get("samples", {}))

    def _decode_batch(self, batch: Any, dataloader_idx: int) -> Any:
        """``on_after_batch_transfer`` with ``decode="device"``: a
        :class:`~segments_torch.device.DeviceBatch` that Lightning moved to the model's
        device decoded there by the decoder of the dataset of the stage the Trainer runs,
        then handed to the LightningModule's own ``on_after_batch_transfer``.

        Raises:
            SegmentsTorchError: a DeviceBatch outside a Trainer's loop, where no stage
                says which dataset's decoder to use.
        """
        trainer = self.trainer
        if isinstance(batch, DeviceBatch):
            stage = _RUNNING_STAGES.get(trainer.state.stage) if trainer is not None else None
            if stage is None:
                raise SegmentsTorchError(
                    "SegmentsDataModule decodes a DeviceBatch in a Trainer's train, "
                    "validation, test or predict loop, whose stage names the dataset; "
                    "outside one, call dm.dataset(stage).device_decoder()(batch)"
                )
            batch = self.dataset(stage).device_decoder()(batch)
        if trainer is None:
            return batch
        return trainer.lightning_module.on_after_batch_transfer(batch, dataloader_idx)

    # -- the pieces ------------------------------------------------------------------------

    @property
    def release(self) -> Release:
        """The release, loaded on first use (once per process)."""
        if self._release is None:
            source = self.release_source
            if isinstance(source, Release):
                self._release = source
            else:  # read as the assets are: the same storage
                self._release = load_release(source, storage=self.storage)
            # Without a path, relative asset URLs resolve against the release's own folder.
            self.storage = self.storage.with_default_base_url(
                release_base_url(self._release.source)
            )
        return self._release

    @property
    def assignment(self) -> SplitAssignment:
        """The split of every release row under ``split`` (computed once per process)."""
        if self._assignment is None:
            self._assignment = self.split.assign(self.release.samples)
            counts = ", ".join(f"{k}: {n}" for k, n in self._assignment.counts().items())
            logger.info(
                "%s: %s (%d samples in no split)", self.split, counts, self._assignment.unassigned
            )
        return self._assignment

    def dataset(self, stage: str) -> SegmentsDataset:
        """The dataset of ``stage`` (``"train"``, ``"val"``, ``"test"``, ``"predict"``),
        built on first use: the samples of the stage's split that pass its filters.

        Raises:
            SplitError: the stage is off (its split name is ``None``), or the split rule
                has no split of that name.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(map(repr, STAGES))}, not {stage!r}")
        if stage in self._datasets:
            return self._datasets[stage]
        split = self.split_names[stage]
        if split is None:
            raise SplitError(f"the {stage} stage is off ({stage}_split=None)")
        if split not in self.assignment.names:
            splits = ", ".join(map(repr, self.assignment.names)) or "none"
            raise SplitError(
                f"the {stage} stage reads split {split!r}, which {self.split} does not make "
                f"(its splits: {splits}); name one with {stage}_split=, or None to turn the "
                "stage off"
            )
        members = self.assignment.rows(split)
        ds = self._make_dataset(
            filter_by=self.filters[stage],
            filter_by_metadata=self.filter_by_metadata,
            rows=members,  # the split narrows what the filters keep
            transforms=self.transforms[stage],
        )
        logger.info("%s stage: split %r, %d samples", stage, split, len(ds))
        self._datasets[stage] = ds
        self._check_restored(stage)
        return ds

    def _make_dataset(self, **stage: Any) -> SegmentsDataset:
        """A SegmentsDataset of the release with the datamodule's storage and dataset
        options, and ``stage``'s own (filters, rows, transforms)."""
        release = self.release  # first: loading it settles the storage's base_url
        return SegmentsDataset(release, storage=self.storage, **self.dataset_options, **stage)

    def _available(self, stages: Sequence[str]) -> list[str]:
        """The stages that are on and whose split the rule has."""
        names = self.assignment.names
        return [stage for stage in stages if self.split_names[stage] in names]

    def _fingerprint(self, stage: str) -> dict[str, Any]:
        """The number of ``stage``'s samples and a SHA-256 over their sorted uuids."""
        if stage not in self._fingerprints:
            keys = sorted(sample_keys(self.release.samples, self._datasets[stage].rows))
            digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
            self._fingerprints[stage] = {"count": len(keys), "sha256": digest}
        return self._fingerprints[stage]

    def _check_restored(self, stage: str) -> None:
        expected = self._restored.get(stage)
        if expected is None:
            return
        found = self._fingerprint(stage)
        if found != expected:
            logger.warning(
                "SegmentsDataModule: the %s stage has %d samples, the checkpoint's had %d, "
                "and they are not the same samples (the release or its labels changed since)",
                stage,
                found["count"],
                expected["count"],
            )

    def _sampler(self, stage: str, ds: SegmentsDataset) -> Sampler[int] | None:
        """Under DDP, for val and test: every sample on exactly one rank (see the class)."""
        if stage not in ("val", "test") or not self.exact_distributed_eval:
            return None
        trainer = self.trainer
        placement = trainer.distributed_sampler_kwargs if trainer is not None else None
        # With fewer samples than ranks some rank would get no batch, which DDP cannot
        # run; Lightning's padding sampler (it warns) takes over.
        if not placement or placement["num_replicas"] < 2 or len(ds) < placement["num_replicas"]:
            return None
        sampler: Sampler[int] = UnrepeatedDistributedSampler(ds, shuffle=False, **placement)
        return sampler

    def _loader(self, stage: str) -> DataLoader[Any] | list[Any]:
        if self.split_names[stage] is None:
            return []  # Lightning runs no loop over an empty list
        ds = self.dataset(stage)
        train = stage == "train"
        sampler = self._sampler(stage, ds)
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=self.shuffle if train and sampler is None else None,
            sampler=sampler,
            drop_last=self.drop_last if train else False,
            collate_fn=ds.collate_fn,
            **self.loader_options,
        )

    def __repr__(self) -> str:
        stages = ", ".join(f"{k}={v!r}" for k, v in self.split_names.items())
        return f"SegmentsDataModule({self.release_source!r}, split={self.split!r}, {stages})"
