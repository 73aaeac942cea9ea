"""diffusers teachers on tiny random models saved in the public repos' folder layouts (CPU, no downloads).

The DiT teacher keeps its real 256 px spec: a tiny 4-level VAE (8x downsampling, 8-16 channels) turns the
resized images into 4x32x32 latents, as the real SD VAE does, and a 2-block, 16-wide DiT reads them.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from dra_pipeline.errors import DraError
from dra_pipeline.teachers import create_teacher, teacher_from_provenance
from dra_pipeline.teachers.diffusers_teachers import nearest_timestep, vp_sigma
from tests import hub_cache
from tests.fixtures import random_images

VIEWS = ("clean", "flip", "extra-sigma")


@pytest.fixture(scope="module")
def ddpm_dir(tmp_path_factory):
    """A tiny UNet2DModel + DDPMScheduler in the `unet/` + `scheduler/` layout."""
    from diffusers import DDPMScheduler, UNet2DModel

    root = tmp_path_factory.mktemp("ddpm-cifar10-32")
    torch.manual_seed(0)
    UNet2DModel(
        sample_size=32,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    ).save_pretrained(root / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    return root


@pytest.fixture(scope="module")
def dit_dir(tmp_path_factory):
    """A tiny DiT + AutoencoderKL + DDIMScheduler in the `transformer/` + `vae/` + `scheduler/` layout."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTTransformer2DModel

    root = tmp_path_factory.mktemp("DiT-XL-2-256")
    torch.manual_seed(0)
    DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=32,
        patch_size=2,
        num_embeds_ada_norm=1000,
    ).save_pretrained(root / "transformer")
    config = root / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "Transformer2DModel"}))  # as public
    AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=4,
        latent_channels=4,
        layers_per_block=1,
    ).save_pretrained(root / "vae")
    DDIMScheduler(num_train_timesteps=1000, clip_sample=False).save_pretrained(root / "scheduler")
    return root


@pytest.fixture(scope="module")
def ddpm(ddpm_dir):
    return create_teacher("ddpm-cifar10", checkpoint=ddpm_dir)


@pytest.fixture(scope="module")
def dit(dit_dir):
    return create_teacher("dit-xl-2-256", checkpoint=dit_dir, layer="transformer_blocks.1")


def cifar_batch(n=6):
    return random_images(n, 32, 32, 3, seed=1), np.arange(n) % 10, np.arange(100, 100 + n)


def test_ddpm_shape_and_provenance(ddpm):
    images, labels, rows = cifar_batch()
    out = ddpm(images, labels, rows, VIEWS)
    assert out.shape == (6, 3, 16) and out.dtype == torch.float32  # tiny up_blocks.1: 16 channels
    assert ddpm.layer == "up_blocks.1" and ddpm.noise == 14
    assert len(ddpm.checkpoint_sha256) == 64
    assert set(ddpm.feature_modules()) == {"down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1"}


