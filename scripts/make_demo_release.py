"""Generate the tiny demo release bundled in ``segments_torch/demo``.

Run from the repository root::

    python scripts/make_demo_release.py            # writes segments_torch/demo/
    python scripts/make_demo_release.py --out DIR  # writes somewhere else

The output is a Segments.ai release in the current layout (``dataset.task_type``,
``dataset.task_attributes.categories``, ``dataset.labelsets``, labels keyed by
``"ground-truth"``) with eight synthetic samples: coloured circles, squares and triangles on
a textured gradient, some over a band of grass. Every pixel is drawn here with numpy from a
fixed seed, so the files contain no third-party material, and running the script twice
gives byte-identical files (for one Pillow/libjpeg/zlib build).

Asset URLs in the release are *relative* paths (``images/<file>``, ``bitmaps/<file>``),
resolved against the folder of ``release.json``.

Each labelled sample has an 8-bit RGBA PNG segmentation bitmap (alpha 255) whose pixel
instance id is ``R + 256*G + 65536*B`` (0 = unlabeled). The samples deliberately cover the
format's corner cases (see ``SAMPLES`` and the ``note`` of each):

- category id 0 is a real category ("circle"); "triangle" has no ``color`` key; "grass"
  has ``has_instances: false`` (a stuff region);
- instance ids above 255, above 65535 and near 2**24 (300, 70000, 16777000);
- a JPEG whose EXIF orientation is 6: its pixels are stored un-rotated and the bitmap
  matches the *oriented* (displayed) image;
- one image stored as PNG; the others are JPEG (quality 85);
- one ``null`` label (no bitmap), one ``REJECTED`` label, the rest ``LABELED``/``REVIEWED``;
- exactly one annotation whose id is absent from its bitmap (``absent_annotations`` of
  ``shapes-003``: id 4 is listed but never drawn) and exactly one bitmap region whose id
  has no annotation (``unannotated`` of ``shapes-004``: id 9 is drawn but not listed);
- ``metadata`` as ``{"split": ...}``, as ``{}`` and absent.

``vector.json`` labels the same images with shapes (task type ``vector``): an upright
square as a ``bbox``, a turned square, a circle (24 vertices) and a triangle as a
``polygon``, the grass edge as a ``polyline`` and each circle's centre as a ``point``
(track ids from 1001), with annotation ``attributes`` and ``image_attributes``.

``sequence.json`` (task type ``image-vector-sequence``) and ``segmentation-sequence.json``
(``image-segmentation-sequence``) are two sequences of four 64x48 frames each (see
``SEQUENCES``; images and bitmaps in ``frames/``) whose shapes move from frame to frame:
``walk``'s frames have names and integer timestamps, ``drift``'s have neither, and its
circle leaves the view in the last frame, so that frame's bitmap numbers its square 1, not
2: bitmap ids hold within a frame, track ids across frames.

Shapes are drawn in order, so later shapes cover earlier ones; the script checks that every
annotated (drawn) id keeps visible pixels, then re-reads every file it wrote and checks
the bitmap ids and that the oriented images line up with the bitmaps.
"""

from __future__ import annotations

import argparse
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

SEED = 20240607
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "segments_torch" / "demo"
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "segments-torch:demo-shapes")
JPEG_QUALITY = 85
EXIF_ORIENTATION_TAG = 0x0112
#: Fewest pixels every drawn, annotated instance must keep after later shapes cover it.
MIN_VISIBLE_PIXELS = 40

Kind = Literal["circle", "square", "triangle", "grass"]
BoolMap = npt.NDArray[np.bool_]
FloatImage = npt.NDArray[np.float64]

#: Release category id of each shape kind.
CATEGORY_IDS: dict[Kind, int] = {"circle": 0, "square": 1, "triangle": 2, "grass": 3}
#: The colour each kind is painted with (the triangle category itself sets no colour).
PAINT: dict[Kind, tuple[int, int, int]] = {
    "circle": (230, 57, 70),
    "square": (69, 123, 157),
    "triangle": (244, 162, 97),
    "grass": (106, 168, 79),
}
CATEGORIES: list[dict[str, Any]] = [
    {"id": 0, "name": "circle", "color": list(PAINT["circle"])},
    {"id": 1, "name": "square", "color": list(PAINT["square"])},
    {"id": 2, "name": "triangle"},  # deliberately no "color" key
    {"id": 3, "name": "grass", "color": list(PAINT["grass"]), "has_instances": False},
]


