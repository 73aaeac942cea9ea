"""The command line: every command has help, answers are one clear line on bad input, and commands work."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from dra_pipeline.cli import main
from tests.test_store import expected, make


def all_commands(group=main, prefix=()):
    yield prefix
    for name, cmd in getattr(group, "commands", {}).items():
        yield from all_commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands()), ids=lambda p: " ".join(p) or "main")
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_top_level_import_loads_nothing_heavy():
    """`--help` stays instant because the CLI module imports no torch, zarr or h5py until a command runs."""
    heavy = "('torch', 'zarr', 'h5py', 'numpy')"
    code = f"import sys; import dra_pipeline.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert subprocess.run([sys.executable, "-m", "dra_pipeline", "--help"], capture_output=True).returncode == 0


def test_data_info_named_dataset_shows_both_splits(fmnist_dir):
    d, _ = fmnist_dir
    result = CliRunner().invoke(main, ["data", "info", "fashion-mnist", "--data-dir", str(d)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[2].split()[:4] == ["train", "50", "10", "28x28x1"]
    assert lines[3].split()[:4] == ["test", "20", "10", "28x28x1"]
    assert "ankle boot" in result.output


def assert_one_line_error(result, match):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.output


def test_bad_source_is_one_clear_line(tmp_path):
    np.savez(tmp_path / "x.npz", image=np.zeros((3, 8, 8, 3), np.uint8))
    assert_one_line_error(CliRunner().invoke(main, ["data", "info", str(tmp_path / "x.npz")]), "no 'label' array")
    bad = CliRunner().invoke(main, ["data", "info", "cifar10", "--data-dir", str(tmp_path)])
    assert_one_line_error(bad, "data_batch_1 not found")


def test_cache_info_verify_export(tmp_path):
    make(tmp_path / "s.zarr")
    runner = CliRunner()
    info = runner.invoke(main, ["cache", "info", str(tmp_path / "s.zarr")])
    assert info.exit_code == 0 and "5 of 5 done" in info.output and '"teacher": "tiny"' in info.output
    verify = runner.invoke(main, ["cache", "verify", str(tmp_path / "s.zarr")])
    assert verify.exit_code == 0 and "ok: 5 shards" in verify.output
    export = runner.invoke(main, ["cache", "export", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "f.h5")])
    assert export.exit_code == 0, export.output
    with h5py.File(tmp_path / "f.h5") as f:
        np.testing.assert_array_equal(f["features"][()], expected())
        np.testing.assert_array_equal(f["labels"][()], np.arange(300) % 10)
        assert '"teacher": "tiny"' in f.attrs["dra"]
    again = runner.invoke(main, ["cache", "export", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "f.h5")])
    assert_one_line_error(again, "already exists; pass --overwrite")


def store_without_its_last_record(tmp_path):
    make(tmp_path / "s.zarr")
    (tmp_path / "s.zarr" / "done" / "000004.json").unlink()
    return tmp_path / "s.zarr"


def test_cache_info_and_verify_name_a_shard_without_its_record(tmp_path):
    store = str(store_without_its_last_record(tmp_path))
    info = CliRunner().invoke(main, ["cache", "info", store])
    assert "4 of 5 done" in info.output and "missing: 4" in info.output
    verify = CliRunner().invoke(main, ["cache", "verify", store])
    assert verify.exit_code == 1 and "1 of 5 shards failed verification" in verify.output


def test_cache_export_refuses_an_incomplete_store_and_writes_nothing(tmp_path):
    store = str(store_without_its_last_record(tmp_path))
    export = CliRunner().invoke(main, ["cache", "export", store, "--out", str(tmp_path / "f.h5")])
    assert_one_line_error(export, "1 shards are not done")
    assert not (tmp_path / "f.h5").exists() and not list(tmp_path.glob(".f.h5*"))


def test_cache_commands_on_a_non_store(tmp_path):
    (tmp_path / "plain").mkdir()
    assert_one_line_error(
        CliRunner().invoke(main, ["cache", "info", str(tmp_path / "plain")]), "not a dra feature store"
    )
    assert_one_line_error(
        CliRunner().invoke(main, ["cache", "verify", str(tmp_path / "nope")]), "no such feature store"
    )
