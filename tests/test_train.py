"""Stage two end to end on tiny fixtures: baseline and DRA runs, resume, NaN stop, bad input, no teacher."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dra_pipeline.cli import main
from tests import fixtures
from tests.hostile import extract_args, invoke

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "--set",
    "data.validation=16",
    "--set",
    "data.epoch_images=64",
    "--set",
    "train.batch_size=16",
    "--set",
    "attack.steps=2",
    "--set",
    "attack.val_steps=2",
    "--set",
    "dra.hidden=32",
]


@pytest.fixture
def fmnist(tmp_path):
    d = tmp_path / "fashion-mnist"
    fixtures.write_fashion_mnist(d, n_train=80, n_test=20)
    return d


def extract_store(d, out, *extra):
    result = invoke(*extract_args(d, out, *extra, rows_per_shard=32))
    assert result.exit_code == 0, result.output


def train_args(d, out, *extra, epochs=2, features=None):
    store = ["--features", str(features)] if features else []
    return [
        "train",
        *store,
        "--config",
        "fmnist-cpu",
        "--data-dir",
        str(d),
        "--out",
        str(out),
        *FAST,
        "--set",
        f"train.epochs={epochs}",
        *extra,
    ]


def test_baseline_run_writes_config_stats_and_checkpoints(tmp_path, fmnist):
    result = CliRunner().invoke(main, train_args(fmnist, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert {"config.yaml", "stats.jsonl", "last.pt", "best-ema.pt", "environment.json"} <= {
        p.name for p in run.iterdir()
    }
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in stats] == [1, 2] and all(s["align"] == 0 for s in stats)
    assert all(0 <= s["val_robust"] <= s["val_clean"] <= 1 for s in stats) and stats[0]["val_n"] == 16
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["head"] is None
    torch.load(run / "best-ema.pt", weights_only=True)


def test_a_run_writes_metrics_csv_curves_png_and_tensorboard_scalars_every_epoch(tmp_path, fmnist):
    import csv

    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert CliRunner().invoke(main, train_args(fmnist, run, epochs=1)).exit_code == 0
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    expected = ["epoch", "loss", "align", "clean_acc", "adv_acc", "val_clean", "val_robust", "val_n", "lr", "momentum"]
    assert list(rows[0])[: len(expected)] == expected and len(rows) == 1 and rows[0]["epoch"] == "1"
    stats = json.loads((run / "stats.jsonl").read_text())
    assert float(rows[0]["val_robust"]) == stats["val_robust"]
    with Image.open(run / "curves.png") as image:
        image.load()
        assert image.size[0] > 600 and image.size[1] > 200
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    (scalar,) = events.Scalars("val_robust")
    assert scalar.step == 1 and scalar.value == pytest.approx(stats["val_robust"])


def test_dra_run_aligns_each_image_with_its_own_stored_row(tmp_path, fmnist, monkeypatch):
    """Every target the alignment loss receives is the store's feature of that batch's row, in the view matching
    the image's flip: random targets, another row's, or the wrong view all fail here."""
    import dra_pipeline.stages.train as stage
    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.data.batches import BatchLoader

    extract_store(fmnist, tmp_path / "f.zarr", "--views", "clean,flip", "--dtype", "float32")
    batches, targets = [], []
    make_batch, loss = BatchLoader.batch, stage.alignment_loss
    monkeypatch.setattr(BatchLoader, "batch", lambda self, e, i: batches.append(make_batch(self, e, i)) or batches[-1])
    monkeypatch.setattr(stage, "alignment_loss", lambda p, t: targets.append(t.clone()) or loss(p, t))
    args = train_args(fmnist, tmp_path / "run", "--lambda", "0.5", epochs=1, features=tmp_path / "f.zarr")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    store = FeatureStore.open(tmp_path / "f.zarr")
    assert len(targets) == len(batches) > 0
    flips = np.concatenate([b.flipped for b in batches])
    assert flips.any() and not flips.all()
    for batch, target in zip(batches, targets):
        stored = store.read(batch.rows)[np.arange(len(batch.rows)), batch.flipped.astype(int)]  # views: clean, flip
        assert target.shape[1] == 1 and torch.equal(target[:, 0], torch.from_numpy(stored))  # one target per image
    stats = json.loads((tmp_path / "run" / "stats.jsonl").read_text().splitlines()[0])
    assert 0 < stats["align"] < 2
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["head"]["net.4.weight"].shape == (32, 32)  # head: 200 -> 32 hidden -> 32 (tiny-gray's width)


def test_flipped_images_get_the_flip_view(tmp_path, fmnist):
    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.data import open_source
    from dra_pipeline.data.batches import BatchLoader, BatchPlan
    from dra_pipeline.data.indexed import IndexedImages

    extract_store(fmnist, tmp_path / "f.zarr", "--views", "clean,flip")
    store = FeatureStore.open(tmp_path / "f.zarr")
    images = IndexedImages([open_source("fashion-mnist", data_dir=fmnist)])
    plan = BatchPlan(np.arange(80), np.arange(0), batch_size=32, synthetic_fraction=0, steps_per_epoch=2, seed=0)
    batch = BatchLoader(plan, images, store=store, padding=0, flip=True).batch(0, 0)
    feats = store.read(batch.rows)
    assert batch.flipped.any() and (~batch.flipped).any()
    np.testing.assert_array_equal(batch.targets[batch.flipped, 0].numpy(), feats[batch.flipped, 1])
    np.testing.assert_array_equal(batch.targets[~batch.flipped, 0].numpy(), feats[~batch.flipped, 0])
    raw, _ = images.read(batch.rows)
    np.testing.assert_array_equal(
        (batch.images[batch.flipped] * 255).round().byte().permute(0, 2, 3, 1).numpy(), raw[batch.flipped][:, :, ::-1]
    )


def test_sampler_fractions_and_determinism():
    from dra_pipeline.data.batches import BatchPlan

    plan = BatchPlan(
        np.arange(100), np.arange(100, 1100), batch_size=50, synthetic_fraction=0.7, steps_per_epoch=4, seed=3
    )
    rows = np.stack([plan.rows(0, i) for i in range(4)])
    assert ((rows >= 100).sum(1) == 35).all() and ((rows < 100).sum(1) == 15).all()
    real = rows[rows < 100]
    assert len(np.unique(real)) == 60, "real rows without replacement within an epoch"
    np.testing.assert_array_equal(plan.rows(0, 2), rows[2])
    assert not np.array_equal(plan.rows(1, 0), rows[0])


def test_nan_stops_within_a_step_and_keeps_the_last_checkpoint(tmp_path, fmnist, monkeypatch):
    import dra_pipeline.stages.train as stage

    assert CliRunner().invoke(main, train_args(fmnist, tmp_path / "run", epochs=1)).exit_code == 0
    before = (tmp_path / "run" / "last.pt").read_bytes()
    calls = {"n": 0}
    original = stage.trades

    def poisoned(*args, **kw):
        out = original(*args, **kw)
        calls["n"] += 1
        if calls["n"] == 2:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(stage, "trades", poisoned)
    result = CliRunner().invoke(main, train_args(fmnist, tmp_path / "run2", epochs=1))
    assert result.exit_code == 1 and "loss is nan at epoch 1, batch 2" in result.output
    assert calls["n"] == 2, "stopped at the first non-finite step"
    assert not (tmp_path / "run2" / "last.pt").exists() and (tmp_path / "run2" / "config.yaml").exists()
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_nan_weights_after_the_last_step_of_an_epoch_stop_before_any_checkpoint(tmp_path, fmnist, monkeypatch):
    """The last update of an epoch makes the weights NaN while its loss was finite: no checkpoint may hold them."""
    original = torch.optim.SGD.step

    def poisoned(self, *args, **kw):
        out = original(self, *args, **kw)
        for group in self.param_groups:
            for p in group["params"]:
                p.data.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned)
    result = CliRunner().invoke(main, train_args(fmnist, tmp_path / "run", "--set", "data.epoch_images=16", epochs=1))
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 1 and len(lines) == 1 and "not finite after epoch 1" in lines[0]
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "best-ema.pt").exists()


def test_a_stats_line_lost_to_a_kill_after_the_checkpoint_is_restored_on_resume(tmp_path, fmnist):
    run = tmp_path / "run"
    assert CliRunner().invoke(main, train_args(fmnist, run, epochs=2)).exit_code == 0
    stats = (run / "stats.jsonl").read_text().splitlines()
    (run / "stats.jsonl").write_text(stats[0] + "\n")  # killed after saving epoch 2's checkpoint, before its line
    (run / ".last.pt.0123abcd.tmp").write_bytes(b"half a checkpoint")  # and a save killed midway
    (run / ".report.json.4567cdef.tmp").write_text("{")  # an evaluate writing beside the run at the same time
    assert CliRunner().invoke(main, train_args(fmnist, run, epochs=2)).exit_code == 0
    assert (run / "stats.jsonl").read_text().splitlines() == stats
    assert [p.name for p in run.glob(".*.tmp")] == [".report.json.4567cdef.tmp"]  # only the run's own are dropped


def test_rerun_with_another_config_in_the_same_run_is_refused(tmp_path, fmnist):
    runner = CliRunner()
    assert runner.invoke(main, train_args(fmnist, tmp_path / "run", epochs=1)).exit_code == 0
    other = runner.invoke(main, train_args(fmnist, tmp_path / "run", "--set", "train.lr=0.3", epochs=1))
    assert other.exit_code == 1 and "different config (train.lr)" in other.output


def test_unknown_config_key_is_refused(tmp_path, fmnist):
    unknown = CliRunner().invoke(main, train_args(fmnist, tmp_path / "x", "--set", "train.lrr=1"))
    assert unknown.exit_code == 1 and "unknown config key 'train.lrr'" in unknown.output


def test_dra_without_a_store_is_refused(tmp_path, fmnist):
    no_store = CliRunner().invoke(main, train_args(fmnist, tmp_path / "y", "--lambda", "1"))
    assert no_store.exit_code == 1 and "DRA needs teacher features" in no_store.output


def test_a_store_whose_synthetic_source_is_missing_or_changed_is_refused(tmp_path, fmnist):
    runner = CliRunner()
    synth = tmp_path / "s.npz"
    np.savez(synth, image=fixtures.random_images(20, 28, 28, 1), label=np.arange(20) % 10)
    extract_store(fmnist, tmp_path / "f.zarr", "--synthetic", str(synth))
    synth.unlink()
    args = train_args(fmnist, tmp_path / "z", "--lambda", "1", epochs=1, features=tmp_path / "f.zarr")
    missing = runner.invoke(main, args)
    assert missing.exit_code == 1 and "s.npz not found" in missing.output
    np.savez(synth, image=fixtures.random_images(20, 28, 28, 1, seed=9), label=np.arange(20) % 10)
    changed = runner.invoke(main, args)
    assert changed.exit_code == 1 and "sources[1].fingerprint" in changed.output


def _train_subprocess(args):
    return subprocess.Popen(
        [sys.executable, "-m", "dra_pipeline", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bitwise_equal(tmp_path, fmnist):
    epochs = 6
    extract_store(fmnist, tmp_path / "f.zarr")

    def args(out):
        return train_args(fmnist, out, "--lambda", "0.5", epochs=epochs, features=tmp_path / "f.zarr")

    ref = _train_subprocess(args(tmp_path / "ref"))
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-2000:]
    proc = _train_subprocess(args(tmp_path / "crashed"))
    # kill as soon as the first epoch is checkpointed: an epoch of this tiny run can take well under a second on a quiet
    # machine, so waiting longer could let the run finish (six epochs leave several epochs between checkpoint and end)
    while not (tmp_path / "crashed" / "last.pt").exists():
        time.sleep(0.01)
        assert proc.poll() is None, "finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.load(tmp_path / "crashed" / "last.pt", weights_only=True)["epoch"] < epochs
    resumed = _train_subprocess(args(tmp_path / "crashed"))
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "crashed" / "last.pt", weights_only=True)
    for part in ("model", "ema", "head"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["momentum_buffer"], b["optimizer"]["state"][k]["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"]


def test_train_never_builds_a_teacher(tmp_path, fmnist):
    """A store whose teacher checkpoint is gone still trains, and no teacher module is even imported."""
    import shutil

    from dra_pipeline.teachers.edm import WEIGHTS_DIR

    ckpt = tmp_path / "teacher.safetensors"
    shutil.copy(WEIGHTS_DIR / "edm-fmnist.safetensors", ckpt)
    result = CliRunner().invoke(
        main,
        [
            "extract",
            "--teacher",
            "edm-fmnist",
            "--checkpoint",
            str(ckpt),
            "--data-dir",
            str(fmnist),
            "--out",
            str(tmp_path / "f.zarr"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    ckpt.unlink()
    args = train_args(fmnist, tmp_path / "run", "--lambda", "0.5", epochs=1, features=tmp_path / "f.zarr")
    code = (
        "import sys; from dra_pipeline.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "teachers = [m for m in sys.modules if m.startswith('dra_pipeline.teachers')]\n"
        "assert not teachers, f'a teacher was imported: {teachers}'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_online_teacher_matches_cached_targets_and_width_is_checked(tmp_path, fmnist):
    import dra_pipeline.jobs.train as run_module
    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.data import open_source
    from dra_pipeline.data.indexed import IndexedImages

    extract_store(fmnist, tmp_path / "f.zarr", "--views", "clean,flip", "--dtype", "float32")
    store = FeatureStore.open(tmp_path / "f.zarr")
    images = IndexedImages([open_source("fashion-mnist", data_dir=fmnist)])
    targets = run_module.online_teacher(store, images, torch.device("cpu"))
    rows, flipped = np.array([5, 0, 33]), np.array([True, False, True])
    cached = store.read(rows)[np.arange(3), flipped.astype(int)]
    np.testing.assert_allclose(targets(rows, flipped).numpy(), cached[:, None], atol=1e-5)

    a = train_args(fmnist, tmp_path / "run", "--lambda", "0.5", epochs=1, features=tmp_path / "f.zarr")
    assert CliRunner().invoke(main, a).exit_code == 0
    extract_store(fmnist, tmp_path / "f.zarr", "--overwrite", "--layer", "dec.16x16_block1")  # 16-d, not 32-d
    resumed = CliRunner().invoke(main, a)  # the run records the store it trained on: another one is refused
    assert resumed.exit_code == 1 and "was trained on a store with identity" in resumed.output


def test_bf16_autocast_and_channels_last_train(tmp_path, fmnist):
    """The GPU settings forced on CPU: forwards under bf16 autocast, NHWC tensors; weights stay float32."""
    out = tmp_path / "run"
    args = train_args(fmnist, out, "--set", "train.precision=bf16", "--set", "train.channels_last=on", epochs=1)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.jsonl").read_text())
    assert np.isfinite(stats["loss"]) and 0 <= stats["val_robust"] <= stats["val_clean"] <= 1
    last = torch.load(out / "last.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for k, v in last["model"].items() if v.is_floating_point())


def test_compile_option_steps_through_torch_compile(tmp_path, fmnist, monkeypatch):
    """train.compile=true routes every step through torch.compile's wrapper (dynamo tracing with the eager
    backend here: inductor's code generation takes minutes on these CPUs); checkpoints keep plain names."""
    calls = []

    def eager_compile(model, **kw):
        calls.append(model)
        return torch._dynamo.optimize("eager")(model)

    monkeypatch.setattr(torch, "compile", eager_compile)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, train_args(fmnist, out, "--set", "train.compile=true", epochs=1))
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert not any(k.startswith("_orig_mod") for k in torch.load(out / "last.pt", weights_only=True)["model"])


def test_online_teacher_tells_a_conditional_teacher_what_extraction_told_it(tmp_path, fmnist):
    """A store made with --teacher-labels fixed: the online targets are the features of class 0, like the cached."""
    import dra_pipeline.jobs.train as run_module
    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.data import open_source
    from dra_pipeline.data.indexed import IndexedImages

    fixed = ("--teacher", "edm-fmnist", "--teacher-labels", "fixed", "--dtype", "float32")
    extract_store(fmnist, tmp_path / "f.zarr", *fixed)
    store = FeatureStore.open(tmp_path / "f.zarr")
    assert store.provenance["teacher_labels"] == "fixed"
    images = IndexedImages([open_source("fashion-mnist", data_dir=fmnist)])
    rows = np.array([1, 2, 7])  # images whose true labels are not all 0
    assert (images.read(rows)[1] != 0).any()
    targets = run_module.online_teacher(store, images, torch.device("cpu"))
    online = targets(rows, np.zeros(3, dtype=bool)).numpy()
    np.testing.assert_allclose(online, store.read(rows)[:, :1], atol=1e-4)