@pytest.mark.parametrize("teacher", ["ddpm", "dit"])
def test_features_depend_on_row_not_batch(teacher, request):
    t = request.getfixturevalue(teacher)
    images, labels, rows = cifar_batch()
    whole = t(images, labels, rows, VIEWS)
    parts = [t(images[i], labels[i], rows[i], VIEWS) for i in ([4, 0, 2], [5], [3, 1])]
    torch.testing.assert_close(torch.cat(parts)[[1, 5, 2, 4, 0, 3]], whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("teacher", ["ddpm", "dit"])
def test_views_differ_from_clean(teacher, request):
    clean, flip, extra = request.getfixturevalue(teacher)(*cifar_batch(), VIEWS).unbind(1)
    assert (clean - flip).abs().max() > 1e-4 and (clean - extra).abs().max() > 1e-4


def test_vp_noising_matches_scheduler(ddpm, ddpm_dir):
    from diffusers import DDPMScheduler

    abar = DDPMScheduler.from_pretrained(ddpm_dir / "scheduler").alphas_cumprod.double()
    x, eps = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    x_t, t = ddpm.add_noise(x, eps, torch.full((3,), ddpm.default_sigma()))
    assert t.dtype == torch.long and t.tolist() == [14] * 3
    assert ddpm.default_sigma() == pytest.approx(float(((1 - abar[14]) / abar[14]).sqrt()))
    torch.testing.assert_close(x_t, (abar[14].sqrt() * x + (1 - abar[14]).sqrt() * eps).float())
    # every timestep's sigma (rounded to float32, as the base class passes it) maps back to that timestep
    assert torch.equal(nearest_timestep(abar, vp_sigma(abar).float()), torch.arange(1000))


@pytest.mark.parametrize("teacher", ["ddpm", "dit"])
def test_zeroed_channels_are_zero(teacher, request):
    t = request.getfixturevalue(teacher)
    t.set_zero_channels([0, 3])
    try:
        (act,) = t.layer_activations(*cifar_batch(3))
    finally:
        t.set_zero_channels([])
    channels = act.movedim(1 if act.dim() == 4 else -1, 0).flatten(1)  # (C, rest) for (N, C, H, W) or (N, T, C)
    assert torch.all(channels[[0, 3]] == 0) and torch.all(channels[[1, 2]].abs().amax(dim=1) > 0)


def test_ddpm_flat_layout_loads_the_same_model(ddpm, ddpm_dir, tmp_path):
    for f in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"):
        shutil.copy(ddpm_dir / f, tmp_path)
    flat = create_teacher("ddpm-cifar10", checkpoint=tmp_path)
    batch = cifar_batch(2)
    torch.testing.assert_close(flat(*batch), ddpm(*batch), atol=0, rtol=0)


def test_checkpoint_hash_ignores_location_and_tracks_weights(ddpm, ddpm_dir, tmp_path):
    shutil.copytree(ddpm_dir, tmp_path / "copy")
    assert create_teacher("ddpm-cifar10", checkpoint=tmp_path / "copy").checkpoint_sha256 == ddpm.checkpoint_sha256
    scheduler = tmp_path / "copy" / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "beta_end": 0.03}))
    assert create_teacher("ddpm-cifar10", checkpoint=tmp_path / "copy").checkpoint_sha256 != ddpm.checkpoint_sha256


def test_dit_encodes_the_posterior_mean(dit, dit_dir):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(dit_dir / "vae", low_cpu_mem_usage=False).eval()
    x = dit.preprocess(random_images(2, 64, 64, 3, seed=2))  # resized to 256 px, in [-1, 1]
    with torch.no_grad():
        z1, z2 = dit.encode(x), dit.encode(x)
        want = vae.encode(x).latent_dist.mean * 0.18215
    assert z1.shape == (2, 4, 32, 32) and torch.equal(z1, z2)
    torch.testing.assert_close(z1, want)


def test_dit_shape_labels_and_timestep(dit):
    images, labels, rows = random_images(3, 64, 64, 3, seed=3), np.array([0, 500, 999]), np.arange(3)
    assert dit(images, labels, rows, VIEWS).shape == (3, 3, 16)
    assert dit.default_sigma() == pytest.approx(0.1212, abs=1e-4)  # t = 33 on the linear schedule
    with pytest.raises(DraError, match=r"class labels in \[0, 999\]"):
        dit(images, np.array([0, 1, 1000]), rows)
    assert set(dit.feature_modules()) == {"transformer_blocks.0", "transformer_blocks.1"}


def test_missing_checkpoint_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DraError, match=f"checkpoint folder {tmp_path / 'nope'} not found.*README, 'Teachers'"):
        create_teacher("ddpm-cifar10", checkpoint=tmp_path / "nope")
    with pytest.raises(DraError, match=r"no transformer/config\.json"):
        create_teacher("dit-xl-2-256", checkpoint=tmp_path)


