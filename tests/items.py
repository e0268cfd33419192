"""Comparing dataset items exactly, for the tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def assert_same_item(got: Any, expected: Any) -> None:
    """``(image, target)`` pairs with equal images and equal target tensors, key by key."""
    image, target = got
    expected_image, expected_target = expected
    assert torch.equal(image, expected_image)
    assert target.keys() == expected_target.keys()
    for key, value in expected_target.items():
        assert torch.equal(target[key], value), key


def assert_same_items(items: Sequence[Any], reference: Sequence[Any]) -> None:
    assert len(items) == len(reference)
    for got, expected in zip(items, reference, strict=True):
        assert_same_item(got, expected)
