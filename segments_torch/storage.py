"""Bytes of images and bitmaps from any fsspec URL: mirrors, an atomic cache, retries.

:class:`Storage` is the one place the library reads asset bytes:

- **Relative URLs** (``images/a.jpg``, as in the demo release and in local exports) are
  resolved against ``base_url``, by default the folder of the release file.
- **Mirrors**: ``url_map`` rewrites URLs before reading, either a mapping of URL prefix
  -> replacement (the longest matching prefix wins) or a callable. Where it gives a local
  path, the signed URL's query string is dropped: it is no part of a file's name. A URL
  no prefix matches is read from its source (a mirror may hold only some assets, and
  the release itself is read through the same mapping); when that read fails, the error
  says that no prefix matched and lists the prefixes. An error of a mapped URL names the
  original URL beside the mirror's. A prefix and a replacement of which only one ends
  with ``/`` are warned of once: ``"https://cdn.example/" -> "/data/mirror"`` reads
  ``/data/mirrorimages/a.jpg``.
- **Local files**: a path is read as it is; a ``file://`` URL is a URL: its
  percent-escapes are decoded (``file:///d/a%20b.jpg`` reads ``/d/a b.jpg``), its query
  string and fragment dropped.
- **Cache**: with ``cache_dir``, each remote asset's original bytes are kept on disk,
  keyed by the URL without its query string (signed URLs change their signature, not
  their path; ``cache_key="url"`` keys by the full URL instead). Files are written to a
  temporary name in the same folder and renamed into place, so a process killed
  mid-download never leaves a torn file and concurrent readers (workers, DataLoaders,
  DDP ranks on one machine) never see a partial one. fsspec's own ``simplecache`` is not
  used: it can hand a reader a partly written file (fsspec issue #639).
- **Retries**: bounded exponential backoff with jitter for connection errors, timeouts,
  truncated bodies, HTTP 429 and 5xx; none for 400, 401, 403 and 404. HTTP requests get a
  per-request timeout (fsspec's HTTP filesystem has neither).
- **Outages**: a host that reads after read cannot be reached is down for the process
  (:class:`RetryPolicy`): one read backs off from it, later ones try once, and after
  ``RetryPolicy.outage_after`` failures in a row every read of it raises
  :class:`~segments_torch.errors.SourceUnavailableError` at once, which no
  ``on_error="skip"`` skips (:meth:`Storage.reset_outages` forgets).
- **Concurrent reads**: :meth:`Storage.read_each` starts the downloads of a sample's
  assets together, so a sample costs one round trip, not one per file.
- **Processes**: a Storage holds strings and options only. Filesystem objects are made per
  process (fsspec's instance cache is keyed by process id, so a forked DataLoader worker
  never reuses its parent's async session), and so are the threads of
  :meth:`Storage.read_each`; the storage pickles without them.

Example:
    >>> storage = Storage(base_url="/data/flowers",
    ...                   url_map={"https://bucket.s3.amazonaws.com/": "/mirror/"})
    >>> storage.resolve("images/a.jpg")
    '/data/flowers/images/a.jpg'
    >>> storage.resolve("https://bucket.s3.amazonaws.com/x/b.png?sig=1")
    '/mirror/x/b.png'
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import posixpath
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar
from urllib.parse import urlsplit

from ._compat import cached_instances, finalizers_of
from .errors import DecodeError, OptionError, SourceUnavailableError, StorageError
from .files import check_folder, remove_stale_partials, warn_once, write_atomically
from .urls import display_url, is_local, local_path, origin, redact

__all__ = [
    "STORAGE_SETTINGS",
    "PrefetchReport",
    "RetryPolicy",
    "Storage",
    "StorageError",
    "StorageSettings",
    "UrlMap",
    "make_storage",
    "prefetch",
]

logger = logging.getLogger(__name__)

UrlMap = Mapping[str, str] | Callable[[str], str]

_T = TypeVar("_T")


def _unchecked(data: bytes) -> None:
    """The check of :meth:`Storage.read` without one: every body passes."""


#: HTTP statuses worth another attempt: rate limiting and server-side failures.
_RETRY_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))


#: The file name suffixes a cache file keeps from its URL (``.jpg``, ``.png``, ...).
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9_-]{1,15}")


def _local_error(path: str, exc: OSError | ValueError, note: str = "") -> StorageError:
    """The StorageError of a local file that could not be opened or looked at (``note``:
    see :meth:`Storage.mirror_note`)."""
    if isinstance(exc, ValueError):  # a NUL character, a lone surrogate: no file has that name
        return StorageError(path, f"the system refuses this path: {exc}", note=note)
    reason, status, _ = _classify(exc)
    return StorageError(path, reason, status=status, attempts=1, retryable=False, note=note)


#: What ends a folder's path or URL, as url_map prefixes and replacements are written.
_SEPARATORS = tuple(dict.fromkeys(("/", os.sep)))


def _check_separators(url_map: Mapping[str, str]) -> None:
    """Warn (once per process and pair) of a ``url_map`` prefix and replacement of which
    one ends with a separator and the other does not: ``"https://cdn.example/" ->
    "/data/mirror"`` would read ``/data/mirrorimages/a.jpg``."""
    for prefix, replacement in url_map.items():
        if prefix.endswith(_SEPARATORS) == replacement.endswith(_SEPARATORS):
            continue
        separator = (prefix if prefix.endswith(_SEPARATORS) else replacement)[-1]
        shown_prefix, shown_replacement = display_url(prefix), display_url(replacement)
        warn_once(
            logger,
            f"url_map separator {prefix!r} {replacement!r}",
            "url_map: the prefix %r and its replacement %r disagree on a trailing %r, so %s "
            "is read from %s; end both with %r or neither",
            shown_prefix,
            shown_replacement,
            separator,
            shown_prefix + "a.jpg",
            shown_replacement + "a.jpg",
            separator,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter, and when to call a source down.

    Attempt ``k`` (from 1) that fails with a retryable error waits a random time in
    ``[0, min(max_delay, base_delay * 2 ** (k - 1))]`` before the next, up to ``attempts``
    attempts in all.

    Outages: a read that fails to connect to its host (refused, unknown host, reset,
    timed out; an HTTP status is an answer, not such a failure) backs off and retries as
    above, but one read of a host at a time: another that fails meanwhile waits for that
    read's outcome. Once a read has failed for good, later reads of the host try once,
    until the host answers again. After ``outage_after`` reads in a row have failed so,
    the host is down for this process: each read of it raises
    :class:`~segments_torch.errors.SourceUnavailableError` at once, without a request,
    until :meth:`Storage.reset_outages`. Local files are never down.

    Attributes:
        attempts: requests per read, at most.
        base_delay: seconds; the first backoff is at most this long.
        max_delay: seconds; no backoff is longer.
        outage_after: reads of one host in a row that failed to connect (with no answer
            from it in between) that make it down (default 3).
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    outage_after: int = 3

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def _classify(exc: BaseException, *, http: bool = False) -> tuple[str, int | None, bool]:
    """``(reason, HTTP status or None, retryable)`` for an error raised while reading
    (``http``: the URL was HTTP(S), where fsspec reports a 404 as FileNotFoundError)."""
    if isinstance(exc, ImportError):
        return (
            f"this URL needs an optional package ({exc}): install the matching extra, e.g. "
            "pip install 'segments-torch[http]' (or [s3], [gcs])",
            None,
            False,
        )
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if not isinstance(status, int):
        status = _client_error_status(exc)
    if not isinstance(status, int):
        status = 404 if http and isinstance(exc, FileNotFoundError) else None
    if isinstance(exc, FileNotFoundError) or status in (404, 410):
        return f"not found{f' (HTTP {status})' if status else ''}", status or 404, False
    if isinstance(exc, PermissionError) or status in (401, 403):
        said = _server_says(exc) if isinstance(exc, PermissionError) else ""
        return f"access denied{f' (HTTP {status})' if status else ''}{said}", status, False
    if status is not None:
        message = getattr(exc, "message", "") or ""
        return f"HTTP {status}{f' {message}' if message else ''}", status, status in _RETRY_STATUSES
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out", None, True
    name = type(exc).__name__
    text = redact(str(exc))  # a URL in the text may carry a signature or a password
    detail = f"{name}: {text}" if text else name
    # Connection resets, refused connections, dropped connections (aiohttp's
    # ServerDisconnectedError, a ClientConnectionError), truncated bodies (ClientPayloadError).
    # A ValueError (aiohttp's InvalidURL is one) says the URL itself is wrong: no retry.
    lineage = [cls.__name__ for cls in type(exc).__mro__]
    retryable = not isinstance(exc, ValueError) and (
        isinstance(exc, ConnectionError | OSError)
        or any("Client" in n or "Payload" in n for n in lineage)
    )
    return detail, None, retryable


def _client_error_status(exc: BaseException) -> int | None:
    """The HTTP status of the botocore ``ClientError`` that s3fs (or gcsfs) translated into
    ``exc`` (kept as ``__cause__``): PermissionError, FileNotFoundError carry none."""
    response = getattr(exc.__cause__, "response", None)
    if isinstance(response, Mapping):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return None


#: The names of errors (in an error's lineage) of reads that did not reach their host or
#: lost it: refused, unknown host, reset, dropped, timed out, as Python, aiohttp,
#: botocore and azure-core name them.
_UNREACHABLE = frozenset(
    {
        "ConnectionError",
        "ClientConnectionError",
        "ServiceRequestError",
        "TimeoutError",
        "ReadTimeoutError",
        "gaierror",
    }
)


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the host was not reached (no HTTP status: no answer)."""
    return any(cls.__name__ in _UNREACHABLE for cls in type(exc).__mro__)


