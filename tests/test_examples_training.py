"""examples/train_maskrcnn.py and examples/train_deeplab.py: a few real training steps on
the demo release on CPU, alone and under torchrun, over local files, loopback HTTP with a
shared cache, and a mirror."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from segments_torch import SegmentsDataset
from segments_torch.demo import RELEASE_PATH
from tests.test_distributed import torchrun

EXAMPLES = Path(__file__).parent.parent / "examples"
STEP = re.compile(r"^step (\d+)/(\d+)  loss (\d+\.\d{4})  \d+\.\d\d s$", re.MULTILINE)


def load_example(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module (it imports ``_common`` from its folder)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    # One thread, as torchrun gives each process: on a busy machine, threads that wait
    # for each other multiply a step's time several times over.
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def losses(stdout: str, steps: int) -> list[float]:
    """The printed losses, checking every step 1..steps was printed once, in order."""
    found = STEP.findall(stdout)
    assert [(int(step), int(total)) for step, total, _ in found] == [
        (step, steps) for step in range(1, steps + 1)
    ], stdout
    return [float(loss) for _, _, loss in found]


def serve_demo(root: Path) -> Path:
    """A copy of the demo release's folder under ``root`` (what the file server serves)."""
    served = root / "demo"
    shutil.copytree(RELEASE_PATH.parent, served, ignore=shutil.ignore_patterns("*.py", "__*"))
    return served


def demo_assets(**selection: object) -> list[str]:
    """The relative URLs of the images and bitmaps of the demo samples selected."""
    ds = SegmentsDataset(RELEASE_PATH, **selection)  # type: ignore[arg-type]
    return [
        url
        for i in range(len(ds))
        for url in (ds.sample_info(i).image_url, ds.sample_info(i).bitmap_url)
        if url
    ]


