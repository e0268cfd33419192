"""The private internals that segments_torch._compat leans on still behave as it expects.

Each test names the internal it checks; one that fails after an upgrade of torch, fsspec
or Python says which function of ``_compat.py`` to revisit.
"""

from __future__ import annotations

import gc
import multiprocessing
import weakref
from multiprocessing.reduction import ForkingPickler
from typing import Any

import fsspec
import pytest
import torch
import torch.multiprocessing  # registers the reductions workers send tensors by

from segments_torch._compat import allocate, cached_instances, finalizers_of, fsspec_registry
from tests.http_server import FileServer


class _Owner:
    """Something a finalizer can be registered for."""


def in_shared_memory(tensor: torch.Tensor) -> bool:
    return bool(tensor.is_shared())  # type: ignore[no-untyped-call]


# -- torch.UntypedStorage._new_shared ------------------------------------------------------


def test_torch_still_has_new_shared():
    assert callable(torch.UntypedStorage._new_shared)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_a_shared_allocation_is_in_shared_memory_with_its_shape_and_type(dtype):
    tensor = allocate((3, 4, 5), dtype, shared=True)
    assert in_shared_memory(tensor)
    assert (tensor.shape, tensor.dtype, tensor.is_contiguous()) == ((3, 4, 5), dtype, True)
    assert tensor.untyped_storage().nbytes() == 60 * dtype.itemsize
    tensor.fill_(7)  # writable, every element
    assert int(tensor.sum()) == 7 * 60


def test_an_empty_shared_allocation_has_its_shape():
    assert allocate((0, 5, 5), torch.uint8, shared=True).shape == (0, 5, 5)


def test_a_private_allocation_is_not_shared():
    plain = allocate([2, 3], torch.uint8, "cpu")
    assert not in_shared_memory(plain)
    assert (tuple(plain.shape), plain.dtype) == ((2, 3), torch.uint8)
    assert not in_shared_memory(allocate((2, 2), torch.uint8, shared=False))


def test_a_worker_sends_a_shared_tensor_without_moving_it():
    # How a DataLoader worker sends a tensor: a private one is first moved (copied) into
    # shared memory, one made there by allocate() goes as it is.
    made_shared = allocate((256, 256), torch.uint8, shared=True)
    private = torch.zeros((256, 256), dtype=torch.uint8)
    before = made_shared.data_ptr(), private.data_ptr()
    for tensor in (made_shared, private):
        ForkingPickler.dumps(tensor)
    assert made_shared.data_ptr() == before[0]
    assert private.data_ptr() != before[1]  # the copy allocate() saves
    assert in_shared_memory(private)


# -- fsspec's instance cache and its after-fork clearing ---------------------------------


def test_cached_instances_lists_fsspec_instances_until_the_cache_is_cleared():
    http = pytest.importorskip("fsspec.implementations.http")
    fs = fsspec.filesystem("http", skip_instance_cache=False)
    assert any(instance is fs for instance in cached_instances(http.HTTPFileSystem))
    http.HTTPFileSystem.clear_instance_cache()
    assert cached_instances(http.HTTPFileSystem) == []


def _count_in_child(connection: Any) -> None:
    from fsspec.implementations.http import HTTPFileSystem

    connection.send(len(cached_instances(HTTPFileSystem)))


def test_fsspec_empties_its_instance_cache_in_a_forked_child():
    # storage.py's fork hooks exist because of this: the parent's filesystems would be
    # collected in the child, and their finalizers close the parent's connections.
    http = pytest.importorskip("fsspec.implementations.http")
    fsspec.filesystem("http")
    assert len(cached_instances(http.HTTPFileSystem)) >= 1
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_count_in_child, args=(child,))
    process.start()
    try:
        assert parent.recv() == 0
    finally:
        process.join(timeout=30)
    assert process.exitcode == 0


# -- weakref.finalize._registry ------------------------------------------------------------


def test_finalizers_of_finds_exactly_the_finalizers_of_the_objects():
    first, second, other = _Owner(), _Owner(), _Owner()
    calls: list[str] = []
    one = weakref.finalize(first, calls.append, "first")
    two = weakref.finalize(second, calls.append, "second")
    weakref.finalize(other, calls.append, "other")
    found = finalizers_of([first, second])
    assert set(found) == {one, two}
    for finalizer in found:
        finalizer.detach()
    del first, second
    gc.collect()
    assert calls == []  # detached: they never run
    del other
    gc.collect()
    assert calls == ["other"]


def test_the_http_filesystem_closes_its_session_by_a_weakref_finalizer(tmp_path):
    http = pytest.importorskip("fsspec.implementations.http")
    (tmp_path / "a.txt").write_text("hello")
    with FileServer(tmp_path) as server:
        fs = fsspec.filesystem("http", skip_instance_cache=True)
        assert fs.cat_file(server.url_for("a.txt")) == b"hello"
        session = fs._session
        (finalizer,) = finalizers_of([fs])
        assert not session.closed
        finalizer()
        assert session.closed
    assert isinstance(fs, http.HTTPFileSystem)


# -- fsspec.registry._registry -------------------------------------------------------------


def test_fsspec_registry_is_the_table_protocols_are_looked_up_in(monkeypatch):
    from fsspec.implementations.memory import MemoryFileSystem

    class Other(MemoryFileSystem):  # type: ignore[misc]
        protocol = ("compat-test",)

    monkeypatch.setitem(fsspec_registry(), "compat-test", Other)
    assert fsspec.get_filesystem_class("compat-test") is Other
    monkeypatch.undo()
    assert "compat-test" not in fsspec_registry()
