"""The GPU script's helpers, on a CPU: CIFAR-10's JPEG archive as the named dataset, the plan that fits the CIFAR-10
comparison into the time a machine has left, and the script's arguments."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dra_pipeline.data import open_source

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


jpeg, plan = _load("cifar10_jpeg"), _load("cifar10_plan")


def _jpeg_zip(path: Path, per_class: dict[str, int]) -> dict[str, np.ndarray]:
    """A zip in the archive's layout (split/class/NNNN.jpg) and the decoded pixels of each member."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = {}
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in per_class.items():
            for cls in jpeg.CLASSES:
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
                    name = f"{split}/{cls}/{i:04d}.jpg"
                    zf.writestr(name, buf.getvalue())
                    pixels[name] = jpeg.decode(buf.getvalue())
    return pixels


def test_jpeg_archive_becomes_the_named_dataset_in_a_seeded_mixed_order(tmp_path):
    pixels = _jpeg_zip(tmp_path / "c.zip", {"train": 3, "test": 2})
    args = argparse.Namespace(
        archive=tmp_path / "c.zip", out=tmp_path / "data", train_per_class=None, test_per_class=None, seed=0, workers=2
    )
    jpeg.convert(args)
    train, test = (open_source(s, data_dir=tmp_path / "data") for s in ("cifar10", "cifar10:test"))
    assert (len(train), len(test)) == (30, 20)
    assert train.class_names == list(jpeg.CLASSES)
    assert len(set(train.labels[:10].tolist())) > 3  # not sorted by class: the first rows hold several classes
    names = [n for n in pixels if n.startswith("train/")]
    order = np.random.default_rng(0).permutation(30)  # the files sorted by class then name, permuted
    for row in (0, 7, 29):
        name = sorted(names)[order[row]]
        np.testing.assert_array_equal(train.read(np.array([row]))[0], pixels[name])
        assert train.labels[row] == jpeg.CLASSES.index(name.split("/")[1])
    recorded = json.loads((tmp_path / "data" / "cifar-10-batches-py" / "SOURCE.json").read_text())
    assert recorded["counts"] == {"train": 30, "test": 20} and "JPEG re-encoding" in recorded["source"]

    packed = tmp_path / "c.tar.xz"
    jpeg.pack(argparse.Namespace(archive=tmp_path / "c.zip", out=packed))
    again = argparse.Namespace(**{**vars(args), "archive": packed, "out": tmp_path / "from-tar", "train_per_class": 2})
    jpeg.convert(again)
    subset = open_source("cifar10", data_dir=tmp_path / "from-tar")
    assert len(subset) == 20 and sorted(np.bincount(subset.labels).tolist()) == [2] * 10


def _plan(left_s, *, epochs=None, seeds=(0, 1)):
    # 96 steps of 0.2 s: an epoch is 21.1 s with validation; AutoAttack on 1000 points ~145 s; a 30-epoch run ~779 s
    return plan.plan(
        step_s=0.2, steps_per_epoch=96, batch=512, n_eval=1000, pending_seeds=list(seeds), left_s=left_s, epochs=epochs
    )


def test_plan_takes_whole_pairs_at_30_epochs_then_fewer_epochs_then_refuses():
    one = plan.run_seconds(30, step_s=0.2, steps_per_epoch=96, batch=512, n_eval=1000)
    assert one == pytest.approx(30 * 96 * 0.2 * 1.1 + 5000 * 1000 / (27 * 512) * 0.2 * 2)
    both = _plan(4 * one + plan.MARGIN_S)
    assert (both.epochs, both.seeds) == (30, [0, 1])
    first = _plan(3 * one + plan.MARGIN_S)
    assert (first.epochs, first.seeds) == (30, [0])
    shorter = _plan(one + plan.MARGIN_S)  # one pair fits only with fewer epochs
    assert shorter.seeds == [0] and 10 <= shorter.epochs < 30
    assert shorter.projected_s <= one + plan.MARGIN_S
    assert _plan(200) is None  # not even 10 epochs of a pair
    assert _plan(one + plan.MARGIN_S, epochs=30) is None  # an earlier machine fixed 30 epochs: no shortening
    assert _plan(100, seeds=()).seeds == []


def test_pending_seeds_follow_compares_run_names(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))  # cifar10_plan imports compare, as when run as a script
    for name in ("at-l0-s0", "at-dra-l0.5-s0", "at-l0-s1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text("{}")
    assert plan.pending(tmp_path, [0, 1, 2], 0.5) == [1, 2]


def test_script_help_and_unknown_arguments():
    script = ROOT / "bench" / "gpu_record.sh"
    done = subprocess.run(["bash", str(script), "-h"], capture_output=True, text=True)
    assert done.returncode == 0 and "--phases" in done.stdout and "--budget-s" in done.stdout
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("gpu_record.sh: unknown argument: --bogus")
