"""From a release file to training batches: the shortest road.

Run it on the demo release bundled with the package, or on your own release::

    python examples/quickstart.py
    python examples/quickstart.py flowers-v1.0.json --target semantic --workers 4
"""

from __future__ import annotations

import argparse

from torch.utils.data import DataLoader

from segments_torch import SegmentsDataset, load_release
from segments_torch.demo import RELEASE_PATH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", nargs="?", default=str(RELEASE_PATH), help="path or URL")
    parser.add_argument(
        "--target", default="instance", choices=("instance", "semantic", "panoptic")
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    release = load_release(args.release)
    print(release)
    dataset = SegmentsDataset(release, target=args.target)
    print(dataset)
    print(dataset.categories)

    loader = DataLoader(
        dataset, batch_size=2, num_workers=args.workers, collate_fn=dataset.collate_fn
    )
    images, targets = next(iter(loader))
    if args.target == "semantic":
        print(f"images {tuple(images.shape)}, semantic {tuple(targets['semantic'].shape)}")
    else:
        for image, target in zip(images, targets, strict=True):
            print(
                f"image {tuple(image.shape)}: {len(target['labels'])} instances, "
                f"labels {target['labels'].tolist()}, masks {tuple(target['masks'].shape)}"
            )


if __name__ == "__main__":
    main()
