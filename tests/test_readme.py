"""The README and the docs pages stay true to the code: each Python block compiles, and every
name it imports from segments_torch exists (the blocks name files a reader has, so they are
not run; the examples they mirror are, by tests/test_examples*.py). The README's links lead
to files that exist, and every public module has its API reference page (`make docs` checks
the links between pages and the references themselves)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)


BLOCKS = [
    (page.relative_to(ROOT).as_posix(), number, block)
    for page in PAGES
    for number, block in enumerate(python_blocks(page), start=1)
]


def test_the_readme_and_the_docs_have_python_blocks():
    readme = [block for name, _, block in BLOCKS if name == "README.md"]
    assert len(readme) >= 5
    assert len(BLOCKS) - len(readme) >= 12


@pytest.mark.parametrize(
    ("name", "number", "block"), BLOCKS, ids=[f"{name}-{number}" for name, number, _ in BLOCKS]
)
def test_a_python_block_compiles_and_its_imports_exist(name, number, block):
    tree = ast.parse(block, filename=f"{name} python block {number}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segments_torch"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), (
                    f"{name} python block {number}: {node.module} has no {alias.name}"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("segments_torch"):
                    importlib.import_module(alias.name)


def test_the_readme_links_to_files_that_exist():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    local = [target for target in targets if "://" not in target]
    assert "docs/dataset.md" in local
    assert [target for target in local if not (ROOT / target).exists()] == []


def test_every_public_module_has_an_api_page():
    package = ROOT / "segments_torch"
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in package.rglob("*.py")
        if not any(part.startswith("_") for part in path.relative_to(package).parts)
    }
    documented = set(
        re.findall(
            r"^::: (segments_torch[\w.]*)$",
            "\n".join(page.read_text(encoding="utf-8") for page in (DOCS / "api").glob("*.md")),
            re.MULTILINE,
        )
    )
    assert sorted(modules - documented) == []
