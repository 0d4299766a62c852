"""commands.files.write_file: what the bot writes for its users replaces a planted link, never follows it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from commands.files import write_file


def test_a_symbolic_link_at_the_path_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    folder = tmp_path / "snapshots"
    folder.mkdir()
    (folder / "vpn01.json").symlink_to(victim)
    write_file(folder / "vpn01.json", b'{"schema": 1}\n')
    assert victim.read_text() == "keep me"
    assert not (folder / "vpn01.json").is_symlink()
    assert (folder / "vpn01.json").read_bytes() == b'{"schema": 1}\n'
    assert sorted(p.name for p in folder.iterdir()) == ["vpn01.json"]  # no temporary file left


def test_a_new_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_file(tmp_path / "chart.png", b"\x89PNG")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "chart.png").stat().st_mode) == 0o644


def test_a_failed_write_leaves_neither_a_file_nor_a_temporary(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        (tmp_path / "taken").mkdir()
        write_file(tmp_path / "taken", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_an_existing_file_keeps_its_mode_and_a_pipe_is_written_to(tmp_path: Path) -> None:
    kept = tmp_path / "vpn01.json"
    kept.write_text("old")
    kept.chmod(0o600)
    write_file(kept, b"new")
    assert kept.read_bytes() == b"new" and stat.S_IMODE(kept.stat().st_mode) == 0o600
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_file(fifo, b"through the pipe")  # `forecast --png /dev/stdout` writes to the stream
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a pipe, not replaced by a file
