"""The exception hierarchy: everything the library raises on purpose derives from
:class:`SegmentsTorchError`, so ``except SegmentsTorchError`` catches bad input
without hiding programming errors."""

from __future__ import annotations

import functools
from typing import Any

__all__ = [
    "AssetError",
    "CategorySelectionError",
    "DecodeError",
    "ExportError",
    "MissingExtraError",
    "OptionError",
    "OutputError",
    "ReleaseFormatError",
    "ReleaseReadError",
    "SegmentsTorchError",
    "SelectionError",
    "SourceUnavailableError",
    "SplitError",
    "StorageError",
    "UnknownLabelsetError",
    "UnsupportedTaskError",
]


class SegmentsTorchError(Exception):
    """Base class of every error raised by segments_torch."""


class ReleaseReadError(SegmentsTorchError, OSError):
    """A release file could not be read (missing, unreachable, not decompressible)."""


class ReleaseFormatError(SegmentsTorchError, ValueError):
    """A release file is not a valid Segments.ai release.

    The message names the file and the JSON path of the offending field, what was
    expected and what was found, e.g.::

        flowers.json: dataset.samples[17].labels.ground-truth.attributes.annotations[2]
        .category_id: expected an integer, found "3"

    Attributes:
        source: the release file as given (URL without its query string).
        path: the JSON path of the field, ``""`` for the document itself.
    """

    def __init__(self, source: str, path: str, detail: str) -> None:
        self.source = source
        self.path = path
        self.detail = detail
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {detail}")

    def __reduce__(self) -> tuple[type[ReleaseFormatError], tuple[str, str, str]]:
        # Keeps the three parts when the error crosses a process boundary.
        return (type(self), (self.source, self.path, self.detail))


class UnknownLabelsetError(ReleaseFormatError):
    """A labelset (or, in older layouts, a task) was asked for that the release lacks."""


class OptionError(SegmentsTorchError, ValueError):
    """An argument the library cannot take: an unknown keyword, a value outside what it
    accepts, or two arguments at odds (``storage=`` with ``cache_dir=``). The message
    names the argument and what it may be."""


class UnsupportedTaskError(SegmentsTorchError, ValueError):
    """The release's task type is one this dataset does not serve (yet)."""


class SelectionError(SegmentsTorchError, ValueError):
    """A filter names something that does not exist (a status, a metadata value type), or
    selects no sample where one is needed."""


class CategorySelectionError(SegmentsTorchError, ValueError):
    """``categories=`` names a category the release lacks, or labels clash."""


class SplitError(SegmentsTorchError, ValueError):
    """A split rule is malformed, or names samples or splits that do not exist."""


class DecodeError(SegmentsTorchError, ValueError):
    """Bytes that are not an image or bitmap this library can decode; says what they are."""


class AssetError(SegmentsTorchError):
    """An image or bitmap of one sample could not be read or used.

    The message names the sample, the URL (without its query string, which may hold
    credentials) and the reason.

    Attributes:
        sample: the sample's name.
        url: the asset URL without query string.
        reason: what went wrong.
    """

    def __init__(self, sample: str, url: str | None = None, reason: str | None = None) -> None:
        if url is None or reason is None:
            # Rebuilt from its message alone: how a DataLoader re-raises a worker's error
            # (``type(error)(message)``), so ``except AssetError`` works around a loader.
            self.sample, self.url, self.reason = "", "", sample
            super().__init__(sample)
            return
        self.sample = sample
        self.url = url
        self.reason = reason
        super().__init__(f"sample {sample!r}: {url}: {reason}")

    def __reduce__(self) -> tuple[type[AssetError], tuple[str, ...]]:
        if not self.url:
            return (type(self), (str(self),))
        return (type(self), (self.sample, self.url, self.reason))


