"""The bad-input table (issue 17): every input a hostile user tried is refused with one clear line and a non-zero exit,
before anything is written: every file in the working folder is byte-identical afterwards and none is added.

README.md's "Reliability" section summarises this table.
"""

import pickle

import h5py
import numpy as np
import pytest
import torch

from tests import fixtures
from tests.hostile import changes, error_line, extract_args, fmnist, invoke, snapshot, write_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


class Big:
    """Pickles as numpy's array rebuild asked for a 10 PiB array (a tampered CIFAR batch)."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (10 * 2**50,), b"b"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A working folder: Fashion-MNIST, a complete store, a checkpoint, and every kind of bad file."""
    w = tmp_path_factory.mktemp("world")
    data = fmnist(w)
    assert invoke(*extract_args(data, w / "s.zarr")).exit_code == 0
    best = write_checkpoint(w / "run" / "best-ema.pt")
    saved = torch.load(best, weights_only=True)
    torch.save({**saved, "model_info": {"name": "small-cnn", "dataset": "fashion-mnist"}}, w / "partial-info.pt")
    torch.save({**saved, "model_info": {**saved["model_info"], "num_classes": "ten"}}, w / "typo-info.pt")
    (w / "list.yaml").write_text("- train\n- epochs\n")
    (w / "broken.yaml").write_text("train: {epochs: 3\n")
    (w / "a-file").write_text("not a folder\n")
    images = fixtures.random_images(4, 28, 28, 1)
    np.savez(w / "ok.npz", image=images, label=np.arange(4))
    np.savez(w / "object-labels.npz", image=images, label=np.array([1, "a", None, 2], dtype=object))
    with h5py.File(w / "group.h5", "w") as f:
        f.create_group("images")
        f["labels"] = np.arange(3)
    cifar = w / "cifar"
    fixtures.write_cifar10(cifar, fixtures.random_images(10, 32, 32, 3), np.arange(10))
    with open(cifar / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Big(), b"labels": [0, 1]}, f, protocol=2)
    return w


E = ("extract", "--teacher", "tiny-gray", "--data", "fashion-mnist", "--data-dir", "{data}", "--device", "cpu")
T = ("train", "--config", "fmnist-cpu", "--data-dir", "{data}", "--out", "{w}/new-run")
V = ("evaluate", "--checkpoint", "{w}/run/best-ema.pt", "--n", "4", "--attack", "fgsm", "--data-dir", "{data}")
V_CPU = (*V, "--device", "cpu")

