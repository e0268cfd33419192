from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import v2

from segments_torch import targets
from segments_torch.targets import (
    _WORDS_PER_SUM,
    INSTANCE_FIELDS,
    TARGET_KINDS,
    SegmentMap,
    _IdLookup,
    _ones_per_row,
    build_target,
    instance_fields,
    map_ids,
    nearest_rows,
    sample_nearest,
    segment_targets,
)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, CUDA]),
]
BIG = (1 << 24) - 1  # the largest id an RGB bitmap can hold


def i32(rows: list[list[int]], device: str = "cpu") -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int32, device=device)


def i64(values: list[int], device: str = "cpu") -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64, device=device)


def bools(values: list[bool], device: str = "cpu") -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool, device=device)


def naive_map_ids(
    ids: np.ndarray, annotation_ids: list[int], values: list[int], fill: int
) -> list[list[int]]:
    lookup = dict(zip(annotation_ids, values, strict=True))
    return [[lookup.get(int(i), fill) for i in row] for row in ids]


class SearchsortedSpy:
    """Counts the calls of ``torch.searchsorted`` (the sparse path of map_ids)."""

    def __init__(self) -> None:
        self.calls = 0
        self.original = torch.searchsorted

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.calls += 1
        return self.original(*args, **kwargs)


@pytest.fixture
def searchsorted(monkeypatch: pytest.MonkeyPatch) -> SearchsortedSpy:
    spy = SearchsortedSpy()
    monkeypatch.setattr(torch, "searchsorted", spy)
    return spy


# --------------------------------------------------------------------------- map_ids


def test_map_ids_docstring_example():
    ids = i32([[0, 7], [7, 300]])
    assert map_ids(ids, i64([7, 300]), i64([1, 2]), fill=255).tolist() == [[255, 1], [1, 2]]


def test_map_ids_takes_numpy_annotations_and_values():
    ids = i32([[0, 7], [7, 300]])
    out = map_ids(ids, np.array([7, 300]), np.array([1.5, 2.5], dtype=np.float32), fill=-1)
    assert out.dtype == torch.float32
    assert out.tolist() == [[-1.0, 1.5], [1.5, 2.5]]


def test_map_ids_unannotated_and_larger_ids_get_fill():
    ids = i32([[0, 3, 4, 5], [6, 1000, 65535, BIG]])
    out = map_ids(ids, i64([5, 3]), i64([10, 20]), fill=-7)
    assert out.tolist() == [[-7, 20, -7, 10], [-7, -7, -7, -7]]
    assert out.dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.float32])
def test_map_ids_empty_annotations_fill_with_the_values_dtype(dtype):
    ids = i32([[0, 1, 2], [3, 4, BIG]])
    out = map_ids(ids, i64([]), torch.tensor([], dtype=dtype), fill=9)
    assert out.dtype == dtype
    assert out.shape == (2, 3)
    assert out.tolist() == [[9, 9, 9], [9, 9, 9]]


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_map_ids_keeps_the_values_dtype_on_both_paths(dtype):
    ids = i32([[1, 2], [0, 16777000]])
    dense = map_ids(ids, i64([2, 1]), torch.tensor([4, 3], dtype=dtype), fill=255)
    sparse = map_ids(ids, i64([2, 16777000]), torch.tensor([4, 3], dtype=dtype), fill=255)
    assert dense.dtype == dtype
    assert sparse.dtype == dtype
    assert dense.tolist() == [[3, 4], [255, 255]]
    assert sparse.tolist() == [[255, 4], [255, 3]]


def test_map_ids_sparse_path_for_large_ids(searchsorted):
    ids = i32([[16777000, 0, 5, 16777000], [300, 70000, 16777001, BIG]] * 2)
    out = map_ids(ids, i64([70000, 16777000, 300, BIG]), i64([1, 2, 3, 4]), fill=0)
    assert searchsorted.calls == 1
    assert out.tolist() == [[2, 0, 0, 2], [3, 1, 0, 4]] * 2


def test_map_ids_dense_path_for_small_ids(searchsorted):
    ids = i32([[1, 2, 0, 65535], [65534, 7, 1, 2]])
    out = map_ids(ids, i64([2, 65535, 1]), i64([5, 6, 7]), fill=-1)
    assert searchsorted.calls == 0
    assert out.tolist() == [[7, 5, -1, 6], [-1, -1, 7, 5]]


def test_map_ids_path_threshold(searchsorted):
    small = i32([[65536, 65535]])
    assert map_ids(small, i64([65535]), i64([1]), fill=0).tolist() == [[0, 1]]
    assert searchsorted.calls == 0
    assert map_ids(small, i64([65536]), i64([1]), fill=0).tolist() == [[1, 0]]
    assert searchsorted.calls == 1
    # A large image keeps the dense table for ids below its pixel count.
    big = torch.zeros((300, 300), dtype=torch.int32)  # 90000 pixels
    big[0, :3] = torch.tensor([70000, 89999, 90000], dtype=torch.int32)
    out = map_ids(big, i64([70000, 89999]), i64([1, 2]), fill=0)
    assert searchsorted.calls == 1
    assert out[0, :4].tolist() == [1, 2, 0, 0]
    assert int(out.sum()) == 3
    out = map_ids(big, i64([70000, 90000]), i64([1, 2]), fill=0)
    assert searchsorted.calls == 2
    assert out[0, :4].tolist() == [1, 0, 2, 0]
    assert int(out.sum()) == 3


ID_POOLS = {
    "small": st.integers(0, 40),
    "mid": st.integers(65530, 65545),
    "large": st.integers(BIG - 12, BIG),
}


@st.composite
def id_maps(draw: st.DrawFn) -> tuple[np.ndarray, list[int], list[int], int]:
    pools = draw(st.lists(st.sampled_from(sorted(ID_POOLS)), min_size=1, max_size=3, unique=True))
    pool = st.one_of(st.just(0), *(ID_POOLS[p] for p in pools))
    height = draw(st.integers(1, 6))
    width = draw(st.integers(1, 6))
    pixels = draw(st.lists(pool, min_size=height * width, max_size=height * width))
    ids = np.array(pixels, dtype=np.int32).reshape(height, width)
    present = sorted(set(pixels) - {0})
    annotated = draw(st.lists(st.sampled_from(present), unique=True)) if present else []
    absent = draw(st.lists(st.integers(1, BIG).filter(lambda i: i not in present), max_size=4))
    annotation_ids = draw(st.permutations(list(dict.fromkeys(annotated + absent))))
    values = draw(
        st.lists(
            st.integers(-(2**40), 2**40),
            min_size=len(annotation_ids),
            max_size=len(annotation_ids),
        )
    )
    fill = draw(st.integers(-(2**40), 2**40))
    return ids, annotation_ids, values, fill


@settings(max_examples=150, deadline=None)
@given(id_maps())
def test_map_ids_matches_a_dict_lookup(case):
    ids, annotation_ids, values, fill = case
    out = map_ids(torch.from_numpy(ids), i64(annotation_ids), i64(values), fill)
    assert out.dtype == torch.int64
    assert out.shape == ids.shape
    assert out.tolist() == naive_map_ids(ids, annotation_ids, values, fill)


