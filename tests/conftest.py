"""Fixtures shared by the test modules."""

import pytest

# Helpers that assert on behalf of tests: rewritten, so their failures show the values.
pytest.register_assert_rewrite("tests.items", "tests.object_store")

from tests.http_server import file_server_fixture  # noqa: E402 - after the registration

__all__ = ["file_server_fixture"]
