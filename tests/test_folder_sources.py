"""Image folders as datasets of their own: identity and normalisation from the folder, a validation split with every
class, evaluation at the training size without resizing, store names that tell folders apart, analyze on the run's
own store, and a --data-dir that does not hold the dataset named as an error."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from dra_pipeline.checkpoints import load_classifier
from dra_pipeline.cli import main
from dra_pipeline.data import dataset_name, open_source
from dra_pipeline.evaluation.points import load_points, points_source
from dra_pipeline.jobs.extract import store_name
from tests import fixtures
from tests.test_cli import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["cat", "dog", "frog", "ship"]
FAST = {
    "model.name": "wrn-16-4",
    "data.validation": 8,
    "data.epoch_images": 32,
    "data.crop_padding": 2,
    "train.batch_size": 16,
    "train.epochs": 1,
    "attack.steps": 1,
    "attack.val_steps": 1,
    "dra.hidden": 16,
}


def write_sorted_folder(root: Path, n: int = 48, size: int = 16, seed: int = 0) -> np.ndarray:
    """n RGB PNGs, n / 4 per class; class k's pixels are brighter with k (a mean that differs from ImageNet's).
    Returns the images in the folder's row order (by class, then file name)."""
    labels = np.arange(n) % len(CLASSES)
    images = (fixtures.random_images(n, size, size, 3, seed=seed) // 4 + 40 * labels[:, None, None, None]).astype(
        np.uint8
    )
    fixtures.write_folder(root, images, labels, CLASSES)
    order = np.argsort(labels, kind="stable")
    return images[order]


def train(folder: Path, out: Path, *extra: str, features: Path | None = None, **sets):
    settings = {**FAST, "data.dataset": str(folder), **sets}
    args = ["train", "--config", "fmnist-cpu", "--out", str(out), *(["--features", str(features)] if features else [])]
    args += [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]
    return CliRunner().invoke(main, [*args, *extra])


