"""Decoding on the device the model runs on: ``SegmentsDataset(decode="device")``.

With ``decode="device"``, ``ds[i]`` does only what must happen on the CPU and ships little:
a JPEG as its encoded bytes (other images decoded, as no GPU decoder reads them), the
bitmap as its :class:`~segments_torch.targets.SegmentMap` (one byte a pixel where the
bitmap holds at most 256 distinct ids, from the label cache where there is one), and the
sample's small tables (annotation ids, training labels, thing flags). ``ds.collate_fn``
batches these into a :class:`DeviceBatch`, which moves with ``.to(device)`` and pins with
``.pin_memory()`` (so ``DataLoader(pin_memory=True)`` and Lightning's batch transfer move
it). ``ds.device_decoder()`` then turns a batch, on its device, into exactly what
``ds.collate_fn`` gives with ``decode="host"``: the JPEGs in one batched call
(:func:`~segments_torch.codecs.decode_jpegs`), the targets by the same
:func:`~segments_torch.targets.build_target`, the dataset's transforms per sample.

A 1280 x 720 instance item ships about 1.2 MB this way (its image's bytes and a one-byte
map), where the host path sends 26 MB of image and masks through shared memory.

Example:
    >>> ds = SegmentsDataset("flowers.json", target="instance", decode="device")  # doctest: +SKIP
    >>> loader = DataLoader(ds, batch_size=8, num_workers=4, collate_fn=ds.collate_fn,
    ...                     pin_memory=True)  # doctest: +SKIP
    >>> decode = ds.device_decoder()  # doctest: +SKIP
    >>> for batch in loader:  # doctest: +SKIP
    ...     images, targets = decode(batch.to("cuda", non_blocking=True))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torchvision import tv_tensors

from .codecs import DeviceImage, decode_jpegs
from .errors import AssetError, DecodeError
from .targets import SegmentMap, build_target

if TYPE_CHECKING:
    from .dataset import SegmentsDataset

__all__ = ["DeviceBatch", "DeviceDecoder", "EncodedSample", "collate_device"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedSample:
    """One sample as ``ds[i]`` gives it with ``decode="device"``.

    Attributes:
        image: the image, a JPEG still encoded (see :class:`~segments_torch.codecs.DeviceImage`).
        label: the bitmap's segments and id table.
        annotation_ids: ``(N,)`` int64, the label's annotation ids.
        labels: ``(N,)`` int64 training label of each annotation, ``-1`` unselected.
        is_thing: ``(N,)`` bool, whether each annotation's category has instances.
        image_id: the release row (``target["image_id"]``).
        index: the sample's position in the dataset (``ds[index]``).
        name: the sample's name, for errors.
        url: the image's URL as shown in errors (no query string).
    """

    image: DeviceImage
    label: SegmentMap
    annotation_ids: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    is_thing: npt.NDArray[np.bool_]
    image_id: int
    index: int
    name: str
    url: str


@dataclass(frozen=True)
class DeviceBatch:
    """A batch of :class:`EncodedSample`: what ``ds.collate_fn`` gives with
    ``decode="device"``, for :class:`DeviceDecoder` to finish on its device."""

    samples: tuple[EncodedSample, ...]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def device(self) -> torch.device:
        """Where the segment maps (and the images already decoded) are."""
        return self.samples[0].label.device if self.samples else torch.device("cpu")

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> DeviceBatch:
        """The batch with its segment maps and decoded images on ``device``; JPEG bytes
        stay on the host, where the decoders read them."""

        def moved(sample: EncodedSample) -> EncodedSample:
            image = sample.image
            if not image.jpeg:
                image = replace(image, data=image.data.to(device, non_blocking=non_blocking))
            return replace(
                sample, image=image, label=sample.label.to(device, non_blocking=non_blocking)
            )

        return DeviceBatch(tuple(moved(sample) for sample in self.samples))

    def pin_memory(self) -> DeviceBatch:
        """The batch in page-locked memory, for ``DataLoader(pin_memory=True)``."""

        def pinned(sample: EncodedSample) -> EncodedSample:
            label = SegmentMap(sample.label.segments.pin_memory(), sample.label.ids)
            image = replace(sample.image, data=sample.image.data.pin_memory())
            return replace(sample, image=image, label=label)

        return DeviceBatch(tuple(pinned(sample) for sample in self.samples))


def collate_device(samples: Sequence[EncodedSample]) -> DeviceBatch:
    """``ds.collate_fn`` with ``decode="device"``: the samples as one :class:`DeviceBatch`."""
    return DeviceBatch(tuple(samples))


class DeviceDecoder:
    """Finishes a :class:`DeviceBatch` on its device: ``decoder(batch)`` returns what
    ``ds.collate_fn`` returns for the same samples with ``decode="host"`` (same types,
    keys, dtypes and values). Made by ``ds.device_decoder()``.

    A sample whose JPEG fails to decode raises an
    :class:`~segments_torch.errors.AssetError` naming it; under ``on_error="skip"`` it is
    left out of the batch (there is no next sample to take its place here), logged once and
    counted in ``ds.failures``.

    Args:
        dataset: the dataset whose batches it decodes (its target kind, conventions,
            transforms and ``collate_fn`` for ``decode="host"``).
    """

    def __init__(self, dataset: SegmentsDataset) -> None:
        self.target = dataset.target
        self.options = dataset.target_options
        self.transforms: Callable[[Any, Any], Any] | None = dataset.transforms
        self.on_error = dataset.on_error
        self.collate = dataset.host_collate_fn
        self._dataset = dataset

    def __call__(self, batch: DeviceBatch) -> Any:
        device = batch.device
        images = self._images(batch, device)
        items = []
        for sample, image in zip(batch.samples, images, strict=True):
            if image is None:  # skipped: see _images
                continue
            target: dict[str, Any] = build_target(
                self.target,
                sample.label,
                sample.annotation_ids,
                sample.labels,
                sample.is_thing,
                **self.options,
            )
            target["image_id"] = torch.tensor(sample.image_id, device=device)
            self._dataset.sequence_fields(sample.image_id, target)
            if sample.image.out is not None:  # served resized: say the full size
                target["orig_size"] = torch.tensor(
                    (sample.image.height, sample.image.width), device=device
                )
            item: tuple[Any, Any] = (tv_tensors.Image(image), target)
            if self.transforms is not None:
                item = self.transforms(*item)
            items.append(item)
        return self.collate(items)

    def _images(self, batch: DeviceBatch, device: torch.device) -> list[torch.Tensor | None]:
        """Each sample's decoded image on ``device``; ``None`` for one skipped."""
        encoded = [sample for sample in batch.samples if sample.image.jpeg]
        decoded = iter(decode_jpegs([sample.image for sample in encoded], device))
        images: list[torch.Tensor | None] = []
        for sample in batch.samples:
            result = next(decoded) if sample.image.jpeg else sample.image.data
            if isinstance(result, DecodeError):
                error = AssetError(sample.name, sample.url, str(result))
                if self.on_error == "raise":
                    raise error from result
                self._dataset.count_failure(sample.index, error)
                images.append(None)
                continue
            images.append(result)
        return images

    def __repr__(self) -> str:
        return f"DeviceDecoder(target={self.target!r}, transforms={self.transforms!r})"