# (id, command line with {w} the working folder and {data} its Fashion-MNIST, expected fragment of the one line)
TABLE = [
    ("extract: unwritable output folder", (*E, "--out", "{w}/a-file/s.zarr"), "a-file is a file, not a folder"),
    ("extract: --out a folder that is not a store", (*E, "--out", "{w}/run"), "is not a feature store (a folder)"),
    ("extract: --overwrite a file", (*E, "--out", "{w}/a-file", "--overwrite"), "is not a feature store (a file)"),
    ("extract: --batch-size 0", (*E, "--out", "{w}/n.zarr", "--batch-size", "0"), "0 is not in the range x>=1"),
    ("extract: --batch-size -1", (*E, "--out", "{w}/n.zarr", "--batch-size", "-1"), "-1 is not in the range x>=1"),
    ("extract: --rows-per-shard 0", (*E, "--out", "{w}/n.zarr", "--rows-per-shard", "0"), "'--rows-per-shard': 0"),
    ("extract: --views ,", (*E, "--out", "{w}/n.zarr", "--views", ","), "--views names no view"),
    ("extract: duplicate views", (*E, "--out", "{w}/n.zarr", "--views", "clean,flip,clean"), "clean more than once"),
    ("extract: --views bogus", (*E, "--out", "{w}/n.zarr", "--views", "bogus"), "unknown view(s) bogus"),
    ("extract: --seed -1", (*E, "--out", "{w}/n.zarr", "--seed", "-1"), "'--seed': -1 is not in the range x>=0"),
    ("extract: --n 0", (*E, "--out", "{w}/n.zarr", "--n", "0"), "'--n': 0 is not in the range x>=1"),
    ("extract: --n -5", (*E, "--out", "{w}/n.zarr", "--n", "-5"), "'--n': -5 is not in the range"),
    ("extract: --sigma -1", (*E, "--out", "{w}/n.zarr", "--sigma", "-1"), "--sigma must be a positive finite"),
    ("extract: --sigma nan", (*E, "--out", "{w}/n.zarr", "--sigma", "nan"), "--sigma must be a positive finite"),
    ("extract: --sigma inf", (*E, "--out", "{w}/n.zarr", "--sigma", "inf"), "--sigma must be a positive finite"),
    ("extract: --workers 0", (*E, "--out", "{w}/n.zarr", "--workers", "0"), "'--workers': 0 is not in the range"),
    ("extract: --device tpu", (*E, "--out", "{w}/n.zarr", "--device", "tpu"), "--device tpu: not a device"),
    ("extract: --device cuda, no GPU", (*E, "--out", "{w}/n.zarr", "--device", "cuda"), "no CUDA device"),
    (
        "extract: ?num_classes=abc",
        (*E, "--out", "{w}/n.zarr", "--synthetic", "{w}/ok.npz?num_classes=abc"),
        "option num_classes must be a whole number",
    ),
    ("train: unwritable output folder", (*T[:-1], "{w}/a-file/run"), "a-file is a file, not a folder"),
    ("train: --out an existing file", (*T[:-1], "{w}/a-file"), "is a file; a run directory is a folder"),
    ("train: YAML syntax error", (*T[:2], "{w}/broken.yaml", *T[3:]), "not valid YAML at line 2"),
    ("train: YAML list", (*T[:2], "{w}/list.yaml", *T[3:]), "must be a mapping of sections"),
    ("train: epochs 0", (*T, "--set", "train.epochs=0"), "train.epochs must be at least 1, not 0"),
    ("train: epochs -3", (*T, "--set", "train.epochs=-3"), "train.epochs must be at least 1"),
    ("train: batch size 0", (*T, "--set", "train.batch_size=0"), "train.batch_size must be at least 1"),
    ("train: batch size -1", (*T, "--set", "train.batch_size=-1"), "train.batch_size must be at least 1"),
    ("train: epoch images -1", (*T, "--set", "data.epoch_images=-1"), "data.epoch_images must be at least 0"),
    ("train: validation 0", (*T, "--set", "data.validation=0"), "data.validation must be at least 1, not 0"),
    ("train: negative eps", (*T, "--set", "attack.eps=-0.1"), "attack.eps must be a finite radius >= 0"),
    ("train: eps nan", (*T, "--set", "attack.eps=nan"), "attack.eps must be a finite radius >= 0"),
    ("train: --lambda -1", (*T, "--lambda", "-1"), "dra.weight must be finite and >= 0"),
    ("train: seed -1", (*T, "--set", "train.seed=-1"), "train.seed must be at least 0"),
    ("train: --device tpu", (*T, "--set", "train.device=tpu"), "--device tpu: not a device"),
    ("train: --device cuda, no GPU", (*T, "--set", "train.device=cuda"), "no CUDA device"),
    ("train: unknown key", (*T, "--set", "train.lr_max=1"), "unknown config key 'train.lr_max'"),
    ("evaluate: --eps inf", (*V_CPU, "--eps", "inf"), "'--eps': 'inf' is not a positive finite number"),
    ("evaluate: --eps -0.1", (*V_CPU, "--eps", "-0.1"), "'--eps': '-0.1' is not a positive finite number"),
    ("evaluate: --eps 8/0", (*V_CPU, "--eps", "8/0"), "'--eps': '8/0' is not a positive finite number"),
    ("evaluate: --eps-grid -1", (*V_CPU, "--eps-grid", "0,-1"), "expected a comma list of radius values"),
    ("evaluate: --seed -1", (*V_CPU, "--seed", "-1"), "'--seed': -1 is not in the range x>=0"),
    ("evaluate: --batch-size 0", (*V_CPU, "--batch-size", "0"), "'--batch-size': 0 is not in the range x>=1"),
    ("evaluate: --device tpu", (*V, "--device", "tpu"), "--device tpu: not a device"),
    ("evaluate: --device cuda, no GPU", (*V, "--device", "cuda"), "no CUDA device"),
    ("evaluate: unwritable output folder", (*V_CPU, "--out", "{w}/a-file/r.json"), "a-file is a file, not a folder"),
    ("evaluate: --out the checkpoint", (*V_CPU, "--out", "{w}/run/best-ema.pt"), "a report is a .json file"),
    ("evaluate: --out a store", (*V_CPU, "--out", "{w}/s.zarr/zarr.json"), "did not write as a report"),
    (
        "evaluate: model_info incomplete",
        ("evaluate", "--checkpoint", "{w}/partial-info.pt", "--device", "cpu", "--data-dir", "{data}"),
        "model_info lacks num_classes, in_channels",
    ),
    (
        "evaluate: model_info of the wrong type",
        ("evaluate", "--checkpoint", "{w}/typo-info.pt", "--device", "cpu", "--data-dir", "{data}"),
        "model_info holds invalid num_classes='ten'",
    ),
    ("data: ?num_classes=abc", ("data", "info", "{w}/ok.npz?num_classes=abc"), "num_classes must be a whole number"),
    ("data: HDF5 group for a dataset", ("data", "info", "{w}/group.h5"), "'images' is a Group, not a dataset"),
    ("data: npz labels of object dtype", ("data", "info", "{w}/object-labels.npz"), "not a plain numeric array"),
    (
        "data: CIFAR batch asking for 10 PiB",
        ("data", "info", "cifar10", "--data-dir", "{w}/cifar"),
        "an array of shape (11258999068426240,) is larger than the file",
    ),
]


@pytest.mark.parametrize("args, message", [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_bad_input_is_one_line_and_writes_nothing(world, args, message):
    if "cuda" in args[-1] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    before = snapshot(world)
    line = error_line(invoke(*(a.format(w=world, data=world / "fashion-mnist") for a in args)))
    assert message in line
    assert not changes(before, snapshot(world))