def test_a_class_sorted_folder_trains_with_every_class_in_validation_and_its_own_identity(tmp_path, monkeypatch):
    images = write_sorted_folder(tmp_path / "pets" / "train")
    from dra_pipeline.jobs import train as train_job

    held = {}
    real_train = train_job.train

    def spy(cfg, state, loader, run, *, val, **kw):
        held["labels"] = val[1].numpy()
        return real_train(cfg, state, loader, run, val=val, **kw)

    monkeypatch.setattr(train_job, "train", spy)
    result = train(tmp_path / "pets" / "train", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert np.bincount(held["labels"]).tolist() == [2, 2, 2, 2]  # spread by default: the same number per class

    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    info = torch.load(tmp_path / "run" / "best-ema.pt", weights_only=True)["model_info"]
    source = open_source(str(tmp_path / "pets" / "train"))
    assert info["dataset"] == config["dataset"]["name"] == "pets/train"  # the folder, never "imagenet"
    assert info["dataset_fingerprint"] == config["dataset"]["fingerprint"] == source.fingerprint()
    # normalisation computed over the training rows (the validation rows left out), recorded in model_info
    norm = info["normalisation"]
    assert norm == config["normalisation"] and norm["name"] == "computed" and norm["rows"] == norm["of"] == 40
    from dra_pipeline.data.batches import validation_rows

    val = validation_rows(source.labels, 8, "spread", class_sorted=True)
    pixels = images[np.setdiff1d(np.arange(48), val)].reshape(-1, 3) / 255
    np.testing.assert_allclose(norm["mean"], pixels.mean(0), atol=1e-6)
    np.testing.assert_allclose(norm["std"], pixels.std(0), atol=1e-6)
    # computed once: the rerun resumes with the recorded values (same config.yaml) without computing them again
    monkeypatch.setattr(train_job, "channel_statistics", lambda *a, **k: pytest.fail("computed again"))
    result = train(tmp_path / "pets" / "train", tmp_path / "run")
    assert result.exit_code == 0 and "resuming" in result.output, result.output
    model = load_classifier(tmp_path / "run" / "best-ema.pt").model  # evaluate and analyze rebuild the same model
    np.testing.assert_allclose(model.mean.flatten().tolist(), norm["mean"])
    np.testing.assert_allclose(model.std.flatten().tolist(), norm["std"])

    # DM-AT's `first` on a class-sorted folder would validate on one class: refused, never silent
    result = train(tmp_path / "pets" / "train", tmp_path / "first", **{"data.validation_rows": "first"})
    assert_one_line_error(result, "validation rows hold 1 of the 4 classes")
    assert not (tmp_path / "first").exists()
    # a named normalisation is taken as named
    result = train(tmp_path / "pets" / "train", tmp_path / "inet", **{"data.normalisation": "imagenet"})
    assert result.exit_code == 0, result.output
    named = torch.load(tmp_path / "inet" / "best-ema.pt", weights_only=True)["model_info"]["normalisation"]
    assert named == {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    result = train(tmp_path / "pets" / "train", tmp_path / "bad", **{"data.normalisation": "mnist"})
    assert_one_line_error(result, "data.normalisation must be auto or one of")


def test_evaluate_on_a_folder_at_the_training_size_uses_no_resize(tmp_path):
    write_sorted_folder(tmp_path / "pets" / "train")
    test_images = write_sorted_folder(tmp_path / "pets" / "test", n=12, seed=1)
    assert train(tmp_path / "pets" / "train", tmp_path / "run").exit_code == 0
    run = tmp_path / "run"
    args = ["evaluate", "--run", str(run), "--data", str(tmp_path / "pets" / "test"), "--n", "4", "--attack", "fgsm"]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    assert report["data"]["preprocessing"] == "none" and report["trial"] is None
    rows = np.array([int(r) for r in load_points("x", "test", 4, data=str(tmp_path / "pets" / "test")).rows])
    points = load_points("x", "test", 4, data=str(tmp_path / "pets" / "test"), image_size=[16, 16], channels=3)
    assert points.description["preprocessing"] == "none" and points.images.shape == (4, 3, 16, 16)
    np.testing.assert_array_equal((points.images * 255).round().byte().permute(0, 2, 3, 1).numpy(), test_images[rows])

    # RobustBench's Res256Crop224 stays the default for ImageNet-size models (and models that record no size)
    folder = str(tmp_path / "pets" / "test")
    assert points_source("x", "test", folder, None, image_size=(224, 224))[1] == "Res256Crop224"
    assert points_source("x", "test", folder, None)[1] == "Res256Crop224"
    assert points_source("x", "test", folder + "?size=8", None, image_size=(8, 8))[1] == "none"  # its own size
    with pytest.raises(Exception, match=r"16x16x3 but the model takes 32x32x3 \(set --preprocessing\)"):
        load_points("x", "test", 2, data=folder, image_size=(32, 32), channels=3)
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--device", "cpu"])
    assert_one_line_error(result, "the model was trained on pets/train, not a named dataset; pass --data")


def test_default_store_names_come_from_the_dataset_identity(tmp_path, monkeypatch):
    for parent in ("cifar10-jpeg", "imagenet"):
        write_sorted_folder(tmp_path / parent / "train", n=8)
    cifar, inet = (open_source(str(tmp_path / p / "train")) for p in ("cifar10-jpeg", "imagenet"))
    assert (store_name(cifar), store_name(inet)) == ("cifar10-jpeg-train", "imagenet-train")
    assert store_name(open_source(str(tmp_path / "imagenet" / "train") + "?size=8")) == "imagenet-train-size8"
    assert (
        dataset_name(cifar.spec) == "cifar10-jpeg/train" and dataset_name(cifar.spec.to_dict()) == "cifar10-jpeg/train"
    )
    data = tmp_path / "fm"
    fixtures.write_fashion_mnist(data, n_train=8, n_test=4)
    assert store_name(open_source("fashion-mnist", data_dir=data)) == "fashion-mnist"
    assert store_name(open_source("fashion-mnist:test", data_dir=data)) == "fashion-mnist-test"  # not the train store

    monkeypatch.chdir(tmp_path)
    for parent in ("cifar10-jpeg", "imagenet"):  # two folders named train: two stores
        args = ["extract", "--teacher", "tiny", "--data", f"{parent}/train", "--rows-per-shard", "8", "--device", "cpu"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["cifar10-jpeg-train.zarr", "imagenet-train.zarr"]


def test_a_data_dir_without_the_named_dataset_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("DRA_DATA_DIR", raising=False)
    write_sorted_folder(tmp_path / "pets", n=4)
    (tmp_path / "empty").mkdir()
    fixtures.write_cifar10(
        tmp_path / "c10" / "cifar-10-batches-py", fixtures.random_images(10, 32, 32, 3), np.arange(10)
    )
    cases = {
        "empty": "it holds no dataset this tool knows",
        "c10": "it holds cifar10 files",
        "pets": f"it is an image folder: pass it as --data {tmp_path / 'pets'}",
    }
    for folder, why in cases.items():
        result = CliRunner().invoke(main, ["data", "info", "fashion-mnist", "--data-dir", str(tmp_path / folder)])
        assert_one_line_error(result, f"--data-dir {tmp_path / folder} holds no fashion-mnist train")
        assert why in result.output and "train-images-idx3-ubyte" in result.output
    args = ["extract", "--teacher", "tiny-gray", "--data", "fashion-mnist", "--data-dir", str(tmp_path / "empty")]
    assert_one_line_error(
        CliRunner().invoke(main, [*args, "--out", str(tmp_path / "s.zarr")]), "holds no fashion-mnist"
    )
    assert not (tmp_path / "s.zarr").exists()


def test_analyze_a_folder_run_with_its_own_store(tmp_path):
    write_sorted_folder(tmp_path / "pets" / "train")
    store = tmp_path / "pets.zarr"
    args = ["extract", "--teacher", "tiny", "--data", str(tmp_path / "pets" / "train"), "--out", str(store)]
    result = CliRunner().invoke(main, [*args, "--rows-per-shard", "24", "--device", "cpu", "--views", "clean,flip"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = train(tmp_path / "pets" / "train", run, "--lambda", "0.5", features=store)
    assert result.exit_code == 0, result.output
    args = ["analyze", "--run", str(run), "--n", "8", "--probe-n", "4", "--pgd-steps", "1", "--sae-steps", "5"]
    result = CliRunner().invoke(main, [*args, "--what", "align-uniform,cknna,teacher-probe", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "analysis" / "analysis.json").read_text())
    assert record["dataset"] == "pets/train" and record["store"] == str(store)
    assert record["n_test"] == 8  # a folder has no test split: the run's held-out rows stand in, and it says so
    assert (
        "test images: 8 of the run's 8 held-out validation rows of pets/train"
        in (run / "analysis" / "analysis.md").read_text()
    )


def test_analyze_a_run_trained_on_centre_crops_of_its_store_images(tmp_path):
    """The store holds the whole 16 px images; the run trained on 12 px crops: analyze crops the same way."""
    write_sorted_folder(tmp_path / "pets" / "train")
    store = tmp_path / "pets.zarr"
    args = ["extract", "--teacher", "tiny", "--data", str(tmp_path / "pets" / "train"), "--out", str(store)]
    assert CliRunner().invoke(main, [*args, "--rows-per-shard", "24", "--device", "cpu"]).exit_code == 0
    run = tmp_path / "run"
    crops = {"data.crop_size": 12, "data.crop_padding": 0}
    result = train(tmp_path / "pets" / "train", run, "--lambda", "0.5", features=store, **crops)
    assert result.exit_code == 0, result.output
    assert load_classifier(run / "best-ema.pt").info["image_size"] == [12, 12]
    args = ["analyze", "--run", str(run), "--n", "8", "--pgd-steps", "1", "--what", "align-uniform,cknna"]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "analysis" / "analysis.json").read_text())["n_test"] == 8
