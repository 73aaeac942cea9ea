import numpy as np
import pytest
import torch

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


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny tensors: OpenMP hand-offs would dominate them, and two threads on a
    2-core machine that runs other jobs are many times slower (modules opt in with pytestmark)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