@dataclass(frozen=True)
class Shape:
    """One drawn region in displayed-image pixel coordinates.

    ``geometry`` by kind: circle ``(cx, cy, radius)``; square ``(cx, cy, half_side,
    angle_degrees)``; triangle ``(x0, y0, x1, y1, x2, y2)``; grass ``(base_y, amplitude,
    wavelength, phase)`` (everything below a sine wave).
    """

    kind: Kind
    instance_id: int
    geometry: tuple[float, ...]


@dataclass(frozen=True)
class SampleSpec:
    """One demo sample. ``size`` is the displayed ``(width, height)``."""

    stem: str
    size: tuple[int, int]
    image_format: Literal["JPEG", "PNG"]
    status: str | None  # None: the label is null and there is no bitmap
    metadata: dict[str, Any] | None  # None: the sample has no "metadata" key
    shapes: tuple[Shape, ...]
    note: str
    exif_orientation: int = 1
    #: (instance id, category id) annotations whose id is never drawn in the bitmap.
    absent_annotations: tuple[tuple[int, int], ...] = ()
    #: drawn instance ids that get no annotation.
    unannotated: frozenset[int] = field(default_factory=frozenset)

    @property
    def image_file(self) -> str:
        return f"{self.stem}.{'png' if self.image_format == 'PNG' else 'jpg'}"

    @property
    def bitmap_file(self) -> str | None:
        return None if self.status is None else f"{self.stem}.png"


def circle(instance_id: int, cx: float, cy: float, radius: float) -> Shape:
    return Shape("circle", instance_id, (cx, cy, radius))


def square(instance_id: int, cx: float, cy: float, half: float, angle: float = 0.0) -> Shape:
    return Shape("square", instance_id, (cx, cy, half, angle))


def triangle(instance_id: int, *points: float) -> Shape:
    return Shape("triangle", instance_id, tuple(points))


def grass(
    instance_id: int, base_y: float, amplitude: float, wavelength: float, phase: float
) -> Shape:
    return Shape("grass", instance_id, (base_y, amplitude, wavelength, phase))


SAMPLES: tuple[SampleSpec, ...] = (
    SampleSpec(
        stem="shapes-000",
        size=(320, 240),
        image_format="JPEG",
        status="LABELED",
        metadata={"split": "train"},
        shapes=(
            grass(1, 175, 8, 60, 0.0),
            circle(2, 80, 95, 38),
            square(3, 205, 100, 40),
            triangle(4, 250, 150, 305, 228, 205, 230),
        ),
        note="one instance of every category; the grass stuff region",
    ),
    SampleSpec(
        stem="shapes-001",
        size=(240, 180),
        image_format="JPEG",
        status="REVIEWED",
        metadata={"split": "train"},
        shapes=(
            grass(5, 140, 6, 45, 1.0),
            circle(300, 80, 75, 40),
            square(70000, 125, 90, 32, 20),
            triangle(16777000, 170, 25, 230, 130, 150, 120),
        ),
        note="instance ids > 255, > 65535 and near 2**24; a square overlapping a circle",
    ),
    SampleSpec(
        stem="shapes-002-exif",
        size=(180, 240),
        image_format="JPEG",
        status="LABELED",
        metadata={"split": "val"},
        shapes=(
            grass(1, 190, 7, 50, 2.0),
            circle(2, 55, 60, 32),
            triangle(3, 100, 120, 170, 215, 80, 225),
        ),
        note="EXIF orientation 6: pixels stored 240x180 un-rotated, displayed 180x240",
        exif_orientation=6,
    ),
    SampleSpec(
        stem="shapes-003",
        size=(200, 150),
        image_format="PNG",
        status="REVIEWED",
        metadata={},
        shapes=(
            circle(1, 50, 50, 30),
            square(2, 130, 60, 28, 45),
            triangle(3, 90, 95, 150, 145, 30, 145),
        ),
        note="PNG image; annotation id 4 (square) is absent from the bitmap; metadata {}",
        absent_annotations=((4, CATEGORY_IDS["square"]),),
    ),
    SampleSpec(
        stem="shapes-004",
        size=(280, 210),
        image_format="JPEG",
        status="LABELED",
        metadata=None,
        shapes=(
            circle(1, 70, 70, 45),
            square(2, 190, 75, 38, 10),
            triangle(3, 60, 130, 130, 200, 20, 200),
            square(9, 210, 165, 25),
        ),
        note="bitmap region id 9 has no annotation; no metadata key",
        unannotated=frozenset({9}),
    ),
    SampleSpec(
        stem="shapes-005",
        size=(256, 192),
        image_format="JPEG",
        status="REJECTED",
        metadata={"split": "train"},
        shapes=(
            grass(1, 150, 10, 70, 0.5),
            circle(2, 180, 70, 35),
            square(3, 75, 90, 35, 30),
        ),
        note="label status REJECTED",
    ),
    SampleSpec(
        stem="shapes-006",
        size=(160, 120),
        image_format="JPEG",
        status=None,
        metadata={"split": "val"},
        shapes=(
            circle(1, 50, 50, 28),
            triangle(2, 100, 20, 150, 100, 80, 100),
        ),
        note="null label: no bitmap, no annotations (UNLABELED)",
    ),
    SampleSpec(
        stem="shapes-007",
        size=(224, 168),
        image_format="JPEG",
        status="REVIEWED",
        metadata={"split": "val"},
        shapes=(
            grass(1, 125, 5, 40, 3.0),
            circle(2, 45, 50, 26),
            circle(3, 80, 60, 24),
            circle(4, 110, 45, 22),
            square(5, 165, 55, 22, 15),
            square(6, 185, 105, 20),
            triangle(7, 60, 95, 110, 160, 15, 160),
        ),
        note="several instances per category overlapping in a chain",
    ),
)


