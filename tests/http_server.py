"""A threaded HTTP server of a folder's files on 127.0.0.1, for tests that need real HTTP.

:class:`FileServer` serves the files under ``root`` on an ephemeral port of the loopback
interface (nothing else is ever bound or contacted), counts and logs every request, and
can be told to misbehave on purpose, for tests of retries, timeouts and caches: answer some
requests with an error status (:meth:`FileServer.fail`), close the connection without an
answer (:meth:`FileServer.drop`), stall before answering (:meth:`FileServer.stall`,
:attr:`FileServer.delay`), send fewer bytes than its ``Content-Length`` promised
(:meth:`FileServer.truncate`), send part of a body without any ``Content-Length``
(:meth:`FileServer.cut`), answer 200 with another body, as a proxy's error page
(:meth:`FileServer.serve_instead`), fail, drop, truncate or stall at random on a share of
the requests (:meth:`FileServer.chaos`, seeded), or send bodies slowly
(:attr:`FileServer.bytes_per_second`, with progress in :meth:`FileServer.bytes_sent`). It
answers ``GET`` and ``HEAD``, honours single ``Range`` requests (``bytes=a-b``, ``bytes=a-``,
``bytes=-n``) as fsspec's HTTP files send them, ignores query strings (signed URLs carry
their signature there), and speaks HTTP/1.0, so every connection closes after its response
and shutdown never waits on an idle client.

:meth:`FileServer.stop` stops it for certain, in bounded time, and leaves no thread or socket
behind: it first closes this process's fsspec HTTP client sessions, then ends stalls and slow
sends, shuts the connections still open, and joins every thread the server started.

Use it as a context manager, or through the ``file_server`` fixture, which serves the
test's ``tmp_path`` and shuts the server down in teardown::

    from tests.http_server import FileServer, file_server_fixture  # noqa: F401

    def test_download(file_server: FileServer, tmp_path):
        (tmp_path / "a.txt").write_text("hello")
        assert requests.get(file_server.url_for("a.txt")).text == "hello"
        assert file_server.count("a.txt") == 1
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from tests.servers import close_filesystems

__all__ = ["FileServer", "ServedRequest", "file_server_fixture"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
#: Seconds :meth:`FileServer.stop` waits, in all, for the server's threads to end.
_STOP_WITHIN = 5.0


@dataclass(frozen=True)
class ServedRequest:
    """One request the server answered.

    Attributes:
        method: ``"GET"`` or ``"HEAD"``.
        path: the URL path relative to the root, percent-decoded, without query string.
        query: the query string (``""`` when none).
        headers: the request headers.
        status: the status code answered (``0``: the connection was dropped unanswered).
        fault: the misbehaviour served, ``""`` for none: ``"status"`` (:meth:`FileServer.fail`),
            ``"drop"``, ``"stall"``, ``"truncate"``, ``"cut"`` or ``"instead"``.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int
    fault: str = ""


@dataclass(frozen=True)
class _Fault:
    """One planned misbehaviour for one request (see the :class:`FileServer` methods)."""

    kind: str  # "status", "drop", "stall", "truncate", "cut" or "instead"
    status: int = 0
    seconds: float = 0.0
    keep: float = 0.5
    body: bytes = b""


