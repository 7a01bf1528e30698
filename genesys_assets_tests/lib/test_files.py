"""atomic_write: a reader or a crash sees the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesys_assets.lib.files import atomic_write


def test_a_write_replaces_the_file_whole_and_only_its_user_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "endpoints.json"
    atomic_write(path, b"old")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["endpoints.json"]


def test_a_writer_that_fails_half_way_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "recording.wav"
    atomic_write(path, b"whole recording")

    def half(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, writer=half)
    assert path.read_bytes() == b"whole recording"
    assert [p.name for p in tmp_path.iterdir()] == ["recording.wav"]
