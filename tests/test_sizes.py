"""The size items are served at, as torchvision's v2.Resize gives it (segments_torch.sizes)."""

from __future__ import annotations

import doctest

import pytest
import torch
from torchvision.transforms import v2

from segments_torch import sizes
from segments_torch.sizes import output_size


@pytest.mark.parametrize("height", [1, 7, 480, 601, 2736])
@pytest.mark.parametrize("width", [1, 9, 640, 3648])
@pytest.mark.parametrize(
    ("size", "max_size"),
    [(5, None), ([13], None), ((11, 17), None), (6, 9), (None, 10), (800, 1333)],
)
def test_output_size_is_what_v2_resize_gives(height, width, size, max_size):
    if (
        max_size is not None
        and size is not None
        and max_size <= (size if isinstance(size, int) else size[0])
    ):
        pytest.skip("not a valid combination")
    image = torch.zeros((1, height, width), dtype=torch.uint8)
    try:
        expected = tuple(v2.functional.resize(image, size, max_size=max_size).shape[-2:])
    except RuntimeError:  # a side of 0 pixels: ours keeps one
        assert min(output_size(height, width, size, max_size)) == 1
        return
    assert output_size(height, width, size, max_size) == expected


def test_output_size_refuses_what_v2_resize_refuses():
    with pytest.raises(ValueError, match="max_size goes with an int size"):
        output_size(10, 10, (5, 5), 8)
    with pytest.raises(ValueError, match="size=None needs a max_size"):
        output_size(10, 10, None)
    with pytest.raises(ValueError, match="max_size = 5 must be greater than the shorter side, 5"):
        output_size(10, 10, 5, 5)


def test_docstring_examples():
    assert doctest.testmod(sizes).failed == 0
