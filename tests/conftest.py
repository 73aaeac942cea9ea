import numpy as np
import pytest

from tests import fixtures


@pytest.fixture
def fmnist_dir(tmp_path):
    """A tiny Fashion-MNIST folder in the Debian layout; yields (dir, arrays)."""
    d = tmp_path / "fashion-mnist"
    return d, fixtures.write_fashion_mnist(d)


@pytest.fixture
def cifar_images():
    images = fixtures.random_images(25, 32, 32, 3, seed=3)
    labels = np.arange(25) % 10
    return images, labels