@dataclass(frozen=True)
class _Chaos:
    """Random faults on a share of the requests (see :meth:`FileServer.chaos`)."""

    rate: float
    seed: int
    stall: float

    def draw(self, path: str, arrival: int) -> _Fault | None:
        """The fault of the ``arrival``-th request (from 0) for ``path``, if any."""
        rng = random.Random(f"{self.seed}/{path}/{arrival}")
        if rng.random() >= self.rate:
            return None
        return rng.choice(
            [
                _Fault("status", status=500),
                _Fault("status", status=503),
                _Fault("drop"),
                _Fault("truncate", keep=rng.uniform(0.0, 0.9)),
                _Fault("stall", seconds=self.stall),
            ]
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FileServer

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        super().__init__(address, handler)
        # Each connection being handled, with its thread: stop() shuts the sockets (a
        # handler blocked on a client that neither reads nor closes then fails at once)
        # and joins the threads.
        self.connections: dict[threading.Thread, socket.socket] = {}
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"FileServer {client_address[1]}",
            daemon=True,
        )
        with self.connections_lock:
            self.connections[thread] = request
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self.connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up (timeout tests) is not an error of the server
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean; the owner's log has every request

    def _answer(self, *, body: bool) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        path = unquote(parts.path).lstrip("/")
        if owner.delay:
            owner._stopping.wait(owner.delay)  # cut short by stop()
        fault = owner._take_fault(path)
        kind = fault.kind if fault is not None else ""
        request = ServedRequest(
            self.command, path, parts.query, dict(self.headers.items()), 0, kind
        )
        if fault is not None and fault.kind == "drop":
            owner._record(request)
            self.close_connection = True  # no status line, no headers: the socket just closes
            return
        payload = b""
        headers: dict[str, str] = {}
        if fault is not None and fault.kind == "status":
            status = fault.status
        elif fault is not None and fault.kind == "instead":
            status, payload, headers = 200, fault.body, {"Content-Type": "text/html"}
        else:
            status, payload, headers = self._file(owner.root, path)
        # Logged on arrival, so a client that gave up on a stalled answer is counted at once.
        owner._record(replace(request, status=status))
        if fault is not None and fault.kind == "stall":
            owner._stopping.wait(fault.seconds)  # cut short by stop()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if fault is None or fault.kind != "cut":  # without it, the body ends as the connection
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not body:
            return
        if fault is not None and fault.kind in ("truncate", "cut"):
            payload = payload[: int(len(payload) * fault.keep)]
            self.close_connection = True
        self._send(owner, path, payload)

    def _send(self, owner: FileServer, path: str, payload: bytes) -> None:
        """Write ``payload``, at most ``owner.bytes_per_second`` (0: at once)."""
        rate = owner.bytes_per_second
        if not rate:
            self.wfile.write(payload)
            owner._sent(path, len(payload))
            return
        chunk = max(1, int(rate / 50))  # 50 writes a second
        for start in range(0, len(payload), chunk):
            if owner._stopping.is_set():
                return
            piece = payload[start : start + chunk]
            self.wfile.write(piece)
            self.wfile.flush()
            owner._sent(path, len(piece))
            owner._stopping.wait(len(piece) / rate)

    def _file(self, root: Path, path: str) -> tuple[int, bytes, dict[str, str]]:
        try:
            location = (root / path).resolve()
            found = location.is_relative_to(root) and location.is_file()
        except ValueError:  # a NUL character: no file has that name
            found = False
        if not found:
            return 404, b"not found", {"Content-Type": "text/plain"}
        data = location.read_bytes()
        headers = {
            "Content-Type": mimetypes.guess_type(location.name)[0] or "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        wanted = self.headers.get("Range")
        if wanted is None:
            return 200, data, headers
        match = _RANGE.match(wanted.strip())
        if match is None or match.groups() == ("", ""):
            return 416, b"", {"Content-Range": f"bytes */{len(data)}"}
        first, last = match.groups()
        if first:
            start, stop = int(first), min(int(last) + 1 if last else len(data), len(data))
        else:  # a suffix: the last n bytes
            start, stop = max(len(data) - int(last), 0), len(data)
        if start >= len(data) or start >= stop:
            return 416, b"", {"Content-Range": f"bytes */{len(data)}"}
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
        return 206, data[start:stop], headers


class FileServer:
    """Serves the files under ``root`` over HTTP on ``127.0.0.1`` and an ephemeral port.

    Args:
        root: the folder whose files are served; URL paths are relative to it.

    Attributes:
        delay: seconds to wait before answering each request (for timeout tests).
        bytes_per_second: send response bodies at most this fast (``0``: at once), for
            tests that need a download in progress.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.delay = 0.0
        self.bytes_per_second = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._log: list[ServedRequest] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._chaos: _Chaos | None = None
        self._arrivals: Counter[str] = Counter()
        self._bytes_sent: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> FileServer:
        """Bind ``127.0.0.1:0`` and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving for certain, within a few seconds, and never raise (idempotent).

        Closes this process's fsspec HTTP client sessions first (their connections would
        outlive the server), then stops accepting, ends stalls and slow sends, shuts every
        connection still open and joins the server's threads.
        """
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        http = sys.modules.get("fsspec.implementations.http")
        if http is not None:
            close_filesystems(http.HTTPFileSystem)
        self._stopping.set()
        if thread is not None and thread.is_alive():  # else shutdown() would wait forever
            server.shutdown()
        server.server_close()
        with server.connections_lock:
            open_connections = dict(server.connections)
        for connection in open_connections.values():
            with contextlib.suppress(OSError):  # closed by its handler meanwhile
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _STOP_WITHIN
        for handler in [*open_connections, *([thread] if thread is not None else [])]:
            handler.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, path: str | os.PathLike[str], query: str = "") -> str:
        """The URL of a file, given relative to ``root`` (or as an absolute path under it)."""
        relative = Path(path)
        if relative.is_absolute():
            relative = relative.resolve().relative_to(self.root)
        url = f"{self.url}/{quote(relative.as_posix())}"
        return f"{url}?{query}" if query else url

    # -- what was asked --------------------------------------------------------------

    @property
    def requests(self) -> list[ServedRequest]:
        """Every request answered so far, in order."""
        with self._lock:
            return list(self._log)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """How many requests were answered, for one path and/or method (``None``: any)."""
        return sum(
            (path is None or r.path == path.lstrip("/")) and (method is None or r.method == method)
            for r in self.requests
        )

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes written so far, for one path (``None``: all paths)."""
        with self._lock:
            if path is None:
                return sum(self._bytes_sent.values())
            return self._bytes_sent[path.lstrip("/")]

    def reset(self) -> None:
        """Forget the request log, the bytes sent, any pending failures and chaos."""
        with self._lock:
            self._log.clear()
            self._faults.clear()
            self._chaos = None
            self._arrivals.clear()
            self._bytes_sent.clear()

    # Planned failures queue up per path, in the order they are asked for, each taken by
    # one request.

    def fail(self, path: str, status: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` requests for ``path`` with ``status`` (no body)."""
        self._plan(path, _Fault("status", status=status), times)

    def drop(self, path: str, times: int = 1) -> None:
        """Close the connection of the next ``times`` requests for ``path`` unanswered."""
        self._plan(path, _Fault("drop"), times)

    def stall(self, path: str, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before answering the next ``times`` requests for ``path``."""
        self._plan(path, _Fault("stall", seconds=seconds), times)

    def truncate(self, path: str, times: int = 1, keep: float = 0.5) -> None:
        """Answer the next ``times`` requests for ``path`` with the full ``Content-Length``
        but only its first ``keep`` fraction of the body, then close the connection."""
        self._plan(path, _Fault("truncate", keep=keep), times)

    def cut(self, path: str, times: int = 1, keep: float = 0.5) -> None:
        """Answer the next ``times`` requests for ``path`` with 200, no ``Content-Length``
        and only the first ``keep`` fraction of the body, then close the connection: the
        client cannot tell that the body is short."""
        self._plan(path, _Fault("cut", keep=keep), times)

    def serve_instead(self, path: str, body: bytes, times: int = 1) -> None:
        """Answer the next ``times`` requests for ``path`` with 200 and ``body`` (as
        ``text/html``) instead of the file, as a proxy or CDN sends its error page."""
        self._plan(path, _Fault("instead", body=body), times)

    def chaos(self, rate: float, seed: int, stall: float) -> None:
        """From now on, misbehave at random on about ``rate`` of the requests.

        Each fault is one of: status 500, status 503, a dropped connection, a body cut
        short (0 to 90% of it sent), a stall of ``stall`` seconds, drawn with equal odds.
        The draw for the n-th request of a path depends on ``seed``, the path and n only,
        so concurrent clients asking in any order meet the same faults on every run.
        Faults planned with :meth:`fail` and the like come first.
        """
        with self._lock:
            self._chaos = _Chaos(rate, seed, stall)

    def _plan(self, path: str, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.setdefault(path.lstrip("/"), []).extend([fault] * times)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            arrival = self._arrivals[path]
            self._arrivals[path] += 1
            pending = self._faults.get(path)
            if pending:
                return pending.pop(0)
            return self._chaos.draw(path, arrival) if self._chaos is not None else None

    def _sent(self, path: str, size: int) -> None:
        with self._lock:
            self._bytes_sent[path] += size

    def _record(self, request: ServedRequest) -> None:
        with self._lock:
            self._log.append(request)

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"FileServer({str(self.root)!r}, {where})"


@pytest.fixture(name="file_server")
def file_server_fixture(tmp_path: Path) -> Iterator[FileServer]:
    """A :class:`FileServer` of ``tmp_path``, stopped in teardown."""
    with FileServer(tmp_path) as server:
        yield server