# ---- the hub path: a repo id (the default) read from a hub cache laid out here, offline ------------------------------
@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty hub cache in HF_HUB_CACHE, HF_HUB_OFFLINE=1 and DRA_OFFLINE unset (the hub switch alone)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DRA_OFFLINE", raising=False)
    return tmp_path / "hf"


def test_ddpm_hub_id_loads_from_the_hub_cache_and_hashes_the_files_read(ddpm, ddpm_dir, hub, tmp_path):
    # google/ddpm-cifar10-32 as the hub serves it: config.json, weights and scheduler_config.json at the root, a
    # .bin beside the .safetensors (diffusers prefers the latter), and files no teacher reads
    flat = {
        "config.json": ddpm_dir / "unet/config.json",
        "diffusion_pytorch_model.safetensors": ddpm_dir / "unet/diffusion_pytorch_model.safetensors",
        "scheduler_config.json": ddpm_dir / "scheduler/scheduler_config.json",
    }
    hub_cache.add_repo(hub, "google/ddpm-cifar10-32", {**flat, "diffusion_pytorch_model.bin": b"not read", "x.md": b""})
    (tmp_path / "local").mkdir()
    for name, path in flat.items():  # the same three files in a plain folder
        shutil.copy(path, tmp_path / "local" / name)
    by_default = create_teacher("ddpm-cifar10")
    by_id = create_teacher("ddpm-cifar10", checkpoint="google/ddpm-cifar10-32")
    by_folder = create_teacher("ddpm-cifar10", checkpoint=tmp_path / "local")
    assert by_default.checkpoint_path == by_id.checkpoint_path == "google/ddpm-cifar10-32"
    assert by_default.checkpoint_sha256 == by_id.checkpoint_sha256 == by_folder.checkpoint_sha256
    batch = cifar_batch(2)
    torch.testing.assert_close(by_default(*batch), ddpm(*batch), atol=0, rtol=0)
    # a store's provenance names the hub id; rebuilding it reads the cache again and checks the hash
    rebuilt = teacher_from_provenance(by_default.provenance(("clean",)))
    assert rebuilt.checkpoint_sha256 == by_default.checkpoint_sha256


def test_dit_hub_id_loads_its_three_components_from_the_hub_cache(dit, dit_dir, hub):
    hub_cache.add_repo(hub, "facebook/DiT-XL-2-256", hub_cache.folder_files(dit_dir))
    from_hub = create_teacher("dit-xl-2-256", layer="transformer_blocks.1")
    assert from_hub.checkpoint_path == "facebook/DiT-XL-2-256"
    assert from_hub.checkpoint_sha256 == dit.checkpoint_sha256  # the repo layout hashes like the local folder
    images, labels, rows = random_images(2, 64, 64, 3, seed=3), np.array([1, 2]), np.arange(2)
    torch.testing.assert_close(from_hub(images, labels, rows), dit(images, labels, rows), atol=0, rtol=0)


def test_hub_file_missing_offline_is_one_line_naming_url_and_cache(hub):
    with pytest.raises(DraError) as e:
        create_teacher("ddpm-cifar10")
    message = str(e.value)
    assert message.startswith("HF_HUB_OFFLINE=1: cannot download ")
    assert "https://huggingface.co/google/ddpm-cifar10-32/resolve/main/unet/config.json (or config.json)" in message
    assert f"not in the Hugging Face cache {hub};" in message and "pass it as --checkpoint" in message
    assert "\n" not in message


def test_bad_noise_and_layer(ddpm_dir):
    with pytest.raises(DraError, match=r"integer in \[0, 999\]; got 14.5"):
        create_teacher("ddpm-cifar10", checkpoint=ddpm_dir, noise=14.5)
    with pytest.raises(DraError, match="no layer 'up_blocks.7'"):
        create_teacher("ddpm-cifar10", checkpoint=ddpm_dir, layer="up_blocks.7")
