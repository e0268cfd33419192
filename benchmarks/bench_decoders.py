"""Benchmark: which library should turn a sample's bytes into pixels.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_decoders.py            # under a minute on two cores
    .venv/bin/python benchmarks/bench_decoders.py --quick    # a sanity check

Each sample costs a JPEG decode (the photo), a PNG decode (the 8-bit RGBA bitmap whose pixel
``R + 256 G + 65536 B`` is the instance id) and the id conversion. To let
:mod:`segments_torch.codecs` choose by measurement, this times every installed decoder
(torchvision.io, torchcodec, Pillow, pyspng) from in-memory ``bytes`` to a uint8 tensor on
generated bitmaps (25 instances) and photo-like JPEGs (shading, texture, edges, sensor noise;
quality 90) at 1280x720 and 3648x2736, then the id conversion: the little-endian int32 view
of HWC pixels masked to 24 bits (new tensor, or in place on the decoder's buffer) against
shifts of the channels. Outputs are checked equal first. Calls run round-robin within each
group so noise hits all alike; the table gives medians. One thread
(``torch.set_num_threads(1)``), as in DataLoader workers.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import numpy as np
import numpy.typing as npt
import pyspng
import torch
import torchcodec.decoders
import torchvision
import torchvision.io as tvio
from PIL import Image, ImageDraw, ImageOps

from segments_torch import codecs

tcd: Any = torchcodec.decoders  # typed loosely: its stubs do not export the decoders

COMMAND = ".venv/bin/python benchmarks/bench_decoders.py"
SIZES = {"1280x720": (1280, 720), "3648x2736": (3648, 2736)}  # name -> (width, height)
INSTANCES = 25
MASK24 = 2**24 - 1
Fn = Callable[[], object]


# -- inputs (also used by bench_dataset.py) ---------------------------------------------------


def make_ids(width: int, height: int, seed: int, instances: int = INSTANCES) -> npt.NDArray[Any]:
    """``(H, W)`` int32 ids: 3 wide bands (ids 1-3: stuff), then ``instances - 3`` ellipses
    and polygons over them; some pixels stay 0. Every id keeps some pixels."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    size = min(width, height)
    bands = [(0.0, 0.35), (0.6, 0.8), (0.8, 1.0)]  # 0.35-0.6 stays unlabelled
    for i, (top, bottom) in enumerate(bands, start=1):
        draw.rectangle((0, int(top * height), width, int(bottom * height)), fill=i)
    for i in range(len(bands) + 1, instances + 1):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.03, 0.12) * size
        if rng.random() < 0.5:
            draw.ellipse((cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r), fill=i)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 9))))
            radii = r * rng.uniform(0.5, 1.0, len(angles))
            points = [
                (cx + a * np.cos(t), cy + a * np.sin(t)) for t, a in zip(angles, radii, strict=True)
            ]
            draw.polygon([(float(x), float(y)) for x, y in points], fill=i)
    ids = np.asarray(canvas, dtype=np.int32).copy()
    if len(np.unique(ids)) != instances + 1:  # an instance fully covered: draw another
        return make_ids(width, height, seed + 1000, instances)
    return ids


def make_photo(ids: npt.NDArray[Any], seed: int) -> bytes:
    """A JPEG (quality 90) of a photo-like image whose regions follow ``ids``."""
    rng = np.random.default_rng(seed)
    height, width = ids.shape
    small = Image.fromarray(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8))
    pixels = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    texture = Image.fromarray(rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), np.uint8))
    pixels += 0.25 * (np.asarray(texture.resize((width, height)), np.float32) - 128)
    tint = rng.uniform(-60, 60, (int(ids.max()) + 1, 3)).astype(np.float32)
    tint[0] = 0
    pixels += tint[ids]
    pixels += rng.normal(0, 6, pixels.shape).astype(np.float32)  # sensor noise
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# -- decoders -------------------------------------------------------------------------------


