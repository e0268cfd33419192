"""Tests of segments_torch.device: ``decode="device"`` items and batches, and the decoder
that finishes them, which must give exactly what the host path gives (on the CPU here; on
CUDA in the GPU-marked tests)."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from segments_torch import SegmentsDataset, codecs
from segments_torch import dataset as dataset_module
from segments_torch.demo import RELEASE_PATH, SEGMENTATION_SEQUENCE_RELEASE_PATH
from segments_torch.device import DeviceBatch, DeviceDecoder, EncodedSample
from segments_torch.errors import AssetError
from segments_torch.targets import TARGET_KINDS
from tests.items import CUDA, CUDA_IMAGE_BOUND, assert_close_images, assert_same, on_cpu
from tests.object_store import asset_files, release_document, write_files
from tests.oriented import oriented_release

DEMO = Path(RELEASE_PATH).parent
KINDS = list(TARGET_KINDS)


def host_and_device(release: Any, **options: Any) -> tuple[SegmentsDataset, SegmentsDataset]:
    host = SegmentsDataset(release, **options)
    device = SegmentsDataset(release, decode="device", **options)
    return host, device


def assert_device_equals_host(host: SegmentsDataset, device: SegmentsDataset) -> None:
    """For every sample, one at a time and all in one batch."""
    indices = list(range(len(host)))
    batches = [[i] for i in indices] + [indices]
    decoder = device.device_decoder()
    for batch in batches:
        expected = host.collate_fn([host[i] for i in batch])
        shipped = device.collate_fn([device[i] for i in batch])
        assert isinstance(shipped, DeviceBatch)
        assert_same(decoder(shipped), expected, f"batch {batch}")


# -- equal to the host path ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_demo_decoded_on_the_cpu_equals_the_host_path(kind):
    # every sample: JPEGs, a PNG image, an EXIF-rotated JPEG, a sample without a bitmap
    host, device = host_and_device(RELEASE_PATH, target=kind, filter_by=None)
    assert len(host) == 8
    assert_device_equals_host(host, device)


@pytest.mark.parametrize("kind", KINDS)
def test_the_object_store_release_decoded_on_the_cpu_equals_the_host_path(kind, tmp_path):
    # ids up to 70000, an id without annotation, a label without a bitmap
    write_files(tmp_path, asset_files())
    document = json.loads(json.dumps(release_document(f"{tmp_path}/")))
    host, device = host_and_device(document, target=kind, asset_root=str(tmp_path))
    assert_device_equals_host(host, device)


@pytest.mark.parametrize("kind", KINDS)
def test_exif_orientations_and_jpeg_variants_equal_the_host_path(kind, tmp_path):
    oriented_release(tmp_path)
    host, device = host_and_device(tmp_path / "release.json", target=kind)
    assert len(host) == 11
    for i in range(len(host)):  # every image is 10 x 14 as shown, as its bitmap
        assert tuple(host[i][0].shape) == (3, 10, 14)
    assert_device_equals_host(host, device)
    shipped = {device.sample_info(i).name: device[i].image for i in range(len(device))}
    assert [shipped[f"o{o}.jpg"].orientation for o in range(1, 9)] == list(range(1, 9))
    assert all(shipped[f"o{o}.jpg"].jpeg for o in range(1, 9))
    assert shipped["progressive.jpg"].jpeg
    assert shipped["grey.jpg"].jpeg
    assert not shipped["cmyk.jpg"].jpeg  # no GPU decoder reads CMYK: decoded in the worker
    assert tuple(shipped["cmyk.jpg"].data.shape) == (3, 10, 14)


@pytest.mark.parametrize("kind", KINDS)
def test_transforms_run_in_the_decoder_as_in_the_host_path(kind):
    transforms = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.Resize((100, 120), antialias=True)])
    host, device = host_and_device(RELEASE_PATH, target=kind, transforms=transforms)
    assert_device_equals_host(host, device)


def test_a_warm_label_cache_serves_the_device_path_without_pngs(tmp_path, monkeypatch):
    host = SegmentsDataset(RELEASE_PATH, target="panoptic")
    expected = host.collate_fn([host[i] for i in range(len(host))])
    device = SegmentsDataset(
        RELEASE_PATH, target="panoptic", decode="device", label_cache=tmp_path / "labels"
    )
    [device[i] for i in range(len(device))]  # fills the cache
    monkeypatch.setattr(dataset_module, "decode_bitmap", lambda *a, **k: pytest.fail("decoded"))
    batch = device.collate_fn([device[i] for i in range(len(device))])
    assert_same(device.device_decoder()(batch), expected)


def test_batches_through_dataloader_workers_equal_the_host_batches():
    host, device = host_and_device(RELEASE_PATH, target="instance", filter_by=None)
    options: dict[str, Any] = {"batch_size": 3, "num_workers": 2, "multiprocessing_context": "fork"}
    expected = list(DataLoader(host, collate_fn=host.collate_fn, **options))
    decoder = device.device_decoder()
    got = [decoder(batch) for batch in DataLoader(device, collate_fn=device.collate_fn, **options)]
    assert_same(got, expected)


# -- what a worker ships ---------------------------------------------------------------------


def test_an_encoded_sample_ships_the_jpeg_bytes_and_a_one_byte_map():
    device = SegmentsDataset(RELEASE_PATH, target="instance", decode="device")
    sample = device[0]
    assert isinstance(sample, EncodedSample)
    data = (DEMO / "images" / "shapes-000.jpg").read_bytes()
    assert sample.image.jpeg
    assert sample.image.data.dtype == torch.uint8
    assert sample.image.data.numpy().tobytes() == data
    assert (sample.image.height, sample.image.width) == (240, 320)
    assert sample.label.segments.dtype == torch.uint8
    assert sample.label.shape == (240, 320)
    ids = codecs.decode_bitmap((DEMO / "bitmaps" / "shapes-000.png").read_bytes())
    assert torch.equal(sample.label.to_ids(), ids)
    tables = device.annotation_tables(int(device.rows[0]))
    for got, expected in zip(
        (sample.annotation_ids, sample.labels, sample.is_thing), tables, strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    assert (sample.image_id, sample.index, sample.name) == (0, 0, "shapes-000.jpg")
    assert sample.url == str(DEMO / "images" / "shapes-000.jpg")
    host_item = SegmentsDataset(RELEASE_PATH, target="instance")[0]
    host_bytes = host_item[0].numel() + host_item[1]["masks"].numel()
    shipped = sample.image.data.numel() + sample.label.segments.numel()
    assert shipped * 5 < host_bytes
    assert pickle.loads(pickle.dumps(sample)).name == "shapes-000.jpg"


def test_a_batch_moves_its_maps_and_leaves_jpeg_bytes_on_the_host():
    device = SegmentsDataset(RELEASE_PATH, target="instance", decode="device", filter_by=None)
    batch = device.collate_fn([device[i] for i in range(len(device))])
    assert len(batch) == 8
    assert batch.device == torch.device("cpu")
    moved = batch.to("cpu", non_blocking=True)
    assert isinstance(moved, DeviceBatch)
    assert all(s.label.device.type == "cpu" for s in moved.samples)
    assert DeviceBatch(()).device == torch.device("cpu")


def test_device_options_are_checked():
    with pytest.raises(ValueError, match=r"^decode must be 'host' or 'device', not 'gpu'$"):
        SegmentsDataset(RELEASE_PATH, decode="gpu")
    with pytest.raises(ValueError, match=r"device_decoder\(\) finishes the batches of decode="):
        SegmentsDataset(RELEASE_PATH).device_decoder()
    device = SegmentsDataset(RELEASE_PATH, decode="device")
    assert repr(device.device_decoder()) == "DeviceDecoder(target='instance', transforms=None)"
    assert isinstance(device.device_decoder(), DeviceDecoder)


# -- bad JPEGs -------------------------------------------------------------------------------


def demo_with_a_broken_jpeg(tmp_path: Path) -> Path:
    """The demo with shapes-001.jpg cut in its scan: its header reads, its data does not."""
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.py"))
    image = tmp_path / "demo" / "images" / "shapes-001.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: data.index(b"\xff\xda") + 60])
    return tmp_path / "demo" / "release.json"


def test_a_jpeg_that_fails_in_the_decoder_names_its_sample(tmp_path):
    release = demo_with_a_broken_jpeg(tmp_path)
    device = SegmentsDataset(release, decode="device")
    batch = device.collate_fn([device[i] for i in range(3)])  # the worker ships it whole
    with pytest.raises(AssetError) as info:
        device.device_decoder()(batch)
    image = tmp_path / "demo" / "images" / "shapes-001.jpg"
    assert str(info.value).startswith(
        f"sample 'shapes-001.jpg': {image}: cannot decode the image (JPEG data): "
    )
    # the host path says the same of the same file
    with pytest.raises(AssetError) as host_info:
        SegmentsDataset(release)[1]
    assert str(host_info.value) == str(info.value)


def test_under_skip_a_jpeg_that_fails_in_the_decoder_leaves_its_batch(tmp_path, caplog):
    release = demo_with_a_broken_jpeg(tmp_path)
    device = SegmentsDataset(release, decode="device", on_error="skip")
    batch = device.collate_fn([device[i] for i in range(3)])
    with caplog.at_level(logging.WARNING, logger="segments_torch.dataset"):
        images, targets = device.device_decoder()(batch)
    assert [int(t["image_id"]) for t in targets] == [0, 2]
    assert len(images) == 2
    assert device.failures == 1
    assert [s.name for s in device.failed_samples()] == ["shapes-001.jpg"]
    assert len(caplog.records) == 1


def test_a_header_the_worker_refuses_is_skipped_there(tmp_path):
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.py"))
    image = tmp_path / "demo" / "images" / "shapes-000.jpg"
    image.write_bytes(b"\xff\xd8\xff\xd9")  # a JPEG without a frame header
    device = SegmentsDataset(tmp_path / "demo" / "release.json", decode="device", on_error="skip")
    assert device[0].name == "shapes-001.jpg"
    assert device.failures == 1


# -- on CUDA ---------------------------------------------------------------------------------


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("kind", KINDS)
def test_decoded_on_cuda_targets_equal_and_images_close(kind, tmp_path):
    oriented_release(tmp_path)
    # The sequence release's targets gain frame fields and track ids on the device.
    for release in (RELEASE_PATH, tmp_path / "release.json", SEGMENTATION_SEQUENCE_RELEASE_PATH):
        host, device = host_and_device(release, target=kind)
        indices = list(range(len(host)))
        expected = host.collate_fn([host[i] for i in indices])
        batch = device.collate_fn([device[i] for i in indices]).pin_memory()
        images, targets = device.device_decoder()(batch.to("cuda", non_blocking=True))
        expected_images, expected_targets = expected
        if kind == "semantic":
            assert images.device.type == "cuda"
            assert_close_images(images, expected_images, bound=CUDA_IMAGE_BOUND)
            assert_same({k: v.cpu() for k, v in targets.items()}, expected_targets)
            continue
        for got, want in zip(images, expected_images, strict=True):
            assert got.device.type == "cuda"
            assert got.shape == want.shape
            assert_close_images(got, want, bound=CUDA_IMAGE_BOUND)
        for got, want in zip(targets, expected_targets, strict=True):
            assert {k: v.device.type for k, v in got.items()} == dict.fromkeys(want, "cuda")
            assert_same({k: on_cpu(v) for k, v in got.items()}, want)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("size", "max_size"), [(60, None), (None, 50), ((21, 35), None)])
def test_items_at_a_size_decoded_on_the_cpu_equal_the_host_path(kind, size, max_size, tmp_path):
    oriented_release(tmp_path)
    options = {"target": kind, "size": size, "max_size": max_size}
    for release in (RELEASE_PATH, tmp_path / "release.json"):
        host, device = host_and_device(release, filter_by=None, **options)
        assert_device_equals_host(host, device)
        shipped = device[0]
        assert shipped.image.out == tuple(host[0][0].shape[-2:])  # the JPEG still full size
        assert shipped.label.shape == shipped.image.out  # the map sampled in the worker


@pytest.mark.parametrize("kind", KINDS)
def test_a_segmentation_sequence_decoded_on_the_cpu_equals_the_host_path(kind):
    # Frame fields and track ids are added on the device path too.
    host, device = host_and_device(SEGMENTATION_SEQUENCE_RELEASE_PATH, target=kind)
    assert_device_equals_host(host, device)
    if kind != "semantic":
        decoded = device.device_decoder()(device.collate_fn([device[7]]))
        assert decoded[1][0]["instance_ids"].tolist() == [5]
        assert int(decoded[1][0]["frame_index"]) == 3
