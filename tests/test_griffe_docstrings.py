"""scripts/griffe_docstrings.py: the package's docstrings read as mkdocstrings' Markdown."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "griffe_docstrings.py"
# Loaded from its path, as mkdocs.yml names it (scripts/ is no package).
_SPEC = importlib.util.spec_from_file_location("griffe_docstrings", SCRIPT)
assert _SPEC is not None
assert _SPEC.loader is not None
_MODULE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_MODULE)
convert = _MODULE.convert


def test_example_sections_become_examples_sections():
    text = "A thing.\n\nExample:\n    >>> thing()\n    1\n"
    assert convert(text) == "A thing.\n\nExamples:\n    >>> thing()\n    1\n"


def test_an_example_word_inside_a_sentence_stays():
    assert convert("For Example: this stays.") == "For Example: this stays."


def test_roles_with_a_full_path_become_links_and_others_code():
    text = (
        ":class:`~segments_torch.storage.Storage`, :func:`segments_torch.release.load_release`,"
        " :attr:`failures`, :mod:`.names`, :meth:`~Storage.read`"
    )
    assert convert(text) == (
        "[`Storage`][segments_torch.storage.Storage], "
        "[`segments_torch.release.load_release`][segments_torch.release.load_release],"
        " `failures`, `names`, `read`"
    )


def test_a_literal_block_marker_becomes_a_colon():
    text = "e.g.::\n\n    flowers.json: bad\n"
    assert convert(text) == "e.g.:\n\n    flowers.json: bad\n"


def test_the_package_docstrings_parse_with_examples_sections():
    extensions = griffe.load_extensions(str(SCRIPT))
    module = griffe.load("segments_torch.export.base", search_paths=[ROOT], extensions=extensions)
    assert module.docstring is not None
    kinds = [section.kind.value for section in module.docstring.parse("google")]
    assert kinds == ["text", "examples"]
