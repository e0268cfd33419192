"""SegmentsDataModule: splits per stage, dataloaders, prefetch, checkpoints, DDP, the example."""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.trainer.connectors import data_connector
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning_utilities.core.rank_zero import WarningCache
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

import segments_torch.dataset
from segments_torch import OptionError, SegmentsDataset, SegmentsTorchError, load_release
from segments_torch.demo import RELEASE_PATH, SEGMENTATION_SEQUENCE_RELEASE_PATH
from segments_torch.device import DeviceBatch
from segments_torch.lightning import STAGES, SegmentsDataModule
from segments_torch.splits import ListSplit, MetadataSplit, RatioSplit, SplitError
from segments_torch.storage import RetryPolicy, Storage
from tests.http_server import FileServer
from tests.items import CUDA, CUDA_IMAGE_BOUND, assert_close_images, assert_same, on_cpu

EXAMPLE = Path(__file__).parent.parent / "examples" / "lightning_train.py"
DEMO = load_release(RELEASE_PATH).samples
NAMES = list(DEMO.names)  # shapes-000.jpg ... shapes-007.jpg
# Demo statuses by row: 0 LABELED, 1 REVIEWED, 2 LABELED, 3 REVIEWED, 4 LABELED,
# 5 REJECTED, 6 UNLABELED (no bitmap), 7 REVIEWED. Metadata split: train 0 1 5, val 2 6 7.


def load_example() -> ModuleType:
    if str(EXAMPLE.parent) not in sys.path:  # the examples import their _common.py
        sys.path.insert(0, str(EXAMPLE.parent))
    spec = importlib.util.spec_from_file_location("lightning_train", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loader(dataloader: Any) -> DataLoader[Any]:
    assert isinstance(dataloader, DataLoader)
    return dataloader


def rows(dm: SegmentsDataModule, stage: str) -> list[int]:
    return [int(r) for r in dm.dataset(stage).rows]


# -- imports ---------------------------------------------------------------------------------


def test_importing_segments_torch_does_not_import_lightning():
    code = (
        "import sys, segments_torch, segments_torch.splits; "
        "segments_torch.SegmentsDataset; "
        "print('lightning' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_without_lightning_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['lightning'] = None\n"
        "try:\n"
        "    import segments_torch.lightning\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == (
        "MissingExtraError segments_torch.lightning needs Lightning, which is not installed: "
        "pip install 'segments-torch[lightning]'"
    )


def dataset_keywords() -> dict[str, Any]:
    """SegmentsDataset's keyword arguments and their defaults."""
    parameters = inspect.signature(SegmentsDataset).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


# transforms become train_transforms / eval_transforms; the splits choose the rows; the
# datamodule has filter_by (per stage), filter_by_metadata and storage of its own.
FORWARDED = sorted(
    set(dataset_keywords()) - {"transforms", "rows", "filter_by", "filter_by_metadata", "storage"}
)


def test_the_datamodule_names_no_dataset_argument_twice():
    own = set(inspect.signature(SegmentsDataModule).parameters)
    assert set(dataset_keywords()) - own == {"transforms", "rows", *FORWARDED}
    assert {"train_transforms", "eval_transforms", "batch_size", "num_workers"} <= own


@pytest.mark.parametrize("name", FORWARDED)
def test_the_datamodule_takes_every_dataset_argument(name):
    default = dataset_keywords()[name]
    dm = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), **{name: default})
    assert dm.dataset_options == {name: default}
    assert len(dm.dataset("train")) == 2


def test_the_datamodule_takes_every_storage_keyword(tmp_path):
    retry = RetryPolicy(attempts=2)
    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=MetadataSplit(),
        asset_root=str(tmp_path / "assets"),
        storage_options={"file": {"auto_mkdir": True}},
        url_map={"https://cdn.example/": str(tmp_path) + "/"},
        cache_dir=tmp_path / "cache",
        cache_key="url",
        timeout=7.0,
        retry=retry,
        label_cache=tmp_path / "labels",
    )
    storage = dm.storage
    assert storage.base_url == str(tmp_path / "assets")
    assert storage.storage_options == {"file": {"auto_mkdir": True}}
    assert storage.url_map == {"https://cdn.example/": str(tmp_path) + "/"}
    assert (storage.cache_dir, storage.cache_key) == (tmp_path / "cache", "url")
    assert (storage.timeout, storage.retry, storage.label_cache) == (
        7.0,
        retry,
        tmp_path / "labels",
    )
    assert dm.dataset_options == {}


def test_every_stage_shares_the_datamodules_storage(tmp_path):
    storage = Storage(cache_dir=tmp_path / "cache", label_cache=tmp_path / "labels")
    dm = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), storage=storage)
    # Relative asset URLs resolve against the release's folder: a copy with that base_url.
    assert dm.storage.base_url == str(RELEASE_PATH.parent)
    assert (dm.storage.cache_dir, dm.storage.label_cache) == (
        tmp_path / "cache",
        tmp_path / "labels",
    )
    assert dm.dataset("train").storage is dm.storage
    assert dm.dataset("val").storage is dm.storage
    assert dm.dataset("train").label_cache is not None


