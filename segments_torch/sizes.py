"""The size an image is served at: the rule of ``torchvision.transforms.v2.Resize``.

``SegmentsDataset(size=..., max_size=...)`` serves each item at the size ``v2.Resize``
would give it; the decoders (:mod:`~segments_torch.codecs`) decode at that size and the
dataset samples id maps at it, both through :func:`output_size`.

Example:
    >>> output_size(2736, 3648, 800, max_size=1333)
    (800, 1066)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Size", "output_size"]

#: What ``size=`` may be: an int (the shorter side), ``(height, width)``, or ``None``.
Size = int | Sequence[int] | None


def output_size(
    height: int, width: int, size: Size, max_size: int | None = None
) -> tuple[int, int]:
    """The ``(height, width)`` that ``torchvision.transforms.v2.Resize(size,
    max_size=max_size)`` gives an image of ``height`` x ``width``: ``size`` an int (or a
    one-element sequence) sets the shorter side, keeping the aspect ratio, and
    ``max_size`` caps the longer; ``(h, w)`` is exact; ``None`` with ``max_size`` caps the
    longer side alone. A side that would round to 0 pixels (where ``v2.Resize`` fails)
    is 1.

    Example:
        >>> output_size(2736, 3648, 800, max_size=1333)
        (800, 1066)
    """
    if isinstance(size, Sequence) and len(size) == 2:
        if max_size is not None:
            raise ValueError("max_size goes with an int size (the shorter side) or None")
        return int(size[0]), int(size[1])
    short, long = (width, height) if width <= height else (height, width)
    if size is None:
        if max_size is None:
            raise ValueError("size=None needs a max_size (the longer side)")
        new_short, new_long = int(max_size * short / long), max_size
    else:
        requested = int(size if isinstance(size, int) else size[0])
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None:
            if max_size <= requested:
                raise ValueError(
                    f"max_size = {max_size} must be greater than the shorter side, {requested}"
                )
            if new_long > max_size:
                new_short, new_long = int(max_size * new_short / new_long), max_size
    new_short = max(new_short, 1)  # v2.Resize fails there: a side of 0 pixels
    return (new_long, new_short) if width <= height else (new_short, new_long)