@settings(max_examples=100, deadline=None)
@given(id_maps(), st.integers(-5, 5))
def test_map_ids_dense_and_sparse_paths_agree(case, extra_value):
    ids, annotation_ids, values, fill = case
    ids = np.minimum(ids, 1000)  # small ids only, so the dense path is taken ...
    small = [(a, v) for a, v in zip(annotation_ids, values, strict=True) if a <= 1000]
    ann = [a for a, _ in small]
    val = [v for _, v in small]
    tensor = torch.from_numpy(ids)
    dense = map_ids(tensor, i64(ann), i64(val), fill)
    # ... and one absent huge annotation id forces the searchsorted path.
    sparse = map_ids(tensor, i64([*ann, BIG]), i64([*val, extra_value]), fill)
    assert dense.tolist() == sparse.tolist() == naive_map_ids(ids, ann, val, fill)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_map_ids_where_each_value_is_its_id(dtype):
    ids = i32([[0, 1, 2], [3, 3, 0]])
    mapped = map_ids(ids, i64([1, 2, 3]), torch.tensor([1, 2, 3], dtype=dtype), fill=0)
    assert mapped.dtype == dtype
    assert mapped.tolist() == [[0, 1, 2], [3, 3, 0]]
    mapped[0, 0] = 7  # a map of its own, never the ids
    assert ids[0, 0] == 0
    # Not each value its id: another fill, an id without annotation, values in another order.
    assert map_ids(ids, i64([1, 2, 3]), i64([1, 2, 3]), fill=9).tolist() == [
        [9, 1, 2],
        [3, 3, 9],
    ]
    assert map_ids(ids, i64([1, 3]), i64([1, 3]), fill=0).tolist() == [[0, 1, 0], [3, 3, 0]]
    # Each annotation's value its id, but a pixel id above them all has no annotation.
    assert map_ids(ids, i64([1, 2]), i64([1, 2]), fill=0).tolist() == [[0, 1, 2], [0, 0, 0]]
    # ... or one too large for a table.
    big = i32([[1, 2], [BIG, 0]])
    assert map_ids(big, i64([1, 2]), i64([1, 2]), fill=0).tolist() == [[1, 2], [0, 0]]
    assert map_ids(ids, i64([1, 2, 3]), i64([2, 1, 3]), fill=0).tolist() == [[0, 2, 1], [3, 3, 0]]


def test_id_lookup_reads_the_largest_pixel_id_only_when_a_pixel_is_past_the_table():
    lookup = _IdLookup(i32([[0, 1, 2], [3, 3, 0]]), np.array([3, 1, 2]))
    assert lookup.map(np.array([5, 6, 7]), 0).tolist() == [[0, 6, 7], [5, 5, 0]]
    assert not lookup.fitted  # every pixel id had a slot: the gather said so
    lookup = _IdLookup(i32([[4, 1], [0, 2]]), np.array([1, 2]))
    assert lookup.map(np.array([5, 6]), -1).tolist() == [[-1, 5], [-1, 6]]
    assert lookup.fitted
    assert lookup.map(np.array([7, 8]), 0).tolist() == [[0, 7], [0, 8]]


# -------------------------------------------------------------------- segment_targets


def test_segment_targets_exact():
    segment_map = i64([-1, 2, 2, -1, 0, -1, -1, -1, -1, -1, -1, 0]).view(3, 4)
    # segment 1 and segment 3 have no pixels: dropped, 0 and 2 renumbered 0 and 1.
    result = segment_targets(segment_map, num_segments=4)
    assert result.masks.dtype == torch.uint8
    assert result.masks.tolist() == [
        [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]],
        [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    ]
    assert result.boxes.dtype == torch.float32
    assert result.boxes.tolist() == [[0.0, 1.0, 4.0, 3.0], [1.0, 0.0, 3.0, 1.0]]
    assert result.area.dtype == torch.int64
    assert result.area.tolist() == [2, 2]
    assert result.segments.dtype == torch.int64
    assert result.segments.tolist() == [0, 2]
    assert result.segment_map.dtype == torch.int64
    assert result.segment_map.tolist() == [[-1, 1, 1, -1], [0, -1, -1, -1], [-1, -1, -1, 0]]


def test_segment_targets_one_pixel_box():
    segment_map = torch.full((5, 4), -1, dtype=torch.int64)
    segment_map[3, 2] = 0  # x=2, y=3
    result = segment_targets(segment_map, 1)
    assert result.boxes.tolist() == [[2.0, 3.0, 3.0, 4.0]]
    assert result.area.tolist() == [1]
    assert result.segments.tolist() == [0]


def test_segment_targets_no_segments():
    result = segment_targets(torch.full((3, 5), -1, dtype=torch.int64), 0)
    assert result.masks.shape == (0, 3, 5)
    assert result.masks.dtype == torch.uint8
    assert result.boxes.shape == (0, 4)
    assert result.boxes.dtype == torch.float32
    assert result.area.shape == (0,)
    assert result.area.dtype == torch.int64
    assert result.segments.shape == (0,)
    assert result.segment_map.tolist() == [[-1] * 5] * 3


def test_segment_targets_all_requested_segments_empty():
    result = segment_targets(torch.full((2, 2), -1, dtype=torch.int64), 3)
    assert result.masks.shape == (0, 2, 2)
    assert result.boxes.shape == (0, 4)
    assert result.area.shape == (0,)
    assert result.segments.tolist() == []
    assert result.segment_map.tolist() == [[-1, -1], [-1, -1]]


