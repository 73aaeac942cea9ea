"""Every image source on small fixtures written in its real format, and every bad input it must refuse."""

import gzip
import os
import pickle
import zipfile

import h5py
import numpy as np
import pytest

from dra_pipeline.data import open_source, parse_source
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.data.npz import convert_npz
from dra_pipeline.errors import DataError
from tests import fixtures


def test_fashion_mnist_reads_both_splits(fmnist_dir):
    d, arrays = fmnist_dir
    for split in ("train", "test"):
        src = open_source(f"fashion-mnist:{split}", data_dir=d)
        images, labels = arrays[split]
        assert len(src) == len(images) and src.image_shape == (28, 28, 1) and src.num_classes == 10
        idx = np.array([3, 0, 3, len(images) - 1])
        np.testing.assert_array_equal(src.read(idx), images[idx])
        np.testing.assert_array_equal(src.labels, labels)


def test_fashion_mnist_found_through_env_root(fmnist_dir, monkeypatch):
    d, _ = fmnist_dir
    monkeypatch.setenv("DRA_DATA_DIR", str(d.parent))  # a root holding fashion-mnist/
    assert open_source("fashion-mnist").spec.path == str(d.resolve())


def test_fashion_mnist_plain_idx_files(tmp_path):
    images = fixtures.random_images(7, 28, 28, 1)[..., 0]
    fixtures.write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=False)
    fixtures.write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(7, dtype=np.uint8), compress=False)
    np.testing.assert_array_equal(open_source("fashion-mnist", data_dir=tmp_path).read([6])[0, ..., 0], images[6])


def test_missing_named_dataset_names_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DRA_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="data_batch_1 not found.*cifar-10-python.tar.gz"):
        open_source("cifar10", data_dir=tmp_path)


def test_fingerprint_is_stable_and_sees_changes(fmnist_dir):
    d, arrays = fmnist_dir
    fp = open_source("fashion-mnist", data_dir=d).fingerprint()
    assert fp == open_source("fashion-mnist", data_dir=d).fingerprint()
    images, labels = arrays["train"]
    labels = labels.copy()
    labels[0] = (labels[0] + 1) % 10
    fixtures.write_idx(d / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    assert open_source("fashion-mnist", data_dir=d).fingerprint() != fp


@pytest.mark.parametrize("damage", ["truncate", "garbage", "count"])
def test_corrupt_idx_is_refused(fmnist_dir, damage):
    d, arrays = fmnist_dir
    path = d / "train-images-idx3-ubyte.gz"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-40])
        match = "truncated or corrupt"
    elif damage == "garbage":
        path.write_bytes(gzip.compress(b"\x01\x02\x03\x04" * 50))
        match = "not an IDX file"
    else:
        fixtures.write_idx(path, arrays["train"][0][:-1, ..., 0])
        match = "49 images but 50 labels"
    with pytest.raises(DataError, match=match):
        open_source("fashion-mnist", data_dir=d)


def test_cifar10_python_batches(tmp_path, cifar_images):
    images, labels = cifar_images
    fixtures.write_cifar10(tmp_path / "cifar-10-batches-py", images, labels)
    src = open_source("cifar10", data_dir=tmp_path)  # the root holding cifar-10-batches-py/
    assert len(src) == 25 and src.image_shape == (32, 32, 3) and src.class_names[0] == "airplane"
    np.testing.assert_array_equal(src.read(np.arange(25)), images)  # channel-major rows decoded to HWC
    np.testing.assert_array_equal(src.labels, labels)
    assert len(open_source("cifar10:test", data_dir=tmp_path)) == 10


def test_cifar100_python_files(tmp_path, cifar_images):
    images, _ = cifar_images
    fine = np.arange(25) * 4
    fixtures.write_cifar100(tmp_path / "cifar-100-python", images, fine)
    src = open_source("cifar100:test", data_dir=tmp_path / "cifar-100-python")
    assert src.num_classes == 100 and src.class_names[4] == "c4"
    np.testing.assert_array_equal(src.labels, fine)
    np.testing.assert_array_equal(src.read([24]), images[24:])


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path, cifar_images, monkeypatch):
    images, labels = cifar_images
    d = tmp_path / "cifar-10-batches-py"
    fixtures.write_cifar10(d, images, labels)
    with open(d / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _RunsCode(), b"labels": [0]}, f, protocol=2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="refusing to load global (posix|os).system"):
        open_source("cifar10", data_dir=d)
    assert not (tmp_path / "pwned").exists()


def test_npz_is_memory_mapped(tmp_path):
    images = fixtures.random_images(40, 32, 32, 3, seed=5)
    labels = np.arange(40) % 10
    np.savez(tmp_path / "synthetic.npz", image=images, label=labels)
    src = open_source(str(tmp_path / "synthetic.npz"))
    assert isinstance(src._images, np.memmap), "the image member must be mapped, not loaded"
    idx = np.array([39, 2, 2, 17])
    np.testing.assert_array_equal(src.read(idx), images[idx])
    assert src.num_classes == 10 and src.spec.kind == "npz"