class _Outages:
    """The hosts that fail to connect, read after read, in one process (see
    :class:`RetryPolicy`). Thread-safe: a condition guards it, and lets the reads of a
    host wait for the one read that backs off from it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.changed = threading.Condition()
        self.failures: dict[str, int] = {}  # host -> reads failed for good in a row
        self.last: dict[str, str] = {}  # host -> why the last of them failed
        self.backing_off: set[str] = set()  # hosts a read is backing off from

    def read(self, source: str, url: str, limit: int) -> _HostRead:
        """The outage bookkeeping of one read of ``url`` from host ``source``; raises
        :class:`SourceUnavailableError` if the host is down (``limit`` failures)."""
        with self.changed:
            failures = self.failures.get(source, 0)
            if failures >= limit:
                raise SourceUnavailableError(source, failures, self.last[source], url=url)
        return _HostRead(self, source)


class _HostRead:
    """One read's part in its host's outage bookkeeping (a context manager: the backoff
    it holds is released however the read ends)."""

    def __init__(self, outages: _Outages, source: str) -> None:
        self._outages = outages
        self._source = source
        self._holding = False  # this read holds the host's backoff

    def __enter__(self) -> _HostRead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._update(None)

    def next_step(self) -> Literal["back off", "again", "stop"]:
        """After a failure to connect, with attempts left: ``"back off"`` (this read
        holds the host's backoff), ``"again"`` (it waited for the read that held it,
        whose retry reached the host: retry at once) or ``"stop"`` (a read has failed for
        good since the host last answered)."""
        outages, source = self._outages, self._source
        with outages.changed:
            if not self._holding and source in outages.backing_off:
                outages.changed.wait_for(lambda: source not in outages.backing_off)
                return "stop" if outages.failures.get(source) else "again"
            if outages.failures.get(source):
                self._update(None)
                return "stop"
            outages.backing_off.add(source)
            self._holding = True
            return "back off"

    def answered(self) -> None:
        """The host answered (bytes, an HTTP status): it is up."""
        self._update(0)

    def failed(self, reason: str) -> int:
        """This read failed to connect for good: returns the host's failures in a row."""
        with self._outages.changed:
            failures = self._outages.failures.get(self._source, 0) + 1
            self._outages.last[self._source] = reason
            self._update(failures)
            return failures

    def _update(self, failures: int | None) -> None:
        """Set the host's failures in a row (``None``: leave them) and release the
        backoff this read holds."""
        outages = self._outages
        with outages.changed:
            if failures == 0:
                outages.failures.pop(self._source, None)
            elif failures is not None:
                outages.failures[self._source] = failures
            if self._holding:
                self._holding = False
                outages.backing_off.discard(self._source)
                outages.changed.notify_all()


