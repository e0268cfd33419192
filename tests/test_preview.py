from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from segments_torch import SegmentsDataset
from segments_torch.categories import CategoryMap
from segments_torch.codecs import encode_bitmap
from segments_torch.demo import (
    RELEASE_PATH,
    SEGMENTATION_SEQUENCE_RELEASE_PATH,
    SEQUENCE_RELEASE_PATH,
    VECTOR_RELEASE_PATH,
)
from segments_torch.preview import (
    PALETTE,
    category_color,
    draw_sample,
    preview_colors,
    render_preview,
)
from segments_torch.release import Category
from segments_torch.samples import SelectionError
from tests.releases import annotation, current_release, label, sample

ORANGE, SKY_BLUE = (230, 159, 0), (86, 180, 233)  # the palette's first two colors
GREY = 128


# -- colors ----------------------------------------------------------------------------------


def test_category_color_is_okabe_ito_then_darker_and_lighter_shades():
    assert [category_color(i) for i in range(7)] == list(PALETTE)
    assert PALETTE[:3] == (ORANGE, SKY_BLUE, (0, 158, 115))
    # Past the palette: the same hues, darker (odd cycles) and lighter (even cycles).
    assert [category_color(i) for i in (7, 8, 14, 15)] == [
        (101, 70, 0),
        (38, 79, 103),
        (239, 194, 94),
        (148, 208, 241),
    ]
    assert len({category_color(i) for i in range(100)}) == 100


def test_colors_of_categories_without_one_follow_their_id_not_their_order():
    litter = [Category(0, "plastic litter"), Category(1, "other litter")]
    assert preview_colors(CategoryMap(litter)) == [ORANGE, SKY_BLUE]
    # The same category keeps its color whatever else is selected, in whatever order.
    assert preview_colors(CategoryMap(litter, ["other litter"])) == [SKY_BLUE]
    assert preview_colors(CategoryMap(litter, ["other litter", "plastic litter"])) == [
        SKY_BLUE,
        ORANGE,
    ]
    # A release color wins, for every category of its label; else the lowest id's color.
    categories = [*litter, Category(9, "can", (1, 2, 3, 255)), Category(4, "glass")]
    selection = {"plastic litter": 0, "can": 0, "other litter": 1, "glass": 1}
    assert preview_colors(CategoryMap(categories, selection)) == [(1, 2, 3), SKY_BLUE]
    # The demo release colors three of its four categories; "triangle" (id 2) has none.
    demo = SegmentsDataset(RELEASE_PATH)
    assert preview_colors(demo.categories) == [
        (230, 57, 70),
        (69, 123, 157),
        (0, 158, 115),
        (106, 168, 79),
    ]


# -- drawing ---------------------------------------------------------------------------------


def test_draw_sample_fills_each_mask_and_outlines_it_in_a_darker_shade():
    image = torch.zeros((3, 7, 7), dtype=torch.uint8)
    masks = torch.zeros((2, 7, 7), dtype=torch.uint8)
    masks[0, 1:6, 1:4] = 1
    masks[1, 1:6, 4:6] = 1  # touches the first: both outlines part them
    target = {"masks": masks, "labels": torch.tensor([2, 2])}
    drawn = draw_sample(image, target, [(0, 0, 0), (200, 100, 50)], alpha=1.0)
    assert drawn[:, 3, 2].tolist() == [200, 100, 50]  # inside the first mask
    assert drawn[:, 1, 1].tolist() == [100, 50, 25]  # its border, half as bright
    assert drawn[:, 3, 3].tolist() == [100, 50, 25]  # where the second mask begins
    assert drawn[:, 3, 4].tolist() == [100, 50, 25]
    assert drawn[:, 0, 0].tolist() == [0, 0, 0]  # outside
    # alpha blends the fill; outline_color and outline_width are the caller's to choose.
    grey = torch.full((3, 7, 7), 100, dtype=torch.uint8)
    drawn = draw_sample(grey, target, [(0, 0, 0), (200, 0, 0)], alpha=0.5, outline_color=(1, 2, 3))
    assert drawn[:, 3, 2].tolist() == [150, 50, 50]
    assert drawn[:, 1, 1].tolist() == [1, 2, 3]
    wide = draw_sample(grey, target, [(0, 0, 0), (200, 0, 0)], alpha=0.5, outline_width=2)
    assert wide[:, 3, 2].tolist() == [100, 0, 0]  # 2 pixels from the edge: outline now
    # Where masks overlap, the last is drawn; outline_width=0 draws no outline.
    overlap = torch.zeros((2, 3, 3), dtype=torch.uint8)
    overlap[0] = 1
    overlap[1, 1:, 1:] = 1
    target = {"masks": overlap, "labels": torch.tensor([1, 2])}
    drawn = draw_sample(image[:, :3, :3], target, [(10, 0, 0), (0, 20, 0)], alpha=1.0,
                        outline_width=0)  # fmt: skip
    assert drawn[0].tolist() == [[10, 10, 10], [10, 0, 0], [10, 0, 0]]
    assert drawn[1].tolist() == [[0, 0, 0], [0, 20, 20], [0, 20, 20]]