def test_a_release_object_gives_its_folder_to_the_shared_storage():
    dm = SegmentsDataModule(load_release(RELEASE_PATH), split=MetadataSplit())
    before = dm.storage
    assert before.base_url is None  # not yet known
    train = dm.dataset("train")
    assert dm.storage.base_url == str(RELEASE_PATH.parent)
    assert train.storage is dm.storage
    assert dm.dataset("val").storage is dm.storage


# -- stages, splits and filters --------------------------------------------------------------


def test_metadata_split_with_a_filter_per_stage():
    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=MetadataSplit("split"),
        filter_by={"train": ["LABELED", "REVIEWED"], "val": ["REVIEWED"]},
        test_split=None,
        predict_split=None,
    )
    dm.setup("fit")
    assert rows(dm, "train") == [0, 1]  # 5 is REJECTED
    assert rows(dm, "val") == [7]  # 2 is LABELED, 6 UNLABELED
    # Stages left out of the mapping keep LABELED and REVIEWED.
    same = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), filter_by={"train": None})
    assert rows(same, "train") == [0, 1, 5]
    assert rows(same, "val") == [2, 7]
    everything = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), filter_by=None)
    assert rows(everything, "val") == [2, 6, 7]


def test_ratio_and_list_splits_and_metadata_filters():
    dm = SegmentsDataModule(
        RELEASE_PATH, split=RatioSplit({"train": 0.5, "val": 0.5}, seed=0), filter_by=None
    )
    assert rows(dm, "train") == [0, 2, 4, 6, 7]
    assert rows(dm, "val") == [1, 3, 5]
    listed = SegmentsDataModule(
        RELEASE_PATH,
        split=ListSplit({"train": NAMES[:4], "test": NAMES[4:]}),
        val_split="test",
        filter_by_metadata={"split": "val"},
        filter_by=None,
    )
    assert rows(listed, "train") == [2]
    assert rows(listed, "val") == [6, 7]
    assert rows(listed, "test") == [6, 7]


def test_a_stage_whose_split_the_rule_lacks():
    dm = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit())
    dm.setup(None)  # builds what exists: train and val
    assert rows(dm, "train") == [0, 1]
    with pytest.raises(SplitError) as info:
        dm.setup("test")
    assert str(info.value) == (
        "the test stage reads split 'test', which MetadataSplit(key='split', values=None) "
        "does not make (its splits: 'train', 'val'); name one with test_split=, or None to "
        "turn the stage off"
    )
    off = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), test_split=None)
    off.setup("test")
    assert off.test_dataloader() == []
    with pytest.raises(SplitError) as info:
        off.dataset("test")
    assert str(info.value) == "the test stage is off (test_split=None)"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"filter_by": {"train": None, "valid": ["REVIEWED"]}},
            ValueError,
            "filter_by names unknown stages 'valid'; the stages are 'train', 'val', 'test', "
            "'predict'",
        ),
        (
            {"split": {"train": 0.8, "val": 0.2}},
            SplitError,
            "split must be a RatioSplit, MetadataSplit or ListSplit, not "
            "{'train': 0.8, 'val': 0.2}",
        ),
        ({"persistent_workers": True}, ValueError, "persistent_workers=True needs num_workers > 0"),
        (
            {"prefetch": True},
            ValueError,
            "prefetch=True needs a cache_dir to download into or a label_cache",
        ),
        ({"batch_size": 0}, ValueError, "batch sizes must be at least 1, not 0 and None"),
        (
            {"rows": [0, 1]},
            OptionError,
            "SegmentsDataModule sets rows= per stage; use split= and the stage's *_split instead",
        ),
        (
            {"transforms": None},
            OptionError,
            "SegmentsDataModule sets transforms= per stage; use train_transforms= and "
            "eval_transforms= instead",
        ),
        (
            {"targt": "semantic", "batchsize": 2},
            OptionError,
            "SegmentsDataModule got unexpected keyword arguments 'targt', 'batchsize': "
            "neither its own nor SegmentsDataset's",
        ),
        (
            {"storage": Storage(), "cache_dir": "/c", "label_cache": "/l"},
            OptionError,
            "SegmentsDataModule: storage= and cache_dir=, label_cache= given together; set "
            "them on the Storage: Storage(cache_dir=..., label_cache=...)",
        ),
    ],
)
def test_bad_arguments(kwargs, error, message):
    kwargs = {"split": MetadataSplit(), **kwargs}
    with pytest.raises(error) as info:
        SegmentsDataModule(RELEASE_PATH, **kwargs)
    assert str(info.value) == message


def test_bad_stage_names():
    dm = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit())
    with pytest.raises(ValueError, match=r"^stage must be one of 'fit', 'validate', 'test', "):
        dm.setup("train")
    with pytest.raises(
        ValueError, match=r"^stage must be one of 'train', 'val', 'test', 'predict'"
    ):
        dm.dataset("fit")


def test_dataset_arguments_reach_every_stage(tmp_path):
    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=MetadataSplit(),
        target="semantic",
        categories=["circle", "square"],
        ignore_index=100,
        shared_memory=False,
        max_pixels=1000,
        label_cache=tmp_path / "labels",
        size=50,
        max_size=60,
    )
    for stage in ("train", "val"):
        ds = dm.dataset(stage)
        assert (ds.size, ds.max_size) == (50, 60)
        assert (ds.target, ds.ignore_index, ds.num_classes) == ("semantic", 100, 2)
        assert ds.shared_memory is False
        assert ds.max_pixels == 1000
        assert ds.label_cache is not None
        assert ds.label_cache.folder == tmp_path / "labels"
        assert ds.categories.label_names == ["circle", "square"]


