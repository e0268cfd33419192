"""A progress bar for long jobs (exports, prefetches): tqdm's when installed (extra
``progress``), else a line on stderr every 5 %.

Pure Python: importing it loads neither torch nor tqdm, so the command line starts fast.

Example:
    >>> progress = Progress(1000, label="export", unit="sample")  # doctest: +SKIP
    >>> progress(1)  # one more done  # doctest: +SKIP
    >>> progress.close()  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """Counts work done out of ``total`` and shows it on stderr.

    Args:
        total: how many units there are.
        label: what is progressing, the bar's description (``"export"``).
        unit: what one unit is (``"file"``, ``"sample"``).
    """

    def __init__(self, total: int, *, label: str, unit: str) -> None:
        self.total, self.done, self.shown = total, 0, -1
        self.label = label
        self.bar: Any
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit=unit, desc=label, file=sys.stderr)

    def __call__(self, count: int) -> None:
        """Record ``count`` more units done."""
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        percent = 100 * self.done // max(1, self.total)
        if percent // 5 != self.shown // 5 or self.done == self.total:
            self.shown = percent
            print(f"{self.label}: {self.done}/{self.total} ({percent} %)", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