def test_draw_sample_of_a_panoptic_target_draws_its_instance_map():
    image = torch.zeros((3, 4, 6), dtype=torch.uint8)
    instance_map = torch.tensor([[0, 1, 1, 1, 2, 2]] * 4)
    target = {"instance_map": instance_map, "labels": torch.tensor([1, 2])}
    drawn = draw_sample(image, target, [(10, 20, 30), (40, 50, 60)], alpha=1.0, outline_width=1)
    assert drawn[:, 2, 2].tolist() == [10, 20, 30]  # segment 1 (label 0), inside
    assert drawn[:, 2, 1].tolist() == [5, 10, 15]  # its border with the unlabelled column
    assert drawn[:, 2, 4].tolist() == [20, 25, 30]  # segment 2, against segment 1
    assert drawn[:, 2, 5].tolist() == [40, 50, 60]  # the image's edge is no border
    assert drawn[:, 2, 0].tolist() == [0, 0, 0]


def test_draw_sample_of_a_semantic_map_skips_the_ignore_index():
    image = torch.zeros((3, 2, 2), dtype=torch.uint8)
    target = {"semantic": torch.tensor([[0, 255], [255, 255]])}
    drawn = draw_sample(image, target, [(10, 20, 30)], alpha=1.0, outline_color=(10, 20, 30))
    assert drawn[:, 0, 0].tolist() == [10, 20, 30]
    assert drawn[:, 1, 1].tolist() == [0, 0, 0]
    empty = draw_sample(image, {"masks": torch.zeros((0, 2, 2)), "labels": torch.zeros(0)}, [])
    assert torch.equal(empty, image)
    assert torch.equal(draw_sample(image, {"boxes": torch.zeros((0, 4))}, []), image)


def test_draw_sample_boxes_things_with_their_names_on_a_dark_backing():
    image = torch.full((3, 60, 80), GREY, dtype=torch.uint8)
    instance_map = torch.zeros((60, 80), dtype=torch.int64)
    instance_map[20:50, 30:70] = 1  # a thing
    instance_map[55:, :] = 2  # stuff: no box
    target = {
        "instance_map": instance_map,
        "labels": torch.tensor([1, 2]),
        "is_thing": torch.tensor([True, False]),
    }
    colors = [(200, 0, 0), (0, 0, 200)]
    plain = draw_sample(image, target, colors)
    drawn = draw_sample(image, target, colors, boxes=True, names=["can", "floor"])
    # The box: one pixel in the category color around the mask, (30, 20) - (69, 49).
    assert drawn[:, 49, 45].tolist() == [200, 0, 0]
    assert drawn[:, 35, 69].tolist() == [200, 0, 0]
    # The name at the top-left, white on black; the stuff keeps its plain drawing.
    label = drawn[:, 20:34, 30:50]
    assert int((label > 200).all(dim=0).sum()) > 10  # white letters (antialiased)
    assert int((label == 0).all(dim=0).sum()) > 50
    assert torch.equal(drawn[:, 51:], plain[:, 51:])
    assert torch.equal(drawn[:, :19], plain[:, :19])
    # A name at the right edge moves left to stay inside the image.
    instance_map = torch.zeros((60, 80), dtype=torch.int64)
    instance_map[10:20, 75:80] = 1
    target = {"instance_map": instance_map, "labels": torch.tensor([1])}
    drawn = draw_sample(image, target, colors, boxes=True, names=["plastic"])
    assert (drawn[:, 11:20, 50:75] == 0).all(dim=0).any()
    # Without names, the box says the training label.
    unnamed = draw_sample(image, target, colors, boxes=True)
    assert not torch.equal(unnamed, drawn)


# -- pages -----------------------------------------------------------------------------------


