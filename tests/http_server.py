"""A threaded HTTP server of a folder's files on 127.0.0.1, for tests that need real HTTP.

:class:`FileServer` serves the files under ``root`` on an ephemeral port of the loopback
interface (nothing else is ever bound or contacted), counts and logs every request, and
can be told to answer some requests with an error status or to answer slowly, for tests
of retries and timeouts. It answers ``GET`` and ``HEAD``, honours single ``Range``
requests (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) as fsspec's HTTP files send them,
ignores query strings (signed URLs carry their signature there), and speaks HTTP/1.0, so
every connection closes after its response and shutdown never waits on an idle client.

Use it as a context manager, or through the ``file_server`` fixture, which serves the
test's ``tmp_path`` and shuts the server down in teardown::

    from tests.http_server import FileServer, file_server_fixture  # noqa: F401

    def test_download(file_server: FileServer, tmp_path):
        (tmp_path / "a.txt").write_text("hello")
        assert requests.get(file_server.url_for("a.txt")).text == "hello"
        assert file_server.count("a.txt") == 1
"""

from __future__ import annotations

import mimetypes
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

__all__ = ["FileServer", "ServedRequest", "file_server_fixture"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ServedRequest:
    """One request the server answered.

    Attributes:
        method: ``"GET"`` or ``"HEAD"``.
        path: the URL path relative to the root, percent-decoded, without query string.
        query: the query string (``""`` when none).
        headers: the request headers.
        status: the status code answered.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FileServer

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
        status = owner._take_failure(path)
        payload = b""
        headers: dict[str, str] = {}
        if status is None:
            status, payload, headers = self._file(owner.root, path)
        owner._record(
            ServedRequest(self.command, path, parts.query, dict(self.headers.items()), status)
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _file(self, root: Path, path: str) -> tuple[int, bytes, dict[str, str]]:
        location = (root / path).resolve()
        if not location.is_relative_to(root) or not location.is_file():
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
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.delay = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._log: list[ServedRequest] = []
        self._failures: dict[str, list[int]] = {}
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
        """Stop serving, close the socket and join the thread (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

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

    def reset(self) -> None:
        """Forget the request log and any pending failures."""
        with self._lock:
            self._log.clear()
            self._failures.clear()

    def fail(self, path: str, status: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` requests for ``path`` with ``status`` (no body)."""
        with self._lock:
            self._failures.setdefault(path.lstrip("/"), []).extend([status] * times)

    def _take_failure(self, path: str) -> int | None:
        with self._lock:
            pending = self._failures.get(path)
            return pending.pop(0) if pending else None

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