def _deprecated(function: Callable[..., torch.Tensor], data: bytes, **kw: Any) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return function(torch.frombuffer(bytearray(data), dtype=torch.uint8), **kw)


def png_decoders(data: bytes) -> dict[str, Fn]:
    """Bitmap PNG -> uint8 pixels, in each library's own layout."""
    return {
        "pyspng.load (HWC)": lambda: torch.from_numpy(pyspng.load(data)),
        "torchcodec decode_png (CHW)": lambda: tcd.decode_png(data, mode="UNCHANGED"),
        "torchvision.io decode_png (CHW)": lambda: _deprecated(
            tvio.decode_png, data, mode=tvio.ImageReadMode.UNCHANGED
        ),
        "Pillow open + asarray (HWC)": lambda: torch.from_numpy(
            np.array(Image.open(io.BytesIO(data)))
        ),
        "codecs.decode_bitmap_pixels": lambda: codecs.decode_bitmap_pixels(data),
    }


def pillow_jpeg(data: bytes) -> torch.Tensor:
    rgb = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)


def jpeg_decoders(data: bytes) -> dict[str, Fn]:
    """Photo JPEG -> (3, H, W) uint8 with EXIF orientation applied."""
    return {
        "torchcodec decode_jpeg": lambda: tcd.decode_jpeg(data, mode="RGB"),
        "torchvision.io decode_jpeg": lambda: _deprecated(
            tvio.decode_jpeg, data, mode=tvio.ImageReadMode.RGB, apply_exif_orientation=True
        ),
        "Pillow exif_transpose + asarray (CHW view)": lambda: pillow_jpeg(data),
        "codecs.decode_image": lambda: codecs.decode_image(data),
    }


