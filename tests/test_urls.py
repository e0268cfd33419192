"""URLs as shown and classified, without reading them (segments_torch.urls)."""

from __future__ import annotations

import doctest

import pytest

from segments_torch import urls
from segments_torch.urls import (
    display_url,
    is_local,
    local_path,
    origin,
    redact,
    release_base_url,
)

SECRET = "X-Amz-Signature=secret"
PASSWORD = "hunter2"


def test_display_url_and_release_base_url():
    assert display_url(f"https://h.example/a/b.png?{SECRET}#frag") == "https://h.example/a/b.png"
    assert display_url("/local/a.png") == "/local/a.png"
    assert release_base_url(f"https://h.example/r/release.json?{SECRET}") == "https://h.example/r"
    assert release_base_url("/data/r/release.json") == "/data/r"
    assert release_base_url("file:///data/r/release.json") == "/data/r"
    assert release_base_url("<dict>") is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://user:{PASSWORD}@h.example/a/b.png?{SECRET}#f", "http://h.example/a/b.png"),
        (f"https://user:{PASSWORD}@h.example:8443/a.png", "https://h.example:8443/a.png"),
        ("https://token@h.example/a.png", "https://h.example/a.png"),
        (f"s3://key:{PASSWORD}@bucket/a.png", "s3://bucket/a.png"),
        ("https://h.example/a@b.png", "https://h.example/a@b.png"),  # @ in the path stays
        ("file:///d/a.png?x=1", "file:///d/a.png"),
        ("/local/a@b.png", "/local/a@b.png"),
    ],
)
def test_display_url_drops_user_and_password(url, shown):
    assert display_url(url) == shown


def test_release_base_url_of_a_file_url_is_a_decoded_folder():
    assert release_base_url("file:///data/a%20b/release.json?x=1") == "/data/a b"


def test_redact_cuts_the_query_string_and_every_password():
    text = (
        f"Cannot connect to host https://user:{PASSWORD}@h.example/a.jpg?{SECRET} and "
        f"s3://key:{PASSWORD}@bucket/b.png"
    )
    assert redact(text) == "Cannot connect to host https://h.example/a.jpg"  # all after ? goes
    assert redact(f"s3://key:{PASSWORD}@bucket/b.png refused") == "s3://bucket/b.png refused"


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("/data/a.jpg", True),
        ("images/a.jpg", True),
        ("file:///data/a.jpg", True),
        ("https://h.example/a.jpg", False),
        ("s3://bucket/a.jpg", False),
        ("memory://a.jpg", False),
    ],
)
def test_is_local(url, local):
    assert is_local(url) is local


def test_local_path_decodes_a_file_url_and_leaves_a_path_as_it_is():
    assert local_path(f"file:///d/a%20b.jpg?{SECRET}#f") == "/d/a b.jpg"
    assert local_path("/d/a%20b.jpg") == "/d/a%20b.jpg"  # a path's % is a character


def test_origin_is_scheme_and_host_without_credentials():
    assert origin(f"https://user:{PASSWORD}@H.Example:8443/a.jpg?{SECRET}") == (
        "https://h.example:8443"
    )
    assert origin("s3://bucket/a/b.png") == "s3://bucket"


def test_docstring_examples():
    assert doctest.testmod(urls).failed == 0
