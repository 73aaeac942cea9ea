"""Teacher registry, EDM preconditioning against its formulas, and the per-row noise contract."""

import math

import numpy as np
import pytest
import torch

from dra_pipeline.errors import DraError
from dra_pipeline.teachers import create_teacher, teacher_spec
from dra_pipeline.teachers.base import EXTRA_SIGMA_LOG_MEAN, EXTRA_SIGMA_LOG_STD
from dra_pipeline.teachers.songunet import EDMDenoiser, Preconditioning, SongUNetConfig

TINY = SongUNetConfig(
    img_resolution=8,
    img_channels=1,
    label_dim=3,
    model_channels=16,
    channel_mult=(1, 2),
    num_blocks=1,
    attn_resolutions=(4,),
    dropout=0.0,
)


@pytest.mark.parametrize("sigma", [0.002, 0.06, 0.5, 1.0, 80.0])
def test_preconditioning_matches_edm_table_1(sigma):
    sd = 0.5
    c_skip, c_out, c_in, c_noise = (v.item() for v in Preconditioning(sd)(torch.tensor(sigma, dtype=torch.float64)))
    assert c_skip == pytest.approx(sd**2 / (sigma**2 + sd**2), rel=1e-12)
    assert c_out == pytest.approx(sigma * sd / math.sqrt(sigma**2 + sd**2), rel=1e-12)
    assert c_in == pytest.approx(1 / math.sqrt(sd**2 + sigma**2), rel=1e-12)
    assert c_noise == pytest.approx(math.log(sigma) / 4, rel=1e-12)


def test_denoiser_combines_skip_and_network_output():
    """D(x) = c_skip x + c_out F(c_in x, c_noise, labels), with F observed through a hook."""
    net = EDMDenoiser(TINY).eval()
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 2.0])
    labels = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    seen = {}
    net.model.register_forward_hook(lambda m, args, out: seen.update(args=args, out=out))
    d = net(x, sigma, labels)
    c_skip, c_out, c_in, c_noise = Preconditioning(0.5)(sigma.view(-1, 1, 1, 1))
    torch.testing.assert_close(seen["args"][0], c_in * x)
    torch.testing.assert_close(seen["args"][1], c_noise.flatten())
    torch.testing.assert_close(d, c_skip * x + c_out * seen["out"])


def test_conditional_model_needs_labels_and_uses_them():
    net = EDMDenoiser(TINY).eval()
    for p in net.parameters():  # random init leaves the residual branches near zero: make them matter
        torch.nn.init.normal_(p, std=0.2)
    x, sigma = torch.randn(1, 1, 8, 8), torch.tensor([1.0])
    with pytest.raises(ValueError, match="one-hot labels"):
        net(x, sigma)
    a = net(x, sigma, torch.tensor([[1.0, 0, 0]]))
    b = net(x, sigma, torch.tensor([[0, 1.0, 0]]))
    assert not torch.allclose(a, b)


def test_dropout_only_in_train_mode():
    net = EDMDenoiser(SongUNetConfig(**{**TINY.to_dict(), "dropout": 0.5}))
    for p in net.parameters():  # make every residual branch matter
        torch.nn.init.normal_(p, std=0.2)
    x, sigma, y = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 0.5]), torch.eye(3)[:2]
    net.eval()
    torch.testing.assert_close(net(x, sigma, y), net(x, sigma, y))
    net.train()
    assert not torch.allclose(net(x, sigma, y), net(x, sigma, y))


def test_unknown_teacher_suggests_close_names():
    with pytest.raises(DraError, match="did you mean edm-cifar10"):
        teacher_spec("edm-cifar1O")


def test_features_do_not_depend_on_batch_composition():
    teacher = create_teacher("edm-fmnist")
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28, 1), dtype=np.uint8)
    labels, rows = np.arange(12) % 10, np.arange(100, 112)
    whole = teacher(images, labels, rows, views=("clean", "extra-sigma"))
    parts = torch.cat(
        [
            teacher(images[i : i + 5], labels[i : i + 5], rows[i : i + 5], views=("clean", "extra-sigma"))
            for i in range(0, 12, 5)
        ]
    )
    reversed_ = teacher(images[::-1], labels[::-1], rows[::-1], views=("clean", "extra-sigma")).flip(0)
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reversed_, whole, atol=1e-5, rtol=1e-5)
    assert whole.shape == (12, 2, 64) and torch.isfinite(whole).all()


def test_row_noise_depends_on_seed_and_row_only():
    a, b = create_teacher("tiny-gray", seed=0), create_teacher("tiny-gray", seed=1)
    eps_a, extra_a = a.row_noise(np.array([5, 6]), (1, 4, 4))
    eps_b, _ = b.row_noise(np.array([5, 6]), (1, 4, 4))
    eps_a2, _ = a.row_noise(np.array([6, 5]), (1, 4, 4))
    assert not torch.allclose(eps_a, eps_b), "different seeds must give different noise"
    torch.testing.assert_close(eps_a2.flip(0), eps_a)
    assert not torch.allclose(eps_a[0], eps_a[1])


def test_extra_sigma_follows_edms_training_distribution():
    teacher = create_teacher("tiny-gray")
    _, extra = teacher.row_noise(np.arange(4000), (1, 2, 2))
    log_sigma = EXTRA_SIGMA_LOG_MEAN + EXTRA_SIGMA_LOG_STD * extra
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.06)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.06)


def test_packaged_teacher_is_small_and_recorded():
    from dra_pipeline.teachers.edm import WEIGHTS_DIR

    path = WEIGHTS_DIR / "edm-fmnist.safetensors"
    assert path.stat().st_size < 10 * 2**20
    teacher = create_teacher("edm-fmnist")
    assert len(teacher.checkpoint_sha256) == 64 and teacher.provenance(("clean",))["teacher"] == "edm-fmnist"
