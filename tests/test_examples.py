"""Smoke tests: every example runs on the bundled demo release."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("target", ["instance", "semantic"])
def test_quickstart(target):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--target", target, "--workers", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if target == "instance":
        assert "image (3, 240, 320): 4 instances, labels [4, 1, 2, 3], masks (4, 240, 320)" in (
            result.stdout
        )
    else:
        assert "images (2, 3, 240, 320), semantic (2, 240, 320)" in result.stdout