# -- drawing -------------------------------------------------------------------------------


def shape_mask(shape: Shape, width: int, height: int) -> BoolMap:
    """Pixels (tested at their centres) covered by ``shape``."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    g = shape.geometry
    if shape.kind == "circle":
        cx, cy, radius = g
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2  # type: ignore[no-any-return]
    if shape.kind == "square":
        cx, cy, half, angle = g
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        u = (xs - cx) * c + (ys - cy) * s
        v = -(xs - cx) * s + (ys - cy) * c
        return (np.abs(u) <= half) & (np.abs(v) <= half)  # type: ignore[no-any-return]
    if shape.kind == "triangle":
        x0, y0, x1, y1, x2, y2 = g

        def side(ax: float, ay: float, bx: float, by: float) -> FloatImage:
            return (bx - ax) * (ys - ay) - (by - ay) * (xs - ax)  # type: ignore[no-any-return]

        d0, d1, d2 = side(x0, y0, x1, y1), side(x1, y1, x2, y2), side(x2, y2, x0, y0)
        inside_pos = (d0 >= 0) & (d1 >= 0) & (d2 >= 0)
        inside_neg = (d0 <= 0) & (d1 <= 0) & (d2 <= 0)
        return inside_pos | inside_neg
    base_y, amplitude, wavelength, phase = g
    edge = base_y + amplitude * np.sin(2 * np.pi * xs / wavelength + phase)
    return ys >= edge  # type: ignore[no-any-return]


def render(spec: SampleSpec, rng: np.random.Generator) -> tuple[Image.Image, npt.NDArray[np.int64]]:
    """The displayed RGB image and the instance-id map (0 = unlabeled) of one sample."""
    width, height = spec.size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    top = rng.uniform(205, 245, size=3)
    bottom = rng.uniform(170, 215, size=3)
    t = (ys / max(height - 1, 1))[..., None]
    image = top * (1 - t) + bottom * t
    frequency = rng.uniform(0.05, 0.12, size=2)
    ripple = 5 * np.sin(xs * frequency[0] + ys * frequency[1]) * np.cos(ys * frequency[0])
    image += ripple[..., None]
    noise_level = 1.0 if spec.image_format == "PNG" else 2.5
    image += rng.normal(0, noise_level, size=image.shape)

    ids = np.zeros((height, width), dtype=np.int64)
    for shape in spec.shapes:
        mask = shape_mask(shape, width, height)
        paint = np.asarray(PAINT[shape.kind], dtype=np.float64)
        shade = 12 * (ys / height - 0.5)  # a little light from above
        if shape.kind == "grass":
            shade = shade + 8 * np.sin(xs * 0.9) * np.sin(ys * 0.35)  # blades
        layer = paint + shade[..., None] + rng.normal(0, noise_level, size=image.shape)
        image[mask] = layer[mask]
        ids[mask] = shape.instance_id
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels), ids


def encode_bitmap(ids: npt.NDArray[np.int64]) -> Image.Image:
    """Instance ids as an 8-bit RGBA image: id = R + 256*G + 65536*B, alpha 255."""
    rgba = np.empty((*ids.shape, 4), dtype=np.uint8)
    rgba[..., 0] = ids & 0xFF
    rgba[..., 1] = (ids >> 8) & 0xFF
    rgba[..., 2] = (ids >> 16) & 0xFF
    rgba[..., 3] = 255
    return Image.fromarray(rgba)


def decode_bitmap(rgba: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Instance ids of an RGBA array: R + 256*G + 65536*B."""
    channels = rgba.astype(np.int64)
    return channels[..., 0] | (channels[..., 1] << 8) | (channels[..., 2] << 16)


