"""Fixtures shared by the test modules."""

from tests.http_server import file_server_fixture

__all__ = ["file_server_fixture"]