class StorageError(SegmentsTorchError, OSError):
    """Reading an asset or a release file failed for good; says why and after how many
    attempts. ``str()`` is the reason; the URL is kept apart, for the caller to name.

    Attributes:
        url: the URL read, without its query string and user name or password (a local
            file's path).
        reason: what went wrong.
        status: the HTTP status, where there was one.
        attempts: how many requests were made.
        retryable: whether the last failure was of a kind worth retrying.
        note: what else the message says after the reason, e.g. which URL a
            ``url_map`` mirror stood in for (``""``: nothing).

    Example:
        >>> error = StorageError("https://cdn.example/a.jpg", "HTTP 503", status=503,
        ...                      attempts=5, retryable=True)
        >>> str(error)
        'HTTP 503 after 5 attempts'
    """

    def __init__(
        self,
        url: str,
        reason: str | None = None,
        *,
        status: int | None = None,
        attempts: int = 1,
        retryable: bool = False,
        note: str = "",
    ) -> None:
        if reason is None:
            # Rebuilt from its message alone, as a DataLoader re-raises a worker's error
            # (``type(error)(message)``): the message is the reason, the URL unknown.
            url, reason = "", url
        self.url = url
        self.reason = reason
        self.status = status
        self.attempts = attempts
        self.retryable = retryable
        self.note = note
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{reason}{tries}{f'; {note}' if note else ''}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps every attribute when the error crosses a process boundary (OSError's own
        # reduce would call the class with the message alone).
        rebuild = functools.partial(
            type(self),
            status=self.status,
            attempts=self.attempts,
            retryable=self.retryable,
            note=self.note,
        )
        return (rebuild, (self.url, self.reason))


class SourceUnavailableError(StorageError):
    """A source (one host: scheme and address) is evidently down: reads of it failed to
    connect (refused, unknown host, reset, timed out) ``RetryPolicy.outage_after`` times in
    a row, with no answer from it in between. Every later read of it in this process
    raises this error at once, without a request, until
    :meth:`~segments_torch.storage.Storage.reset_outages`.

    It is no failure of one sample: a dataset does not turn it into an
    :class:`AssetError`, so it ends a run under ``on_error="skip"`` too (and crosses
    DataLoader workers), rather than skipping every sample one timeout after another.

    Attributes:
        source: the host, e.g. ``"https://cdn.example"``.
        failures: how many reads failed in a row.
        last_reason: why the last of them failed.

    Example:
        >>> error = SourceUnavailableError("http://10.0.0.7:8000", 3, "timed out")
        >>> print(error)  # doctest: +NORMALIZE_WHITESPACE
        http://10.0.0.7:8000 is unavailable: 3 reads in a row failed to connect (the last:
        timed out); not read again in this process until Storage.reset_outages()
    """

    def __init__(
        self,
        source: str,
        failures: int | None = None,
        last_reason: str | None = None,
        *,
        url: str = "",
    ) -> None:
        if failures is None or last_reason is None:
            super().__init__(source)  # rebuilt from its message alone (see StorageError)
            self.source, self.failures, self.last_reason = "", 0, ""
            return
        self.source = source
        self.failures = failures
        self.last_reason = last_reason
        super().__init__(
            url or source,
            f"{source} is unavailable: {failures} reads in a row failed to connect (the last: "
            f"{last_reason}); not read again in this process until Storage.reset_outages()",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        if not self.source:
            return (type(self), (str(self),))
        rebuild = functools.partial(type(self), url=self.url)
        return (rebuild, (self.source, self.failures, self.last_reason))


class ExportError(SegmentsTorchError, ValueError):
    """An export that cannot be done as asked (unknown format, labels a PNG cannot hold)."""


class OutputError(SegmentsTorchError, OSError):
    """A file or folder the library was asked to write cannot be written: a missing or
    read-only folder, a file where a folder is wanted, a full disk. The message names the
    place and the reason."""


class MissingExtraError(SegmentsTorchError, ImportError):
    """An optional package that a feature needs is not installed; the message names the
    extra to install (``pip install 'segments-torch[coco]'``)."""