@st.composite
def segment_maps(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    num_segments = draw(st.integers(0, 6))
    height = draw(st.integers(1, 7))
    width = draw(st.integers(1, 7))
    pixels = draw(
        st.lists(
            st.integers(-1, num_segments - 1),
            min_size=height * width,
            max_size=height * width,
        )
    )
    return np.array(pixels, dtype=np.int64).reshape(height, width), num_segments


def test_run_extents_only_where_runs_are_few():
    # Regions (what labels are): a few runs a row, measured from the runs.
    regions = torch.zeros((64, 1000), dtype=torch.uint8)
    regions[10:30, 5:400] = 1
    regions[20:60, 300:700] = 2  # over a part of 1
    extents = targets._run_extents(regions, 2)
    assert extents is not None
    area, boxes = extents
    assert area.tolist() == [20 * 395 - 10 * 100, 40 * 400]
    assert boxes.tolist() == [[5, 10, 400, 30], [300, 20, 700, 60]]
    # Every pixel its own run: cheaper from the masks, so no answer.
    noise = (torch.arange(64 * 80) % 3).to(torch.uint8).view(64, 80)
    assert targets._run_extents(noise, 2) is None
    assert targets._run_extents(torch.zeros((0, 5), dtype=torch.uint8), 2) is None


def test_ones_per_row_docstring_example():
    masks = torch.tensor([[[1, 0, 1], [0, 0, 0]]], dtype=torch.uint8)
    assert _ones_per_row(masks).tolist() == [[2, 0]]


@pytest.mark.parametrize(
    "width",
    [
        1,
        7,
        8,
        13,
        8 * _WORDS_PER_SUM,  # exactly one sum per row
        8 * _WORDS_PER_SUM + 8,  # a second sum of one word
        2 * 8 * _WORDS_PER_SUM + 5,  # three sums and padding
    ],
)
def test_ones_per_row_counts_every_width(width):
    generator = torch.Generator().manual_seed(width)
    masks = (torch.rand((3, 4, width), generator=generator) < 0.5).to(torch.uint8)
    masks[0, 0] = 1  # a full row: every byte of every word's sum at its largest
    masks[1, 1] = 0
    expected = masks.to(torch.int64).sum(dim=2)
    assert _ones_per_row(masks).tolist() == expected.tolist()
    assert expected[0, 0] == width
    assert expected[1, 1] == 0


def test_ones_per_row_of_no_masks():
    assert _ones_per_row(torch.zeros((0, 5, 9), dtype=torch.uint8)).shape == (0, 5)


#: ``_MASK_BYTES_PER_RUN`` values that make every map take one way to the boxes and areas.
EXTENTS_FROM = {"runs": 0, "masks": 1 << 62}


def assert_naive_segment_targets(
    segment_map: np.ndarray, num_segments: int, extents_from: str = "runs"
) -> None:
    """segment_targets against one numpy comparison per segment, with boxes and areas
    measured from the runs of the code map or from the masks."""
    height, width = segment_map.shape
    masks: list[list[list[int]]] = []
    boxes: list[list[float]] = []
    area: list[int] = []
    segments: list[int] = []
    renumbered = np.full_like(segment_map, -1)
    for k in range(num_segments):
        mask = segment_map == k
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        renumbered[mask] = len(segments)
        masks.append(mask.astype(np.uint8).tolist())
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        area.append(int(mask.sum()))
        segments.append(k)

    with mock.patch.object(targets, "_MASK_BYTES_PER_RUN", EXTENTS_FROM[extents_from]):
        result = segment_targets(torch.from_numpy(segment_map.copy()), num_segments)
    assert result.masks.shape == (len(segments), height, width)
    assert result.masks.tolist() == masks
    assert result.boxes.shape == (len(segments), 4)
    assert result.boxes.tolist() == boxes
    assert result.area.tolist() == area
    assert result.segments.tolist() == segments
    assert result.segment_map.tolist() == renumbered.tolist()


@settings(max_examples=150, deadline=None)
@given(segment_maps(), st.sampled_from(sorted(EXTENTS_FROM)))
def test_segment_targets_matches_a_naive_computation(case, extents_from):
    segment_map, num_segments = case
    assert_naive_segment_targets(segment_map, num_segments, extents_from)


@pytest.mark.parametrize("extents_from", sorted(EXTENTS_FROM))
@pytest.mark.parametrize("num_segments", [254, 255, 256, 510, 700])
def test_segment_targets_past_one_byte_codes(num_segments, extents_from):
    # Masks are compared in groups of 255 segments, each with a one-byte code of its own:
    # every group boundary, segments absent from the map and unassigned pixels included.
    rng = np.random.default_rng(num_segments)
    segment_map = rng.integers(-1, num_segments, size=(24, 50))
    segment_map[segment_map == 3] = -1  # segment 3 has no pixel
    last = num_segments - 1
    segment_map[0, :4] = [last, min(254, last), min(255, last), 0]  # around the first boundary
    assert_naive_segment_targets(segment_map, num_segments, extents_from)


@pytest.mark.parametrize("extents_from", sorted(EXTENTS_FROM))
def test_segment_targets_with_gaps_wider_than_one_byte(extents_from):
    # Present segments 0, 1, 300 and 699 of 700: the masks kept are compared in groups
    # whose codes span at most 255 values, here three groups.
    segment_map = np.full((6, 7), -1)
    segment_map[0, 0] = 0
    segment_map[1:3, 1:4] = 1
    segment_map[5, 6] = 300
    segment_map[3:, :2] = 699
    assert_naive_segment_targets(segment_map, 700, extents_from)


# ----------------------------------------------------------------------- build_target

# 4 x 5; 300 (label 0), 70000 (label 2), 16777000 (label 1) are drawn; 42 (label 1) is
# absent from the bitmap; 9 is drawn but its category is not selected; 5 is drawn with no
# annotation. The largest id takes map_ids' searchsorted path.
EXAMPLE_IDS = [
    [300, 300, 0, 70000, 70000],
    [300, 0, 5, 70000, 70000],
    [16777000, 0, 9, 9, 0],
    [16777000, 0, 9, 9, 0],
]
EXAMPLE_ANNOTATIONS = [300, 70000, 42, 16777000, 9]
EXAMPLE_LABELS = [0, 2, 1, 1, -1]
EXAMPLE_SEMANTIC = [
    [0, 0, 255, 2, 2],
    [0, 255, 255, 2, 2],
    [1, 255, 255, 255, 255],
    [1, 255, 255, 255, 255],
]
EXAMPLE_MASKS = [
    [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]],
]
EXAMPLE_BOXES = [[0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 5.0, 2.0], [0.0, 2.0, 1.0, 4.0]]


def example_target(kind: str, device: str = "cpu", **kwargs: Any) -> dict[str, torch.Tensor]:
    return build_target(
        kind,
        i32(EXAMPLE_IDS, device),
        i64(EXAMPLE_ANNOTATIONS, device),
        i64(EXAMPLE_LABELS, device),
        bools([True] * 5, device),
        **kwargs,
    )


def assert_instance_types(target: dict[str, torch.Tensor], height: int, width: int) -> None:
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(boxes.canvas_size) == (height, width)
    assert boxes.dtype == torch.float32
    assert isinstance(target["masks"], tv_tensors.Mask)
    assert target["masks"].dtype == torch.uint8
    assert target["labels"].dtype == torch.int64
    assert target["instance_ids"].dtype == torch.int64
    assert target["area"].dtype == torch.int64
    assert target["iscrowd"].dtype == torch.int64
    count = len(boxes)
    assert boxes.shape == (count, 4)
    assert target["masks"].shape == (count, height, width)
    for key in ("labels", "instance_ids", "area", "iscrowd"):
        assert target[key].shape == (count,), key


@pytest.mark.parametrize("device", DEVICES)
def test_build_target_instance(device):
    target = example_target("instance", device)
    assert set(target) == {"boxes", "labels", "masks", "instance_ids", "area", "iscrowd"}
    assert_instance_types(target, 4, 5)
    assert all(value.device.type == device for value in target.values())
    assert target["masks"].tolist() == EXAMPLE_MASKS
    assert target["boxes"].tolist() == EXAMPLE_BOXES
    assert target["labels"].tolist() == [1, 3, 2]
    assert target["instance_ids"].tolist() == [300, 70000, 16777000]
    assert target["area"].tolist() == [3, 4, 2]
    assert target["iscrowd"].tolist() == [0, 0, 0]


def test_build_target_instance_label_offset_zero():
    target = example_target("instance", label_offset=0)
    assert target["labels"].tolist() == [0, 2, 1]
    assert target["instance_ids"].tolist() == [300, 70000, 16777000]


def test_build_target_instance_dense_ids():
    ids = i32([[1, 1, 0], [2, 3, 3], [0, 3, 4]])
    target = build_target("instance", ids, i64([3, 1, 2, 4]), i64([5, -1, 0, 2]), bools([True] * 4))
    assert target["instance_ids"].tolist() == [3, 2, 4]
    assert target["labels"].tolist() == [6, 1, 3]
    assert target["boxes"].tolist() == [
        [1.0, 1.0, 3.0, 3.0],
        [0.0, 1.0, 1.0, 2.0],
        [2.0, 2.0, 3.0, 3.0],
    ]
    assert target["area"].tolist() == [3, 1, 1]
    assert target["masks"].tolist() == [
        [[0, 0, 0], [0, 1, 1], [0, 1, 0]],
        [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 0, 1]],
    ]


