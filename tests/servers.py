"""Server processes for the tests: started on a free port of 127.0.0.1, stopped for certain.

The storage emulators (moto for S3, gcp-storage-emulator for GCS, Azurite for Azure) run as
child processes through :func:`serve`, which waits until the server listens and, however
the test ends, stops it in a bounded time: SIGTERM to its process group, a short grace,
then SIGKILL, then a wait for the exit. A server that is slow to exit never fails a
teardown. Before a server stops, the module's fixture closes the client sessions that
talk to it with :func:`close_filesystems` (fsspec caches filesystems, and their aiohttp
sessions, for the life of the process)::

    with serve("moto", [sys.executable, "-m", "moto.server", "-p", str(port)], port, log):
        ...  # the server listens on 127.0.0.1:port; its output goes to ``log``
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from segments_torch._compat import cached_instances, finalizers_of

__all__ = ["close_filesystems", "free_port", "serve", "stop_process"]

#: Seconds a server has to exit after SIGTERM before it is killed.
GRACE = 3.0


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now, for a server to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(
    name: str,
    argv: Sequence[str],
    port: int,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    ready_within: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv``, a server that listens on ``127.0.0.1:port``, until the block ends.

    Yields the process once a connection to the port succeeds; its stdout and stderr go
    to ``log``. On leaving the block the process is stopped with :func:`stop_process`.

    Raises:
        RuntimeError: the server exited, or did not listen within ``ready_within``
            seconds; the message ends with the tail of its log.
    """
    with open(log, "wb") as output:
        # A session of its own: the signals reach the server's children too.
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_until_listening(name, process, port, log, ready_within)
        yield process
    finally:
        stop_process(process, name)


def _wait_until_listening(
    name: str, process: subprocess.Popen[bytes], port: int, log: Path, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} in {seconds} s:\n{_tail(log)}")


def _tail(log: Path, size: int = 2000) -> str:
    return log.read_bytes()[-size:].decode(errors="replace")


def stop_process(process: subprocess.Popen[Any], name: str, grace: float = GRACE) -> None:
    """Stop ``process`` (started with a session of its own) and its children; never raises.

    SIGTERM to its process group, up to ``grace`` seconds for the process to exit, then
    SIGKILL to whatever of the group is left (the process itself, or children that outlived
    it) and a wait; a process that survives even that (stuck in the kernel) is reported
    with a warning.
    """
    _signal_group(process, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    _signal_group(process, signal.SIGKILL)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        warnings.warn(f"{name} (pid {process.pid}) did not exit after SIGKILL", stacklevel=2)


def _signal_group(process: subprocess.Popen[Any], sig: signal.Signals) -> None:
    # The group outlives its leader while any member lives; its id is never reused then.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def close_filesystems(*classes: type) -> None:
    """Close the client sessions of every cached instance of the fsspec filesystem
    ``classes`` and empty their instance caches.

    fsspec keeps one filesystem per class and options for the life of the process, and
    with it an open aiohttp session (s3fs, gcsfs, adlfs, HTTP). Each of those filesystems
    registers a finalizer that closes its session when it is collected; this runs those
    finalizers now, before the server behind the sessions goes away.
    """
    instances: list[Any] = []
    for cls in classes:
        instances += cached_instances(cls)
        cls.clear_instance_cache()  # type: ignore[attr-defined]
    for finalizer in finalizers_of(instances):
        finalizer()  # closes the session; a finalizer runs at most once
