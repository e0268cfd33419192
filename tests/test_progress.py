"""The progress bar: tqdm's, with console logging written around it while it is shown."""

from __future__ import annotations

import io
import logging
import re
import sys

from segments_torch.progress import Progress

LOGGER = logging.getLogger("segments_torch.export.core")


def lines_of(stderr: str) -> list[str]:
    """What a terminal shows as separate lines: tqdm redraws its bar after a ``\\r``."""
    return re.split(r"[\r\n]", stderr)


def test_without_logging_configured_a_warning_stands_on_its_own_line(capsys, monkeypatch):
    """As in the command line: no handler anywhere, logging's handler of last resort prints
    the warning on stderr, where the bar is."""
    monkeypatch.setattr(logging.root, "handlers", [])
    last_resort = logging.lastResort
    progress = Progress(4, label="export", unit="sample")
    progress(1)
    LOGGER.warning("skipping sample 'a.jpg'")
    progress(3)
    progress.close()
    err = capsys.readouterr().err
    assert lines_of(err).count("skipping sample 'a.jpg'") == 1
    assert "4/4" in lines_of(err)[-2]  # the bar, drawn again below the line, ends complete
    assert logging.lastResort is last_resort


def test_a_configured_console_handler_keeps_its_format_and_is_given_back(capsys, monkeypatch):
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    log_file = io.StringIO()
    to_file = logging.StreamHandler(log_file)
    monkeypatch.setattr(logging.root, "handlers", [console, to_file])
    progress = Progress(2, label="prefetch", unit="file")
    progress(1)
    LOGGER.warning("cannot write the cache file /c/a.jpg")
    progress.close()
    expected = "WARNING:segments_torch.export.core:cannot write the cache file /c/a.jpg"
    assert lines_of(capsys.readouterr().err).count(expected) == 1
    assert log_file.getvalue() == "cannot write the cache file /c/a.jpg\n"  # untouched
    assert console.stream is sys.stderr
    LOGGER.warning("after the bar")
    assert capsys.readouterr().err == "WARNING:segments_torch.export.core:after the bar\n"
