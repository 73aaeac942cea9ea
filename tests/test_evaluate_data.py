"""`evaluate` on other sources than a named test split: an image folder with RobustBench's ImageNet preprocessing
(Res256Crop224, checked against torchvision), a fixed random selection, a subset list, and their errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dra_pipeline.cli import main
from dra_pipeline.data.folder import resize_and_crop
from dra_pipeline.errors import DraError
from dra_pipeline.evaluation.points import load_points
from dra_pipeline.models import create_model
from tests.test_cli import assert_one_line_error

SIZES = [(500, 375), (375, 500), (257, 300), (301, 259), (256, 256), (230, 240), (1024, 683)]  # (w, h)


def write_varied_folder(root: Path, sizes=SIZES, classes=("n01", "n02", "n03")) -> list[str]:
    """RGB JPEGs of the given sizes, dealt round-robin into class folders; returns their relative paths."""
    rng = np.random.default_rng(0)
    names = []
    for i, (w, h) in enumerate(sizes):
        name = f"{classes[i % len(classes)]}/img_{i:03d}.JPEG"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name, quality=90)
        names.append(name)
    return names


def test_res256crop224_is_torchvision_resize_then_center_crop_pixel_for_pixel(tmp_path):
    from torchvision import transforms

    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    rng = np.random.default_rng(1)
    for w, h in SIZES:
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        ours = np.asarray(resize_and_crop(im, 256, 224, "bilinear"))
        assert ours.shape == (224, 224, 3)
        np.testing.assert_array_equal(ours, np.asarray(reference(im)), err_msg=f"{w}x{h}")
    crop_only = transforms.CenterCrop(101)(im)
    np.testing.assert_array_equal(np.asarray(resize_and_crop(im, None, 101)), np.asarray(crop_only))


def test_folder_points_random_selection_and_subset_list(tmp_path):
    names = write_varied_folder(tmp_path / "val")
    points = load_points("imagenet", "test", 4, data=str(tmp_path / "val"))
    assert points.images.shape == (4, 3, 224, 224) and points.images.dtype == torch.float32
    d = points.description
    assert d["preprocessing"] == "Res256Crop224" and d["selection"] == "random 4 of 7 (seed 0)"
    rows = points.rows.tolist()
    assert rows == sorted(rows) and len(set(rows)) == 4
    assert load_points("imagenet", "test", 4, data=str(tmp_path / "val")).rows.tolist() == rows  # fixed draw
    index = sorted(names)  # the folder's row order: by class folder, then path
    assert points.labels.tolist() == [["n01", "n02", "n03"].index(index[r].split("/")[0]) for r in rows]

    listed = tmp_path / "subset.txt"
    listed.write_text(f"{names[5]}\n2\n\n{names[0]}\n")
    subset = load_points("imagenet", "test", None, data=str(tmp_path / "val"), subset=listed)
    assert subset.rows.tolist() == [index.index(names[5]), 2, index.index(names[0])]
    assert subset.description["selection"].startswith("3 listed in subset.txt (sha256 ")
    assert (
        load_points("imagenet", "test", 2, data=str(tmp_path / "val"), subset=listed).rows.tolist()
        == subset.rows.tolist()[:2]
    )

    first = load_points("imagenet", "test", 3, data=str(tmp_path / "val"), selection="first")
    assert first.rows.tolist() == [0, 1, 2] and first.description["selection"] == "first 3 of 7"


def test_folder_points_errors(tmp_path):
    write_varied_folder(tmp_path / "val")
    val = str(tmp_path / "val")
    with pytest.raises(DraError, match="pass --data"):
        load_points("imagenet", "test", 4)
    with pytest.raises(DraError, match="set --preprocessing"):
        load_points("imagenet", "test", 4, data=val, image_size=(256, 256), channels=3)
    bad = tmp_path / "bad.txt"
    bad.write_text("n01/img_000.JPEG\nn09/missing.JPEG\n")
    with pytest.raises(DraError, match=r"bad.txt:2: 'n09/missing.JPEG' not in the folder's index"):
        load_points("imagenet", "test", None, data=val, subset=bad)
    bad.write_text("1\n1\n")
    with pytest.raises(DraError, match="twice"):
        load_points("imagenet", "test", None, data=val, subset=bad)
    bad.write_text("0\n1\n")
    with pytest.raises(DraError, match="--n 3 exceeds the 2 entries"):
        load_points("imagenet", "test", 3, data=val, subset=bad)
    with pytest.raises(DraError, match="--n 8 exceeds the 7 images"):
        load_points("imagenet", "test", 8, data=val)
    with pytest.raises(DraError, match="smaller than the crop 288"):  # Crop288 takes images of 288 px or more
        load_points("imagenet", "test", None, data=val, preprocessing="Crop288")


def test_command_evaluates_an_image_folder_model_on_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    for i in range(9):
        (tmp_path / "val" / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(tmp_path / "val" / f"c{i % 3}/{i}.png")
    torch.manual_seed(0)
    model = create_model("small-cnn", dataset="imagenet", num_classes=3, in_channels=3)
    info = {
        "name": "small-cnn",
        "dataset": "imagenet",
        "num_classes": 3,
        "in_channels": 3,
        "image_size": [28, 28],
        "eps": 4 / 255,
    }
    Path("runs/inet").mkdir(parents=True)
    torch.save({"ema": model.state_dict(), "model_info": info, "epoch": 1}, "runs/inet/best-ema.pt")

    result = CliRunner().invoke(main, ["evaluate", "--run", "runs/inet"])
    assert_one_line_error(result, "pass --data")
    result = CliRunner().invoke(main, ["evaluate", "--run", "runs/inet", "--data", "val", "--preprocessing", "Crop288"])
    assert_one_line_error(result, "smaller than the crop 288")
    # no --preprocessing: the images already have the model's 28 px, so none (not Res256Crop224's 224 px)
    args = ["evaluate", "--run", "runs/inet", "--data", "val", "--n", "5", "--attack", "apgd-ce", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(Path("runs/inet/report.json").read_text())
    assert report["data"]["selection"] == "random 5 of 9 (seed 0)" and report["data"]["preprocessing"] == "none"
    assert report["robust"]["n"] == 5 and report["attack"]["eps"] == pytest.approx(4 / 255)