#: Server texts that add nothing to "access denied (HTTP 403)".
_GENERIC_REFUSALS = frozenset({"forbidden", "access denied", "unauthorized"})


def _server_says(exc: BaseException) -> str:
    """``": <the server's explanation>"`` where a refusal carries one (S3: "The request
    signature we calculated does not match ...", "The AWS Access Key Id you provided does
    not exist in our records."), else ``""``. A local PermissionError (with an errno)
    names only the path."""
    if getattr(exc, "errno", None) is not None:
        return ""
    text = redact(str(exc)).strip()
    return "" if text.lower().rstrip(".") in _GENERIC_REFUSALS or not text else f": {text}"


class Storage:
    """Reads asset bytes from local paths and fsspec URLs (see the module docstring).

    Args:
        base_url: where relative asset URLs are resolved (a folder path or URL).
        storage_options: fsspec options per protocol, e.g.
            ``{"s3": {"key": ..., "secret": ..., "client_kwargs": {"endpoint_url": ...}}}``.
        url_map: prefix -> replacement mapping (longest prefix wins) or a callable,
            applied to every (resolved) asset URL before reading; a local path either
            gives loses the URL's query string. Errors say what it did (see
            :meth:`mirror_note`).
        cache_dir: keep downloaded assets here; ``None`` disables the cache.
        cache_key: ``"path"`` (URL without query string, the default) or ``"url"``.
        timeout: seconds per HTTP request.
        retry: the :class:`RetryPolicy`.
        label_cache: the folder where datasets keep each bitmap's decoded label (see
            :mod:`~segments_torch.label_cache`); ``None``: none. Storage itself never
            reads it: it travels here with the other settings of where bytes live.

    One Storage describes where a dataset's bytes come from and where they are kept;
    :class:`~segments_torch.dataset.SegmentsDataset`,
    :class:`~segments_torch.lightning.SegmentsDataModule` and
    :func:`~segments_torch.release.load_release` take it as ``storage=``.

    Example:
        >>> storage = Storage(
        ...     storage_options={"s3": {"profile": "training"}},
        ...     url_map={"https://bucket.s3.amazonaws.com/": "/data/mirror/"},
        ...     cache_dir="/scratch/segments-cache",
        ...     label_cache="/scratch/segments-labels",
        ... )
        >>> ds = SegmentsDataset("s3://bucket/flowers-v1.0.json", storage=storage)  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str | None = None,
        storage_options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        url_map: UrlMap | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_key: str = "path",
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        label_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        if cache_key not in ("path", "url"):
            raise OptionError(f"cache_key must be 'path' or 'url', not {cache_key!r}")
        self.base_url = base_url
        self.storage_options = {k: dict(v) for k, v in (storage_options or {}).items()}
        self.url_map: UrlMap | None = url_map
        # A mapping's prefixes, longest first (the longest matching one wins), and as
        # given, as errors list them (see mirror_note).
        self._prefixes: tuple[str, ...] = ()
        self._shown_prefixes = ""
        if isinstance(url_map, Mapping):
            _check_separators(url_map)
            self.url_map = dict(url_map)
            self._prefixes = tuple(sorted(url_map, key=len, reverse=True))
            self._shown_prefixes = ", ".join(display_url(prefix) for prefix in url_map)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache_key = cache_key
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.label_cache = Path(label_cache) if label_cache is not None else None
        self._pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool)
        self._outages = _Outages()

    def replace(self, **changes: Any) -> Storage:
        """A new Storage with this one's settings but ``changes`` (keywords of the
        constructor, e.g. ``cache_dir=``). It shares nothing with this one: no download
        threads, no record of hosts that are down.

        Raises:
            OptionError: a keyword the constructor does not take.

        Example:
            >>> Storage(cache_dir="/scratch/cache").replace(base_url="/data/r").cache_dir
            PosixPath('/scratch/cache')
        """
        settings: dict[str, Any] = {
            "base_url": self.base_url,
            "storage_options": self.storage_options,
            "url_map": self.url_map,
            "cache_dir": self.cache_dir,
            "cache_key": self.cache_key,
            "timeout": self.timeout,
            "retry": self.retry,
            "label_cache": self.label_cache,
        }
        unknown = sorted(set(changes) - set(settings))
        if unknown:
            raise OptionError(
                f"Storage.replace() takes {', '.join(settings)}, not {', '.join(unknown)}"
            )
        return Storage(**{**settings, **changes})

    def with_default_base_url(self, folder: str | None) -> Storage:
        """This storage, where it has a ``base_url`` (or ``folder`` is ``None``); else a
        copy whose ``base_url`` is ``folder``: how a dataset resolves relative asset URLs
        against its release file's folder unless told otherwise.

        Example:
            >>> Storage().with_default_base_url("/data/r").base_url
            '/data/r'
        """
        if self.base_url is not None or folder is None:
            return self
        return self.replace(base_url=folder)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = None  # threads belong to the process that started them
        del state["_outages"]  # so do outages: another process starts with none
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._outages = _Outages()

    def reset_outages(self) -> None:
        """Forget which hosts are down in this process (see :class:`RetryPolicy`): their
        next reads try again.

        Example:
            >>> ds.storage.reset_outages()  # doctest: +SKIP
        """
        self._outages = _Outages()

    def _outages_here(self) -> _Outages:
        # A forked child inherits the parent's, its lock perhaps held: it starts anew.
        if self._outages.pid != os.getpid():
            self._outages = _Outages()
        return self._outages

    # -- where ---------------------------------------------------------------------------

    def resolve(self, url: str) -> str:
        """The location read for ``url``: relative paths joined to ``base_url``, then the
        ``url_map`` applied.

        Raises:
            StorageError: ``url`` cannot be parsed (an unclosed ``[`` of an IPv6 host).
        """
        try:
            return self._resolve(url)
        except ValueError as exc:
            raise StorageError(redact(url), f"not a valid URL: {exc}") from None

    def _joined(self, url: str) -> str:
        """``url`` joined to ``base_url`` when it is relative: what ``url_map`` is given."""
        if not (urlsplit(url).scheme or os.path.isabs(url)) and self.base_url is not None:
            if urlsplit(self.base_url).scheme:
                return self.base_url.rstrip("/") + "/" + url
            return os.path.join(self.base_url, url)
        return url

    def _resolve(self, url: str) -> str:
        url = self._joined(url)
        if self.url_map is None:
            return url
        if isinstance(self.url_map, Mapping):
            prefix = next((p for p in self._prefixes if url.startswith(p)), None)
            if prefix is None:
                return url
            mapped = self.url_map[prefix] + url[len(prefix) :]
        else:
            mapped = self.url_map(url)
        # A signed URL's query string is no part of a mirrored file's name.
        return mapped.partition("?")[0] if is_local(mapped) else mapped

    def mirror_note(self, url: str) -> str:
        """What ``url_map`` did with ``url``, as error messages add it: the URL a mirror
        stood in for, or, where a mapping of prefixes covers none of it, the prefixes as
        given; ``""`` without ``url_map`` (or where a callable left the URL as it was). Neither
        shows a query string or a ``user:password@``.

        Example:
            >>> storage = Storage(url_map={"https://cdn.example/": "/mirror/"})
            >>> storage.mirror_note("https://cdn.example/a.jpg?sig=1")
            'mapped by url_map from https://cdn.example/a.jpg'
            >>> storage.mirror_note("https://other.example/a.jpg")
            'no url_map prefix matches this URL: https://cdn.example/'
        """
        if self.url_map is None:
            return ""
        try:
            joined = self._joined(url)
            location = self._resolve(url)
        except ValueError:  # not a URL at all: the error says so
            return ""
        if isinstance(self.url_map, Mapping) and not any(map(joined.startswith, self.url_map)):
            return f"no url_map prefix matches this URL: {self._shown_prefixes}"
        return f"mapped by url_map from {display_url(joined)}" if location != joined else ""

    def identity(self, url: str) -> tuple[str, str]:
        """What names ``url``'s content, for caches of what is decoded from it: its
        location without query string or ``user:password@`` (as the asset cache keys
        files), and what changes with the content where that costs no request: a local
        file's size and modification time in nanoseconds, ``""`` for a remote URL.

        Raises:
            StorageError: a local file that cannot be found or read.

        Example:
            >>> Storage().identity("/data/bitmaps/a.png")  # doctest: +SKIP
            ('/data/bitmaps/a.png', '15321:1700000000123456789')
        """
        location = self.resolve(url)
        if not is_local(location):
            return display_url(location), ""
        path = self._local_file(url, location)
        try:
            status = os.stat(path)
        except (OSError, ValueError) as exc:
            raise _local_error(path, exc, self.mirror_note(url)) from exc
        return path, f"{status.st_size}:{status.st_mtime_ns}"

    def cache_path(self, url: str) -> Path | None:
        """Where ``url``'s bytes are cached (``None``: no cache, or a local file)."""
        location = self.resolve(url)
        if self.cache_dir is None or is_local(location):
            return None
        # "path": the URL as display_url shows it, so neither the query string nor a
        # user:password@ is part of the key.
        key = display_url(location) if self.cache_key == "path" else location
        # surrogatepass: a lone surrogate (JSON allows "\ud800") still makes a key; other
        # strings encode as plain UTF-8, as they always did.
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        suffix = posixpath.splitext(urlsplit(location).path)[1][:16]
        if not _SAFE_SUFFIX.fullmatch(suffix):  # a NUL would make the path unusable
            suffix = ""
        return self.cache_dir / digest[:2] / f"{digest}{suffix}"

    def check_cache_dir(self) -> None:
        """Make ``cache_dir`` if it is missing and check that files can be created in it,
        so a long job fails at once rather than file by file (:func:`prefetch` does it
        first). Nothing to do without a ``cache_dir``.

        Raises:
            StorageError: it is a file, or cannot be made or written; the message names it.

        Example:
            >>> Storage(cache_dir="/scratch/segments-cache").check_cache_dir()  # doctest: +SKIP
        """
        if self.cache_dir is not None:
            check_folder(self.cache_dir, "cache folder")

    def known_size(self, url: str) -> int | None:
        """The size in bytes of ``url``'s content where it costs no request: a local
        file's, or the cached copy's of a remote asset; ``None`` otherwise (a remote
        asset not in the cache, a file that cannot be looked at, a URL that cannot be
        read at all).

        Example:
            >>> Storage().known_size("/data/bitmaps/a.png")  # doctest: +SKIP
            15321
        """
        try:
            location = self.resolve(url)
            local = is_local(location)
            path = Path(self._local_file(url, location)) if local else self.cache_path(url)
            return path.stat().st_size if path is not None else None
        except (OSError, ValueError):  # missing, no permission, a NUL in the name
            return None

    # -- reading -------------------------------------------------------------------------

    def read(self, url: str, check: Callable[[bytes], object] | None = None) -> bytes:
        """All bytes of ``url``: from the cache when there, else fetched (with retries)
        and cached.

        Args:
            url: the asset's URL (relative ones resolve against ``base_url``).
            check: called with fetched bytes before they are cached; whatever it raises
                propagates and nothing is cached, so a server's error page sent with
                status 200, or a body cut short without a ``Content-Length``, never
                becomes a cache entry (e.g. :func:`~segments_torch.codecs.check_complete`).
                Without it, the bytes are cached as they came. Bytes read from the cache
                are checked too: a cache entry that fails with a
                :class:`~segments_torch.errors.DecodeError` is dropped and the source read.

        Raises:
            StorageError: the asset could not be read; ``str()`` is the reason, without
                any query string.

        Example:
            >>> data = storage.read(url, check=check_complete)  # doctest: +SKIP
        """
        data, _ = self._load(url, check or _unchecked)
        return data

    def _load(
        self, url: str, decode: Callable[[bytes], _T], *, must_cache: bool = False
    ) -> tuple[bytes, _T]:
        """``url``'s bytes and what ``decode`` makes of them. Fetched bytes are cached
        only once ``decode`` returned: what fails it is no cache entry. A failed cache
        write is warned of and the bytes served uncached, or with ``must_cache`` (the
        point of prefetch), a :class:`StorageError`."""
        cached = self.cache_path(url)
        if cached is not None:
            data = _read_cache_entry(cached)
            if data is not None:
                try:
                    return data, decode(data)
                except DecodeError as exc:  # damaged on disk, or cached by an older version
                    logger.warning("dropping the cache file %s, which fails: %s", cached, exc)
                    with contextlib.suppress(OSError):
                        cached.unlink()
        data = self.fetch(url)
        value = decode(data)
        if cached is not None:
            try:
                write_atomically(cached, data)
            except OSError as exc:  # a full or read-only disk: serve the bytes uncached
                if must_cache:
                    location = display_url(self.resolve(url))
                    why = f"cannot write the cache file {cached}: {exc.strerror or exc}"
                    raise StorageError(location, why) from exc
                warn_once(logger, "write", "cannot write the cache file %s: %s", cached, exc)
        return data, value

    def read_each(
        self, urls: Sequence[str], decoders: Sequence[Callable[[bytes], Any]] | None = None
    ) -> Iterator[Any]:
        """The bytes of each of ``urls``, in order, as :meth:`read` gives them, or with
        ``decoders`` (one callable per URL) what each decoder makes of its asset's bytes.

        A decoder is its asset's check (see :meth:`read`): downloaded bytes are cached
        only once their decoder succeeded.

        Remote assets download together: every one but the first is read, and decoded,
        by a thread of this process while the caller reads and decodes the first, so a
        sample's bitmap downloads and decodes while its image does. The threads decode
        once the caller's first asset has arrived: a decoder that holds the GIL (pyspng)
        would otherwise hold up the caller's download. Local files and cached assets are
        read in the caller's thread when their turn comes. Errors come in the order of
        ``urls``: the first asset's, then the second's.

        Example:
            >>> image_bytes, bitmap_bytes = storage.read_each([image_url, bitmap_url])
            >>> urls, decoders = [image_url, bitmap_url], [decode_image, decode_bitmap]
            >>> image, ids = storage.read_each(urls, decoders)
        """

        def decode(index: int, data: bytes) -> Any:
            return decoders[index](data) if decoders is not None else data

        remote = [i for i, url in enumerate(urls) if self._downloads(url)]
        arrived = threading.Event()  # the caller's first asset is in hand

        def load_in_thread(index: int) -> Any:
            def decode_after_arrival(data: bytes) -> Any:
                arrived.wait()
                return decode(index, data)

            return self._load(urls[index], decode_after_arrival)[1]

        started: dict[int, Future[Any]] = {}
        if len(remote) > 1:
            threads = self._thread_pool()
            started = {i: threads.submit(load_in_thread, i) for i in remote[1:]}
        for i, url in enumerate(urls):
            if i in started:
                yield started[i].result()
                continue

            def decode_here(data: bytes, index: int = i) -> Any:
                arrived.set()
                return decode(index, data)

            try:  # asset 0 is always the caller's: its read, or its error, frees the threads
                value = self._load(url, decode_here)[1]
            finally:
                arrived.set()
            yield value

    def _downloads(self, url: str) -> bool:
        """Whether reading ``url`` now means a download (not a local file, not cached)."""
        if is_local(self.resolve(url)):
            return False
        cached = self.cache_path(url)
        return cached is None or not cached.is_file()

    def _thread_pool(self) -> ThreadPoolExecutor:
        # A forked child inherits the pool object but not its threads: make a new one.
        if self._pool is None or self._pool[0] != os.getpid():
            pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="segments-torch-read")
            self._pool = (os.getpid(), pool)
        return self._pool[1]

    def fetch(self, url: str) -> bytes:
        """Read ``url`` from its source (never the cache), retrying transient failures.

        Raises:
            StorageError: it could not be read (see :class:`RetryPolicy`).
            SourceUnavailableError: its host is down (a :class:`StorageError` too).
        """
        location = self.resolve(url)
        if is_local(location):
            return self._read_local(url, location)
        shown, source = display_url(location), origin(location)
        http = urlsplit(location).scheme in ("http", "https")
        attempt = 0
        with self._outages_here().read(source, shown, self.retry.outage_after) as host:
            while True:
                attempt += 1
                try:
                    data = self._read_remote(location)
                except Exception as exc:  # classified below: never swallowed
                    reason, status, retryable = _classify(exc, http=http)
                    unreachable = status is None and _unreachable(exc)
                    if not unreachable:
                        host.answered()  # a status, a cut body: the host is up
                    step = "stop"
                    if retryable and attempt < self.retry.attempts:
                        step = host.next_step() if unreachable else "back off"
                    if step == "stop":
                        failures = host.failed(reason) if unreachable else 0
                        if unreachable and failures >= self.retry.outage_after:
                            raise SourceUnavailableError(
                                source, failures, reason, url=shown
                            ) from None
                        raise StorageError(
                            shown,
                            reason,
                            status=status,
                            attempts=attempt,
                            retryable=retryable,
                            note=self.mirror_note(url),
                        ) from None  # fsspec's and aiohttp's errors show the signed URL
                    if step == "back off":
                        delay = self.retry.delay(attempt)
                        logger.debug("%s: %s; retry %d in %.2f s", shown, reason, attempt, delay)
                        time.sleep(delay)
                else:
                    host.answered()
                    return data

    def _read_local(self, url: str, location: str) -> bytes:
        path = self._local_file(url, location)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (OSError, ValueError) as exc:
            raise _local_error(path, exc, self.mirror_note(url)) from exc

    @staticmethod
    def _local_file(url: str, location: str) -> str:
        """The file a local ``location`` names; StorageError for a relative one."""
        path = local_path(location)
        if not os.path.isabs(path):
            url = url.partition("?")[0]  # a query string may hold a signature
            raise StorageError(
                url,
                f"relative URL {url!r} and no folder to resolve it against (the release was "
                "not read from a file): pass asset_root=",
                status=None,
                attempts=1,
                retryable=False,
            )
        return path

    def _options(self, protocol: str) -> dict[str, Any]:
        """fsspec options for ``protocol``, with the request timeout for HTTP."""
        options = dict(self.storage_options.get(protocol, {}))
        if protocol in ("http", "https"):
            import aiohttp

            client_kwargs = dict(options.get("client_kwargs", {}))
            client_kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=self.timeout))
            options["client_kwargs"] = client_kwargs
        elif protocol in ("s3", "s3a"):
            # With max_concurrency > 1 (its default, 10), s3fs's cat_file sends a HEAD for
            # the size before the GET, to split files over its block size (50 MiB) into
            # parallel ranges: for images and bitmaps that doubles the requests, and a
            # refused HEAD has no body, so S3's reason for a 403 is lost.
            options.setdefault("max_concurrency", 1)
            # One retry policy, ours: botocore's own attempts would multiply with it (five
            # inside each of five), and its 60 s timeouts would ignore `timeout`.
            config = dict(options.get("config_kwargs", {}))
            config.setdefault("retries", {"max_attempts": 1})
            config.setdefault("connect_timeout", self.timeout)
            config.setdefault("read_timeout", self.timeout)
            options["config_kwargs"] = config
        elif protocol in ("az", "abfs", "abfss"):
            options.setdefault("connection_timeout", self.timeout)
            options.setdefault("read_timeout", self.timeout)
        return options

    def _read_remote(self, location: str) -> bytes:
        import fsspec

        # fsspec keeps one filesystem per process and options, so a forked worker makes
        # its own session. One GET: fsspec.open(...).read() would first ask for the size.
        fs, path = fsspec.core.url_to_fs(location, **self._options(urlsplit(location).scheme))
        data: bytes = fs.cat_file(path)
        return data

    def __repr__(self) -> str:
        # base_url keeps a user:password@ (relative URLs need it to be read); a repr
        # ends up in logs.
        base_url = display_url(self.base_url) if self.base_url is not None else None
        url_map = self.url_map
        if isinstance(url_map, Mapping):
            url_map = {display_url(k): display_url(v) for k, v in url_map.items()}
        return (
            f"Storage(base_url={base_url!r}, cache_dir={self.cache_dir!r}, url_map={url_map!r}, "
            f"label_cache={self.label_cache!r})"
        )


