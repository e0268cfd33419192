"""tests/http_server.py: FileServer stops for certain, and its random faults are seeded."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from tests.http_server import FileServer


def get(server: FileServer, path: str, timeout: float = 0.5) -> tuple[int, bytes] | str:
    """``(status, body)`` of one GET, or the name of the error the client met."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request("GET", f"/{path}")
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__
    finally:
        connection.close()


def test_stop_ends_a_send_to_a_client_that_does_not_read(tmp_path):
    # The handler blocks in its write once the socket buffers are full; stop() shuts the
    # connection, so the handler's thread ends with the server and nothing is left behind.
    (tmp_path / "big.bin").write_bytes(bytes(64 * 2**20))
    before = set(threading.enumerate())
    server = FileServer(tmp_path).start()
    client = socket.create_connection(("127.0.0.1", server.port))
    try:
        client.sendall(b"GET /big.bin HTTP/1.0\r\n\r\n")
        while server.count("big.bin") == 0:  # logged before the body is sent
            threading.Event().wait(0.01)
        server.stop()
        assert set(threading.enumerate()) == before
    finally:
        client.close()


def test_stop_ends_a_stall_and_is_idempotent(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    before = set(threading.enumerate())
    server = FileServer(tmp_path).start()
    server.stall("a.txt", seconds=600)
    client = socket.create_connection(("127.0.0.1", server.port))
    try:
        client.sendall(b"GET /a.txt HTTP/1.0\r\n\r\n")
        while server.count("a.txt") == 0:
            threading.Event().wait(0.01)
        server.stop()
        server.stop()
        assert set(threading.enumerate()) == before
    finally:
        client.close()


def faults(seed: int, rate: float, tmp_path, requests: int = 40) -> list[tuple[str, int]]:
    """The fault and status of each of ``requests`` GETs of one file under chaos (the
    fault is drawn when the request arrives: the client need not wait for a stall)."""
    (tmp_path / "a.txt").write_text("hello world")
    with FileServer(tmp_path) as server:
        server.chaos(rate, seed=seed, stall=1.0)
        for _ in range(requests):
            get(server, "a.txt", timeout=0.05)
        return [(r.fault, r.status) for r in server.requests]


def test_chaos_is_the_same_for_the_same_seed(tmp_path):
    first = faults(7, 0.5, tmp_path)
    assert faults(7, 0.5, tmp_path) == first
    assert faults(8, 0.5, tmp_path) != first
    kinds = {fault for fault, _ in first}
    assert kinds == {"", "status", "drop", "truncate", "stall"}
    assert {status for fault, status in first if fault == "status"} == {500, 503}
    assert all(status == 200 for fault, status in first if fault in ("", "stall", "truncate"))


@pytest.mark.parametrize(("rate", "faulty"), [(0.0, 0), (1.0, 40)])
def test_chaos_rate_bounds(tmp_path, rate, faulty):
    assert sum(fault != "" for fault, _ in faults(3, rate, tmp_path)) == faulty


def test_clients_meet_each_chaos_fault(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    with FileServer(tmp_path) as server:
        server.chaos(1.0, seed=1, stall=1.0)
        seen: dict[str, tuple[int, bytes] | str] = {}
        while len(seen) < 4 and len(server.requests) < 40:
            answer = get(server, "a.txt")
            seen[server.requests[-1].fault] = answer
    assert seen["status"] in [(500, b""), (503, b"")]
    assert seen["drop"] == "RemoteDisconnected"
    assert seen["truncate"] == "IncompleteRead"
    assert seen["stall"] == "TimeoutError"  # the client gave up after 0.5 s


def test_planned_faults_come_before_chaos(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    with FileServer(tmp_path) as server:
        server.chaos(0.0, seed=1, stall=1.0)
        server.fail("a.txt", 404)
        assert get(server, "a.txt") == (404, b"")
        assert get(server, "a.txt") == (200, b"hello world")
        server.reset()
        server.fail("a.txt", 503)
        assert get(server, "a.txt") == (503, b"")