def stored_image(displayed: Image.Image, orientation: int) -> Image.Image:
    """The pixels to store so that applying EXIF ``orientation`` shows ``displayed``."""
    if orientation == 1:
        return displayed
    if orientation == 6:  # viewers rotate 90 degrees clockwise: store it counter-clockwise
        return displayed.transpose(Image.Transpose.ROTATE_90)
    raise ValueError(f"orientation {orientation} is not supported by this script")


def image_bytes(spec: SampleSpec, displayed: Image.Image) -> bytes:
    buffer = io.BytesIO()
    stored = stored_image(displayed, spec.exif_orientation)
    if spec.image_format == "PNG":
        stored.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()
    options: dict[str, Any] = {
        "quality": JPEG_QUALITY,
        "optimize": True,
        "progressive": False,
        "subsampling": "4:2:0",
    }
    if spec.exif_orientation != 1:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = spec.exif_orientation
        options["exif"] = exif
    stored.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# -- the release ---------------------------------------------------------------------------


def annotation_list(spec: SampleSpec) -> list[dict[str, Any]]:
    drawn = [
        {"id": s.instance_id, "category_id": CATEGORY_IDS[s.kind], "attributes": {}}
        for s in spec.shapes
        if s.instance_id not in spec.unannotated
    ]
    absent = [
        {"id": instance_id, "category_id": category_id, "attributes": {}}
        for instance_id, category_id in spec.absent_annotations
    ]
    return drawn + absent


def sample_entry(spec: SampleSpec) -> dict[str, Any]:
    label: dict[str, Any] | None = None
    if spec.status is not None:
        label = {
            "label_status": spec.status,
            "attributes": {
                "format_version": "0.1",
                "annotations": annotation_list(spec),
                "segmentation_bitmap": {"url": f"bitmaps/{spec.bitmap_file}"},
            },
        }
    entry: dict[str, Any] = {
        "uuid": str(uuid.uuid5(UUID_NAMESPACE, spec.image_file)),
        "name": spec.image_file,
        "attributes": {"image": {"url": f"images/{spec.image_file}"}},
    }
    if spec.metadata is not None:
        entry["metadata"] = spec.metadata
    entry["labels"] = {"ground-truth": label}
    return entry


def release_document(samples: Sequence[SampleSpec]) -> dict[str, Any]:
    return {
        "name": "v1.0",
        "description": "Synthetic demo release generated by scripts/make_demo_release.py",
        "created_at": "2024-06-07 12:00:00.000000+00:00",
        "dataset": {
            "name": "demo-shapes",
            "owner": "segments-torch",
            "task_type": "segmentation-bitmap",
            "task_attributes": {"format_version": "0.1", "categories": CATEGORIES},
            "labelsets": [{"name": "ground-truth", "description": ""}],
            "samples": [sample_entry(spec) for spec in samples],
        },
    }


# -- the vector release ---------------------------------------------------------------------

#: Vertices of the polygon that stands for a circle (regular, inscribed).
CIRCLE_VERTICES = 24


