"""The README's three commands, as users type them, from an empty folder against the local server (tiny CIFAR-10
tarball and EDM pickle at their published paths). The test appends only flags that shrink the work: a small model,
batch, step and validation budget for `train`, a few points for `evaluate`. Before `evaluate` the data folder is
removed: the test split is fetched again, as on a machine that trained elsewhere."""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dra_pipeline.cli import main
from tests import published

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    "dra-pipeline extract --teacher edm-cifar10",
    "dra-pipeline train --features cache/cifar10.zarr",
    "dra-pipeline evaluate",
]
SHRINK = {
    "extract": [],
    "train": [
        *("--set", "model.name=wrn-16-4"),
        *("--set", "train.batch_size=16"),
        *("--set", "data.epoch_images=32"),
        *("--set", "train.epochs=1"),
        *("--set", "data.validation=16"),
        *("--set", "attack.steps=1"),
        *("--set", "attack.val_steps=1"),
        *("--set", "dra.hidden=32"),
    ],
    "evaluate": ["--n", "4"],
}
pytestmark = pytest.mark.usefixtures("one_thread")


def readme_commands() -> list[str]:
    """The commands of the README's first code block, which opens it."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_opens_with_the_three_commands():
    assert readme_commands() == COMMANDS


def test_the_three_commands_from_an_empty_folder(server, tmp_path, monkeypatch):
    files = published.serve_cifar10_and_edm(server, monkeypatch, tmp_path / "published")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("DRA_HOME", str(work / "home"))
    monkeypatch.delenv("DRA_DATA_DIR", raising=False)
    runner = CliRunner()
    outputs = []
    for command in readme_commands():
        program, name, *args = shlex.split(command)
        assert program == "dra-pipeline"
        if name == "evaluate":  # the test split is fetched again when the data folder is gone
            shutil.rmtree(work / "data")
        result = runner.invoke(main, [name, *args, *SHRINK[name]])
        assert result.exit_code == 0, f"{command}\n{result.output}"
        outputs.append(result)

    assert (work / "cache" / "cifar10.zarr").is_dir()
    assert (work / "home" / "checkpoints" / "edm-cifar10-32x32-cond-vp.pkl").read_bytes() == files[published.EDM_PATH]
    assert outputs[1].stderr.startswith("preset at-cifar10-wrn34-10-dra: cache/cifar10.zarr holds 100 cifar10 train")
    run = work / "runs" / "at-cifar10-wrn34-10-dra"
    report = json.loads((run / "report.json").read_text())
    assert report["data"]["source"] == "cifar10:test" and report["data"]["n"] == 4
    assert report["attack"]["eps"] == pytest.approx(8 / 255)  # the run's eps
    assert report["model"]["checkpoint"] == "runs/at-cifar10-wrn34-10-dra/best-ema.pt"
    paths = [r.path for r in server.requests]
    assert paths == [published.CIFAR10_PATH, published.EDM_PATH, published.CIFAR10_PATH]