def test_build_target_instance_ignores_is_thing():
    # "instance" targets give every selected annotation an instance, stuff included.
    ids = i32([[1, 2]])
    target = build_target("instance", ids, i64([1, 2]), i64([0, 0]), bools([False, False]))
    assert target["instance_ids"].tolist() == [1, 2]
    assert target["masks"].tolist() == [[[1, 0]], [[0, 1]]]


@pytest.mark.parametrize("device", DEVICES)
def test_build_target_semantic(device):
    target = example_target("semantic", device)
    assert set(target) == {"semantic"}
    semantic = target["semantic"]
    assert isinstance(semantic, tv_tensors.Mask)
    assert semantic.dtype == torch.int64
    assert semantic.device.type == device
    assert semantic.tolist() == EXAMPLE_SEMANTIC


def test_build_target_semantic_custom_ignore_index():
    target = example_target("semantic", ignore_index=-100)
    expected = [[-100 if v == 255 else v for v in row] for row in EXAMPLE_SEMANTIC]
    assert target["semantic"].tolist() == expected


def test_build_target_semantic_dense_ids():
    ids = i32([[0, 1, 2], [3, 4, 200]])
    target = build_target("semantic", ids, i64([2, 1, 3]), i64([7, 0, -1]), bools([True] * 3))
    assert target["semantic"].tolist() == [[255, 0, 7], [255, 255, 255]]


# 3 x 4 panoptic example. Annotations in order: 2 road (stuff, label 0), 1 car (thing,
# label 1), 4 road (stuff, label 0), 5 car (thing, label 1), 3 sky (stuff, label 2),
# 6 unselected stuff, 7 car absent from the bitmap.
PANOPTIC_IDS = [[1, 1, 2, 2], [3, 3, 4, 4], [5, 0, 6, 6]]
PANOPTIC_ANNOTATIONS = [2, 1, 4, 5, 3, 6, 7]
PANOPTIC_LABELS = [0, 1, 0, 1, 2, -1, 1]
PANOPTIC_THINGS = [False, True, False, True, False, False, True]


@pytest.mark.parametrize("device", DEVICES)
def test_build_target_panoptic(device):
    target = build_target(
        "panoptic",
        i32(PANOPTIC_IDS, device),
        i64(PANOPTIC_ANNOTATIONS, device),
        i64(PANOPTIC_LABELS, device),
        bools(PANOPTIC_THINGS, device),
    )
    assert set(target) == {
        "semantic",
        "boxes",
        "labels",
        "masks",
        "instance_ids",
        "area",
        "iscrowd",
        "is_thing",
        "instance_map",
    }
    assert_instance_types(target, 3, 4)
    assert all(value.device.type == device for value in target.values())
    assert isinstance(target["semantic"], tv_tensors.Mask)
    assert target["semantic"].dtype == torch.int64
    assert target["semantic"].tolist() == [[1, 1, 0, 0], [2, 2, 0, 0], [1, 255, 255, 255]]
    # Segments in the order of their first annotation: road (2 + 4), car 1, car 5, sky.
    assert target["masks"].tolist() == [
        [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]],
        [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]],
        [[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]],
    ]
    assert target["boxes"].tolist() == [
        [2.0, 0.0, 4.0, 2.0],
        [0.0, 0.0, 2.0, 1.0],
        [0.0, 2.0, 1.0, 3.0],
        [0.0, 1.0, 2.0, 2.0],
    ]
    assert target["instance_ids"].tolist() == [2, 1, 5, 3]
    assert target["labels"].tolist() == [1, 2, 2, 3]
    assert target["area"].tolist() == [4, 2, 1, 2]
    assert target["iscrowd"].tolist() == [0, 0, 0, 0]
    assert target["is_thing"].dtype == torch.bool
    assert target["is_thing"].tolist() == [False, True, True, False]
    instance_map = target["instance_map"]
    assert isinstance(instance_map, tv_tensors.Mask)
    assert instance_map.dtype == torch.int64
    assert instance_map.shape == (3, 4)
    assert instance_map.tolist() == [[2, 2, 1, 1], [4, 4, 1, 1], [3, 0, 0, 0]]


