"""The README's Python blocks stay true to the code: each compiles, and every name it
imports from segments_torch exists (the blocks name files a reader has, so they are not run;
the examples they mirror are, by tests/test_examples*.py)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_a_readme_block_compiles_and_its_imports_exist(number):
    block = BLOCKS[number]
    tree = ast.parse(block, filename=f"README.md python block {number + 1}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segments_torch"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), (
                    f"README python block {number + 1}: {node.module} has no {alias.name}"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("segments_torch"):
                    importlib.import_module(alias.name)
