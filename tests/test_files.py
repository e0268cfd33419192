"""Files written by many processes at once (segments_torch.files)."""

from __future__ import annotations

import logging
import os
import time

import pytest

from segments_torch import files
from segments_torch.errors import StorageError
from segments_torch.files import check_folder, remove_stale_partials, warn_once, write_atomically


def test_write_atomically_makes_the_folder_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "ab" / "entry.png"
    write_atomically(path, b"one")
    write_atomically(path, b"two")  # replaces
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["entry.png"]


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    path = tmp_path / "ab" / "entry.png"
    with pytest.raises(TypeError):
        write_atomically(path, "not bytes")  # type: ignore[arg-type]
    assert list(path.parent.iterdir()) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o077, 0o600)])
def test_written_files_take_the_mode_the_umask_says(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_atomically(tmp_path / "entry", b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "entry").stat().st_mode & 0o777 == mode


def test_check_folder_makes_it_and_names_what_is_wrong(tmp_path):
    check_folder(tmp_path / "new" / "labels", "label cache folder")
    assert list((tmp_path / "new" / "labels").iterdir()) == []
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError) as info:
        check_folder(tmp_path / "file", "label cache folder")
    assert str(info.value) == f"label cache folder {tmp_path / 'file'}: not a folder"


def test_remove_stale_partials_keeps_recent_ones_and_entries(tmp_path):
    folder = tmp_path / "ab"
    folder.mkdir()
    stale, fresh, entry = folder / ".partial-1", folder / ".partial-2", folder / "entry"
    for path in (stale, fresh, entry):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert remove_stale_partials(tmp_path) == 1
    assert sorted(p.name for p in folder.iterdir()) == [".partial-2", "entry"]


def test_warn_once_warns_once_per_kind(monkeypatch, caplog):
    monkeypatch.setattr(files, "_WARNED", set())
    log = logging.getLogger("segments_torch.test")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            warn_once(log, "write", "cannot write %s", "a")
        warn_once(log, "read", "cannot read %s", "b")
    assert caplog.messages == [
        "cannot write a (warned once per process)",
        "cannot read b (warned once per process)",
    ]
