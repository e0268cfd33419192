"""Bytes of images and bitmaps from any fsspec URL.

:class:`Storage` holds only strings and options, so it pickles into spawn workers and
never carries a parent's open session into a forked child: filesystem objects come from
fsspec per call, whose instance cache is per process. Local paths are read with plain
``open``, the fastest way there is.

Relative asset URLs (``images/a.jpg``, as in the demo release and in local exports) are
resolved against ``base_url``, by default the folder of the release file.

Example:
    >>> storage = Storage(base_url="/data/flowers")
    >>> storage.resolve("images/a.jpg")
    '/data/flowers/images/a.jpg'
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Storage", "display_url", "release_base_url"]


def display_url(url: str) -> str:
    """``url`` without query string and fragment: signed URLs carry credentials there."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) if parts.scheme else url


def _is_local(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return scheme == "" or scheme == "file" or (len(scheme) == 1 and os.name == "nt")


def release_base_url(source: str) -> str | None:
    """The folder a release file was read from (``None`` for parsed dicts and streams)."""
    if source.startswith("<"):
        return None
    if urlsplit(source).scheme in ("", "file"):
        return os.path.dirname(os.path.abspath(source.removeprefix("file://")))
    parts = urlsplit(source)
    return urlunsplit(parts._replace(path=posixpath.dirname(parts.path), query="", fragment=""))


class Storage:
    """Reads asset bytes from local paths and fsspec URLs.

    Args:
        base_url: where relative asset URLs are resolved (a folder path or URL).
        storage_options: passed to fsspec per protocol, e.g.
            ``{"s3": {"anon": False}, "https": {"headers": {...}}}``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.base_url = base_url
        self.storage_options = {k: dict(v) for k, v in (storage_options or {}).items()}

    def resolve(self, url: str) -> str:
        """The absolute location of ``url``: unchanged unless it is a relative path."""
        if urlsplit(url).scheme or os.path.isabs(url) or self.base_url is None:
            return url
        if urlsplit(self.base_url).scheme:
            return self.base_url.rstrip("/") + "/" + url
        return os.path.join(self.base_url, url)

    def read(self, url: str) -> bytes:
        """All bytes at ``url``; raises ``OSError`` (``FileNotFoundError`` when absent)."""
        location = self.resolve(url)
        if _is_local(location):
            if not os.path.isabs(location.removeprefix("file://")):
                raise FileNotFoundError(
                    f"relative URL {url!r} and no folder to resolve it against (the release "
                    "was not read from a file): pass asset_root="
                )
            with open(location.removeprefix("file://"), "rb") as f:
                return f.read()
        import fsspec

        protocol = urlsplit(location).scheme
        options = self.storage_options.get(protocol, {})
        # One GET: fsspec.open(...).read() first asks for the size (a HEAD), then reads.
        fs, path = fsspec.core.url_to_fs(location, **options)
        data: bytes = fs.cat_file(path)
        return data

    def __repr__(self) -> str:
        return f"Storage(base_url={self.base_url!r})"