def test_build_target_panoptic_stuff_segment_named_by_its_first_annotation():
    # The first "road" annotation (8) is absent from the bitmap: the merged segment still
    # carries its id, and sits where that first annotation is in the order.
    ids = i32([[1, 4, 4, 0]])
    target = build_target(
        "panoptic",
        ids,
        i64([8, 1, 4]),
        i64([3, 0, 3]),
        bools([False, True, False]),
        label_offset=0,
    )
    assert target["instance_ids"].tolist() == [8, 1]
    assert target["labels"].tolist() == [3, 0]
    assert target["is_thing"].tolist() == [False, True]
    assert target["masks"].tolist() == [[[0, 1, 1, 0]], [[1, 0, 0, 0]]]
    assert target["boxes"].tolist() == [[1.0, 0.0, 3.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    assert target["area"].tolist() == [2, 1]
    assert target["instance_map"].tolist() == [[2, 1, 1, 0]]
    assert target["semantic"].tolist() == [[0, 3, 3, 255]]


def test_build_target_panoptic_thing_and_stuff_sharing_a_label():
    # CategoryMap allows {"car": 0, "road": 0} with car a thing and road stuff. The
    # road annotation must stay a stuff segment of its own, not join the car before it.
    ids = i32([[1, 2, 2]])
    target = build_target(
        "panoptic", ids, i64([1, 2]), i64([0, 0]), bools([True, False]), label_offset=0
    )
    assert target["instance_ids"].tolist() == [1, 2]
    assert target["is_thing"].tolist() == [True, False]
    assert target["masks"].tolist() == [[[1, 0, 0]], [[0, 1, 1]]]
    assert target["instance_map"].tolist() == [[1, 2, 2]]


EMPTY_CASES = {
    "no annotations": ([], [], []),
    "none selected": ([1, 2], [-1, -1], [True, False]),
    "none drawn": ([3, 16777000], [0, 1], [True, False]),
}


@pytest.mark.parametrize("kind", ["instance", "panoptic"])
@pytest.mark.parametrize("case", sorted(EMPTY_CASES))
def test_build_target_without_segments_keeps_shapes(kind, case):
    annotation_ids, labels, things = EMPTY_CASES[case]
    ids = i32([[0, 1, 2], [2, 1, 0]])
    target = build_target(kind, ids, i64(annotation_ids), i64(labels), bools(things))
    assert_instance_types(target, 2, 3)
    assert target["boxes"].shape == (0, 4)
    assert target["labels"].shape == (0,)
    assert target["masks"].shape == (0, 2, 3)
    if kind == "panoptic":
        assert target["is_thing"].shape == (0,)
        assert target["instance_map"].tolist() == [[0, 0, 0], [0, 0, 0]]
        assert target["semantic"].tolist() == [[255, 255, 255], [255, 255, 255]]


@pytest.mark.parametrize("case", sorted(EMPTY_CASES))
def test_build_target_semantic_without_labels(case):
    annotation_ids, labels, things = EMPTY_CASES[case]
    ids = i32([[0, 1, 2], [2, 1, 0]])
    target = build_target("semantic", ids, i64(annotation_ids), i64(labels), bools(things))
    assert target["semantic"].dtype == torch.int64
    assert target["semantic"].tolist() == [[255, 255, 255], [255, 255, 255]]


def test_build_target_invalid_kind():
    with pytest.raises(ValueError, match=r"^target kind must be one of") as info:
        build_target("polygons", i32([[0]]), i64([]), i64([]), bools([]))
    assert str(info.value) == (
        "target kind must be one of ('instance', 'semantic', 'panoptic', 'boxes'), not 'polygons'"
    )


@st.composite
def panoptic_cases(draw: st.DrawFn) -> tuple[np.ndarray, list[int], list[int], list[bool]]:
    height = draw(st.integers(1, 5))
    width = draw(st.integers(1, 5))
    pool = st.one_of(st.integers(0, 12), st.integers(BIG - 3, BIG))
    pixels = draw(st.lists(pool, min_size=height * width, max_size=height * width))
    annotation_ids = draw(
        st.lists(st.one_of(st.integers(1, 14), st.integers(BIG - 4, BIG)), unique=True, max_size=8)
    )
    labels = draw(
        st.lists(st.integers(-1, 3), min_size=len(annotation_ids), max_size=len(annotation_ids))
    )
    # Thing or stuff per annotation: things and stuff may share a training label.
    things = draw(st.lists(st.booleans(), min_size=len(labels), max_size=len(labels)))
    return np.array(pixels, dtype=np.int32).reshape(height, width), annotation_ids, labels, things


def naive_segments(
    ids: np.ndarray,
    annotation_ids: list[int],
    labels: list[int],
    things: list[bool],
    panoptic: bool,
) -> list[tuple[int, list[int]]]:
    """(first annotation position, member positions) of each segment with pixels."""
    segments: list[tuple[int, list[int]]] = []
    stuff: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        if label < 0:
            continue
        if panoptic and not things[position]:
            if label in stuff:
                stuff[label].append(position)
                continue
            stuff[label] = [position]
            segments.append((position, stuff[label]))
        else:
            segments.append((position, [position]))
    return [
        (first, members)
        for first, members in segments
        if np.isin(ids, [annotation_ids[m] for m in members]).any()
    ]


@settings(max_examples=150, deadline=None)
@given(panoptic_cases(), st.sampled_from(["instance", "panoptic"]), st.integers(0, 2))
def test_build_target_matches_a_naive_computation(case, kind, label_offset):
    ids, annotation_ids, labels, things = case
    target = build_target(
        kind,
        torch.from_numpy(ids),
        i64(annotation_ids),
        i64(labels),
        bools(things),
        label_offset=label_offset,
    )
    segments = naive_segments(ids, annotation_ids, labels, things, kind == "panoptic")
    masks = [np.isin(ids, [annotation_ids[m] for m in members]) for _, members in segments]
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
    assert target["masks"].tolist() == [m.astype(np.uint8).tolist() for m in masks]
    assert target["boxes"].reshape(-1, 4).tolist() == boxes
    assert target["area"].tolist() == [int(m.sum()) for m in masks]
    assert target["instance_ids"].tolist() == [annotation_ids[f] for f, _ in segments]
    assert target["labels"].tolist() == [labels[f] + label_offset for f, _ in segments]
    assert target["iscrowd"].tolist() == [0] * len(segments)
    if kind == "panoptic":
        assert target["is_thing"].tolist() == [things[f] for f, _ in segments]
        instance_map = np.zeros(ids.shape, dtype=np.int64)
        for row, mask in enumerate(masks):
            instance_map[mask] = row + 1
        assert target["instance_map"].tolist() == instance_map.tolist()
        semantic_lookup = {a: v for a, v in zip(annotation_ids, labels, strict=True) if v >= 0}
        semantic = [[semantic_lookup.get(int(i), 255) for i in row] for row in ids]
        assert target["semantic"].tolist() == semantic


# ------------------------------------------------------------- SanitizeBoundingBoxes

SANITIZE = v2.SanitizeBoundingBoxes(labels_getter=instance_fields)


def example_image() -> tv_tensors.Image:
    return tv_tensors.Image(torch.zeros((3, 4, 5), dtype=torch.uint8))


def test_instance_fields_returns_the_per_instance_entries():
    image = example_image()
    target = example_target("panoptic")
    fields = instance_fields((image, target))
    assert len(fields) == len(INSTANCE_FIELDS) == 5
    for field, key in zip(fields, INSTANCE_FIELDS, strict=True):
        assert field is target[key]
    # A single (image, target) argument, as SanitizeBoundingBoxes passes it then.
    assert all(a is b for a, b in zip(instance_fields(((image, target),)), fields, strict=True))
    instance = example_target("instance")
    assert [
        f is instance[k]
        for f, k in zip(instance_fields((image, instance)), INSTANCE_FIELDS, strict=False)
    ] == [True] * 4


def test_sanitize_drops_a_degenerate_box_from_every_instance_entry():
    target = example_target("instance")
    target["boxes"][1, 2] = target["boxes"][1, 0]  # zero width
    image, out = SANITIZE(example_image(), target)
    assert image.shape == (3, 4, 5)
    assert isinstance(out["boxes"], tv_tensors.BoundingBoxes)
    assert out["boxes"].tolist() == [EXAMPLE_BOXES[0], EXAMPLE_BOXES[2]]
    assert isinstance(out["masks"], tv_tensors.Mask)
    assert out["masks"].tolist() == [EXAMPLE_MASKS[0], EXAMPLE_MASKS[2]]
    assert out["labels"].tolist() == [1, 2]
    assert out["instance_ids"].tolist() == [300, 16777000]
    assert out["area"].tolist() == [3, 2]
    assert out["iscrowd"].tolist() == [0, 0]


def test_sanitize_as_one_tuple_argument():
    target = example_target("instance")
    target["boxes"][0, 3] = target["boxes"][0, 1]  # zero height
    _, out = SANITIZE((example_image(), target))
    assert out["instance_ids"].tolist() == [70000, 16777000]
    assert out["labels"].tolist() == [3, 2]
    assert out["area"].tolist() == [4, 2]
    assert out["iscrowd"].tolist() == [0, 0]
    assert out["masks"].tolist() == EXAMPLE_MASKS[1:]


def test_sanitize_after_a_crop_that_empties_instances():
    # The centre 4 x 2 crop keeps columns 2 and 3: only 70000 keeps pixels.
    image, target = v2.Compose([v2.CenterCrop((4, 2)), SANITIZE])(
        example_image(), example_target("instance")
    )
    assert image.shape == (3, 4, 2)
    assert out_lengths(target) == {1}
    assert target["boxes"].tolist() == [[1.0, 0.0, 2.0, 2.0]]
    assert tuple(target["boxes"].canvas_size) == (4, 2)
    assert target["masks"].tolist() == [[[0, 1], [0, 1], [0, 0], [0, 0]]]
    assert target["labels"].tolist() == [3]
    assert target["instance_ids"].tolist() == [70000]
    assert target["area"].tolist() == [4]  # the area before the crop, as COCO keeps it
    assert target["iscrowd"].tolist() == [0]


def out_lengths(target: dict[str, torch.Tensor]) -> set[int]:
    keys = ("boxes", "masks", "labels", "instance_ids", "area", "iscrowd", "is_thing")
    return {len(target[key]) for key in keys if key in target}


@pytest.mark.parametrize("kind", ["instance", "panoptic"])
@pytest.mark.parametrize("seed", range(6))
def test_sanitize_after_random_crop(kind, seed):
    torch.manual_seed(seed)
    image, cropped = v2.RandomCrop((4, 2))(example_image(), example_target(kind))
    # For full-height crops a box survives exactly when its instance keeps pixels.
    keep = cropped["masks"].flatten(1).any(1).bool()
    assert (cropped["boxes"][:, 2] > cropped["boxes"][:, 0]).tolist() == keep.tolist()
    _, out = SANITIZE(image, cropped)
    assert out_lengths(out) == {int(keep.sum())}
    for key in ("boxes", "masks", "labels", "instance_ids", "area", "iscrowd"):
        assert out[key].tolist() == cropped[key][keep].tolist(), key
    if kind == "panoptic":
        assert out["is_thing"].tolist() == cropped["is_thing"][keep].tolist()
        # (H, W) maps are not per-instance entries: unchanged (4 rows != 3 instances).
        assert out["semantic"].tolist() == cropped["semantic"].tolist()


@pytest.mark.xfail(
    strict=True,
    reason="torchvision's SanitizeBoundingBoxes indexes every tv_tensors.Mask with the box "
    "mask; a panoptic (H, W) semantic/instance_map with H == number of segments loses rows",
)
def test_sanitize_keeps_panoptic_maps_when_height_equals_segment_count():
    ids = i32([[1, 2, 3]] * 3)  # 3 rows, 3 segments
    target = build_target("panoptic", ids, i64([1, 2, 3]), i64([0, 1, 2]), bools([True] * 3))
    target["boxes"][1, 2] = target["boxes"][1, 0]
    image = tv_tensors.Image(torch.zeros((3, 3, 3), dtype=torch.uint8))
    _, out = SANITIZE(image, target)
    assert out["instance_ids"].tolist() == [1, 3]
    assert out["semantic"].tolist() == [[0, 1, 2]] * 3


# ---------------------------------------------------------------------- shared memory


def in_shared_memory(tensor: torch.Tensor) -> bool:
    return bool(tensor.is_shared())  # type: ignore[no-untyped-call]


MAPS = ("masks", "semantic", "instance_map")  # what shared=True puts in shared memory
#: (ids, annotation ids, labels, things) for each path of build_target.
TARGET_EXAMPLES = pytest.mark.parametrize(
    "example",
    [
        # annotation 9 has no pixel; 16777000 takes the sparse lookup
        (EXAMPLE_IDS, EXAMPLE_ANNOTATIONS, EXAMPLE_LABELS, [True, True, False, True, False]),
        # annotation 7 has no pixel: masks of the present segments, a renumbered map
        (PANOPTIC_IDS, PANOPTIC_ANNOTATIONS, PANOPTIC_LABELS, PANOPTIC_THINGS),
        # ids 1 .. N in order: maps converted, not gathered
        ([[1, 1, 2], [0, 3, 3]], [1, 2, 3], [0, 1, 1], [True, True, True]),
        # no annotation: the maps are all fill
        ([[5, 0]], [], [], []),
    ],
    ids=["sparse", "absent", "identity", "empty"],
)


@pytest.mark.parametrize("kind", TARGET_KINDS)
@TARGET_EXAMPLES
def test_build_target_takes_numpy_annotations(kind, example):
    ids, annotation_ids, labels, things = example
    from_tensors = build_target(kind, i32(ids), i64(annotation_ids), i64(labels), bools(things))
    from_numpy = build_target(
        kind,
        i32(ids),
        np.array(annotation_ids, dtype=np.uint32),  # any integer dtype
        np.array(labels, dtype=np.int64),
        np.array(things, dtype=bool),
    )
    assert from_numpy.keys() == from_tensors.keys()
    for key, value in from_tensors.items():
        assert type(from_numpy[key]) is type(value), key
        assert from_numpy[key].dtype == value.dtype, key
        assert torch.equal(from_numpy[key], value), key


@pytest.mark.parametrize("kind", TARGET_KINDS)
@TARGET_EXAMPLES
def test_build_target_shared_puts_the_maps_in_shared_memory(kind, example):
    ids, annotation_ids, labels, things = example
    args = (kind, i32(ids), i64(annotation_ids), i64(labels), bools(things))
    plain = build_target(*args)
    shared = build_target(*args, shared=True)
    assert shared.keys() == plain.keys()
    for key, value in plain.items():
        assert type(shared[key]) is type(value), key
        assert shared[key].dtype == value.dtype, key
        assert torch.equal(shared[key], value), key
        assert in_shared_memory(shared[key]) == (key in MAPS), key
        assert not in_shared_memory(value), key


# ---------------------------------------------------------------------------- devices


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_build_target_same_on_cuda(kind):
    for ids, annotation_ids, labels, things in (
        (EXAMPLE_IDS, EXAMPLE_ANNOTATIONS, EXAMPLE_LABELS, [True, True, False, True, False]),
        (PANOPTIC_IDS, PANOPTIC_ANNOTATIONS, PANOPTIC_LABELS, PANOPTIC_THINGS),
    ):
        results = [
            build_target(
                kind,
                i32(ids, device),
                i64(annotation_ids, device),
                i64(labels, device),
                bools(things, device),
            )
            for device in ("cpu", "cuda")
        ]
        cpu, cuda = results
        assert set(cpu) == set(cuda)
        for key in cpu:
            assert cuda[key].device.type == "cuda"
            assert type(cuda[key]) is type(cpu[key])
            assert cuda[key].dtype == cpu[key].dtype
            assert torch.equal(cuda[key].cpu(), cpu[key]), key
        # Shared memory is a CPU matter: on CUDA the flag changes nothing.
        shared = build_target(
            kind,
            i32(ids, "cuda"),
            i64(annotation_ids, "cuda"),
            i64(labels, "cuda"),
            bools(things, "cuda"),
            shared=True,
        )
        for key in cpu:
            assert shared[key].device.type == "cuda"
            assert torch.equal(shared[key].cpu(), cpu[key]), key


@pytest.mark.gpu
@CUDA
def test_map_ids_and_segment_targets_same_on_cuda():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 40, (17, 23), generator=generator, dtype=torch.int32)
    ids[ids > 30] = 16777000 + ids[ids > 30]
    annotation_ids = i64([*range(1, 30, 2), 16777031, 16777035, BIG])
    values = torch.arange(len(annotation_ids), dtype=torch.int64)
    cpu = map_ids(ids, annotation_ids, values, -1)
    cuda = map_ids(ids.cuda(), annotation_ids.cuda(), values.cuda(), -1)
    assert cuda.device.type == "cuda"
    assert torch.equal(cuda.cpu(), cpu)
    segments_cpu = segment_targets(cpu, len(values))
    segments_cuda = segment_targets(cuda, len(values))
    for name in ("masks", "boxes", "area", "segments", "segment_map"):
        assert torch.equal(getattr(segments_cuda, name).cpu(), getattr(segments_cpu, name)), name


# ------------------------------------------------------------------- SegmentMap


def test_segment_map_docstring_example():
    compact = SegmentMap.from_ids(i32([[0, 70000], [70000, 3]]))
    assert compact.segments.dtype == torch.uint8
    assert compact.segments.tolist() == [[0, 2], [2, 1]]
    assert compact.ids.dtype == torch.int32
    assert compact.ids.tolist() == [0, 3, 70000]
    assert compact.to_ids().tolist() == [[0, 70000], [70000, 3]]
    assert (compact.shape, compact.device) == (torch.Size([2, 2]), torch.device("cpu"))


@pytest.mark.parametrize(
    ("count", "dtype"),
    [
        (1, torch.uint8),
        (256, torch.uint8),
        (257, torch.int16),
        (32768, torch.int16),
        (32769, torch.int32),
    ],
)
def test_segment_map_is_as_narrow_as_its_segment_count(count, dtype):
    assert SegmentMap.dtype_for(count) == dtype
    ids = torch.arange(count, dtype=torch.int32).mul_(509).remainder_(2**24).view(1, count)
    compact = SegmentMap.from_ids(ids)
    assert compact.segments.dtype == dtype
    assert len(compact.ids) == count
    assert torch.equal(compact.to_ids(), ids)


def test_segment_map_of_no_pixels():
    compact = SegmentMap.from_ids(torch.zeros((0, 3), dtype=torch.int32))
    assert compact.shape == (0, 3)
    assert compact.to_ids().shape == (0, 3)


@settings(max_examples=150, deadline=None)
@given(id_maps())
def test_segment_map_round_trips_any_id_map(case):
    ids = torch.from_numpy(case[0])
    compact = SegmentMap.from_ids(ids)
    assert compact.ids.tolist() == sorted(set(case[0].reshape(-1).tolist()))
    assert torch.equal(compact.to_ids(), ids)
    assert torch.equal(compact.ids[compact.segments.long()], ids)


@settings(max_examples=150, deadline=None)
@given(id_maps())
def test_map_ids_of_a_segment_map_equals_map_ids_of_the_ids(case):
    ids, annotation_ids, values, fill = case
    tensor = torch.from_numpy(ids)
    expected = map_ids(tensor, i64(annotation_ids), i64(values), fill)
    assert torch.equal(
        map_ids(SegmentMap.from_ids(tensor), i64(annotation_ids), i64(values), fill), expected
    )


@settings(max_examples=150, deadline=None)
@given(panoptic_cases(), st.sampled_from(TARGET_KINDS), st.integers(0, 2), st.booleans())
def test_build_target_of_a_segment_map_equals_that_of_the_ids(case, kind, label_offset, measured):
    # measured: boxes and areas from the map's extents (a cached label's), not its pixels
    ids, annotation_ids, labels, things = case
    args = (i64(annotation_ids), i64(labels), bools(things))
    tensor = torch.from_numpy(ids)
    expected = build_target(kind, tensor, *args, label_offset=label_offset)
    compact = SegmentMap.from_ids(tensor)
    if measured:
        compact = compact.measured()
        assert compact.extents is not None or not tensor.numel()
    got = build_target(kind, compact, *args, label_offset=label_offset)
    assert_same_target(got, expected)


def assert_same_target(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert type(got[key]) is type(value), key
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key
        boxes = got[key]
        if isinstance(value, tv_tensors.BoundingBoxes) and isinstance(
            boxes, tv_tensors.BoundingBoxes
        ):
            assert boxes.canvas_size == value.canvas_size


@pytest.mark.parametrize("kind", TARGET_KINDS)
@TARGET_EXAMPLES
def test_build_target_of_segment_maps_on_the_examples(kind, example):
    ids, annotation_ids, labels, things = example
    args = (i64(annotation_ids), i64(labels), bools(things))
    expected = build_target(kind, i32(ids), *args)
    assert_same_target(build_target(kind, SegmentMap.from_ids(i32(ids)), *args), expected)


@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("background", [None, 4])
@TARGET_EXAMPLES
def test_targets_of_measured_segment_maps_read_no_runs(kind, background, example, monkeypatch):
    # The extents give every box and area: the runs of the pixels are never reduced.
    ids, annotation_ids, labels, things = example
    args = (i64(annotation_ids), i64(labels), bools(things))
    expected = build_target(kind, i32(ids), *args, background=background)
    measured = SegmentMap.from_ids(i32(ids)).measured()

    def no_runs(*a: Any, **k: Any) -> Any:
        raise AssertionError("runs reduced")

    monkeypatch.setattr(targets, "_run_extents", no_runs)
    monkeypatch.setattr(targets, "_mask_extents", no_runs)
    got = build_target(kind, measured, *args, background=background)
    assert_same_target(got, expected)


def test_segment_map_extents_are_each_segments_count_and_box():
    ids = torch.zeros((6, 9), dtype=torch.int32)
    ids[1:4, 2:5] = 70000
    ids[5, 8] = 3
    ids[0, 7:9] = 3
    measured = SegmentMap.from_ids(ids).measured()
    assert measured.ids.tolist() == [0, 3, 70000]
    assert measured.extents is not None
    assert measured.extents.dtype == torch.int64
    assert measured.extents.tolist() == [[54 - 9 - 3, 0, 0, 9, 6], [3, 7, 0, 9, 6], [9, 2, 1, 5, 4]]
    assert measured.measured() is measured  # known already: not measured again
    assert measured.to("cpu").extents is measured.extents
    # sampled, the map has other extents: they are not kept
    sampled = sample_nearest(measured, 3, 3)
    assert isinstance(sampled, SegmentMap)
    assert sampled.extents is None


def test_noise_is_not_measured():
    # Runs one pixel long: measuring them would cost more than the PNG's decoding.
    noise = torch.from_numpy(np.random.default_rng(5).integers(0, 200, size=(256, 256)))
    compact = SegmentMap.from_ids(noise.to(torch.int32))
    assert compact.measured().extents is None
    assert SegmentMap.from_ids(torch.zeros((0, 3), dtype=torch.int32)).measured().extents is None


def test_a_segment_map_of_ids_numbered_in_order_is_copied_not_gathered(monkeypatch):
    # ids 0 .. K-1 in order: each pixel's segment is its id, a conversion suffices.
    compact = SegmentMap.from_ids(i32([[1, 1, 2], [0, 3, 3]]))
    assert compact.ids.tolist() == [0, 1, 2, 3]

    def no_gather(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("gathered")

    monkeypatch.setattr(torch, "index_select", no_gather)
    out = map_ids(compact, i64([1, 2, 3]), i64([1, 2, 3]), 0)
    assert out.tolist() == [[1, 1, 2], [0, 3, 3]]


def test_a_segment_map_is_widened_only_for_a_gather():
    # Instance codes of ids numbered in order are the segments themselves: no int32 copy
    # of the map. A semantic map gathers, which widens the slots once.
    compact = SegmentMap.from_ids(i32([[1, 1, 2], [0, 3, 3]]))
    lookup = targets._IdLookup(compact, np.array([1, 2, 3]))
    code = lookup.map(np.array([1, 2, 3], dtype=np.uint8), 0)
    assert code.tolist() == [[1, 1, 2], [0, 3, 3]]
    assert lookup.index is not None
    assert lookup.index.dtype == torch.uint8
    semantic = lookup.map(np.array([7, 8, 7]), 255)
    assert semantic.tolist() == [[7, 7, 8], [255, 7, 7]]
    assert lookup.index.dtype == torch.int32
    assert lookup.map(np.array([1, 2, 3]), 0).tolist() == [[1, 1, 2], [0, 3, 3]]


@pytest.mark.parametrize("shared", [False, True])
def test_masks_in_boxes_zero_every_byte_outside_the_boxes(monkeypatch, shared):
    # Shared memory comes uninitialised (here all 0xFF): whatever it held, only the
    # segments' pixels are 1. Segment 2 has no pixel (its box is empty) and stays all zero.
    code = torch.zeros((5, 6), dtype=torch.uint8)
    code[1:3, 1:4] = 1
    code[4, 5] = 2
    code[0, 0] = 4
    full = torch.full((4, 5, 6), 0xFF, dtype=torch.uint8)
    monkeypatch.setattr(targets, "allocate", lambda *a, **k: full)
    extents = targets._run_extents(code, 4, masks_made=False)
    assert extents is not None
    area, boxes = extents
    masks = targets._compare_in_boxes(code, boxes, shared=shared)
    assert (masks is full) == shared
    expected = torch.stack([(code == k).to(torch.uint8) for k in (1, 2, 3, 4)])
    assert masks.tolist() == expected.tolist()
    assert area.tolist() == [6, 1, 0, 1]


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_segment_maps_on_cuda_give_the_cpu_target(kind):
    ids, annotation_ids, labels, things = (
        PANOPTIC_IDS,
        PANOPTIC_ANNOTATIONS,
        PANOPTIC_LABELS,
        PANOPTIC_THINGS,
    )
    args = (i64(annotation_ids), i64(labels), bools(things))
    cpu = build_target(kind, i32(ids), *args)
    on_cuda = SegmentMap.from_ids(i32(ids, "cuda"))
    assert on_cuda.segments.device.type == "cuda"
    assert on_cuda.ids.device.type == "cpu"
    moved = SegmentMap.from_ids(i32(ids)).to("cuda")
    for compact in (on_cuda, moved):
        target = build_target(kind, compact, *args)
        for key, value in cpu.items():
            assert target[key].device.type == "cuda", key
            assert torch.equal(target[key].cpu(), value), key


# ------------------------------------------------------------ sampling at a size


@pytest.mark.parametrize("length", [1, 2, 5, 7, 480, 2736, 3648])
@pytest.mark.parametrize("count", [1, 3, 4, 7, 100, 800, 1066, 5000])
def test_nearest_rows_are_interpolates_picks(length, count):
    values = torch.arange(length, dtype=torch.uint8 if length < 256 else torch.float32)
    picked = torch.nn.functional.interpolate(values.view(1, 1, length), size=count, mode="nearest")
    assert nearest_rows(length, count).tolist() == picked.view(count).long().tolist()


@settings(max_examples=100, deadline=None)
@given(id_maps(), st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 9, 1 << 18]))
def test_sample_nearest_equals_v2_resize_of_the_ids(case, height, width, block):
    # block: bytes of source rows per step of the CPU gather (one row, a few, all of them)
    ids = torch.from_numpy(case[0])
    expected = v2.functional.resize(
        tv_tensors.Mask(ids), [height, width], interpolation=v2.InterpolationMode.NEAREST
    )
    with mock.patch.object(targets, "_TAKE_BLOCK", block):
        sampled = sample_nearest(ids, height, width)
        compact = sample_nearest(SegmentMap.from_ids(ids), height, width)
    assert isinstance(sampled, torch.Tensor)
    assert sampled.dtype == torch.int32
    assert torch.equal(sampled, expected.as_subclass(torch.Tensor).to(torch.int32))
    assert isinstance(compact, SegmentMap)
    assert torch.equal(compact.to_ids(), sampled)
    assert compact.ids.tolist() == sorted(set(sampled.reshape(-1).tolist()))  # only ids left
    assert compact.segments.dtype == SegmentMap.from_ids(ids).segments.dtype


def test_sample_nearest_of_the_same_size_is_the_map_itself():
    ids = i32([[1, 2], [3, 4]])
    assert sample_nearest(ids, 2, 2) is ids


# ------------------------------------------------------------------------------ background


def test_semantic_maps_give_unlabelled_pixels_the_background_label():
    # id 0: unlabelled -> background 0; 5: no annotation -> ignored; 6: unselected -> ignored
    ids = i32([[0, 1, 5], [6, 0, 2]])
    args = (i64([1, 2, 6]), i64([1, 2, -1]), bools([True, False, True]))
    with_background = build_target("semantic", ids, *args, background=0)
    assert with_background["semantic"].tolist() == [[0, 1, 255], [255, 0, 2]]
    without = build_target("semantic", ids, *args)
    assert without["semantic"].tolist() == [[255, 1, 255], [255, 255, 2]]


def test_panoptic_targets_get_the_background_as_one_stuff_segment():
    ids = i32([[0, 1, 5], [6, 0, 2]])
    args = (i64([1, 2, 6]), i64([1, 2, -1]), bools([True, False, True]))
    target = build_target("panoptic", ids, *args, background=0, label_offset=0)
    assert target["instance_ids"].tolist() == [0, 1, 2]  # the background's id: 0
    assert target["labels"].tolist() == [0, 1, 2]
    assert target["is_thing"].tolist() == [False, True, False]
    assert target["masks"][0].tolist() == [[1, 0, 0], [0, 1, 0]]
    assert target["area"].tolist() == [2, 1, 1]
    assert target["instance_map"].tolist() == [[1, 2, 0], [0, 1, 3]]
    # no unlabelled pixel: no background segment
    none = build_target("panoptic", i32([[1, 2]]), *args, background=0, label_offset=0)
    assert none["instance_ids"].tolist() == [1, 2]


@pytest.mark.parametrize("kind", TARGET_KINDS)
@TARGET_EXAMPLES
def test_the_background_changes_nothing_of_instance_targets_and_nothing_by_segment_maps(
    kind, example
):
    ids, annotation_ids, labels, things = example
    args = (i64(annotation_ids), i64(labels), bools(things))
    expected = build_target(kind, i32(ids), *args, background=3)
    assert_same_target(
        build_target(kind, SegmentMap.from_ids(i32(ids)), *args, background=3), expected
    )
    if kind == "instance":
        assert_same_target(expected, build_target(kind, i32(ids), *args))


# ------------------------------------------------------------------------------------ boxes


@pytest.mark.parametrize("form", ["ids", "segment map"])
@TARGET_EXAMPLES
def test_boxes_targets_are_instance_targets_without_masks(form, example):
    ids, annotation_ids, labels, things = example
    args = (i64(annotation_ids), i64(labels), bools(things))
    labels_map = i32(ids) if form == "ids" else SegmentMap.from_ids(i32(ids))
    instance = build_target("instance", labels_map, *args)
    boxes = build_target("boxes", labels_map, *args)
    assert list(boxes) == [k for k in instance if k != "masks"]
    for key, value in boxes.items():
        assert torch.equal(value, instance[key]), key
    assert isinstance(boxes["boxes"], tv_tensors.BoundingBoxes)


def test_boxes_of_regions_make_no_mask(monkeypatch):
    # Labels are regions: the runs along the rows give boxes and areas, no mask is made.
    ids = torch.zeros((64, 80), dtype=torch.int32)
    ids[5:20, 3:40] = 1
    ids[30:60, 10:70] = 2
    ids[25:28, 70:79] = 3

    def no_masks(*a: Any, **k: Any) -> torch.Tensor:
        raise AssertionError("masks made")

    expected = build_target(
        "instance", ids, i64([1, 2, 3]), i64([0, 1, 0]), bools([True, True, True])
    )
    monkeypatch.setattr(targets, "_compare", no_masks)
    monkeypatch.setattr(targets, "_compare_in_boxes", no_masks)
    boxes = build_target("boxes", ids, i64([1, 2, 3]), i64([0, 1, 0]), bools([True, True, True]))
    assert boxes["boxes"].tolist() == [[3, 5, 40, 20], [10, 30, 70, 60], [70, 25, 79, 28]]
    assert boxes["area"].tolist() == expected["area"].tolist() == [15 * 37, 30 * 60, 27]
