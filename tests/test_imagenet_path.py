"""The ImageNet path at toy size: an image folder, the tiny LightningDiT teacher, a timm-style recipe (Lion, random
224-style crops, class-spread validation), trained end to end from the store."""

import json

import numpy as np
import torch
from click.testing import CliRunner

from dra_pipeline.cli import main
from dra_pipeline.config import load_config
from dra_pipeline.data.batches import augment, validation_rows
from dra_pipeline.models import create_model
from dra_pipeline.stages.train import build_state
from tests import fixtures


def test_extract_then_train_on_a_64px_folder_with_the_tiny_lightningdit(tmp_path):
    root = tmp_path / "images"
    fixtures.write_folder(root, fixtures.random_images(40, 64, 64, 3, seed=7), np.arange(40) % 4, list("abcd"))
    store = tmp_path / "s.zarr"
    result = CliRunner().invoke(
        main,
        [
            "extract",
            "--teacher",
            "lightningdit-tiny",
            "--data",
            str(root),
            "--out",
            str(store),
            "--rows-per-shard",
            "16",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--views",
            "clean,flip",
        ],
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    sets = [
        "model.name=wrn-16-4",
        "model.checkpoint=",
        "data.validation=8",
        "data.workers=3",
        "data.epoch_images=32",
        "train.batch_size=8",
        "train.epochs=2",
        "attack.steps=1",
        "attack.val_steps=1",
        "data.crop_size=56",
        "dra.hidden=32",
        "train.device=cpu",
        "train.channels_last=off",
        "train.precision=fp32",
    ]
    args = ["train", "--features", str(store), "--config", "imagenet-convnext-b-dra", "--out", str(run)]
    result = CliRunner().invoke(main, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in stats] == [1, 2] and all(np.isfinite(s["loss"]) and s["align"] > 0 for s in stats)
    saved = torch.load(run / "best-ema.pt", weights_only=True)
    info = saved["model_info"]
    # the folder is its own dataset; the ImageNet preset names ImageNet's normalisation explicitly
    assert info["dataset"] == f"{tmp_path.name}/images" and info["image_size"] == [56, 56]
    assert info["normalisation"] == {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert type(torch.load(run / "last.pt", weights_only=True)["optimizer"]["param_groups"][0]["betas"]) is tuple


def test_spread_validation_takes_the_same_number_from_every_class_of_a_sorted_folder():
    labels = np.repeat(np.arange(10), 100)  # a folder's rows: sorted by class
    spread = validation_rows(labels, 50, "spread", class_sorted=True)
    assert np.bincount(labels[spread]).tolist() == [5] * 10 and len(np.unique(spread)) == 50
    assert set(labels[validation_rows(labels, 50, "first", class_sorted=True)]) == {0}
    assert (validation_rows(labels, 50, "auto", class_sorted=True) == spread).all()  # a folder: spread
    assert validation_rows(labels, 50, "auto", class_sorted=False).tolist() == list(range(50))  # DM-AT's first
    uneven = np.repeat(np.arange(3), [2, 50, 50])  # 7 rows asked: 3 / 2 / 2, but class 0 keeps one training row
    held = validation_rows(uneven, 7, "spread", class_sorted=True)
    assert np.bincount(uneven[held]).tolist() == [1, 2, 2]


def test_crop_size_takes_random_windows_inside_the_image():
    images = np.arange(4 * 8 * 8).reshape(4, 8, 8, 1).astype(np.uint8)
    out, _ = augment(images, padding=0, flip=False, crop_size=5, rng=np.random.default_rng(0))
    assert out.shape == (4, 5, 5, 1)
    for i in range(4):  # each crop is a contiguous window of its own image
        y, x = divmod(int(out[i, 0, 0, 0]) - i * 64, 8)
        np.testing.assert_array_equal(out[i], images[i, y : y + 5, x : x + 5])


def test_imagenet_preset_uses_lion_and_exempts_layer_norms_from_weight_decay():
    cfg = load_config("imagenet-convnext-b-dra")
    assert (cfg.train.optimizer, cfg.attack.steps, round(cfg.attack.eps * 255, 6)) == ("lion", 3, 4.0)
    model = create_model("convnext-b", dataset="imagenet", num_classes=1000, in_channels=3)
    state = build_state(cfg, model, 1152, 10, model_info={})
    assert type(state.optimizer).__name__ == "Lion"
    decay, no_decay, head = state.optimizer.param_groups  # the DRA head has its own group
    norms = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    assert norms and norms <= {id(p) for p in no_decay["params"]} and no_decay["weight_decay"] == 0