def shifts(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return r.to(torch.int32) | (g.to(torch.int32) << 8) | (b.to(torch.int32) << 16)


def id_conversions(hwc: torch.Tensor, chw: torch.Tensor) -> dict[str, Fn]:
    """RGBA pixels -> (H, W) int32 ids; ``hwc`` is pyspng's output, ``chw`` torchcodec's."""
    array = hwc.numpy()
    return {
        "codecs.pixels_to_ids (HWC int32 view & mask)": lambda: codecs.pixels_to_ids(hwc),
        "HWC numpy int32 view & mask": lambda: torch.from_numpy(
            array.view(np.int32)[..., 0] & MASK24
        ),
        "HWC shifts: R, G<<8, B<<16 or-ed": lambda: shifts(hwc[..., 0], hwc[..., 1], hwc[..., 2]),
        "CHW shifts: R, G<<8, B<<16 or-ed": lambda: shifts(chw[0], chw[1], chw[2]),
    }


def in_place_ids(data: bytes) -> torch.Tensor:
    """pyspng, then the mask applied in place: no second H x W buffer is allocated."""
    return torch.from_numpy(pyspng.load(data)).view(torch.int32).squeeze(-1).bitwise_and_(MASK24)


def bitmap_to_ids(data: bytes) -> dict[str, Fn]:
    """Bitmap PNG -> (H, W) int32 ids, decode included."""
    return {
        "codecs.decode_bitmap": lambda: codecs.decode_bitmap(data),
        "pyspng + view, mask in place": lambda: in_place_ids(data),
        "torchcodec + CHW shifts": lambda: shifts(*tcd.decode_png(data, mode="UNCHANGED")[:3]),
    }


# -- timing ---------------------------------------------------------------------------------


def medians(fns: dict[str, Fn], rounds: int) -> dict[str, float]:
    """Median ms of each function over ``rounds`` round-robin rounds (after one warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=20, help="rounds at 3648x2736 (more at 720p)")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="3 rounds: a sanity check")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, torchcodec "
        f"{version('torchcodec')}, pyspng {version('pyspng')}, Pillow "
        f"{version('pillow')}, numpy {np.__version__}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs; torch.set_num_threads(1) (as in DataLoader workers)"
    )
    uses_tc, uses_spng = codecs._TORCHCODEC is not None, codecs._PYSPNG is not None
    jpeg_choice = "torchcodec decode_jpeg" if uses_tc else "torchvision.io decode_jpeg"
    png_choice = "pyspng.load (HWC)" if uses_spng else "torchvision.io decode_png (CHW)"

    results: dict[tuple[str, str], dict[str, float]] = {}  # (operation, decoder) -> size -> ms
    for size in args.sizes:
        width, height = SIZES[size]
        ids = make_ids(width, height, seed=1)
        png, jpeg = codecs.encode_bitmap(ids), make_photo(ids, seed=2)
        rounds = repeat * max(1, 4_000_000 // (width * height))
        kib = f"PNG {len(png) / 1024:.0f} KiB, JPEG {len(jpeg) / 1024:.0f} KiB"
        print(f"\n{size}: {kib}, {rounds} rounds")
        # Correctness first: every decoder must give the same pixels.
        hwc = torch.from_numpy(pyspng.load(png))
        for name, fn in png_decoders(png).items():
            out = fn()
            assert isinstance(out, torch.Tensor)
            same = out if out.shape == hwc.shape else out.permute(1, 2, 0)
            assert torch.equal(same, hwc), f"{name} decodes the bitmap differently"
        chw = tcd.decode_png(png, mode="UNCHANGED")
        conversions = id_conversions(hwc, chw) | bitmap_to_ids(png)
        for name, fn in conversions.items():
            assert np.array_equal(np.asarray(fn()), ids), f"{name} gives other ids"
        reference = tcd.decode_jpeg(jpeg, mode="RGB").to(torch.int16)
        differences = [(fn() - reference).abs().max() for fn in jpeg_decoders(jpeg).values()]
        print(f"JPEG decoders differ from torchcodec by at most {int(max(differences))}")
        groups = [("PNG -> pixels", png_decoders(png)), ("JPEG -> image", jpeg_decoders(jpeg))]
        groups.append(("pixels -> ids", id_conversions(hwc, chw)))
        groups.append(("PNG -> ids", bitmap_to_ids(png)))
        for operation, fns in groups:
            for name, ms in medians(fns, rounds).items():
                results.setdefault((operation, name), {})[size] = ms

    print("\n## Summary (markdown)\n")
    quick = " --quick" if args.quick else ""
    sizes = "" if args.sizes == list(SIZES) else " --sizes " + " ".join(args.sizes)
    print(
        f"`{COMMAND}{quick}{sizes}` — median ms per call over round-robin rounds, one "
        f"thread (`torch.set_num_threads(1)`, as in DataLoader workers), {os.cpu_count()} "
        f"CPUs; ratio = median / median of the `segments_torch.codecs` row of the same "
        "operation, same run\n"
    )
    columns = " | ".join(f"{s} ms | ratio" for s in args.sizes)
    print(f"| operation | decoder | {columns} |")
    print("|---|---|" + "---:|---:|" * len(args.sizes))
    base = {key[0]: key for key in results if key[1].startswith("codecs.")}
    for key, by_size in results.items():
        operation, name = key
        mark = " **(codecs uses it)**" if name in (jpeg_choice, png_choice) else ""
        cells = " | ".join(
            f"{by_size[s]:.2f} | {by_size[s] / results[base[operation]][s]:.2f}" for s in args.sizes
        )
        print(f"| {operation} | {name}{mark} | {cells} |")
    print(
        f"\nsegments_torch.codecs in this environment: `_TORCHCODEC` "
        f"{'in use' if uses_tc else 'None (not installed)'}, so photos go to {jpeg_choice}; "
        f"`_PYSPNG` {'in use' if uses_spng else 'None (not installed)'}, so bitmaps go to "
        f"{png_choice}, then the int32 view & mask of `pixels_to_ids`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
