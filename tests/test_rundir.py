"""Atomic writes and completion markers: nothing half-written is ever taken as done."""

import pytest

from lmforge.rundir import RunDir, atomic_path, write_json_atomic


def test_atomic_path_leaves_no_file_on_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_until_success(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError
    assert target.read_text().strip().endswith("}") and '"v": 1' in target.read_text()


def test_marker_written_after_stats(tmp_path):
    rd = RunDir(tmp_path)
    assert not rd.is_complete("clean")
    rd.mark_complete("clean", {"in": 3})
    assert rd.is_complete("clean") and rd.read_stats("clean") == {"in": 3}
    rd.clear_marker("clean")
    assert not rd.is_complete("clean")