def shape_annotation(shape: Shape, size: tuple[int, int]) -> dict[str, Any]:
    """``shape`` as a vector annotation: an upright square as a ``bbox``, a turned one,
    a circle and a triangle as a ``polygon``, the grass as the ``polyline`` of its edge."""
    g = shape.geometry
    points: list[tuple[float, float]]
    if shape.kind == "circle":
        cx, cy, radius = g
        turns = 2 * np.pi * np.arange(CIRCLE_VERTICES) / CIRCLE_VERTICES
        points = list(zip(cx + radius * np.cos(turns), cy + radius * np.sin(turns), strict=True))
    elif shape.kind == "square":
        cx, cy, half, angle = g
        if angle == 0:
            box = [(cx - half, cy - half), (cx + half, cy + half)]
            return vector_annotation(shape, "bbox", box)
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
        points = [(cx + u * c - v * s, cy + u * s + v * c) for u, v in corners]
    elif shape.kind == "triangle":
        points = list(zip(g[0::2], g[1::2], strict=True))
    else:
        base_y, amplitude, wavelength, phase = g
        xs = np.linspace(0, size[0], round(8 * size[0] / wavelength) + 1)  # 8 a wave
        edge = base_y + amplitude * np.sin(2 * np.pi * xs / wavelength + phase)
        return vector_annotation(shape, "polyline", list(zip(xs, edge, strict=True)))
    return vector_annotation(shape, "polygon", points)


def vector_annotation(
    shape: Shape, kind: str, points: Sequence[tuple[float, float]]
) -> dict[str, Any]:
    return {
        "id": shape.instance_id,
        "track_id": shape.instance_id,
        "category_id": CATEGORY_IDS[shape.kind],
        "type": kind,
        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in points],
        "attributes": {"occluded": shape.kind == "grass"},
    }


def vector_label(spec: SampleSpec) -> dict[str, Any]:
    """The sample's shapes as a vector label, with a ``point`` at each circle's centre."""
    annotations = [shape_annotation(shape, spec.size) for shape in spec.shapes]
    centres = [shape for shape in spec.shapes if shape.kind == "circle"]
    for number, shape in enumerate(centres, start=1):
        centre = Shape(shape.kind, 1000 + number, shape.geometry)
        cx, cy, _ = shape.geometry
        annotations.append(vector_annotation(centre, "point", [(cx, cy)]))
    return {
        "format_version": "0.1",
        "annotations": annotations,
        "image_attributes": {
            "scene": "meadow" if any(s.kind == "grass" for s in spec.shapes) else "plain"
        },
    }


def vector_document(samples: Sequence[SampleSpec]) -> dict[str, Any]:
    """The same samples labelled with shapes: a ``vector`` release over the same images."""
    document = release_document(samples)
    dataset = document["dataset"]
    dataset["name"], dataset["task_type"] = "demo-shapes-vector", "vector"
    for spec, entry in zip(samples, dataset["samples"], strict=True):
        if spec.status is not None:
            label = {"label_status": spec.status, "attributes": vector_label(spec)}
            entry["labels"] = {"ground-truth": label}
    return document


# -- the sequence releases ------------------------------------------------------------------

#: The displayed (width, height) of every sequence frame.
SEQUENCE_SIZE = (64, 48)


@dataclass(frozen=True)
class SequenceSpec:
    """One demo sequence: ``frames`` holds each frame's shapes, whose ``instance_id`` is
    the track id (the same shape in every frame). ``named``: frames carry a ``name`` and
    an integer ``timestamp``."""

    name: str
    status: str
    metadata: dict[str, Any]
    named: bool
    frames: tuple[tuple[Shape, ...], ...]

    def stem(self, index: int) -> str:
        return f"{self.name}-{index}"

    def drawn(self, index: int) -> SampleSpec:
        """Frame ``index`` as a sample to draw, its shapes numbered 1, 2, ... as the
        frame's bitmap numbers them."""
        shapes = tuple(
            Shape(shape.kind, number, shape.geometry)
            for number, shape in enumerate(self.frames[index], start=1)
        )
        return SampleSpec(
            stem=self.stem(index),
            size=SEQUENCE_SIZE,
            image_format="JPEG",
            status=self.status,
            metadata=self.metadata,
            shapes=shapes,
            note="",
        )


SEQUENCES: tuple[SequenceSpec, ...] = (
    SequenceSpec(
        name="walk",
        status="LABELED",
        metadata={"split": "train"},
        named=True,
        frames=tuple(
            (
                square(7, 10 + 8 * t, 14, 7),
                triangle(12, 40, 44 - 4 * t, 60, 44 - 4 * t, 50, 28 - 4 * t),
            )
            for t in range(4)
        ),
    ),
    SequenceSpec(
        name="drift",
        status="REVIEWED",
        metadata={"split": "val"},
        named=False,
        frames=tuple(
            (circle(3, 50 - 8 * t, 16, 8),) * (t < 3) + (square(5, 20, 34, 8, 10 + 15 * t),)
            for t in range(4)
        ),
    ),
)


