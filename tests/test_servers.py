"""tests/servers.py: server processes that start on a free port and always stop."""

from __future__ import annotations

import signal
import sys
import time

import fsspec
import psutil
import pytest

from segments_torch._compat import cached_instances
from tests.http_server import FileServer
from tests.servers import close_filesystems, free_port, serve, stop_process

#: A server: listens on the port given as its argument, prints its pid, sleeps; with
#: "ignore" as a second argument it ignores SIGTERM.
LISTENER = """
import os, signal, socket, sys, time
if sys.argv[2:] == ["ignore"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print(os.getpid(), flush=True)
time.sleep(600)
"""


def listener(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-c", LISTENER, str(port), *extra]


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (reaped, or a zombie nobody reaps yet)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_serve_yields_a_listening_server_and_stops_it(tmp_path):
    port = free_port()
    with serve("listener", listener(port), port, tmp_path / "log") as process:
        assert process.poll() is None
        pid = int((tmp_path / "log").read_text())
        assert pid == process.pid
    assert process.returncode == -signal.SIGTERM


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    port = free_port()
    with serve("stubborn", listener(port, "ignore"), port, tmp_path / "log") as process:
        stop_process(process, "stubborn", grace=0.2)
        assert process.returncode == -signal.SIGKILL
    assert process.returncode == -signal.SIGKILL  # stopping it again is a no-op


def test_the_server_s_children_are_stopped_with_it(tmp_path):
    # The shell is the server process; the listener is its child, which the old fixtures'
    # process.terminate() never reached.
    port = free_port()
    script = f"{sys.executable} -c '{LISTENER}' {port} ignore & wait"
    with serve("shell", ["sh", "-c", script], port, tmp_path / "log"):
        child = int((tmp_path / "log").read_text())
    deadline = time.monotonic() + 10
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(child)


def test_a_server_that_exits_at_once_is_reported_with_its_log(tmp_path):
    command = [sys.executable, "-c", "print('no port for me'); raise SystemExit(3)"]
    with (
        pytest.raises(RuntimeError) as info,
        serve("quitter", command, free_port(), tmp_path / "log"),
    ):
        pass
    assert str(info.value) == "quitter exited with 3:\nno port for me\n"


def test_a_server_that_never_listens_is_stopped_and_reported(tmp_path):
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"
    with (
        pytest.raises(RuntimeError) as info,
        serve("mute", [sys.executable, "-c", code], free_port(), tmp_path / "log", ready_within=1),
    ):
        pass
    pid = int((tmp_path / "log").read_text())
    assert str(info.value).startswith("mute did not listen on 127.0.0.1:")
    assert str(info.value).endswith(f" in 1 s:\n{pid}\n")
    assert gone(pid)


def test_close_filesystems_closes_the_sessions_and_empties_the_cache(tmp_path):
    http = pytest.importorskip("fsspec.implementations.http")
    (tmp_path / "a.txt").write_text("hello")
    with FileServer(tmp_path) as server:
        fs = fsspec.filesystem("http")
        assert fs.cat_file(server.url_for("a.txt")) == b"hello"
        session = fs._session
        assert not session.closed
        close_filesystems(http.HTTPFileSystem)
        assert session.closed
        assert cached_instances(http.HTTPFileSystem) == []
        close_filesystems(http.HTTPFileSystem)  # nothing left to close: a no-op
