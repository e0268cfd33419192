"""A Griffe extension for the docs site (mkdocs.yml loads it): reads the package's docstrings,
written for ``help()`` with Sphinx roles, as the Markdown mkdocstrings renders.

- ``Example:`` sections become Google-style ``Examples:`` sections, so their ``>>>`` lines
  render as Python sessions (Griffe reads the singular as an admonition, in which Markdown
  would turn ``>>>`` into nested quotes).
- Sphinx roles become links where they name an object by its full path
  (``:class:`~segments_torch.storage.Storage``` -> ``Storage``, linked to its reference),
  and code otherwise (``:attr:`failures``` -> ``failures``).
- reST's ``::`` before a literal block becomes ``:`` (the indented block is code in
  Markdown too).

Example:
    >>> convert(":func:`~segments_torch.release.load_release` reads it.")
    '[`load_release`][segments_torch.release.load_release] reads it.'
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_LITERAL = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).lstrip(".")
    shown = target.rsplit(".", 1)[-1] if short else target
    return f"[`{shown}`][{target}]" if target.startswith("segments_torch.") else f"`{shown}`"


def convert(text: str) -> str:
    """A docstring's text as mkdocstrings' Google-style Markdown."""
    text = _LITERAL.sub(r"\1:", _EXAMPLE.sub(r"\1Examples:", text))
    return _ROLE.sub(_role, text)


class DocstringMarkdown(griffe.Extension):
    """Converts every docstring once the package's object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
