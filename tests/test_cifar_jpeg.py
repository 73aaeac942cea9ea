"""Real CIFAR-10 images (a JPEG re-encoding named by DRA_CIFAR10_JPEG_ZIP) packed into the official python-batch
layout and into an image folder, then read back through both sources. Skipped when the zip is not available."""

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dra_pipeline.data import open_source
from tests import fixtures

ZIP = os.environ.get("DRA_CIFAR10_JPEG_ZIP")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
pytestmark = [
    pytest.mark.cifar_jpeg,
    pytest.mark.skipif(not ZIP or not Path(ZIP).is_file(), reason="DRA_CIFAR10_JPEG_ZIP does not name the zip"),
]


def test_real_cifar_images_through_python_batches_and_folder(tmp_path):
    from PIL import Image

    per_class = 12
    images, labels, names = [], [], []
    with zipfile.ZipFile(ZIP) as zf:
        for label, cls in enumerate(CLASSES):
            members = sorted(n for n in zf.namelist() if n.startswith(f"train/{cls}/") and n.endswith(".jpg"))
            for name in members[:per_class]:
                data = zf.read(name)
                images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
                labels.append(label)
                names.append(name)
                (tmp_path / "folder" / cls).mkdir(parents=True, exist_ok=True)
                (tmp_path / "folder" / cls / Path(name).name).write_bytes(data)
    images, labels = np.stack(images), np.array(labels)
    assert images.shape == (120, 32, 32, 3) and images.std() > 20  # real, varied pixels

    fixtures.write_cifar10(tmp_path / "cifar-10-batches-py", images, labels)
    batches = open_source("cifar10", data_dir=tmp_path)
    folder = open_source(str(tmp_path / "folder"))
    assert len(batches) == len(folder) == 120 and folder.class_names == CLASSES
    np.testing.assert_array_equal(batches.read(np.arange(120)), images)
    np.testing.assert_array_equal(batches.labels, labels)
    # The folder source orders rows by class, then file name: the same order as `names` here.
    assert folder.files == [n.removeprefix("train/") for n in names]
    np.testing.assert_array_equal(folder.read(np.arange(120)), images)
    np.testing.assert_array_equal(folder.labels, labels)