class StorageSettings(TypedDict, total=False):
    """The keywords that stand for ``storage=Storage(...)`` where a
    :class:`~segments_torch.dataset.SegmentsDataset`,
    :class:`~segments_torch.lightning.SegmentsDataModule` or
    :func:`~segments_torch.release.load_release` is made: each is the :class:`Storage`
    argument of the same name, but ``asset_root``, which is its ``base_url``. They are
    shorthand: ``SegmentsDataset(r, cache_dir=c)`` is ``SegmentsDataset(r,
    storage=Storage(cache_dir=c))``, and giving both forms at once is an error.
    """

    asset_root: str | None
    # Per protocol; load_release also takes the options of the source's protocol alone.
    storage_options: Mapping[str, Any] | None
    url_map: UrlMap | None
    cache_dir: str | os.PathLike[str] | None
    cache_key: str
    timeout: float
    retry: RetryPolicy | None
    label_cache: str | os.PathLike[str] | None


#: The names of the :class:`StorageSettings` keywords.
STORAGE_SETTINGS: tuple[str, ...] = tuple(StorageSettings.__annotations__)
#: The :class:`Storage` arguments of the keywords whose names differ.
_STORAGE_NAMES = {"asset_root": "base_url"}


def make_storage(
    storage: Storage | None,
    settings: Mapping[str, Any],
    caller: str,
    *,
    base: Storage | None = None,
) -> Storage:
    """The Storage that ``storage=`` or the :class:`StorageSettings` keywords describe:
    ``storage`` itself, or ``base`` (default: ``Storage()``) with the keywords changed.

    Args:
        storage: what the caller was given as ``storage=``, if anything.
        settings: the storage keywords the caller was given (and only those).
        caller: names the caller in errors (``"SegmentsDataset"``).
        base: the storage the keywords change, e.g. a dataset's for ``with_options``.

    Raises:
        OptionError: ``storage`` and keywords both given (the message names them), a
            keyword that is none of :data:`STORAGE_SETTINGS`, or a ``storage`` that is
            no :class:`Storage`.

    Example:
        >>> make_storage(None, {"cache_dir": "/c"}, "SegmentsDataset").cache_dir
        PosixPath('/c')
    """
    unknown = [name for name in settings if name not in STORAGE_SETTINGS]
    if unknown:
        raise OptionError(
            f"{caller} got unexpected keyword arguments {', '.join(map(repr, unknown))} "
            f"(its storage keywords are {', '.join(STORAGE_SETTINGS)})"
        )
    if storage is not None:
        if not isinstance(storage, Storage):
            raise OptionError(f"{caller}: storage= takes a Storage, not {type(storage).__name__}")
        if settings:
            given = ", ".join(f"{name}=" for name in settings)
            wanted = ", ".join(f"{_STORAGE_NAMES.get(name, name)}=..." for name in settings)
            raise OptionError(
                f"{caller}: storage= and {given} given together; set them on the Storage: "
                f"Storage({wanted})"
            )
        return storage
    changes = {_STORAGE_NAMES.get(name, name): value for name, value in settings.items()}
    if base is None:
        return Storage(**changes)
    return base.replace(**changes) if changes else base


