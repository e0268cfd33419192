"""Benchmark: ``segments-torch preview`` on a page of 10 MP photos.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_preview.py            # about 90 s on two cores
    .venv/bin/python benchmarks/bench_preview.py --runs 1   # a sanity check

On ``bench_labels.py``'s generated samples (3648x2736 photo-like JPEGs and bitmaps with 25
instances, ``--data-dir``, default ``benchmarks/data/``, git-ignored; made once and
reused), in a release of 16 samples whose categories have no colors (as in the 2020
release that prompted this: the palette is used):

1. **The command**: ``python -m segments_torch.cli preview RELEASE --n 16`` (and with
   ``--boxes``) in a new process, wall-clock seconds from start to exit, interpreter start
   and imports included: what a user waits for. Median of ``--runs``.
2. **``render_preview``** (with boxes) alone in this process, and the reading of its
   items alone (``ds[i]``, panoptic, ``max_size=256``): the rest is drawing. Median of
   ``--runs``.

Files are read from the page cache after the first run. The machine is shared and noisy:
the medians, not single runs, are the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_labels import DEFAULT_DATA_DIR, Setting, ensure_data

from segments_torch import SegmentsDataset
from segments_torch.preview import render_preview

COMMAND = ".venv/bin/python benchmarks/bench_preview.py"
SETTING = Setting(3648, 2736, 25, 4)
ITEMS = 16
REPOSITORY = Path(__file__).resolve().parent.parent


def colorless_release(data_dir: Path) -> Path:
    """The setting's release of ``ITEMS`` samples, its categories' colors removed."""
    release = ensure_data(data_dir, SETTING, ITEMS)
    path = release.with_name(f"release-{ITEMS}-no-colors.json")
    if not path.is_file():
        document = json.loads(release.read_text())
        for category in document["dataset"]["task_attributes"]["categories"]:
            category.pop("color", None)
        path.write_text(json.dumps(document))
    return path


def command_seconds(release: Path, out: Path, *options: str) -> float:
    """Wall-clock seconds of one ``preview`` command in a new process."""
    argv = [sys.executable, "-m", "segments_torch.cli", "preview", str(release)]
    start = time.perf_counter()
    subprocess.run(
        [*argv, "--n", str(ITEMS), "--out", str(out), *options],
        cwd=REPOSITORY,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def render_seconds(release: Path) -> tuple[float, float]:
    """Seconds, in this process, of ``render_preview`` on the page, and of reading the
    items it reads (panoptic, at the tile's size) alone."""
    dataset = SegmentsDataset(release)
    start = time.perf_counter()
    render_preview(dataset, range(ITEMS), boxes=True)
    render = time.perf_counter() - start
    reading = SegmentsDataset(release, target="panoptic", max_size=256)
    start = time.perf_counter()
    for index in range(ITEMS):
        reading[index]
    return render, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs of each measure")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    release = colorless_release(args.data_dir)
    commands: dict[str, list[float]] = {"preview": [], "preview --boxes": []}
    renders: list[float] = []
    reads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "preview.png"
        for _ in range(args.runs):  # interleaved: drift moves every measure alike
            commands["preview"].append(command_seconds(release, out))
            commands["preview --boxes"].append(command_seconds(release, out, "--boxes"))
            render, read = render_seconds(release)
            renders.append(render)
            reads.append(read)
    print(f"{COMMAND} --runs {args.runs}: {ITEMS} samples of {SETTING.name}, no colors\n")
    print("| measure | median s | runs (s) |\n|---|---|---|")
    rows = {
        **{f"`segments-torch {name}` (new process)": times for name, times in commands.items()},
        "render_preview(..., boxes=True)": renders,
        "its reading alone: ds[i] at max_size=256": reads,
    }
    for name, times in rows.items():
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"| {name} | {statistics.median(times):.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
