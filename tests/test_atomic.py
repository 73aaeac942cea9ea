"""Atomic replacement: the final name holds either the old or the new complete file, never a partial one."""

import pytest

from dra_pipeline.atomic import atomic_write, atomic_write_text


def test_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_write_text(path, "good checkpoint")

    def broken(tmp):
        tmp.write_text("half a checkp")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "good checkpoint" and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
