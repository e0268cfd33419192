"""What the library knows of a URL without reading it: how to show it, whether it names a
local file, its folder and its origin (host).

Signed asset URLs carry credentials in their query string, and a URL may carry
``user:password@``: :func:`display_url` and :func:`redact` are how URLs appear in
messages, logs and exports. Local files are paths, ``file://`` URLs (percent-escapes
decoded, query string dropped) and, on Windows, drive letters.

Example:
    >>> display_url("https://user:pw@cdn.example/a.jpg?X-Amz-Signature=1")
    'https://cdn.example/a.jpg'
    >>> release_base_url("s3://bucket/releases/flowers-v1.0.json")
    's3://bucket/releases'
"""

from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["display_url", "is_local", "local_path", "origin", "redact", "release_base_url"]

#: ``user:password@`` in a URL inside free text (an error message of a library).
_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")


def display_url(url: str) -> str:
    """``url`` as it may be shown or written: without query string and fragment (signed
    URLs carry credentials there) and without ``user:password@``.

    Example:
        >>> display_url("https://user:pw@cdn.example/a.jpg?X-Amz-Signature=1#top")
        'https://cdn.example/a.jpg'
    """
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact(text: str) -> str:
    """``text`` (a library's error message that may quote a URL) cut before any query
    string, and without the user name and password of any URL in it.

    Example:
        >>> redact("Cannot connect to https://u:pw@cdn.example/a.jpg?sig=1 (refused)")
        'Cannot connect to https://cdn.example/a.jpg'
    """
    return _USERINFO.sub("", text.split("?")[0])


def is_local(url: str) -> bool:
    """Whether ``url`` names a local file: a path, a ``file://`` URL, or on Windows a path
    with a drive letter.

    Example:
        >>> is_local("/data/a.jpg"), is_local("file:///data/a.jpg"), is_local("s3://b/a.jpg")
        (True, True, False)
    """
    scheme = urlsplit(url).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(location: str) -> str:
    """The file a local location names: a path as it is, a ``file://`` URL's path with its
    percent-escapes decoded and without query string and fragment.

    Example:
        >>> local_path("file:///data/a%20b.jpg?x=1")
        '/data/a b.jpg'
    """
    if urlsplit(location).scheme != "file":
        return location
    return unquote(urlsplit(location).path)


def release_base_url(source: str) -> str | None:
    """The folder a release file was read from (``None`` for parsed dicts and streams,
    whose source is shown as ``"<dict>"``): what relative asset URLs resolve against.

    Example:
        >>> release_base_url("https://cdn.example/r/release.json?sig=1")
        'https://cdn.example/r'
        >>> release_base_url("<dict>") is None
        True
    """
    if source.startswith("<"):
        return None
    if urlsplit(source).scheme in ("", "file"):
        return os.path.dirname(os.path.abspath(local_path(source)))
    parts = urlsplit(source)
    return urlunsplit(parts._replace(path=posixpath.dirname(parts.path), query="", fragment=""))


def origin(url: str) -> str:
    """The origin of a remote URL, its host as its reads are counted together:
    ``scheme://host[:port]``, lower case, without ``user:password@``.

    Example:
        >>> origin("https://u:pw@CDN.example:8443/a.jpg")
        'https://cdn.example:8443'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"
