"""A release of one photo stored in every EXIF orientation, and in JPEG variants (progressive,
grey, CMYK), each with the same bitmap drawn on the image as shown: for the tests of
decoding and resizing (``tests/test_device.py``, ``tests/test_dataset.py``)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from segments_torch import codecs
from tests.object_store import write_files


def jpeg(pixels: np.ndarray, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85, **options)
    return buffer.getvalue()


def cmyk_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("CMYK").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def oriented_release(folder: Path) -> dict[str, Any]:
    """A sample per EXIF orientation (1 to 8) of a 10 x 14 photo stored 14 x 10 where the
    orientation turns it, plus progressive, greyscale and CMYK JPEGs; each bitmap drawn
    on the image as shown, with two instances."""
    rng = np.random.default_rng(7)
    shown = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)  # (H, W) as displayed
    ids = np.zeros((10, 14), dtype=np.int64)
    ids[1:4, 2:9] = 1
    ids[5:9, 6:13] = 2
    files: dict[str, bytes] = {"bitmaps/ids.png": codecs.encode_bitmap(ids)}
    samples = []
    for orientation in range(1, 9):
        stored = _stored_for(shown, orientation)
        exif = Image.Exif()
        exif[0x0112] = orientation
        files[f"images/o{orientation}.jpg"] = jpeg(stored, exif=exif, subsampling=0)
        samples.append((f"o{orientation}.jpg", f"images/o{orientation}.jpg"))
    files["images/progressive.jpg"] = jpeg(shown, progressive=True)
    files["images/grey.jpg"] = jpeg(shown[..., 0])
    files["images/cmyk.jpg"] = cmyk_jpeg(shown)
    samples += [(n, f"images/{n}") for n in ("progressive.jpg", "grey.jpg", "cmyk.jpg")]
    write_files(folder, files)
    records = []
    for name, url in samples:
        records.append(
            {
                "uuid": f"uuid-{name}",
                "name": name,
                "attributes": {"image": {"url": url}},
                "labels": {
                    "ground-truth": {
                        "label_status": "LABELED",
                        "attributes": {
                            "format_version": "0.1",
                            "annotations": [
                                {"id": 1, "category_id": 0},
                                {"id": 2, "category_id": 1},
                            ],
                            "segmentation_bitmap": {"url": "bitmaps/ids.png"},
                        },
                    }
                },
            }
        )
    document = {
        "dataset": {
            "task_type": "segmentation-bitmap",
            "task_attributes": {
                "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
            },
            "labelsets": [{"name": "ground-truth"}],
            "samples": records,
        }
    }
    (folder / "release.json").write_text(json.dumps(document))
    return document


def _stored_for(shown: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels that EXIF ``orientation`` shows as ``shown``."""
    inverse = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}[orientation]
    return codecs.orient(torch.from_numpy(shown).permute(2, 0, 1), inverse).permute(1, 2, 0).numpy()