#: Around a fork: the parent's HTTP filesystems, which the child keeps and never closes.
_INHERITED_FILESYSTEMS: list[Any] = []


def _hold_http_filesystems() -> None:
    """Before a fork, in the parent: reference the HTTP filesystems the child inherits.

    Their aiohttp sessions hold the parent's keep-alive sockets, registered in the parent's
    event loop's epoll instance, which a forked child shares. fsspec clears its instance
    cache in the child (its own after-fork hook); were the instances then collected, their
    finalizers would close the connections, and closing unregisters each socket from that
    shared epoll: the parent's loop would never hear its next response on them and the read
    would stall until its timeout (seen after DataLoader epochs with forked workers,
    benchmarks/bench_storage.py). The reference taken here outlives that clearing.
    """
    http = sys.modules.get("fsspec.implementations.http")
    _INHERITED_FILESYSTEMS[:] = cached_instances(http.HTTPFileSystem) if http else []


def _keep_inherited_http_filesystems() -> None:
    """After a fork, in the child: keep the inherited filesystems and never finalize them
    (the child's own reads make new sessions)."""
    for finalizer in finalizers_of(_INHERITED_FILESYSTEMS):
        finalizer.detach()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_hold_http_filesystems,
        after_in_child=_keep_inherited_http_filesystems,
        after_in_parent=_INHERITED_FILESYSTEMS.clear,
    )