def test_maskrcnn_overfits_a_batch_read_through_a_mirror(tmp_path, file_server):
    # The release names HTTP URLs; --url-map reads them from a local mirror instead.
    served = serve_demo(tmp_path)
    release = file_server.url_for("demo/release.json")
    mirror = ["--url-map", f"{file_server.url}/demo/=file://{served}/"]
    result = run_example(
        "train_maskrcnn",
        release,
        *mirror,
        "--filter-by",
        "REVIEWED",
        "--overfit",
        "--steps",
        "4",
        "--size",
        "96",
        "--workers",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert "target='instance', samples=3 (REVIEWED: 3), num_classes=5)" in result.stdout
    assert "processes 1, device cpu\n" in result.stdout
    loss = losses(result.stdout, 4)
    # One fixed batch, seeded: the loss must fall, and by a good margin.
    assert loss[-1] < loss[0] * 0.7, loss
    assert min(loss[-2:]) < min(loss[:2]), loss
    assets = [p for p in file_server.requests if not p.path.endswith("release.json")]
    assert assets == []  # every asset came from the mirror


def test_deeplab_overfits_a_batch(tmp_path):
    result = run_example(
        "train_deeplab", "--overfit", "--steps", "6", "--size", "96", "--batch-size", "2",
        "--workers", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # unlabelled pixels are a class of their own: 4 categories and the background
    assert "target='semantic', samples=6 (LABELED: 3, REVIEWED: 3), num_classes=5)" in (
        result.stdout
    )
    assert "\n-           background  0      (0, 0, 0)\n" in result.stdout
    loss = losses(result.stdout, 6)
    assert loss[-1] < loss[0] * 0.7, loss
    assert min(loss[-2:]) < min(loss[:2]), loss


def test_maskrcnn_overfits_a_batch_decoded_on_the_device():
    result = run_example(
        "train_maskrcnn", "--decode", "device", "--filter-by", "REVIEWED", "--overfit",
        "--steps", "4", "--size", "96", "--workers", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "processes 1, device cpu, decode='device'\n" in result.stdout
    loss = losses(result.stdout, 4)
    assert loss[-1] < loss[0] * 0.7, loss
    assert min(loss[-2:]) < min(loss[:2]), loss


def test_deeplab_decoded_on_the_device_learns_as_decoded_by_workers():
    common = ["--overfit", "--steps", "6", "--size", "96", "--batch-size", "2"]
    host = run_example("train_deeplab", *common, "--workers", "0")
    # A worker ships the batch's JPEG bytes and segment maps; the loop decodes it, random
    # crop and flip included, in this process, which draws them as the host path did.
    device = run_example("train_deeplab", *common, "--workers", "1", "--decode", "device")
    assert host.returncode == 0, host.stderr
    assert device.returncode == 0, device.stderr
    assert "processes 1, device cpu\n" in host.stdout
    assert "processes 1, device cpu, decode='device'\n" in device.stdout
    loss = losses(device.stdout, 6)
    assert loss == losses(host.stdout, 6)  # the same batch, the same steps
    assert loss[-1] < loss[0] * 0.7, loss


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("example", ["train_maskrcnn", "train_deeplab"])
def test_decoded_on_cuda_from_pinned_batches_the_loss_falls(example):
    # --device cuda pins the worker's DeviceBatches; the loop copies them without blocking
    # and decodes them on the GPU.
    result = run_example(
        example, "--device", "cuda", "--decode", "device", "--overfit", "--steps", "6",
        "--size", "96", "--batch-size", "2", "--workers", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "processes 1, device cuda, decode='device'\n" in result.stdout
    loss = losses(result.stdout, 6)
    assert loss[-1] < loss[0] * 0.7, loss


def test_deeplab_under_torchrun_over_http_with_a_shared_cache(tmp_path, file_server):
    served = serve_demo(tmp_path)
    cache = tmp_path / "cache"
    result = torchrun(
        EXAMPLES / "train_deeplab.py",
        file_server.url_for("demo/release.json"),
        "--cache-dir", str(cache),
        "--steps", "2", "--batch-size", "3", "--size", "64", "--workers", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "processes 2, device cpu\n" in result.stdout
    assert result.stdout.count("SegmentsDataset(") == 1  # rank 0 prints, rank 1 does not
    losses(result.stdout, 2)  # printed once per step
    # Step 1 is epoch 0: each rank reads its 3 of the 6 samples, disjoint, so every asset
    # is downloaded once; step 2 (epoch 1, reshuffled) reads from the shared cache.
    assets = demo_assets()
    assert len(assets) == 12
    assert {url: file_server.count(f"demo/{url}") for url in assets} == dict.fromkeys(assets, 1)
    cached = sorted(p.read_bytes() for p in cache.rglob("*") if p.is_file())
    assert cached == sorted((served / url).read_bytes() for url in assets)


def test_maskrcnn_under_torchrun():
    result = torchrun(
        EXAMPLES / "train_maskrcnn.py",
        "--steps", "2", "--batch-size", "1", "--size", "64", "--workers", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "processes 2, device cpu\n" in result.stdout
    losses(result.stdout, 2)


@pytest.mark.parametrize(
    ("example", "args", "message"),
    [
        (
            "train_deeplab",
            ["--labelset", "predictions"],
            f"error: {RELEASE_PATH}: no labelset 'predictions'; the release has: 'ground-truth'",
        ),
        (
            "train_deeplab",
            ["--filter-by", "VERIFIED"],
            f"error: {RELEASE_PATH}: no sample selected; see --labelset, --filter-by and --all",
        ),
        (
            "train_deeplab",  # whole batches only
            ["--filter-by", "REJECTED", "--batch-size", "2"],
            "error: no batch of 2 from 1 sample per process; select more samples or pass a "
            "smaller --batch-size",
        ),
    ],
)
def test_bad_input_ends_with_one_line(example, args, message):
    module = load_example(example)
    with pytest.raises(SystemExit) as caught:
        module.run(module.main, [*args, "--workers", "0", "--steps", "1"])
    assert str(caught.value) == message


def test_a_malformed_url_map_is_a_usage_error(capsys):
    module = load_example("train_maskrcnn")
    with pytest.raises(SystemExit) as caught:
        module.run(module.main, ["--url-map", "nothing", "--workers", "0", "--steps", "1"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: argument --url-map: expected PREFIX=REPLACEMENT, not 'nothing'\n"
    )


def test_decode_is_host_or_device(capsys):
    module = load_example("train_deeplab")
    with pytest.raises(SystemExit) as caught:
        module.main(["--decode", "gpu"])
    assert caught.value.code == 2
    assert "error: argument --decode: invalid choice: 'gpu' (choose from " in (
        capsys.readouterr().err
    )


def test_deeplab_refuses_batches_of_one(capsys):
    module = load_example("train_deeplab")
    with pytest.raises(SystemExit) as caught:
        module.main(["--batch-size", "1"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: --batch-size must be at least 2 (DeepLabV3 trains BatchNorm on pooled features)\n"
    )
