"""Stage one end to end on small fixtures: store contents, resume, kill and resume, 2 ranks, bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dra_pipeline.cache import FeatureStore
from dra_pipeline.cli import main
from dra_pipeline.data import open_source
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.teachers import create_teacher
from tests import fixtures

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path, fmnist_dir):
    """Fashion-MNIST fixture (50 train rows) plus a 30-image synthetic npz: 80 rows."""
    d, _ = fmnist_dir
    synth = tmp_path / "synth.npz"
    np.savez(synth, image=fixtures.random_images(30, 28, 28, 1, seed=4), label=np.arange(30) % 10)
    return d, synth


def run_cli(*args):
    return CliRunner().invoke(main, ["extract", *map(str, args)], catch_exceptions=False)


def base_args(d, synth, out, *extra):
    return (
        "--teacher",
        "tiny-gray",
        "--data",
        "fashion-mnist",
        "--data-dir",
        d,
        "--synthetic",
        synth,
        "--out",
        out,
        "--rows-per-shard",
        16,
        "--batch-size",
        8,
        "--device",
        "cpu",
        *extra,
    )


def shard_hashes(path) -> list[str]:
    store = FeatureStore.open(path)
    return [store.record(k)["sha256"] for k in range(store.layout.num_shards)]


def test_extract_fills_the_store_with_the_teachers_features(tmp_path, data):
    d, synth = data
    out = tmp_path / "s.zarr"
    result = run_cli(*base_args(d, synth, out, "--views", "clean,flip,extra-sigma", "--dtype", "float32"))
    assert result.exit_code == 0, result.output
    store = FeatureStore.open(out)
    assert store.complete and not store.verify()
    assert store.layout.rows == 80 and store.layout.views == ("clean", "flip", "extra-sigma")
    prov = store.provenance
    assert prov["teacher"] == "tiny-gray" and prov["layer"] == "dec.8x8_block1" and prov["seed"] == 0
    assert [s["kind"] for s in store.sources] == ["fashion-mnist", "npz"] and store.sources[1]["offset"] == 50

    images = IndexedImages([open_source("fashion-mnist", data_dir=d), open_source(str(synth))])
    teacher = create_teacher("tiny-gray")
    rows = np.array([79, 3, 50, 17])  # any batch composition
    imgs, labels = images.read(rows)
    want = teacher(imgs, labels, rows, views=("clean", "flip", "extra-sigma")).numpy()
    np.testing.assert_allclose(store.read(rows), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(store.labels(), images.labels)


def test_views_differ_and_flip_is_the_mirrored_input(data):
    d, synth = data
    images = IndexedImages([open_source("fashion-mnist", data_dir=d)])
    teacher = create_teacher("tiny-gray")
    rows = np.arange(6)
    imgs, labels = images.read(rows)
    clean, flip, extra = teacher.layer_activations(imgs, labels, rows, views=("clean", "flip", "extra-sigma"))
    assert not np.allclose(clean.numpy(), flip.numpy()) and not np.allclose(clean.numpy(), extra.numpy())
    # The flip view is the network applied to the mirrored noisy input: mirroring the image and the noise
    # gives exactly the features a user would get by flipping the image first with the same noise.
    eps, _ = teacher.row_noise(rows, (1, 16, 16))
    x = teacher.preprocess(imgs)
    by_hand = teacher.capture((x + teacher.noise * eps).flip(-1), torch_full(len(rows), teacher.noise), labels)
    np.testing.assert_allclose(flip.numpy(), by_hand.numpy(), atol=1e-6)


def torch_full(n, value):
    import torch

    return torch.full((n,), float(value))


def test_rerun_resumes_and_other_settings_are_refused(tmp_path, data):
    d, synth = data
    out = tmp_path / "s.zarr"
    assert run_cli(*base_args(d, synth, out, "--n", 40)).exit_code == 0
    first = shard_hashes(out)
    (out / "done" / "000001.json").unlink()
    again = run_cli(*base_args(d, synth, out, "--n", 40))
    assert again.exit_code == 0 and "wrote 1 shards, complete" in again.output
    assert shard_hashes(out) == first
    other = run_cli(*base_args(d, synth, out, "--n", 40, "--seed", 1))
    assert other.exit_code != 0 and "seed is 0 in the store but 1 was expected" in other.output
    assert "pass --overwrite" in other.output and shard_hashes(out) == first
    replaced = run_cli(*base_args(d, synth, out, "--n", 40, "--seed", 1, "--overwrite"))
    assert replaced.exit_code == 0 and shard_hashes(out) != first


def test_decoding_threads_write_the_same_store(tmp_path, data):
    """--workers splits each shard's image reads over threads (shard 3 spans the real/synthetic boundary)."""
    d, synth = data
    one, three = tmp_path / "one.zarr", tmp_path / "three.zarr"
    assert run_cli(*base_args(d, synth, one)).exit_code == 0
    assert run_cli(*base_args(d, synth, three, "--workers", 3)).exit_code == 0
    assert shard_hashes(three) == shard_hashes(one)
    bad = CliRunner().invoke(main, ["extract", *map(str, base_args(d, synth, tmp_path / "x.zarr", "--workers", 0))])
    assert bad.exit_code != 0 and "'--workers': 0 is not in the range x>=1" in bad.output
    assert not (tmp_path / "x.zarr").exists()