def _read_cache_entry(path: Path) -> bytes | None:
    """The bytes of a cache entry; ``None`` where there is none, or where it cannot be
    read (a folder in its place, no permission): the source serves then, and the entry
    is replaced where it can be."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        warn_once(
            logger, "read", "cannot read the cache file %s, reading the source: %s", path, exc
        )
        return None


@dataclass
class PrefetchReport:
    """What :func:`prefetch` did: counts, bytes, and each failure's reason."""

    downloaded: int = 0
    already_cached: int = 0
    local: int = 0  # local files (a local mirror included): read where they are, not cached
    bytes_downloaded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # URL (no query) -> reason
    stale_removed: int = 0  # temporary files of killed writers, removed first


def prefetch(
    storage: Storage,
    urls: Iterable[str],
    *,
    workers: int = 8,
    progress: Callable[[int], None] | None = None,
    check: Callable[[bytes], object] | None = None,
) -> PrefetchReport:
    """Download every URL into ``storage``'s cache, ``workers`` at a time.

    URLs already cached are not fetched again, so an interrupted prefetch resumes where
    it stopped. Local files (a ``url_map`` to a local mirror included) are read where they
    are, never copied into the cache: they are counted in ``report.local``.
    ``progress(n)`` is called as each URL is done. Downloaded bytes are cached only once
    ``check`` passed them (default
    :func:`~segments_torch.codecs.check_complete`: a whole image, not an error page or a
    cut-short body); a URL whose bytes fail it, or whose cache file cannot be written,
    is reported failed, with the reason.

    Raises:
        StorageError: the cache folder is a file, or cannot be made or written (checked
            before any download).
        SourceUnavailableError: a host is down (see :class:`RetryPolicy`): prefetch
            stops, leaving the URLs not yet started.

    Example:
        >>> report = prefetch(Storage(cache_dir="/data/cache"), urls, workers=16)  # doctest: +SKIP
    """
    if storage.cache_dir is None:
        raise ValueError("prefetch needs a Storage with a cache_dir")
    if check is None:
        from .codecs import check_complete  # deferred: it imports torch, `info` does not

        check = check_complete
    storage.check_cache_dir()  # one clear error, not one per URL
    report = PrefetchReport(stale_removed=remove_stale_partials(storage.cache_dir))
    pending = []
    for url in dict.fromkeys(urls):  # each URL once, in order
        try:
            cached = storage.cache_path(url)
        except StorageError as exc:  # not a URL at all
            report.failed[exc.url] = str(exc)
            if progress is not None:
                progress(1)
            continue
        if cached is None or cached.is_file():  # None: a local file (the cache_dir is set)
            if cached is None:
                report.local += 1
            else:
                report.already_cached += 1
            if progress is not None:
                progress(1)
        else:
            pending.append(url)

    def download(url: str) -> int | str:
        """How many bytes were downloaded and cached, or why none were."""
        try:
            return len(storage._load(url, check, must_cache=True)[0])
        except SourceUnavailableError:
            raise  # no failure of one URL: it ends the prefetch
        except (StorageError, DecodeError) as exc:
            return str(exc)

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for url, outcome in zip(pending, pool.map(download, pending), strict=True):
            if isinstance(outcome, str):
                report.failed[display_url(storage.resolve(url))] = outcome
            else:
                report.downloaded += 1
                report.bytes_downloaded += outcome
            if progress is not None:
                progress(1)
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, the URLs not started never are
    return report