def sequence_document(
    sequences: Sequence[SequenceSpec],
    task_type: str,
    label_frame: Any,
) -> dict[str, Any]:
    """A sequence release: one sample per sequence, ``label_frame(spec, index)`` gives
    each frame's label."""
    samples = []
    for spec in sequences:
        frames = []
        for index in range(len(spec.frames)):
            frame: dict[str, Any] = {"image": {"url": f"frames/{spec.stem(index)}.jpg"}}
            if spec.named:
                frame.update(name=f"frame-{index}.jpg", timestamp=100 * index)
            frames.append(frame)
        label_frames = [label_frame(spec, index) for index in range(len(spec.frames))]
        samples.append(
            {
                "uuid": str(uuid.uuid5(UUID_NAMESPACE, f"sequence/{spec.name}")),
                "name": spec.name,
                "attributes": {"frames": frames},
                "metadata": spec.metadata,
                "labels": {
                    "ground-truth": {
                        "label_status": spec.status,
                        "attributes": {"format_version": "0.2", "frames": label_frames},
                    }
                },
            }
        )
    document = release_document(())
    dataset = document["dataset"]
    dataset.update(name="demo-sequences", task_type=task_type, samples=samples)
    return document


def vector_frame(spec: SequenceSpec, index: int) -> dict[str, Any]:
    """Frame ``index``'s shapes as a vector sequence frame; the first frame is the key."""
    annotations = []
    for shape in spec.frames[index]:
        annotation = shape_annotation(shape, SEQUENCE_SIZE)
        annotations.append({**annotation, "is_keyframe": index == 0})
    return {"format_version": "0.1", "annotations": annotations}


def bitmap_frame(spec: SequenceSpec, index: int) -> dict[str, Any]:
    """Frame ``index`` as a segmentation sequence frame: bitmap ids 1, 2, ... and the
    shapes' track ids."""
    annotations = [
        {
            "id": number,
            "category_id": CATEGORY_IDS[shape.kind],
            "track_id": shape.instance_id,
            "is_keyframe": index == 0,
        }
        for number, shape in enumerate(spec.frames[index], start=1)
    ]
    bitmap = f"frames/{spec.stem(index)}.png"
    return {"annotations": annotations, "segmentation_bitmap": {"url": bitmap}}


def readme(samples: Sequence[SampleSpec]) -> str:
    rows = []
    for spec in samples:
        width, height = spec.size
        status = spec.status or "null label"
        rows.append(f"| `{spec.image_file}` | {width}x{height} | {status} | {spec.note} |")
    table = "\n".join(rows)
    return f"""# Demo release

A tiny synthetic Segments.ai release (`demo-shapes`, release `v1.0`, task type
`segmentation-bitmap`, labelset `ground-truth`) bundled with `segments_torch` for examples,
tests and `segments-torch demo`. Coloured circles, squares and triangles on a textured
gradient, some over a band of grass (a `has_instances: false` stuff category).

Generated by `python scripts/make_demo_release.py`; do not edit these files by hand, change
the script and run it again (it is deterministic: same files, byte for byte).

Image and bitmap URLs in `release.json` are relative paths (`images/<file>`,
`bitmaps/<file>`), resolved against the folder that holds `release.json`.

Bitmaps are 8-bit RGBA PNGs, alpha 255, instance id = R + 256*G + 65536*B (0 = unlabeled).

`vector.json` labels the same images with shapes (task type `vector`, same categories):
upright squares as `bbox`, turned squares, circles (24 vertices) and triangles as `polygon`,
each grass edge as a `polyline` and each circle's centre as a `point` (track ids from
1001); annotations carry `attributes` (`occluded`) and labels `image_attributes` (`scene`).

`sequence.json` (task type `image-vector-sequence`) and `segmentation-sequence.json`
(`image-segmentation-sequence`) hold two sequences of four 64x48 frames (`walk-*.jpg`,
`drift-*.jpg`) whose boxes and polygons move from frame to frame; `walk`'s frames have
names and timestamps, `drift`'s neither, and its circle leaves the view in the last frame.
Their images and bitmaps are in `frames/` (`walk-0.jpg`, `walk-0.png`, ...); the
bitmaps number each frame's shapes 1, 2, ...; `track_id` links them across frames.

Sizes are the displayed (EXIF-oriented) width x height.

| sample | size | status | covers |
|---|---|---|---|
{table}

Licence: every pixel is drawn by the script (no third-party material); the files are
distributed under the same licence as the project (MIT).
"""


