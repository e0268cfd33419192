"""Every use of a private internal of torch, fsspec or CPython, in one place.

Each function here leans on something its library does not promise to keep. They were
checked against torch 2.14.1, fsspec 2026.9.0 and CPython 3.11.7; ``tests/test_compat.py``
fails where one of them no longer holds, which is the signal to look here first after
an upgrade.

- :func:`allocate`: ``torch.UntypedStorage._new_shared``, how torch's ``default_collate``
  makes its batches in shared memory inside a DataLoader worker.
- :func:`cached_instances`: ``AbstractFileSystem._cache``, fsspec's per-process cache of
  filesystem instances (which fsspec empties in a forked child).
- :func:`finalizers_of`: ``weakref.finalize._registry``, CPython's table of live
  finalizers, where fsspec's HTTP filesystem registers the closing of its aiohttp session.
- :func:`fsspec_registry`: ``fsspec.registry._registry``, the mutable table of the
  protocols registered at run time (tests swap an entry and restore it).

This module imports neither torch nor fsspec: ``storage.py`` needs it, and inspecting a
release (``segments-torch info``) runs without torch.

Example:
    >>> allocate((2, 3), torch.uint8, shared=True).is_shared()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import importlib
import math
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["allocate", "cached_instances", "finalizers_of", "fsspec_registry"]


def allocate(
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device | str | None = None,
    *,
    shared: bool = False,
) -> torch.Tensor:
    """An uninitialised tensor; with ``shared`` on CPU, in shared memory.

    A DataLoader worker sends every CPU tensor it returns to the main process through
    shared memory, copying it there first unless it is there already (what
    ``default_collate`` allocates in a worker is). Made there, an item's masks cross
    without that copy.

    Example:
        >>> allocate((2, 3), torch.uint8, shared=True).is_shared()  # doctest: +SKIP
        True
    """
    import torch  # deferred: see the module docstring; a dictionary lookup once imported

    if not shared or torch.device(device or "cpu").type != "cpu":
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    nbytes = math.prod(shape) * dtype.itemsize
    storage = torch.UntypedStorage._new_shared(nbytes)  # type: ignore[no-untyped-call]
    return torch.empty(0, dtype=dtype).set_(storage).view(tuple(shape))


def cached_instances(filesystem_class: type) -> list[Any]:
    """The instances of an fsspec filesystem class that fsspec keeps in this process
    (one per set of options; emptied in a forked child by fsspec's own at-fork hook).

    Example:
        >>> from fsspec.implementations.http import HTTPFileSystem  # doctest: +SKIP
        >>> cached_instances(HTTPFileSystem)  # doctest: +SKIP
        [<fsspec.implementations.http.HTTPFileSystem object at 0x7f...>]
    """
    cache: dict[Any, Any] = getattr(filesystem_class, "_cache", {})
    return list(cache.values())


def finalizers_of(objects: Iterable[object]) -> list[weakref.finalize[Any, Any]]:
    """The live ``weakref.finalize`` finalizers registered for any of ``objects`` (an
    HTTP filesystem's closes its aiohttp session), to run or detach them now.

    Example:
        >>> for finalizer in finalizers_of(filesystems):  # doctest: +SKIP
        ...     finalizer.detach()
    """
    wanted = {id(item) for item in objects}
    # Read in at-fork hooks too, where raising would help no one: tests/test_compat.py
    # is what notices a change.
    registry: dict[weakref.finalize[Any, Any], Any] = getattr(weakref.finalize, "_registry", {})
    found = []
    for finalizer in list(registry):
        target = finalizer.peek()
        if target is not None and id(target[0]) in wanted:
            found.append(finalizer)
    return found


def fsspec_registry() -> dict[str, type]:
    """fsspec's mutable table of the protocols registered at run time (its public
    ``fsspec.registry`` is a read-only view), which a test swaps an entry of.

    Example:
        >>> monkeypatch.setitem(fsspec_registry(), "gs", GCSFileSystem)  # doctest: +SKIP
    """
    table: dict[str, type] = importlib.import_module("fsspec.registry")._registry
    return table
