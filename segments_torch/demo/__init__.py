"""The tiny demo release bundled with the package (made by scripts/make_demo_release.py).

Example:
    >>> from segments_torch.demo import RELEASE_PATH
    >>> RELEASE_PATH.name
    'release.json'
"""

from pathlib import Path

__all__ = [
    "RELEASE_PATH",
    "SEGMENTATION_SEQUENCE_RELEASE_PATH",
    "SEQUENCE_RELEASE_PATH",
    "VECTOR_RELEASE_PATH",
]

#: The demo release file; its asset URLs are relative to its folder.
RELEASE_PATH = Path(__file__).resolve().parent / "release.json"
#: The same images labelled with shapes: boxes, polygons, polylines and points.
VECTOR_RELEASE_PATH = RELEASE_PATH.with_name("vector.json")
#: Two sequences of four 64x48 frames whose boxes and polygons move from frame to frame
#: (task type ``image-vector-sequence``).
SEQUENCE_RELEASE_PATH = RELEASE_PATH.with_name("sequence.json")
#: The same sequences labelled with a bitmap per frame (``image-segmentation-sequence``).
SEGMENTATION_SEQUENCE_RELEASE_PATH = RELEASE_PATH.with_name("segmentation-sequence.json")