def test_compressed_npz_names_the_conversion_and_conversion_works(tmp_path):
    images = fixtures.random_images(12, 8, 8, 3)
    np.savez_compressed(tmp_path / "c.npz", image=images, label=np.zeros(12, dtype=np.int64))
    with pytest.raises(DataError, match="dra-pipeline data convert-npz"):
        open_source(str(tmp_path / "c.npz"))
    convert_npz(tmp_path / "c.npz", tmp_path / "s.npz")
    with zipfile.ZipFile(tmp_path / "s.npz") as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    np.testing.assert_array_equal(open_source(str(tmp_path / "s.npz")).read(np.arange(12)), images)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"image": np.zeros((4, 8, 8, 3), np.uint8)}, "no 'label' array"),
        ({"image": np.zeros((4, 8, 8, 3), np.uint8), "label": np.array([0, 1, -1, 2])}, r"range \[-1, 2\]"),
        ({"image": np.zeros((4, 8, 8, 3), np.float32), "label": np.zeros(4, int)}, "must be uint8.*float32"),
        ({"image": np.zeros((4, 8, 8), np.uint8), "label": np.zeros(4, int)}, "rank 4"),
        ({"image": np.zeros((4, 8, 8, 3), np.uint8), "label": np.zeros(5, int)}, "4 images but 5 labels"),
    ],
)
def test_bad_npz_is_refused(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        open_source(str(tmp_path / "bad.npz"))


def test_npz_labels_beyond_declared_classes(tmp_path):
    np.savez(tmp_path / "s.npz", image=np.zeros((3, 8, 8, 3), np.uint8), label=np.array([0, 9, 10]))
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        open_source(str(tmp_path / "s.npz") + "?num_classes=10")


def test_hdf5_default_and_custom_names(tmp_path):
    images = fixtures.random_images(9, 16, 16, 3)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["images"], f["labels"] = images, np.arange(9) % 3
    with h5py.File(tmp_path / "b.hdf5", "w") as f:
        f["x"], f["y"] = images, np.arange(9) % 3
    a = open_source(str(tmp_path / "a.h5"))
    b = open_source(str(tmp_path / "b.hdf5") + "?images=x&labels=y")
    idx = np.array([8, 1, 1, 0])
    np.testing.assert_array_equal(a.read(idx), images[idx])
    np.testing.assert_array_equal(b.read(idx), images[idx])
    assert a.fingerprint() == b.fingerprint() and a.num_classes == 3
    with pytest.raises(DataError, match="no dataset 'images'"):
        open_source(str(tmp_path / "b.hdf5"))


def test_image_folder(tmp_path):
    images = fixtures.random_images(12, 10, 10, 3, seed=9)
    labels = np.arange(12) % 3
    fixtures.write_folder(tmp_path / "imgs", images, labels, ["cat", "ant", "bee"])
    src = open_source(str(tmp_path / "imgs"))
    assert src.class_names == ["ant", "bee", "cat"] and src.image_shape == (10, 10, 3)
    for row in range(len(src)):  # each row decodes to the image written under its class
        i = int(src.files[row].split("/")[1][:5])
        np.testing.assert_array_equal(src.read([row])[0], images[i])
        assert ["cat", "ant", "bee"][labels[i]] == src.class_names[src.labels[row]]
    fp = src.fingerprint()
    (tmp_path / "imgs" / "ant" / src.files[0].split("/")[1]).rename(tmp_path / "imgs" / "ant" / "zz.png")
    assert open_source(str(tmp_path / "imgs")).fingerprint() != fp, "renaming a file must change the fingerprint"


def test_image_folder_resize_and_mixed_sizes(tmp_path):
    from PIL import Image

    (tmp_path / "f" / "a").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "f" / "a" / "0.png")
    Image.new("RGB", (20, 20), (0, 255, 0)).save(tmp_path / "f" / "a" / "1.png")
    with pytest.raises(DataError, match="size=N"):
        open_source(str(tmp_path / "f")).read([0, 1])
    src = open_source(str(tmp_path / "f") + "?size=16")
    assert src.read([0, 1]).shape == (2, 16, 16, 3)


def test_unknown_source_text(tmp_path):
    with pytest.raises(DataError, match="not a known dataset"):
        parse_source(str(tmp_path / "x.txt"))
    with pytest.raises(DataError, match="not found"):
        parse_source(str(tmp_path / "missing.npz"))


def test_index_space_maps_rows_to_sources(tmp_path, fmnist_dir):
    d, arrays = fmnist_dir
    synth = fixtures.random_images(30, 28, 28, 1, seed=11)
    np.savez(tmp_path / "s.npz", image=synth, label=np.arange(30) % 10)
    space = IndexedImages([open_source("fashion-mnist", data_dir=d), open_source(str(tmp_path / "s.npz"))])
    assert len(space) == 80 and [s["offset"] for s in space.describe()] == [0, 50]
    images, labels = space.read(np.array([79, 0, 50, 49]))
    np.testing.assert_array_equal(images[0], synth[29])
    np.testing.assert_array_equal(images[1], arrays["train"][0][0])
    np.testing.assert_array_equal(images[2], synth[0])
    np.testing.assert_array_equal(labels, [9, 0, 0, 9])
