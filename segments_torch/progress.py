"""A progress bar for long jobs (exports, prefetches): tqdm's when installed (extra
``progress``), else a line on stderr every 5 %.

While tqdm's bar is shown, console logging goes around it: a log line (a skipped sample,
a cache that cannot be written) clears the bar, stands on its own line and the bar is
drawn again below it, instead of landing in the middle of the bar's line.

Pure Python: importing it loads neither torch nor tqdm, so the command line starts fast.

Example:
    >>> progress = Progress(1000, label="export", unit="sample")  # doctest: +SKIP
    >>> progress(1)  # one more done  # doctest: +SKIP
    >>> progress.close()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """Counts work done out of ``total`` and shows it on stderr; with tqdm, console
    logging writes around the bar until :meth:`close`.

    Args:
        total: how many units there are.
        label: what is progressing, the bar's description (``"export"``).
        unit: what one unit is (``"file"``, ``"sample"``).
    """

    def __init__(self, total: int, *, label: str, unit: str) -> None:
        self.total, self.done, self.shown = total, 0, -1
        self.label = label
        self.bar: Any
        self._restore_logging: Callable[[], None] | None = None
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit=unit, desc=label, file=sys.stderr)
            self._restore_logging = _log_around(self.bar)

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
        if self._restore_logging is not None:
            self._restore_logging()
            self._restore_logging = None
        if self.bar is not None:
            self.bar.close()


class _AroundBar:
    """A console stream whose writes go around tqdm's bars, as ``tqdm.write`` does:
    the bars are cleared, the text written, the bars drawn again."""

    def __init__(self, bar: Any, stream: TextIO) -> None:
        self.bar = bar
        self.stream = stream

    def write(self, text: str) -> int:
        with self.bar.external_write_mode(file=self.stream):
            return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _log_around(bar: Any) -> Callable[[], None]:
    """Make console logging write around ``bar``: the stderr and stdout handlers of the
    root logger and of ``segments_torch``'s, and the handler of last resort (what prints
    a warning where logging is not configured, as in the command line). Returns what
    undoes it."""
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for logger in (logging.getLogger(), logging.getLogger("segments_torch")):
        for handler in logger.handlers:
            if not isinstance(handler, logging.StreamHandler):
                continue
            if handler.stream in (sys.stderr, sys.stdout):  # a file's handler stays
                swapped.append((handler, handler.setStream(_AroundBar(bar, handler.stream))))
    last_resort = logging.lastResort
    if last_resort is not None:
        around = logging.StreamHandler(_AroundBar(bar, sys.stderr))
        around.setLevel(last_resort.level)
        logging.lastResort = around

    def restore() -> None:
        logging.lastResort = last_resort
        for handler, stream in swapped:
            handler.setStream(stream)

    return restore
