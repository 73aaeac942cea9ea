"""Linear probes over layers x noise levels, massive-channel detection and `--zero-channels`, on tiny teachers."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dra_pipeline.cli import main
from dra_pipeline.data import open_source
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.errors import DraError
from dra_pipeline.linear_probe import linear_probe
from dra_pipeline.seeding import subset_rows
from dra_pipeline.teachers import create_teacher
from dra_pipeline.teachers.layer_probe import grid_features, probe
from dra_pipeline.teachers.massive import MASSIVE_RATIO, find_massive_channels, resolve_zero_channels

LAYERS = ["dec.8x8_in1", "dec.8x8_block1"]
PLANTED = 5  # channel of dec.8x8_block1 made massive


pytestmark = pytest.mark.usefixtures("one_thread")


def separable_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 gray images of 4 classes: class k lights up image row 4k; dim noise elsewhere."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.integers(0, 40, size=(n, 16, 16, 1), dtype=np.uint8)
    images[np.arange(n), 4 * labels] = 255
    return images, labels


def npz_images(tmp_path, n_train=40, n_test=20) -> IndexedImages:
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = separable_images(n, seed)
        np.savez(tmp_path / f"{split}.npz", image=images, label=labels)
    return IndexedImages([open_source(str(tmp_path / f"{s}.npz")) for s in ("train", "test")])


def planted_teacher(**kw):
    """tiny-gray with channel PLANTED of dec.8x8_block1 scaled 1000x (both branches of the residual block)."""
    t = create_teacher("tiny-gray", **kw)
    block = t.feature_modules()["dec.8x8_block1"]
    with torch.no_grad():
        for conv in (block.conv1, block.skip):
            conv.weight[PLANTED] *= 1000
            conv.bias[PLANTED] += 1000
    return t


def fmnist_sample(n=24, seed=0):
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 16, 16, 1), dtype=np.uint8)
    return images, np.arange(n) % 10, np.arange(n)


def test_linear_probe_separates_gaussian_clusters():
    g = torch.Generator().manual_seed(0)
    centers = 10 * torch.randn(3, 8, generator=g)
    y = torch.arange(300) % 3
    x = centers[y] + torch.randn(300, 8, generator=g)
    assert linear_probe(x[:200], y[:200], x[200:], y[200:]) == 1.0
    assert linear_probe(x[:200], y[:200], x[200:], y[200:]) == linear_probe(x[:200], y[:200], x[200:], y[200:])


def test_probe_table_shape_and_pixel_baseline(tmp_path):
    images = npz_images(tmp_path)
    train_rows, test_rows = subset_rows(0, 40, 32, seed=0), subset_rows(40, 60, 16, seed=0)
    assert len(set(train_rows)) == 32 and test_rows.min() >= 40
    t = create_teacher("tiny-gray")
    table = probe(
        t, images, train_rows, test_rows, layers=LAYERS, noises=[0.05, 0.5, 2.0], batch_size=7, teacher_labels="true"
    )
    assert table.accuracy.shape == (2, 3) and ((table.accuracy >= 0) & (table.accuracy <= 1)).all()
    assert table.pixels == 1.0 and (table.n_train, table.n_test) == (32, 16)
    lines = table.markdown().splitlines()
    assert lines[0] == "| layer | sigma=0.05 | sigma=0.5 | sigma=2 |" and len(lines) == 2 + 2 + 1
    assert lines[-1].startswith("| raw pixels | 100.00 |")


def test_grid_features_equal_the_teacher_call_at_each_layer_and_level(tmp_path):
    """One pass per level for several layers gives what `teacher(...)` gives for each (layer, level) alone."""
    images = npz_images(tmp_path)
    rows = np.array([3, 41, 7, 50, 12])
    grid = grid_features(
        create_teacher("tiny-gray", seed=4),
        images,
        rows,
        layers=LAYERS,
        noises=[0.1, 0.7],
        batch_size=2,
        teacher_labels="true",
    )
    pixels, labels = images.read(rows)
    for layer in LAYERS:
        for noise in (0.1, 0.7):
            t = create_teacher("tiny-gray", layer=layer, noise=noise, seed=4)
            torch.testing.assert_close(grid[layer, noise], t(pixels, labels, rows)[:, 0], rtol=1e-6, atol=1e-6)
    with pytest.raises(DraError, match="no layer"):
        grid_features(create_teacher("tiny-gray"), images, rows, layers=["nope"], noises=[0.1], batch_size=2)


def test_massive_channel_found_and_others_normal():
    images, labels, rows = fmnist_sample()
    stats = find_massive_channels(planted_teacher(), images, labels, rows)
    assert len(stats) == 32 and stats[0].channel == PLANTED and stats[0].massive and stats[0].ratio > 100
    assert not any(s.massive for s in stats[1:]) and max(s.ratio for s in stats[1:]) < 5
    assert not any(s.massive for s in find_massive_channels(create_teacher("tiny-gray"), images, labels, rows))


def test_resolve_zero_channels(tmp_path):
    images = npz_images(tmp_path)
    t = planted_teacher()
    assert resolve_zero_channels("none", t) == ()
    assert resolve_zero_channels("auto", t, images) == (PLANTED,)
    assert resolve_zero_channels("auto", create_teacher("tiny-gray"), images) == ()
    assert resolve_zero_channels("7, 3,7", t) == (3, 7)
    assert resolve_zero_channels("31", t) == (31,)
    with pytest.raises(DraError, match="has 32 channels"):
        resolve_zero_channels("3,32", t)
    with pytest.raises(DraError, match="has 32 channels"):
        resolve_zero_channels("-1", t)
    with pytest.raises(DraError, match="expected auto, none"):
        resolve_zero_channels("first", t)
    with pytest.raises(DraError, match="needs images"):
        resolve_zero_channels("auto", t)


def test_zeroed_channels_read_zero_and_detection_sees_through_them():
    images, labels, rows = fmnist_sample(8)
    t = planted_teacher()
    t.set_zero_channels([PLANTED, 2])
    (a,) = t.layer_activations(images, labels, rows)
    assert (a[:, [PLANTED, 2]] == 0).all() and (a[:, [0, 1, 3]] != 0).any()
    assert find_massive_channels(t, images, labels, rows)[0].channel == PLANTED
    assert t.zero_channels == (2, PLANTED)


def test_probe_command_on_named_dataset(fmnist_dir):
    d, _ = fmnist_dir
    args = [
        "teacher",
        "probe",
        "--teacher",
        "tiny-gray",
        "--data-dir",
        str(d),
        "--layers",
        ",".join(LAYERS),
        "--sigmas",
        "0.1,0.5",
        "--train-n",
        "30",
        "--test-n",
        "12",
        "--batch-size",
        "16",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line.startswith("|")]
    assert table[0] == "| layer | sigma=0.1 | sigma=0.5 |" and [r.split(" | ")[0] for r in table[2:]] == [
        f"| {LAYERS[0]}",
        f"| {LAYERS[1]}",
        "| raw pixels",
    ]
    assert "test fashion-mnist:test n=12" in result.output


def test_probe_command_needs_test_data_for_a_file_source(tmp_path):
    npz_images(tmp_path)
    runner = CliRunner()
    bad = runner.invoke(main, ["teacher", "probe", "--teacher", "tiny-gray", "--data", str(tmp_path / "train.npz")])
    assert bad.exit_code != 0 and "--test-data" in bad.output
    too_many = runner.invoke(
        main,
        [
            "teacher",
            "probe",
            "--teacher",
            "tiny-gray",
            "--data",
            str(tmp_path / "train.npz"),
            "--test-data",
            str(tmp_path / "test.npz"),
            "--train-n",
            "41",
        ],
    )
    assert too_many.exit_code == 1 and "asked for 41 images from a source of 40" in too_many.output


def test_massive_channels_command(fmnist_dir):
    d, _ = fmnist_dir
    args = ["teacher", "massive-channels", "--teacher", "tiny-gray", "--data-dir", str(d), "--n", "8", "--top-n", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("tiny-gray dec.8x8_block1 sigma=0.1: 32 channels, 8 images of fashion-mnist:train")
    assert len(lines) == 2 + 4 + 1 and lines[-1] == f"massive (> {MASSIVE_RATIO:g}x median): none"
    help_text = CliRunner().invoke(main, ["teacher", "massive-channels", "--help"]).output
    assert f"[default: {MASSIVE_RATIO:g}]" in help_text
