"""Bar charts of a benchmark run's own figures, for the docs (``--plot PATH``).

matplotlib is a development tool here (pinned in requirements-dev.txt), never a dependency of
the library: it is imported when a plot is asked for, so the benchmarks run without it.

Example::

    times = {"before": [10.0, 90.0], "after": [5.0, 30.0]}
    save_bars("docs/img/example.png", "A run", [Panel("Per item", "ms", ["720p", "12 MP"], times)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Okabe and Ito's colour-blind-safe palette, as the preview uses it.
COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")


@dataclass(frozen=True)
class Panel:
    """One chart: a group of bars per entry of ``groups``, one bar per series in each."""

    title: str
    unit: str
    groups: Sequence[str]
    series: dict[str, list[float]]
    log: bool = False


def save_bars(path: Path | str, title: str, panels: Sequence[Panel]) -> Path:
    """Draw ``panels`` side by side, each bar labelled with its value, and save a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the benchmarks run on headless machines
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False, layout="constrained"
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        width = 0.8 / len(panel.series)
        for k, (name, values) in enumerate(panel.series.items()):
            offsets = [g + (k - (len(panel.series) - 1) / 2) * width for g in range(len(values))]
            bars = ax.bar(offsets, values, width, label=name, color=COLORS[k % len(COLORS)])
            ax.bar_label(bars, fmt="{:.3g}", fontsize=8, padding=2)
        ax.set_xticks(range(len(panel.groups)), list(panel.groups), fontsize=9)
        ax.set_title(panel.title, fontsize=11)
        ax.set_ylabel(panel.unit)
        if panel.log:
            ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False, loc="upper left")
    figure.suptitle(title, fontsize=12)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