# -- writing and checking ------------------------------------------------------------------


class DemoCheckError(RuntimeError):
    """A generated file is not what the spec says."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise DemoCheckError(message)


def check_visible(spec: SampleSpec, ids: npt.NDArray[np.int64]) -> None:
    present, counts = np.unique(ids, return_counts=True)
    visible = dict(zip(present.tolist(), counts.tolist(), strict=True))
    for shape in spec.shapes:
        pixels = visible.get(shape.instance_id, 0)
        require(
            pixels >= MIN_VISIBLE_PIXELS,
            f"{spec.stem}: instance {shape.instance_id} keeps only {pixels} pixels",
        )
    for instance_id, _ in spec.absent_annotations:
        require(
            instance_id not in visible, f"{spec.stem}: absent annotation {instance_id} is drawn"
        )


def write_demo(out: Path, samples: Sequence[SampleSpec]) -> list[Path]:
    """Write the release, its assets and the README under ``out``; return the files."""
    written: list[Path] = []

    def write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)

    for index, spec in enumerate(samples):
        rng = np.random.default_rng([SEED, index])
        displayed, ids = render(spec, rng)
        check_visible(spec, ids)
        write(out / "images" / spec.image_file, image_bytes(spec, displayed))
        if spec.bitmap_file is not None:
            write(out / "bitmaps" / spec.bitmap_file, png_bytes(encode_bitmap(ids)))
    document = json.dumps(release_document(samples), indent=2) + "\n"
    write(out / "release.json", document.encode())
    vector = json.dumps(vector_document(samples), indent=2) + "\n"
    write(out / "vector.json", vector.encode())
    for index, sequence in enumerate(SEQUENCES):
        for frame in range(len(sequence.frames)):
            spec = sequence.drawn(frame)
            rng = np.random.default_rng([SEED, 100 + index, frame])
            displayed, ids = render(spec, rng)
            check_visible(spec, ids)
            write(out / "frames" / spec.image_file, image_bytes(spec, displayed))
            write(out / "frames" / f"{spec.stem}.png", png_bytes(encode_bitmap(ids)))
    releases = {
        "sequence.json": sequence_document(SEQUENCES, "image-vector-sequence", vector_frame),
        "segmentation-sequence.json": sequence_document(
            SEQUENCES, "image-segmentation-sequence", bitmap_frame
        ),
    }
    for name, release in releases.items():
        write(out / name, (json.dumps(release, indent=2) + "\n").encode())
    write(out / "README.md", readme(samples).encode())

    # The asset folders belong to this script: drop files a previous version left behind.
    for folder in ("images", "bitmaps", "frames"):
        for path in sorted((out / folder).iterdir()):
            if path.is_file() and path not in written and path.suffix in {".jpg", ".png"}:
                path.unlink()
                print(f"removed stale {path}")
    return written


def mean_colour(image: npt.NDArray[np.uint8], mask: BoolMap) -> npt.NDArray[np.float64]:
    return image[mask].astype(np.float64).mean(axis=0)  # type: ignore[no-any-return]


def check_demo(out: Path, samples: Sequence[SampleSpec]) -> None:
    """Re-read every written file and check it against ``samples``."""
    document = json.loads((out / "release.json").read_text())
    entries = document["dataset"]["samples"]
    require(len(entries) == len(samples), "release.json: wrong number of samples")
    for spec, entry in zip(samples, entries, strict=True):
        where = spec.stem
        with Image.open(out / entry["attributes"]["image"]["url"]) as raw:
            require(raw.format == spec.image_format, f"{where}: stored as {raw.format}")
            orientation = raw.getexif().get(EXIF_ORIENTATION_TAG, 1)
            require(orientation == spec.exif_orientation, f"{where}: orientation {orientation}")
            oriented = ImageOps.exif_transpose(raw).convert("RGB")
        require(oriented.size == spec.size, f"{where}: displayed size {oriented.size}")
        if spec.exif_orientation == 6:
            require(raw.size == spec.size[::-1], f"{where}: stored size {raw.size}")
        pixels = np.asarray(oriented)

        label = entry["labels"]["ground-truth"]
        if spec.status is None:
            require(label is None, f"{where}: label should be null")
            continue
        with Image.open(out / label["attributes"]["segmentation_bitmap"]["url"]) as bitmap:
            require(bitmap.mode == "RGBA", f"{where}: bitmap mode {bitmap.mode}")
            require(bitmap.size == oriented.size, f"{where}: bitmap size {bitmap.size}")
            rgba = np.asarray(bitmap)
        require(bool((rgba[..., 3] == 255).all()), f"{where}: alpha is not 255 everywhere")
        ids = decode_bitmap(rgba)
        drawn = {s.instance_id for s in spec.shapes}
        present = set(np.unique(ids).tolist()) - {0}
        require(present == drawn, f"{where}: bitmap ids {sorted(present)} != {sorted(drawn)}")
        listed = {a["id"] for a in label["attributes"]["annotations"]}
        expected = (drawn - spec.unannotated) | {i for i, _ in spec.absent_annotations}
        require(listed == expected, f"{where}: annotation ids {sorted(listed)}")
        # The oriented image lines up with the bitmap: each region shows its kind's paint.
        for shape in spec.shapes:
            colour = mean_colour(pixels, ids == shape.instance_id)
            error = float(np.abs(colour - np.asarray(PAINT[shape.kind])).max())
            require(error < 30, f"{where}: instance {shape.instance_id} looks {colour.round()}")


def check_vector(out: Path, samples: Sequence[SampleSpec]) -> None:
    """Check that each box and polygon of ``vector.json``, rasterised as COCO does, covers
    its drawn shape (before later shapes hide parts of it)."""
    from segments_torch.shapes import polygon_mask

    entries = json.loads((out / "vector.json").read_text())["dataset"]["samples"]
    for spec, entry in zip(samples, entries, strict=True):
        if spec.status is None:
            continue
        width, height = spec.size
        drawn = {shape.instance_id: shape for shape in spec.shapes}
        for annotation in entry["labels"]["ground-truth"]["attributes"]["annotations"]:
            points = np.asarray(annotation["points"], dtype=np.float64)
            if annotation["type"] == "bbox":
                (x0, y0), (x1, y1) = points
                points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            elif annotation["type"] != "polygon":
                continue
            mask = polygon_mask(points, height, width)
            shape = shape_mask(drawn[annotation["id"]], width, height)
            iou = (mask & shape).sum() / (mask | shape).sum()
            require(iou > 0.9, f"{spec.stem}: shape {annotation['id']} covers IoU {iou:.2f}")


def check_sequences(out: Path) -> None:
    """Check that each sequence frame's bitmap holds its shapes by their frame ids, and
    that each box and polygon of ``sequence.json`` covers its drawn shape."""
    from segments_torch.shapes import polygon_mask

    vector = json.loads((out / "sequence.json").read_text())["dataset"]["samples"]
    for spec, entry in zip(SEQUENCES, vector, strict=True):
        frames = entry["labels"]["ground-truth"]["attributes"]["frames"]
        for index, frame in enumerate(frames):
            drawn = spec.drawn(index)
            with Image.open(out / "frames" / f"{drawn.stem}.png") as bitmap:
                ids = decode_bitmap(np.asarray(bitmap))
            present = set(np.unique(ids).tolist()) - {0}
            numbers = {shape.instance_id for shape in drawn.shapes}
            require(present == numbers, f"{drawn.stem}: bitmap ids {sorted(present)}")
            width, height = SEQUENCE_SIZE
            for annotation, shape in zip(frame["annotations"], drawn.shapes, strict=True):
                points = np.asarray(annotation["points"], dtype=np.float64)
                if annotation["type"] == "bbox":
                    (x0, y0), (x1, y1) = points
                    points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
                mask = polygon_mask(points, height, width)
                inside = ids == shape.instance_id
                iou = (mask & inside).sum() / (mask | inside).sum()
                require(iou > 0.8, f"{drawn.stem}: track {annotation['track_id']} IoU {iou:.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    written = write_demo(out, SAMPLES)
    check_demo(out, SAMPLES)
    check_vector(out, SAMPLES)
    check_sequences(out)
    total = sum(path.stat().st_size for path in written)
    print(f"wrote {len(written)} files, {total / 1024:.1f} KiB, under {out}")


if __name__ == "__main__":
    main()
