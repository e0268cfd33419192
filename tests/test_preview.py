from __future__ import annotations

import numpy as np
import torch

from segments_torch import SegmentsDataset
from segments_torch.demo import RELEASE_PATH
from segments_torch.preview import draw_sample, render_preview


def test_draw_sample_fills_and_outlines_each_mask():
    image = torch.zeros((3, 5, 5), dtype=torch.uint8)
    masks = torch.zeros((1, 5, 5), dtype=torch.uint8)
    masks[0, 1:4, 1:4] = 1
    target = {"masks": masks, "labels": torch.tensor([2])}
    drawn = draw_sample(image, target, [(0, 0, 0), (200, 0, 0)], alpha=1.0)
    # The centre is filled with label 1's color, the ring is the white outline.
    assert drawn[:, 2, 2].tolist() == [200, 0, 0]
    assert drawn[:, 1, 1].tolist() == [255, 255, 255]
    assert drawn[:, 0, 0].tolist() == [0, 0, 0]


def test_draw_sample_of_a_semantic_map_skips_the_ignore_index():
    image = torch.zeros((3, 2, 2), dtype=torch.uint8)
    target = {"semantic": torch.tensor([[0, 255], [255, 255]])}
    drawn = draw_sample(image, target, [(10, 20, 30)], alpha=1.0, outline_color=(10, 20, 30))
    assert drawn[:, 0, 0].tolist() == [10, 20, 30]
    assert drawn[:, 1, 1].tolist() == [0, 0, 0]
    empty = draw_sample(image, {"masks": torch.zeros((0, 2, 2)), "labels": torch.zeros(0)}, [])
    assert torch.equal(empty, image)


def test_render_preview_grid_and_legend():
    ds = SegmentsDataset(RELEASE_PATH)
    picture = render_preview(ds, range(5), tile=64, columns=3)
    # Two rows of three 64-pixel tiles with 4-pixel padding, then one legend row.
    assert (picture.width, picture.height) == (3 * 68 + 4, 2 * 68 + 4 + 26)
    pixels = np.asarray(picture)
    legend = pixels[2 * 68 + 4 :]
    # The legend shows the first label's color (circle, (230, 57, 70)) in its swatch.
    assert (legend == [230, 57, 70]).all(axis=-1).any()
