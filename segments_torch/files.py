"""Files that many processes write at once: atomic writes, folder checks, one warning.

The asset cache (:mod:`~segments_torch.storage`) and the label cache
(:mod:`~segments_torch.label_cache`) are folders that DataLoader workers, DataLoaders and
DDP ranks of one machine write together. Each file is written under a temporary name
(``.partial-<random>``) in its final folder and renamed into place, so a reader sees the
old state or the whole file, and a process killed mid-write leaves a temporary file that
no reader takes for an entry (:func:`remove_stale_partials` clears them). New files get
mode 0666 less the umask, so the users of one machine can share a cache.

Example:
    >>> write_atomically(Path("/scratch/cache/ab/abcd.png"), data)  # doctest: +SKIP
    >>> check_folder(Path("/scratch/labels"), "label cache folder")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from pathlib import Path

from .errors import StorageError

__all__ = ["check_folder", "remove_stale_partials", "warn_once", "write_atomically"]

#: The name prefix of a file being written: never read, renamed once whole.
_PARTIAL = ".partial-"

#: (process id, kind) of the troubles this process has warned of.
_WARNED: set[tuple[int, str]] = set()


def warn_once(log: logging.Logger, kind: str, message: str, *args: object) -> None:
    """Log a trouble to ``log`` the first time this process meets its ``kind``: a cache
    that fails for one file usually fails for every file, and a warning per file would
    bury the log.

    Example:
        >>> warn_once(logger, "write", "cannot write %s: %s", path, exc)  # doctest: +SKIP
    """
    if (os.getpid(), kind) not in _WARNED:
        _WARNED.add((os.getpid(), kind))
        log.warning(message + " (warned once per process)", *args)


def _create_temporary(folder: Path) -> tuple[int, Path]:
    """A new file ``.partial-*`` in ``folder``, open for writing: its descriptor and path.
    Its mode is 0666 less the umask, as for any new file (mkstemp's 0600 would lock the
    other users of a shared cache out)."""
    # O_BINARY: Windows would otherwise write "\n" as "\r\n".
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = folder / f"{_PARTIAL}{secrets.token_hex(8)}"
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def check_folder(folder: Path, what: str) -> None:
    """Make ``folder`` if it is missing and check that files can be created in it (by
    creating and removing one), so a long job that writes there fails at once rather
    than file by file.

    Raises:
        StorageError: it is a file, or cannot be made or written; the message starts
            with ``what`` and the folder (``"cache folder /x: not a folder"``).

    Example:
        >>> check_folder(Path("/scratch/labels"), "label cache folder")  # doctest: +SKIP
    """
    if folder.exists() and not folder.is_dir():
        raise StorageError(str(folder), f"{what} {folder}: not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = _create_temporary(folder)
    except OSError as exc:
        action = "write in it" if folder.is_dir() else "create it"
        raise StorageError(
            str(folder), f"{what} {folder}: cannot {action} ({exc.strerror or exc})"
        ) from exc
    os.close(descriptor)
    probe.unlink()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` by a temporary file in its folder and a rename: readers see the old
    state or the whole file, never part of it. Its mode is 0666 less the umask.

    Example:
        >>> write_atomically(Path("/scratch/cache/ab/abcd.png"), data)  # doctest: +SKIP
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = _create_temporary(path.parent)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def remove_stale_partials(cache_dir: Path, older_than: float = 3600.0) -> int:
    """Remove the temporary files that writers killed mid-write left in the sub-folders
    of ``cache_dir`` (never read: only whole files get the final name), if older than
    ``older_than`` seconds, so a writer still at work keeps its own. Returns how many
    were removed.

    Example:
        >>> remove_stale_partials(Path("/scratch/cache"))  # doctest: +SKIP
        2
    """
    removed = 0
    now = time.time()
    for partial in cache_dir.glob(f"*/{_PARTIAL}*"):
        with contextlib.suppress(FileNotFoundError):  # another process removed it first
            if now - partial.stat().st_mtime > older_than:
                partial.unlink()
                removed += 1
    return removed