# -- dataloaders -----------------------------------------------------------------------------


def test_dataloaders_batch_with_the_dataset_collate():
    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=RatioSplit({"train": 0.5, "val": 0.5}, seed=0),
        filter_by={"train": None, "val": None},
        target="semantic",
        batch_size=2,
        eval_batch_size=3,
        shuffle=False,
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert [b[1]["image_id"].tolist() for b in batches] == [[0, 2], [4, 6], [7]]
    images, targets = batches[0]
    assert tuple(images.shape) == (2, 3, 240, 320)
    assert tuple(targets["semantic"].shape) == (2, 240, 320)
    (val,) = list(dm.val_dataloader())
    assert val[1]["image_id"].tolist() == [1, 3, 5]
    # Row 6 has no bitmap: all ignore index.
    assert bool((batches[1][1]["semantic"][1] == 255).all())


def test_train_shuffles_and_drops_last():
    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=RatioSplit({"train": 0.5, "val": 0.5}, seed=0),
        filter_by=None,
        target="semantic",
        batch_size=2,
        drop_last=True,
    )
    torch.manual_seed(0)
    seen = [b[1]["image_id"].tolist() for b in dm.train_dataloader()]
    assert len(seen) == 2
    assert all(len(batch) == 2 for batch in seen)
    assert {row for batch in seen for row in batch} < {0, 2, 4, 6, 7}
    orders = set()
    for seed in range(4):
        torch.manual_seed(seed)
        orders.add(tuple(int(i) for i in loader(dm.train_dataloader()).sampler))
    assert len(orders) > 1


def test_loader_options_reach_the_dataloader():
    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=MetadataSplit(),
        num_workers=1,
        persistent_workers=True,
        pin_memory=True,
        dataloader_options={"prefetch_factor": 3},
    )
    val = loader(dm.val_dataloader())
    assert (val.num_workers, val.persistent_workers, val.pin_memory) == (1, True, True)
    assert val.prefetch_factor == 3
    assert val.collate_fn == dm.dataset("val").collate_fn


def test_train_and_eval_transforms():
    def tag(stage: str):
        def transforms(image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            return image, {**target, "stage": stage}

        return transforms

    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=MetadataSplit(),
        train_transforms=tag("train"),
        eval_transforms=tag("eval"),
        test_split="val",
        predict_split="val",
    )
    _, (target, *_) = next(iter(dm.train_dataloader()))
    assert target["stage"] == "train"
    for eval_loader in (dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        _, (target, *_) = next(iter(eval_loader))
        assert target["stage"] == "eval"


class _Trainer(SimpleNamespace):
    """What the datamodule asks of a trainer under DDP."""


@pytest.mark.parametrize(("rank", "expected"), [(0, [1, 5]), (1, [3])])
def test_eval_under_ddp_reads_each_sample_once(rank, expected):
    dm = SegmentsDataModule(
        RELEASE_PATH, split=RatioSplit({"train": 0.5, "val": 0.5}, seed=0), filter_by=None
    )
    dm.trainer = _Trainer(distributed_sampler_kwargs={"num_replicas": 2, "rank": rank})  # type: ignore[assignment]
    assert [int(r) for b in dm.val_dataloader() for r in (t["image_id"] for t in b[1])] == expected
    # The train loader is left to Lightning, which injects its DistributedSampler.
    assert isinstance(loader(dm.train_dataloader()).sampler, torch.utils.data.RandomSampler)
    dm.exact_distributed_eval = False
    assert isinstance(loader(dm.val_dataloader()).sampler, torch.utils.data.SequentialSampler)


def test_eval_under_ddp_with_fewer_samples_than_ranks_is_left_to_lightning():
    dm = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), filter_by={"val": ["REVIEWED"]})
    dm.trainer = _Trainer(distributed_sampler_kwargs={"num_replicas": 2, "rank": 1})  # type: ignore[assignment]
    assert len(dm.dataset("val")) == 1
    assert isinstance(loader(dm.val_dataloader()).sampler, torch.utils.data.SequentialSampler)


# -- decode="device": batches decoded after Lightning's transfer -----------------------------