def test_store_refuses_data_that_changed(tmp_path, data):
    d, synth = data
    out = tmp_path / "s.zarr"
    assert run_cli(*base_args(d, synth, out)).exit_code == 0
    np.savez(synth, image=fixtures.random_images(30, 28, 28, 1, seed=5), label=np.arange(30) % 10)
    result = run_cli(*base_args(d, synth, out))
    assert result.exit_code != 0 and "sources[1].fingerprint" in result.output


def test_missing_checkpoint_is_one_line(tmp_path, data):
    d, _ = data
    result = CliRunner().invoke(
        main,
        [
            "extract",
            "--teacher",
            "edm-cifar10",
            "--out",
            str(tmp_path / "x.zarr"),
            "--checkpoint",
            str(tmp_path / "nope.pkl"),
            "--data",
            "fashion-mnist",
            "--data-dir",
            str(d),
        ],
    )
    assert result.exit_code == 1 and "nope.pkl not found" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.zarr").exists()


def test_wrong_noise_option_for_the_family(tmp_path, data):
    d, synth = data
    result = run_cli(*base_args(d, synth, tmp_path / "s.zarr", "--t", 10))
    assert result.exit_code != 0 and "use --sigma, not --t" in result.output


def _spawn(args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dra_pipeline", "extract", *map(str, args)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _run(args, *, launcher=()) -> None:
    cmd = [sys.executable, *launcher, "-m", "dra_pipeline", "extract", *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_byte_identical(tmp_path, data):
    d, synth = data
    ref = tmp_path / "ref.zarr"
    start = time.perf_counter()
    _run(base_args(d, synth, ref))
    full = time.perf_counter() - start
    crashed = tmp_path / "crashed.zarr"
    rng = np.random.default_rng(7)
    for _ in range(5):
        proc = _spawn(base_args(d, synth, crashed))
        time.sleep(float(rng.uniform(0.2, full)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if crashed.exists():  # what is reported done is right
            store = FeatureStore.open(crashed)
            done = [k for k in range(store.layout.num_shards) if store.record(k)]
            assert all(store.record(k)["sha256"] == FeatureStore.open(ref).record(k)["sha256"] for k in done)
    _run(base_args(d, synth, crashed))
    assert shard_hashes(crashed) == shard_hashes(ref)


@pytest.mark.slow
def test_two_ranks_give_the_same_store_as_one(tmp_path, data):
    d, synth = data
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    _run(base_args(d, synth, one))
    _run(base_args(d, synth, two), launcher=fixtures.TORCHRUN_TWO)
    assert shard_hashes(two) == shard_hashes(one)
    for k in range(FeatureStore.open(one).layout.num_shards):
        assert FeatureStore.open(one)._shard_file(k).read_bytes() == FeatureStore.open(two)._shard_file(k).read_bytes()


def test_teacher_labels_fixed_tells_a_conditional_teacher_class_zero(tmp_path, fmnist_dir):
    d, _ = fmnist_dir
    stores = {}
    for told in ("true", "fixed"):
        out = tmp_path / f"{told}.zarr"
        args = ("--teacher", "edm-fmnist", "--data-dir", d, "--out", out, "--n", 16, "--rows-per-shard", 16)
        assert run_cli(*args, "--teacher-labels", told, "--device", "cpu").exit_code == 0
        stores[told] = FeatureStore.open(out)
    rows = np.arange(16)
    assert stores["fixed"].provenance["teacher_labels"] == "fixed"
    images, labels = IndexedImages([open_source("fashion-mnist", data_dir=d)]).read(rows)
    teacher = create_teacher("edm-fmnist")
    fixed = teacher(images, np.zeros_like(labels), rows).numpy().astype(np.float16)
    np.testing.assert_array_equal(stores["fixed"].read(rows), fixed)
    assert not np.array_equal(stores["true"].read(rows), stores["fixed"].read(rows))