def photo_release(tmp_path: Path, width: int, height: int, count: int = 1) -> Path:
    """A release of ``count`` uniform grey ``width`` x ``height`` PNG photos, each with
    the categories of the 2020 litter release (no colors): a square of "plastic litter"
    (instance 1) over the middle half, and a band of "floor" stuff (instance 2) along the
    bottom eighth."""
    ids = np.zeros((height, width), dtype=np.uint32)
    ids[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    ids[7 * height // 8 :, :] = 2
    (tmp_path / "photo.png").write_bytes(_png(np.full((height, width, 3), GREY, np.uint8)))
    (tmp_path / "photo-label.png").write_bytes(encode_bitmap(ids))
    samples = []
    for k in range(count):
        labels = {"ground-truth": label("LABELED", [annotation(1, 0), annotation(2, 2)])}
        entry = sample(f"photo-{k}.png", labels)
        entry["attributes"]["image"]["url"] = "photo.png"
        entry["labels"]["ground-truth"]["attributes"]["segmentation_bitmap"]["url"] = (
            "photo-label.png"
        )
        samples.append(entry)
    document = current_release(samples)
    document["dataset"]["task_attributes"]["categories"] = [
        {"id": 0, "name": "plastic litter"},
        {"id": 1, "name": "other litter"},
        {"id": 2, "name": "floor", "has_instances": False},
    ]
    path = tmp_path / "release.json"
    path.write_text(json.dumps(document))
    return path


def _png(pixels: np.ndarray[Any, Any]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_large_photos_are_read_and_drawn_at_the_tiles_size(tmp_path):
    ds = SegmentsDataset(photo_release(tmp_path, 2000, 1500))
    picture = np.asarray(render_preview(ds, [0], tile=256))
    # One 4:3 tile (a single tile has no border), then the legend.
    assert picture.shape == (192 + 26, 256, 3)
    # The square covers x 500..1499, y 375..1124: x 64..191, y 48..143 of the tile. Its
    # outline is 2 pixels wide at the tile, in the palette's orange at half brightness.
    row = picture[100]
    assert row[63].tolist() == [GREY] * 3
    assert row[64].tolist() == row[65].tolist() == [115, 80, 0]
    assert row[66].tolist() == [179, 144, 64]  # half grey, half orange
    assert row[189].tolist() == [179, 144, 64]
    assert row[190].tolist() == row[191].tolist() == [115, 80, 0]
    assert row[192].tolist() == [GREY] * 3
    # The floor band ("floor", id 2: bluish green (0, 158, 115)) from y 168.
    assert picture[180, 128].tolist() == [64, 143, 122]
    # The legend shows the palette's colors, not grey.
    legend = picture[192:]
    for color in (ORANGE, SKY_BLUE):
        assert (legend == color).all(axis=-1).any()
    assert not (legend == (128, 128, 128)).all(axis=-1).any()


def test_boxes_around_instances_at_the_tiles_size(tmp_path):
    ds = SegmentsDataset(photo_release(tmp_path, 2000, 1500))
    picture = np.asarray(render_preview(ds, [0], tile=256, boxes=True))
    assert picture[143, 120].tolist() == list(ORANGE)  # the box's bottom edge
    assert picture[100, 191].tolist() == list(ORANGE)  # its right edge
    name = picture[48:62, 64:140]
    assert (name > 200).all(axis=-1).sum() > 10  # white letters (antialiased)
    assert (name == 0).all(axis=-1).sum() > 100  # on black
    assert picture[180, 128].tolist() == [64, 143, 122]  # stuff: no box


def test_render_preview_reads_untransformed_panoptic_items_at_the_tiles_size(monkeypatch):
    seen: list[tuple[Any, ...]] = []
    real = SegmentsDataset.__getitem__

    def spy(self: SegmentsDataset, index: int) -> Any:
        seen.append((self.size, self.max_size, self.target, self.transforms, self.decode))
        return real(self, index)

    monkeypatch.setattr(SegmentsDataset, "__getitem__", spy)

    def transforms(image: Any, target: Any) -> Any:
        raise AssertionError("the preview applies no transforms")

    ds = SegmentsDataset(RELEASE_PATH, target="semantic", transforms=transforms)
    render_preview(ds, [0, 1], tile=64)
    assert seen == [(None, 64, "panoptic", None, "host")] * 2
    # The dataset itself is unchanged.
    assert (ds.size, ds.max_size, ds.target, ds.transforms) == (None, None, "semantic", transforms)
    # A dataset with a size of its own is read at it, and drawn at the tile's.
    seen.clear()
    sized = SegmentsDataset(RELEASE_PATH, size=120)
    picture = render_preview(sized, [0], tile=64)
    assert seen == [(120, None, "panoptic", None, "host")]
    assert picture.size == (64, 48 + 26)


def test_tiles_take_the_pages_common_aspect_ratio():
    ds = SegmentsDataset(RELEASE_PATH)
    # Five landscape 4:3 samples and one portrait 3:4 (the EXIF-rotated one, index 2).
    picture = render_preview(ds, range(6), tile=64, columns=3)
    # 64 x 48 tiles with 4-pixel padding, then one legend row.
    assert (picture.width, picture.height) == (3 * 68 + 4, 2 * 52 + 4 + 26)
    pixels = np.asarray(picture)
    # The portrait sample is 36 x 48, centred in its tile on dark grey.
    tile = pixels[4:52, 4 + 2 * 68 : 4 + 2 * 68 + 64]
    assert (tile[:, :14] == 32).all()
    assert (tile[:, 50:] == 32).all()
    assert not (tile[:, 14:50] == 32).all()
    # A landscape tile is all photo.
    assert not (pixels[4:52, 4:68] == 32).all(axis=-1).any()
    # A page of portrait samples has portrait tiles.
    portrait = render_preview(ds, [2], tile=64)
    assert portrait.size == (48, 64 + 26)


def test_render_preview_grid_legend_and_bad_arguments():
    ds = SegmentsDataset(RELEASE_PATH)
    picture = render_preview(ds, range(5), tile=64, columns=3)
    assert (picture.width, picture.height) == (3 * 68 + 4, 2 * 52 + 4 + 26)
    legend = np.asarray(picture)[2 * 52 + 4 :]
    # The release's color of "circle", and the palette's of "triangle", which has none.
    assert (legend == [230, 57, 70]).all(axis=-1).any()
    assert (legend == [0, 158, 115]).all(axis=-1).any()
    with pytest.raises(SelectionError, match=r"^render_preview: no samples to preview$"):
        render_preview(ds, [])
    with pytest.raises(ValueError, match=r"^tile and columns must be at least 1, not 0 and 4$"):
        render_preview(ds, [0], tile=0)


def test_a_background_class_and_a_label_offset_change_nothing_drawn():
    plain = np.asarray(render_preview(SegmentsDataset(RELEASE_PATH), range(6), boxes=True))
    for options in (
        {"background": "background"},
        {"label_offset": 3},
        # A panoptic target would refuse this pair: the preview reads with an offset of 1.
        {"background": "background", "label_offset": 0, "target": "semantic"},
    ):
        ds = SegmentsDataset(RELEASE_PATH, **options)
        picture = np.asarray(render_preview(ds, range(6), boxes=True))
        assert picture.shape == plain.shape
        # The tiles are the same: unlabelled pixels stay the photo, every segment keeps
        # its category's color.
        assert np.array_equal(picture[: 2 * 196 + 4], plain[: 2 * 196 + 4])
    # The legend lists the categories by their labels (1 ..), not the background: the
    # first swatch is the circle's, not a black one.
    ds = SegmentsDataset(RELEASE_PATH, background="background")
    legend = np.asarray(render_preview(ds, range(6)))[2 * 196 + 4 :]
    assert legend[10, 12].tolist() == [230, 57, 70]
    assert legend.shape[0] == 26  # four labels: one row


def test_vector_shapes_are_drawn_masks_lines_and_dots():
    ds = SegmentsDataset(VECTOR_RELEASE_PATH)
    photo = ds[0][0].permute(1, 2, 0).numpy().astype(np.float32)  # 320 x 240: drawn as it is
    pixels = np.asarray(render_preview(ds, [0], tile=320))[:240]  # one tile: no padding
    # The circle's centre point: a dot in the circle's color.
    assert pixels[95, 80].tolist() == [230, 57, 70]
    # The grass edge's polyline, in the grass color, through each of its vertices.
    _, target = ds[0]
    start, stop = target["keypoint_offsets"][:2].tolist()
    for x, y in target["keypoints"][start:stop].tolist()[1:-1]:
        assert pixels[int(y), int(x)].tolist() == [106, 168, 79], (x, y)
    # Inside the square (a bbox), the photo half covered in the square's color.
    blended = np.rint(photo[100, 205] * 0.5 + np.array([69, 123, 157]) * 0.5)
    assert pixels[100, 205].tolist() == blended.tolist()


@pytest.mark.parametrize(
    "path", [SEQUENCE_RELEASE_PATH, SEGMENTATION_SEQUENCE_RELEASE_PATH], ids=["vector", "bitmap"]
)
def test_a_sequence_dataset_previews_every_frame_of_its_sequences(path):
    frames = SegmentsDataset(path)
    sequences = frames.with_options(sequence=True)
    assert (len(frames), len(sequences)) == (8, 2)
    assert list(sequences.frames_of(1)) == [4, 5, 6, 7]
    assert list(frames.frames_of(-1)) == [7]
    page = np.asarray(render_preview(sequences, [1], tile=64, columns=4))
    assert page.tobytes() == np.asarray(render_preview(frames, range(4, 8), tile=64)).tobytes()
    with pytest.raises(IndexError, match=r"^index 2 is out of range for 2 sequences$"):
        render_preview(sequences, [2])