class Recorder(pl.LightningModule):
    """Records the batch each step receives, with the loop it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[str, bool, Any]] = []

    def record(self, loop: str, batch: Any) -> None:
        self.seen.append((loop, self.trainer.sanity_checking, batch))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.record("train", batch)
        return (self.weight**2).sum()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.record("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.record("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> int:
        self.record("predict", batch)
        return len(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


QUIET: dict[str, Any] = {
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
}


def every_loop(
    decode: str, model: pl.LightningModule, accelerator: str = "cpu", **options: Any
) -> SegmentsDataModule:
    """Fit (a sanity check, two train batches, one val batch), test and predict on the
    metadata split, each stage with transforms of its own unless ``options`` say."""
    transforms = {
        "train_transforms": v2.RandomHorizontalFlip(p=1.0),
        "eval_transforms": v2.Resize((60, 80)),
    }
    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=MetadataSplit(),
        filter_by=None,
        test_split="val",
        predict_split="val",
        shuffle=False,
        batch_size=2,
        decode=decode,
        **{**transforms, **options},
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        **QUIET,
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    trainer.predict(model, datamodule=dm, return_predictions=False)
    return dm


@pytest.mark.parametrize("kind", ["instance", "semantic"])
def test_every_loop_gets_decoded_batches_equal_to_decode_host(kind):
    host, device = Recorder(), Recorder()
    every_loop("host", host, target=kind)
    every_loop("device", device, target=kind)
    assert [(loop, sanity) for loop, sanity, _ in device.seen] == [
        ("val", True),
        ("train", False),
        ("train", False),
        ("val", False),
        ("test", False),
        ("test", False),
        ("predict", False),
        ("predict", False),
    ]
    # Each stage's batches went through its own dataset's decoder: flipped for train,
    # resized to 60 x 80 for the others, as with decode="host".
    assert_same(device.seen, host.seen)
    image_ids = [
        t["image_id"].tolist() if kind == "semantic" else [int(x["image_id"]) for x in t]
        for _, _, (_, t) in device.seen
    ]
    assert image_ids == [[2, 6], [0, 1], [5], [2, 6], [2, 6], [7], [2, 6], [7]]


def test_decode_reaches_every_stage_and_sets_the_hook():
    host = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), test_split="val")
    device = SegmentsDataModule(
        RELEASE_PATH, split=MetadataSplit(), test_split="val", predict_split="val", decode="device"
    )
    for stage in STAGES[:3]:
        assert host.dataset(stage).decode == "host"
    loaders = [device.train_dataloader(), device.val_dataloader(), device.test_dataloader()]
    for stage, stage_loader in zip(STAGES, [*loaders, device.predict_dataloader()], strict=True):
        assert device.dataset(stage).decode == "device"
        assert isinstance(next(iter(stage_loader)), DeviceBatch)
    # Only decode="device" overrides the hook, so a LightningModule's own keeps running
    # under decode="host" without Lightning's warning about two of them.
    assert not is_overridden("on_after_batch_transfer", host)
    assert is_overridden("on_after_batch_transfer", device)
    with pytest.raises(ValueError, match=r"^decode must be 'host' or 'device', not 'gpu'$"):
        SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), decode="gpu").setup("fit")


def test_lightning_moves_a_device_batch_with_its_to(monkeypatch):
    dm = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), decode="device")
    batch = next(iter(dm.train_dataloader()))
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert isinstance(moved, DeviceBatch)
    assert moved is not batch  # DeviceBatch.to made it
    assert [s.image_id for s in moved.samples] == [s.image_id for s in batch.samples]
    calls: list[tuple[Any, dict[str, Any]]] = []

    def to(self: DeviceBatch, device: Any, **kwargs: Any) -> DeviceBatch:
        calls.append((device, kwargs))
        return self

    monkeypatch.setattr(DeviceBatch, "to", to)
    assert move_data_to_device(batch, "cuda:1") is batch
    # The whole batch in one call; non_blocking is what Lightning gives tensors alone.
    assert calls == [(torch.device("cuda:1"), {})]


def test_a_device_batch_outside_a_loop_says_how_to_decode_it():
    dm = SegmentsDataModule(RELEASE_PATH, split=MetadataSplit(), shuffle=False, decode="device")
    batch = next(iter(dm.train_dataloader()))
    with pytest.raises(SegmentsTorchError) as info:
        dm.on_after_batch_transfer(batch, 0)
    assert str(info.value) == (
        "SegmentsDataModule decodes a DeviceBatch in a Trainer's train, validation, test or "
        "predict loop, whose stage names the dataset; outside one, call "
        "dm.dataset(stage).device_decoder()(batch)"
    )
    _, targets = dm.dataset("train").device_decoder()(batch)
    assert [int(t["image_id"]) for t in targets] == [0, 1]


class Tagger(Recorder):
    """A LightningModule with its own ``on_after_batch_transfer``."""

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, targets = batch  # decoded already
        return images, [{**t, "tagged": torch.tensor(True)} for t in targets]


@pytest.mark.parametrize("decode", ["host", "device"])
def test_the_lightning_modules_own_hook_runs_on_decoded_batches(decode, monkeypatch, recwarn):
    monkeypatch.setattr(data_connector, "warning_cache", WarningCache())  # warned once a process
    model = Tagger()
    every_loop(decode, model)
    assert all(t["tagged"] for _, _, (_, targets) in model.seen for t in targets)
    both = [
        str(w.message)
        for w in recwarn
        if "overridden `on_after_batch_transfer` in both" in str(w.message)
    ]
    # Lightning says it uses the DataModule's hook; that hook hands the batch on.
    assert both == (
        []
        if decode == "host"
        else [
            "You have overridden `on_after_batch_transfer` in both `LightningModule` and "
            "`LightningDataModule`. It will use the implementation from `LightningDataModule` "
            "instance."
        ]
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA, pin_memory pins")
def test_pin_memory_without_an_accelerator_warns_and_decodes_as_ever():
    host, device = Recorder(), Recorder()
    every_loop("host", host, target="panoptic")
    with pytest.warns(UserWarning, match=r"^'pin_memory' argument is set as true") as warned:
        every_loop("device", device, target="panoptic", pin_memory=True)
    pinning = {str(w.message) for w in warned if "pin_memory" in str(w.message)}
    assert pinning == {
        "'pin_memory' argument is set as true but no accelerator is found, then device "
        "pinned memory won't be used."
    }
    assert_same(device.seen, host.seen)


@pytest.mark.gpu
@CUDA
def test_on_cuda_every_loop_gets_cuda_batches_with_the_host_targets():
    plain: dict[str, Any] = {"train_transforms": None, "eval_transforms": None}
    host, device = Recorder(), Recorder()
    every_loop("host", host, target="instance", **plain)
    dm = every_loop("device", device, "gpu", target="instance", pin_memory=True, **plain)
    assert len(device.seen) == len(host.seen) == 8
    for (_, _, (images, targets)), (_, _, (want_images, want_targets)) in zip(
        device.seen, host.seen, strict=True
    ):
        for got, want in zip(images, want_images, strict=True):
            assert got.device.type == "cuda"
            assert got.shape == want.shape
            assert_close_images(got, want, bound=CUDA_IMAGE_BOUND)
        for got_target, want_target in zip(targets, want_targets, strict=True):
            assert {k: v.device.type for k, v in got_target.items()} == dict.fromkeys(
                want_target, "cuda"
            )
            assert_same({k: on_cpu(v) for k, v in got_target.items()}, want_target)
    batch = next(iter(dm.train_dataloader()))  # DataLoader(pin_memory=True) pinned it
    assert all(s.label.segments.is_pinned() for s in batch.samples)


# -- prepare_data: prefetch into the cache ---------------------------------------------------


def serve_demo(root: Path) -> Path:
    demo = Path(RELEASE_PATH).parent
    served = root / "served"
    for part in ("images", "bitmaps"):
        shutil.copytree(demo / part, served / part)
    shutil.copy(RELEASE_PATH, served / "release.json")
    return served


def asset_requests(server: FileServer) -> list[str]:
    return sorted(r.path for r in server.requests if not r.path.endswith("release.json"))


def test_prepare_data_prefetches_every_stage_into_the_cache(tmp_path, file_server: FileServer):
    serve_demo(tmp_path)
    dm = SegmentsDataModule(
        file_server.url_for("served/release.json"),
        split=MetadataSplit(),
        filter_by=None,
        target="semantic",
        cache_dir=tmp_path / "cache",
        prefetch=True,
        prefetch_workers=4,
    )
    dm.prepare_data()
    # train 0 1 5, val 2 6 7: six images and five bitmaps (6 has none), once each.
    expected = sorted(
        [f"served/images/shapes-00{i}.jpg" for i in (0, 1, 5, 6, 7)]
        + [f"served/bitmaps/shapes-00{i}.png" for i in (0, 1, 5, 7)]
        + ["served/images/shapes-002-exif.jpg", "served/bitmaps/shapes-002-exif.png"]
    )
    assert asset_requests(file_server) == expected
    assert len(list((tmp_path / "cache").glob("*/*"))) == 11
    dm.setup("fit")
    batches = list(dm.train_dataloader()) + list(dm.val_dataloader())
    assert sum(len(images) for images, _ in batches) == 6
    dm.prepare_data()  # a second run finds everything cached
    assert asset_requests(file_server) == expected  # every read came from the cache


def test_the_release_is_read_with_the_asset_storage_settings(tmp_path, file_server: FileServer):
    served = serve_demo(tmp_path)
    file_server.fail("served/release.json", 500)
    dm = SegmentsDataModule(
        file_server.url_for("served/release.json"),
        split=MetadataSplit(),
        retry=RetryPolicy(attempts=2, base_delay=0.001),
    )
    assert len(dm.release.samples) == 8
    assert file_server.count("served/release.json") == 2  # the 500, then the file
    mirrored = SegmentsDataModule(
        "https://bucket.example/served/release.json",
        split=MetadataSplit(),
        url_map={"https://bucket.example/served/": f"{served}/"},
    )
    assert mirrored.release.source == "https://bucket.example/served/release.json"
    mirrored.setup("fit")
    assert len(mirrored.dataset("train")[0]) == 2


def test_relative_assets_keep_the_release_urls_user_and_password(tmp_path, file_server):
    serve_demo(tmp_path)  # the demo's asset URLs are relative to the release file
    url = file_server.url_for("served/release.json").replace("//", "//user:pw@", 1)
    dm = SegmentsDataModule(url, split=MetadataSplit(), filter_by=None)
    assert dm.release.source == file_server.url_for("served/release.json")
    ds = dm.dataset("train")
    assert ds.storage.base_url == url.removesuffix("/release.json")
    ds[0]
    auth = {r.headers.get("Authorization") for r in file_server.requests if "images/" in r.path}
    assert auth == {"Basic dXNlcjpwdw=="}  # user:pw


def test_prefetch_failures_raise_or_warn(tmp_path, file_server: FileServer, caplog):
    served = serve_demo(tmp_path)
    (served / "bitmaps" / "shapes-001.png").unlink()
    options: dict[str, Any] = {
        "split": MetadataSplit(),
        "cache_dir": tmp_path / "cache",
        "prefetch": True,
    }
    url = file_server.url_for("served/release.json")
    with pytest.raises(SegmentsTorchError) as info:
        SegmentsDataModule(url, **options).prepare_data()
    assert str(info.value) == (
        f"prefetch into {tmp_path / 'cache'}: 1 of 8 assets failed: "
        f"{file_server.url}/served/bitmaps/shapes-001.png: not found (HTTP 404)"
    )
    with caplog.at_level(logging.WARNING, logger="segments_torch.lightning"):
        SegmentsDataModule(url, on_error="skip", **options).prepare_data()
    assert caplog.messages == [
        f"prefetch into {tmp_path / 'cache'}: 1 of 8 assets failed: "
        f"{file_server.url}/served/bitmaps/shapes-001.png: not found (HTTP 404) "
        "(on_error='skip': training goes on without them)"
    ]


def test_prepare_data_fills_the_label_cache_of_every_stage(
    tmp_path, file_server: FileServer, caplog, monkeypatch
):
    serve_demo(tmp_path)
    labels = tmp_path / "labels"
    dm = SegmentsDataModule(
        file_server.url_for("served/release.json"),
        # val, test and predict read one split: its bitmaps are decoded once all the same.
        split=ListSplit({"train": NAMES[:4], "test": NAMES[4:]}),
        val_split="test",
        filter_by=None,
        cache_dir=tmp_path / "cache",
        label_cache=labels,
        prefetch=True,
    )
    with caplog.at_level(logging.INFO, logger="segments_torch.lightning"):
        dm.prepare_data()
    assert [m for m in caplog.messages if m.startswith("label cache")] == [
        f"label cache {labels}: 7 made, 0 reused, 0 failed; {entry_bytes(labels)} bytes for "
        f"{bitmap_bytes()} bytes of PNGs"
    ]
    # Each asset downloaded once; the labels were decoded from the downloaded bitmaps.
    assert len(asset_requests(file_server)) == 15
    assert len(set(asset_requests(file_server))) == 15

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a bitmap was decoded")

    monkeypatch.setattr(segments_torch.dataset, "decode_bitmap", refuse)
    dm.setup("fit")
    batches = list(dm.train_dataloader()) + list(dm.val_dataloader())
    assert sum(len(images) for images, _ in batches) == 8


def test_label_cache_failures_raise_or_warn(tmp_path, file_server: FileServer, caplog):
    served = serve_demo(tmp_path)
    (served / "bitmaps" / "shapes-001.png").unlink()
    labels = tmp_path / "labels"
    options: dict[str, Any] = {"split": MetadataSplit(), "label_cache": labels, "prefetch": True}
    url = file_server.url_for("served/release.json")
    failure = (
        f"label cache {labels}: 1 of 4 labels failed: shapes-001.jpg: "
        f"{file_server.url}/served/bitmaps/shapes-001.png: not found (HTTP 404)"
    )
    with pytest.raises(SegmentsTorchError) as info:
        SegmentsDataModule(url, **options).prepare_data()
    assert str(info.value) == failure
    # Without a cache_dir only the bitmaps are read.
    assert all(path.startswith("served/bitmaps/") for path in asset_requests(file_server))
    with caplog.at_level(logging.WARNING, logger="segments_torch.lightning"):
        SegmentsDataModule(url, on_error="skip", **options).prepare_data()
    assert caplog.messages == [f"{failure} (on_error='skip': training goes on without them)"]


def entry_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.stlc"))


def bitmap_bytes() -> int:
    return sum(path.stat().st_size for path in (Path(RELEASE_PATH).parent / "bitmaps").iterdir())


# -- checkpoints -----------------------------------------------------------------------------


def test_state_dict_holds_the_split_and_a_fingerprint_of_each_stage():
    dm = SegmentsDataModule(
        RELEASE_PATH,
        split=RatioSplit({"train": 0.5, "val": 0.5}, seed=0),
        filter_by={"val": ["REVIEWED"]},
        test_split=None,
    )
    dm.setup("fit")
    state = dm.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert state["version"] == 1
    assert state["split"] == {"kind": "ratio", "ratios": {"train": 0.5, "val": 0.5}, "seed": 0}
    assert state["split_names"] == {"train": "train", "val": "val", "test": None, "predict": "test"}
    assert state["filter_by"]["val"] == ["REVIEWED"]
    assert state["filter_by"]["train"] == ["LABELED", "REVIEWED"]
    assert state["samples"]["train"]["count"] == 4  # 0 2 4 7
    assert state["samples"]["val"]["count"] == 2  # 1 3
    assert set(state["samples"]) == {"train", "val"}


def test_load_state_dict_restores_the_checkpoints_splits(caplog):
    before = SegmentsDataModule(
        RELEASE_PATH, split=RatioSplit({"train": 0.5, "val": 0.5}, seed=0), filter_by=None
    )
    before.setup("fit")
    state = before.state_dict()
    after = SegmentsDataModule(
        RELEASE_PATH, split=RatioSplit({"train": 0.5, "val": 0.5}, seed=7), filter_by=None
    )
    after.setup("fit")
    assert rows(after, "train") != rows(before, "train")
    with caplog.at_level(logging.WARNING, logger="segments_torch.lightning"):
        after.load_state_dict(state)
    assert caplog.messages == [
        "SegmentsDataModule: the checkpoint's split RatioSplit(ratios={'train': 0.5, 'val': "
        "0.5}, seed=0) replaces this run's RatioSplit(ratios={'train': 0.5, 'val': 0.5}, seed=7)"
    ]
    assert rows(after, "train") == rows(before, "train") == [0, 2, 4, 6, 7]
    assert rows(after, "val") == [1, 3, 5]
    with pytest.raises(SegmentsTorchError) as info:
        after.load_state_dict({**state, "version": 2})
    assert str(info.value) == (
        "SegmentsDataModule state version 2 is not the one this version reads (1)"
    )


def test_a_grown_release_keeps_the_splits_and_is_reported(caplog):
    document = json.loads(Path(RELEASE_PATH).read_text())
    before = SegmentsDataModule(
        document,
        split=RatioSplit({"train": 0.5, "val": 0.5}, seed=0),
        asset_root=str(Path(RELEASE_PATH).parent),
    )
    before.setup("fit")
    state = before.state_dict()
    grown = json.loads(json.dumps(document))
    for i in range(8):  # eight new samples: copies of the old ones with new uuids
        extra = json.loads(json.dumps(document["dataset"]["samples"][i]))
        extra["uuid"], extra["name"] = f"new-{i}", f"new-{i}.jpg"
        grown["dataset"]["samples"].insert(i * 2, extra)
    after = SegmentsDataModule(
        grown,
        split=RatioSplit({"train": 0.5, "val": 0.5}, seed=0),
        asset_root=str(Path(RELEASE_PATH).parent),
    )
    after.load_state_dict(state)
    with caplog.at_level(logging.WARNING, logger="segments_torch.lightning"):
        after.setup("fit")
    train_before = {before.release.samples.uuids[r] for r in rows(before, "train")}
    train_after = {after.release.samples.uuids[r] for r in rows(after, "train")}
    val_after = {after.release.samples.uuids[r] for r in rows(after, "val")}
    assert train_before <= train_after
    assert not train_before & val_after
    assert len(train_after) > len(train_before)
    assert caplog.messages[0] == (
        f"SegmentsDataModule: the train stage has {len(train_after)} samples, the "
        f"checkpoint's had {len(train_before)}, and they are not the same samples (the "
        "release or its labels changed since)"
    )


def test_a_resumed_trainer_uses_the_checkpoints_splits(tmp_path):
    example = load_example()
    quiet: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,  # the test saves the one checkpoint it needs
        "default_root_dir": tmp_path,
    }

    def datamodule(seed: int) -> SegmentsDataModule:
        return SegmentsDataModule(
            RELEASE_PATH,
            split=RatioSplit({"train": 0.5, "val": 0.5}, seed=seed),
            target="semantic",
            filter_by=None,
            test_split=None,
            predict_split=None,
        )

    first = datamodule(0)
    trainer = pl.Trainer(max_epochs=1, **quiet)
    trainer.fit(example.TinyFCN(4), datamodule=first)
    checkpoint = tmp_path / "first.ckpt"
    trainer.save_checkpoint(checkpoint)
    assert torch.load(checkpoint, weights_only=False)["SegmentsDataModule"] == first.state_dict()

    resumed = datamodule(5)  # a different seed by mistake: the checkpoint's wins
    pl.Trainer(max_epochs=2, **quiet).fit(
        example.TinyFCN(4), datamodule=resumed, ckpt_path=checkpoint
    )
    assert resumed.split == first.split
    assert rows(resumed, "train") == rows(first, "train") == [0, 2, 4, 6, 7]
    assert rows(resumed, "val") == [1, 3, 5]


# -- DDP and the example ---------------------------------------------------------------------

RECORDER = textwrap.dedent(
    """
    # Runs the example under DDP, recording the samples each rank reads per epoch.
    import importlib.util, json, sys
    from pathlib import Path
    import lightning.pytorch as pl

    sys.path.insert(0, str(Path(sys.argv[1]).parent))  # the example imports _common.py
    spec = importlib.util.spec_from_file_location("lightning_train", sys.argv[1])
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = Path(sys.argv[2])


    class Record(pl.Callback):
        def __init__(self):
            self.seen = {}

        def add(self, trainer, stage, batch):
            uuids = trainer.datamodule.release.samples.uuids
            epoch = self.seen.setdefault(str(trainer.current_epoch), {"train": [], "val": []})
            epoch[stage] += [uuids[row] for row in batch[1]["image_id"].tolist()]

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.add(trainer, "train", batch)

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dl_idx=0):
            if not trainer.sanity_checking:
                self.add(trainer, "val", batch)

        def on_fit_end(self, trainer, pl_module):
            record = {"world_size": trainer.world_size, "epochs": self.seen}
            (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


    example.main(sys.argv[3:], callbacks=[Record()])
    """
)


def run_example(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=240, check=False
    )


def final_metrics(result: subprocess.CompletedProcess[str]) -> dict[str, float]:
    """The metrics the example prints at the end of a one-process run."""
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("rank 0 of 1: "))
    metrics: dict[str, float] = json.loads(line.removeprefix("rank 0 of 1: ").replace("'", '"'))
    return metrics


def test_example_fast_dev_run(tmp_path):
    result = run_example([str(EXAMPLE), "--fast-dev-run"], tmp_path)
    metrics = final_metrics(result)
    assert "samples=5 (LABELED: 3, REVIEWED: 2), num_classes=4" in result.stdout
    assert set(metrics) == {"train_loss", "val_loss", "val_miou"}
    assert all(0 <= value < 10 for value in metrics.values())
    assert not (tmp_path / "lightning_logs").exists()  # fast_dev_run writes nothing


def test_example_decoded_on_the_device_gets_the_same_metrics(tmp_path):
    args = [str(EXAMPLE), "--fast-dev-run", "--workers", "0"]
    host = final_metrics(run_example(args, tmp_path))
    device = final_metrics(run_example([*args, "--decode", "device"], tmp_path))
    assert set(device) == {"train_loss", "val_loss", "val_miou"}
    assert device == host  # the same batches, decoded after the transfer


def test_example_under_ddp_gives_each_rank_a_disjoint_share(tmp_path, file_server: FileServer):
    # The release and its assets over HTTP, both ranks sharing one cache folder.
    serve_demo(tmp_path)
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    out = tmp_path / "seen"
    out.mkdir()
    args = [
        file_server.url_for("served/release.json"),
        *("--cache-dir", str(tmp_path / "cache"), "--prefetch", "--workers", "0"),
        *("--val-fraction", "0.5", "--seed", "0", "--max-epochs", "2", "--devices", "2"),
        *("--val-filter-by", "REVIEWED", "--val-filter-by", "REJECTED"),
    ]
    result = run_example([str(script), str(EXAMPLE), str(out), *args], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    uuids = DEMO.uuids
    expected = {
        "train": sorted(uuids[row] for row in (0, 2, 4, 7)),  # LABELED or REVIEWED
        "val": sorted(uuids[row] for row in (1, 3, 5)),  # REVIEWED or REJECTED
    }
    for epoch in ("0", "1"):
        for stage, everything in expected.items():
            shares = [r["epochs"][epoch][stage] for r in ranks]
            # Disjoint, complete, each sample once: nothing padded, nothing dropped.
            assert sorted(shares[0] + shares[1]) == everything, (epoch, stage, shares)
            assert not set(shares[0]) & set(shares[1])
        # 4 train samples: 2 per rank; 3 val samples: 2 and 1, evaluated once each.
        assert [len(r["epochs"][epoch]["train"]) for r in ranks] == [2, 2]
        assert [len(r["epochs"][epoch]["val"]) for r in ranks] == [2, 1]
    # The train shares are reshuffled between epochs (DistributedSampler.set_epoch).
    assert [r["epochs"]["0"]["train"] for r in ranks] != [r["epochs"]["1"]["train"] for r in ranks]
    # prepare_data ran once (local rank 0) and downloaded each asset once; two epochs on
    # two ranks then read everything from the shared cache.
    assert asset_requests(file_server) == sorted(
        f"served/{kind}/{DEMO.names[row].rsplit('.', 1)[0]}.{ext}"
        for row in (0, 1, 2, 3, 4, 5, 7)
        for kind, ext in (("images", DEMO.names[row].rsplit(".", 1)[1]), ("bitmaps", "png"))
    )
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints").is_dir()


def test_example_bad_input_is_one_line(tmp_path):
    result = run_example([str(EXAMPLE), "--labelset", "predictions", "--fast-dev-run"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {RELEASE_PATH}: no labelset 'predictions'; the release has: 'ground-truth'"
    )


def test_a_sequence_release_splits_and_prefetches_by_sequence(tmp_path, file_server: FileServer):
    served = tmp_path / "served"
    shutil.copytree(SEGMENTATION_SEQUENCE_RELEASE_PATH.parent / "frames", served / "frames")
    shutil.copy(SEGMENTATION_SEQUENCE_RELEASE_PATH, served / "release.json")
    dm = SegmentsDataModule(
        file_server.url_for("served/release.json"),
        split=MetadataSplit(),  # walk's metadata says train, drift's val
        sequence=True,
        batch_size=1,
        cache_dir=tmp_path / "cache",
        prefetch=True,
    )
    dm.prepare_data()
    # Every frame's image and bitmap, each once, though ds[i] is a whole sequence.
    expected = sorted(
        f"served/frames/{name}-{frame}.{ext}"
        for name in ("walk", "drift")
        for frame in range(4)
        for ext in ("jpg", "png")
    )
    assert asset_requests(file_server) == expected
    dm.setup("fit")
    train, val = dm.dataset("train"), dm.dataset("val")
    assert (len(train), len(val)) == (1, 1)
    assert (rows(dm, "train"), rows(dm, "val")) == ([0, 1, 2, 3], [4, 5, 6, 7])
    ((images, targets),) = list(dm.train_dataloader())
    assert [len(images[0]), len(targets[0])] == [4, 4]
    assert [int(t["frame_index"]) for t in targets[0]] == [0, 1, 2, 3]
