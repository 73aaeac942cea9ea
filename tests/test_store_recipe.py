"""`train --features STORE` without --config: the store chooses the preset (dataset of its real rows, synthetic rows
or not), DRA on at lambda 0.5, one line saying which and why; --config wins, --lambda 0 gives the baseline."""

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dra_pipeline.cache import FeatureStore
from dra_pipeline.cli import main
from dra_pipeline.config import load_config, preset_names
from dra_pipeline.presets import preset_for_store

CIFAR_EPS, FMNIST_EPS, IMAGENET_EPS = 8 / 255, 0.1, 4 / 255


def make_store(path, real_kind, n_synthetic=0, dim=256, teacher="edm-cifar10", **real):
    """A store's manifest without features (the choice reads only the manifest): 3 real rows, then synthetic ones;
    `real` adds fields to the real source's record (image_shape, options)."""
    sources = [
        {"kind": real_kind, "path": f"/data/{real_kind}", "split": "train", "count": 3, "fingerprint": "r", **real}
    ]
    if n_synthetic:
        sources.append({"kind": "npz", "path": "/1m.npz", "split": "all", "count": n_synthetic, "fingerprint": "s"})
    rows = 3 + n_synthetic
    FeatureStore.create(
        path, sources=sources, labels=np.zeros(rows), views=["clean"], dim=dim, meta={"teacher": teacher}
    )
    return path


def dry_run(store, *extra):
    result = CliRunner().invoke(main, ["train", "--features", str(store), "--dry-run", *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(
    "kind, synthetic, preset, model, eps",
    [
        ("cifar10", 5, "dmat-cifar10-1m-wrn28-10-dra", "wrn-28-10", CIFAR_EPS),
        ("cifar10", 0, "at-cifar10-wrn34-10-dra", "wrn-34-10", CIFAR_EPS),
        ("cifar100", 0, "at-cifar100-wrn34-10-dra", "wrn-34-10", CIFAR_EPS),
        ("cifar100", 5, "dmat-cifar100-1m-wrn28-10-dra", "wrn-28-10", CIFAR_EPS),
        ("fashion-mnist", 0, "fmnist-cpu", "small-cnn-16", FMNIST_EPS),
        ("folder", 0, "imagenet-convnext-b-dra", "convnext-b", IMAGENET_EPS),
    ],
)
def test_dry_run_prints_the_chosen_preset_and_its_config_with_dra_on(tmp_path, kind, synthetic, preset, model, eps):
    shape = [256, 256, 3] if kind == "folder" else None
    store = make_store(tmp_path / "s.zarr", kind, synthetic, image_shape=shape, options={})
    result = dry_run(store)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"preset {preset}: {store} holds 3 {kind} train rows")
    assert ("+ 5 synthetic" if synthetic else "no synthetic rows") in lines[0] and "DRA lambda 0.5" in lines[0]
    cfg = yaml.safe_load(result.stdout)  # stdout is the config alone, usable as --config
    assert cfg["model"]["name"] == model and cfg["attack"]["eps"] == pytest.approx(eps)
    assert cfg["dra"]["weight"] == 0.5
    folder = ("data.dataset=folder:/data/folder",) if kind == "folder" else ()  # the store's folder, not ImageNet's
    assert cfg == load_config(preset, ("dra.weight=0.5", *folder)).to_dict()


def test_the_at_row_preset_is_the_papers():
    cfg = load_config("at-cifar10-wrn34-10-dra")
    assert (cfg.model.name, cfg.train.loss, cfg.attack.steps, cfg.train.batch_size, cfg.train.epochs) == (
        "wrn-34-10",
        "trades",
        10,
        128,
        200,
    )
    assert cfg.attack.eps == pytest.approx(8 / 255) and cfg.attack.step == pytest.approx(2 / 255)
    assert cfg.data.synthetic_fraction == 0 and cfg.dra.weight == 0.5 and cfg.train.lr == 0.1
    assert load_config("at-cifar100-wrn34-10-dra").data.dataset == "cifar100"


def test_fashion_mnist_with_synthetic_rows_mixes_them_at_dmat_fraction(tmp_path):
    choice = preset_for_store(make_store(tmp_path / "s.zarr", "fashion-mnist", 4, dim=64, teacher="edm-fmnist"))
    assert choice.preset == "fmnist-cpu" and choice.sets == ("dra.weight=0.5", "data.synthetic_fraction=0.7")
    assert "edm-fmnist features, 64-d" in choice.reason


def test_config_wins_and_lambda_zero_is_the_baseline(tmp_path):
    store = make_store(tmp_path / "s.zarr", "cifar10")
    chosen = dry_run(store, "--config", "fmnist-cpu")
    assert chosen.stderr == "" and yaml.safe_load(chosen.stdout)["attack"]["eps"] == 0.1
    baseline = dry_run(store, "--lambda", "0")
    assert "preset at-cifar10-wrn34-10-dra" in baseline.stderr and "DRA off" in baseline.stderr
    assert yaml.safe_load(baseline.stdout)["dra"]["weight"] == 0


def test_a_store_of_a_dataset_without_a_preset_is_refused_with_the_presets(tmp_path):
    store = make_store(tmp_path / "s.zarr", "npz")
    result = CliRunner().invoke(main, ["train", "--features", str(store), "--dry-run"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no preset for a store of npz images" in lines[0]
    assert all(name in lines[0] for name in preset_names())


def test_a_folder_store_names_its_folder_and_small_images_are_refused(tmp_path):
    big = make_store(tmp_path / "big.zarr", "folder", image_shape=[256, 256, 3], options={"size": "256"})
    assert yaml.safe_load(dry_run(big).stdout)["data"]["dataset"] == "folder:/data/folder?size=256"
    small = make_store(tmp_path / "small.zarr", "folder", image_shape=[32, 32, 3], options={})
    result = CliRunner().invoke(main, ["train", "--features", str(small), "--dry-run"])
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1
    assert "holds 32x32 images, smaller than the 224-px crops of the folder preset" in lines[0]
    assert "pass --config" in lines[0]
    chosen = dry_run(small, "--config", "fmnist-cpu", "--set", "data.dataset=folder:/data/folder")
    assert yaml.safe_load(chosen.stdout)["data"]["dataset"] == "folder:/data/folder"
