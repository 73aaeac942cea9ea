"""LightningDiT + VA-VAE teacher on a tiny random configuration saved in the release's file layout (CPU, no downloads).

The tiny teacher (`lightningdit-tiny`) has every published switch of XL/1 on (SwiGLU, 2-D RoPE, RMSNorm, AdaLN
with shift, null class) at 32 px / 8x8x8 latents; the full-size XL/1 is built on the meta device only.
"""

import argparse
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dra_pipeline.cache import FeatureStore
from dra_pipeline.cli import main
from dra_pipeline.data import open_source
from dra_pipeline.errors import DraError
from dra_pipeline.teachers import create_teacher
from dra_pipeline.teachers.lightningdit import (
    DIT_FILES,
    DIT_REPO,
    LIGHTNINGDIT_XL,
    STATS_FILE,
    VAE_FILE,
    VAE_REPO,
    XL_1,
    LightningDiT,
    LightningDiTTeacher,
    RotaryEmbedding2D,
    release_files,
    sincos_2d,
)
from dra_pipeline.teachers.vavae import F16D32, VAEEncoder
from tests import fixtures, hub_cache

DIT_URL = f"https://huggingface.co/{DIT_REPO}/resolve/main/{DIT_FILES[0]}"

VIEWS = ("clean", "flip", "extra-sigma")


def batch(n=6, side=48, seed=1):
    return fixtures.random_images(n, side, side, 3, seed=seed), (np.arange(n) * 97) % 1000, np.arange(200, 200 + n)


@pytest.fixture(scope="module")
def tiny():
    return create_teacher("lightningdit-tiny")


def save_release(teacher: LightningDiTTeacher, root, *, mean=None, std=None, ema_state=None) -> dict:
    """Write the three release files as the releases nest them: a training checkpoint with `model`, `ema`, `opt` and
    `config`; a Lightning-style VA-VAE checkpoint whose `state_dict` also holds decoder and training-only weights;
    `latents_stats.pt` with (1, C, 1, 1) mean and std. Returns the state dict stored under `ema`."""
    root.mkdir(parents=True, exist_ok=True)
    ema = {k: v.clone() for k, v in (ema_state or teacher.dit.state_dict()).items()}
    model = {k: v + 1 if v.is_floating_point() else v for k, v in ema.items()}  # the raw weights differ from the EMA
    torch.save(
        {
            "model": model,
            "ema": ema,
            "opt": {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.95)}]},
            "config": {"model": {"model_type": "LightningDiT-XL/1"}},
        },
        root / DIT_FILES[0],
    )
    c = teacher.vae.cfg.embed_dim
    vae_state = {
        **teacher.vae.state_dict(),
        "decoder.conv_in.weight": torch.randn(4, c, 3, 3),
        "post_quant_conv.weight": torch.randn(c, c, 1, 1),
        "loss.logvar": torch.zeros(()),
        "loss.discriminator.main.0.weight": torch.randn(4, 3, 4, 4),
        "linear_proj.weight": torch.randn(16, c, 1, 1),
    }
    torch.save({"state_dict": vae_state, "epoch": 50, "global_step": 1000}, root / VAE_FILE)
    mean = torch.zeros(1, c, 1, 1) if mean is None else mean
    std = torch.ones(1, c, 1, 1) if std is None else std
    torch.save({"mean": mean, "std": std}, root / STATS_FILE)
    return ema


# ---- the release layout -----------------------------------------------------------------------------------------
def test_release_layout_loads_strictly_and_uses_ema(tiny, tmp_path):
    c = tiny.vae.cfg.embed_dim
    mean, std = torch.linspace(-0.5, 0.5, c).view(1, c, 1, 1), torch.linspace(0.5, 2.0, c).view(1, c, 1, 1)
    ema = save_release(tiny, tmp_path / "rel", mean=mean, std=std)
    loaded = create_teacher("lightningdit-tiny", checkpoint=tmp_path / "rel")
    for key, value in ema.items():
        torch.testing.assert_close(loaded.dit.state_dict()[key], value, rtol=0, atol=0)  # the EMA, not `model`
    for key, value in tiny.vae.state_dict().items():
        torch.testing.assert_close(loaded.vae.state_dict()[key], value, rtol=0, atol=0)
    torch.testing.assert_close(loaded.latent_mean, mean)
    torch.testing.assert_close(loaded.latent_std, std)
    assert len(loaded.checkpoint_sha256) == 64 and loaded.checkpoint_path == str(tmp_path / "rel")

    x = tiny.preprocess(batch(2)[0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), (tiny.vae.posterior_mean(x) - mean) / std, atol=1e-5, rtol=1e-5)
    # the LightningDiT file itself also names the release (the other two files sit beside it)
    by_file = create_teacher("lightningdit-tiny", checkpoint=tmp_path / "rel" / DIT_FILES[0])
    assert by_file.checkpoint_sha256 == loaded.checkpoint_sha256
    torch.testing.assert_close(by_file(*batch(3)), loaded(*batch(3)), rtol=0, atol=0)


def test_bare_state_dict_and_ddp_prefix_load(tiny, tmp_path):
    save_release(tiny, tmp_path)
    torch.save({f"module.{k}": v for k, v in tiny.dit.state_dict().items()}, tmp_path / DIT_FILES[0])
    loaded = create_teacher("lightningdit-tiny", checkpoint=tmp_path)
    torch.testing.assert_close(loaded(*batch(2)), tiny(*batch(2)), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda s: s.update({"blocks.1.attn.qkvv.weight": s.pop("blocks.1.attn.qkv.weight")}), "blocks.1.attn.qkv"),
        (lambda s: s.pop("feat_rope.freqs_cos"), "feat_rope.freqs_cos"),
        (lambda s: s.update({"blocks.9.mlp.w12.weight": torch.zeros(1)}), "blocks.9.mlp.w12.weight"),
        (lambda s: s.update({"y_embedder.embedding_table.weight": torch.zeros(1000, 64)}), "embedding_table"),
    ],
    ids=["renamed", "missing", "unexpected", "shape"],
)
def test_key_mismatches_name_the_key(tiny, tmp_path, edit, named):
    state = dict(tiny.dit.state_dict())
    edit(state)
    save_release(tiny, tmp_path, ema_state=state)
    with pytest.raises(DraError, match=named) as err:
        create_teacher("lightningdit-tiny", checkpoint=tmp_path)
    assert DIT_FILES[0] in str(err.value) and "\n" not in str(err.value)


def test_vae_keys_are_checked_strictly(tiny, tmp_path):
    save_release(tiny, tmp_path)
    ckpt = torch.load(tmp_path / VAE_FILE, weights_only=True)
    del ckpt["state_dict"]["encoder.mid.attn_1.q.weight"]
    torch.save(ckpt, tmp_path / VAE_FILE)
    with pytest.raises(DraError, match=r"vavae-imagenet256-f16d32-dinov2\.pt.*encoder\.mid\.attn_1\.q\.weight"):
        create_teacher("lightningdit-tiny", checkpoint=tmp_path)


def test_missing_release_files_are_named(tiny, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DraError, match=f"{DIT_FILES[0]}.*{VAE_FILE}.*{STATS_FILE}"):
        create_teacher("lightningdit-xl", checkpoint=tmp_path / "empty")
    save_release(tiny, tmp_path / "rel")
    (tmp_path / "rel" / STATS_FILE).unlink()
    with pytest.raises(DraError, match=f"lacks {STATS_FILE}: the latent mean and std") as err:
        create_teacher("lightningdit-tiny", checkpoint=tmp_path / "rel")
    assert VAE_FILE not in str(err.value)
    with pytest.raises(DraError, match=f"checkpoint {tmp_path / 'nope'} not found.*{VAE_FILE}"):
        create_teacher("lightningdit-xl", checkpoint=tmp_path / "nope")


def test_release_files_default_to_the_hub_repos_through_the_hub_cache(tiny, tmp_path, monkeypatch):
    """Without --checkpoint the three files come from hustvl's two repos (the statistics sit with the VA-VAE), read
    offline from a hub cache laid out here; the hash equals that of the same files in one local folder."""
    save_release(tiny, tmp_path / "rel")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DRA_OFFLINE")
    with pytest.raises(DraError, match=f"cannot download {DIT_URL} ; .*--checkpoint"):
        release_files(LIGHTNINGDIT_XL, None)
    hub_cache.add_repo(tmp_path / "hf", DIT_REPO, {DIT_FILES[0]: tmp_path / "rel" / DIT_FILES[0]})
    vae = hub_cache.add_repo(tmp_path / "hf", VAE_REPO, {n: tmp_path / "rel" / n for n in (VAE_FILE, STATS_FILE)})
    files = release_files(LIGHTNINGDIT_XL, None)
    assert (files.vae, files.stats) == (vae / VAE_FILE, vae / STATS_FILE) and files.dit.name == DIT_FILES[0]
    assert files.sha256() == release_files(LIGHTNINGDIT_XL, tmp_path / "rel").sha256()
    assert LIGHTNINGDIT_XL.checkpoint == DIT_REPO


def test_bad_latent_stats_and_pickled_objects_are_refused(tiny, tmp_path):
    save_release(tiny, tmp_path)
    torch.save({"mean": torch.zeros(1, 3, 1, 1), "std": torch.ones(1, 3, 1, 1)}, tmp_path / STATS_FILE)
    with pytest.raises(DraError, match=r"'mean' should hold 8 values"):
        create_teacher("lightningdit-tiny", checkpoint=tmp_path)
    torch.save({"mean": torch.zeros(8), "std": torch.ones(8), "where": tmp_path}, tmp_path / STATS_FILE)  # a Path
    with pytest.raises(DraError, match=f"{STATS_FILE}: holds Python objects .* refused to unpickle"):
        create_teacher("lightningdit-tiny", checkpoint=tmp_path)


def test_training_args_namespace_is_read_as_data(tiny, tmp_path):
    """DiT-style training checkpoints carry their argparse Namespace under `args`: that much is allowed."""
    save_release(tiny, tmp_path)
    ckpt = torch.load(tmp_path / DIT_FILES[0], weights_only=True)
    torch.save({**ckpt, "args": argparse.Namespace(model="LightningDiT-XL/1", lr=2e-4)}, tmp_path / DIT_FILES[0])
    create_teacher("lightningdit-tiny", checkpoint=tmp_path)


# ---- the teacher contract ---------------------------------------------------------------------------------------
def test_features_are_deterministic_per_row_and_independent_of_the_batch(tiny):
    images, labels, rows = batch(6)
    whole = tiny(images, labels, rows, VIEWS)
    again = tiny(images, labels, rows, VIEWS)
    parts = torch.cat([tiny(images[i], labels[i], rows[i], VIEWS) for i in ([4, 0, 2], [5], [3, 1])])
    torch.testing.assert_close(again, whole, rtol=0, atol=0)
    torch.testing.assert_close(parts[[1, 5, 2, 4, 0, 3]], whole, atol=1e-5, rtol=1e-5)
    assert whole.shape == (6, 3, 64) and torch.isfinite(whole).all()
    clean, flip, extra = whole.unbind(1)
    assert (clean - flip).abs().max() > 1e-4 and (clean - extra).abs().max() > 1e-4
    other_seed = create_teacher("lightningdit-tiny", seed=1)(images, labels, rows)
    assert (other_seed[:, 0] - clean).abs().max() > 1e-4


def test_flip_view_encodes_the_mirrored_image(tiny):
    images, labels, rows = batch(3)
    (flip,) = tiny.layer_activations(images, labels, rows, ("flip",))
    x, y, eps, _ = tiny.prepare(images[:, :, ::-1], labels, rows)
    sigma = torch.full((3,), tiny.default_sigma())
    torch.testing.assert_close(flip, tiny.capture(*tiny.add_noise(x, eps.flip(-1), sigma), y), rtol=0, atol=0)
    # not the mirrored latent of the unmirrored image: the encoder is not flip-equivariant
    x0, _, _, _ = tiny.prepare(images, labels, rows)
    mirrored_latent = tiny.capture(*tiny.add_noise(x0.flip(-1), eps.flip(-1), sigma), y)
    assert (flip - mirrored_latent).abs().max() > 1e-3
    clean, flip2 = tiny.layer_activations(images, labels, rows, ("clean", "flip"))
    torch.testing.assert_close(flip2, flip, rtol=0, atol=0)
    with pytest.raises(DraError, match="unknown view"):
        tiny.layer_activations(images, labels, rows, ("flip", "flop"))


def test_labels_condition_the_features_and_are_range_checked(tiny):
    images, _, rows = batch(2)
    a, b = tiny(images, [0, 0], rows), tiny(images, [1, 1], rows)
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(DraError, match=r"class labels in \[0, 999\]"):
        tiny(images, [0, 1000], rows)


def test_time_convention_is_the_rectified_flow_interpolation(tiny):
    """x_t = t x + (1 - t) eps with t = 1 clean and t = 0 noise, and the network is told t itself."""
    teacher = create_teacher("lightningdit-tiny", noise=0.75)
    assert teacher.default_sigma() == pytest.approx(1 / 3)
    x, eps = torch.randn(3, 8, 8, 8), torch.randn(3, 8, 8, 8)
    x_t, t = teacher.add_noise(x, eps, torch.full((3,), teacher.default_sigma()))
    torch.testing.assert_close(t, torch.full((3,), 0.75))
    torch.testing.assert_close(x_t, 0.75 * x + 0.25 * eps)
    clean, _ = teacher.add_noise(x, eps, torch.zeros(3))  # sigma 0 <-> t = 1: the clean latent
    torch.testing.assert_close(clean, x, rtol=0, atol=0)
    noisy, t_small = teacher.add_noise(x, eps, torch.full((3,), 1e6))  # sigma -> inf <-> t -> 0: pure noise
    assert t_small.max() < 1e-5 and torch.allclose(noisy, eps, atol=1e-4)
    # x_t / t = x + sigma eps: the base class's noise std is (1 - t) / t
    torch.testing.assert_close(x_t / 0.75, x + teacher.default_sigma() * eps)

    seen = []
    teacher.dit.t_embedder.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    images, labels, rows = batch(2)
    teacher.layer_activations(images, labels, rows)
    torch.testing.assert_close(seen[0], torch.full((2,), 0.75))
    teacher.layer_activations(images, labels, rows, views=("extra-sigma",))
    assert ((seen[1] > 0) & (seen[1] < 1)).all() and not torch.allclose(seen[1], seen[0])
    prov = teacher.provenance(("clean",))
    assert prov["noise_kind"] == "t" and prov["noise"] == 0.75 and "t = 1 clean" in prov["time_convention"]


@pytest.mark.parametrize("t", [0.0, -0.1, 1.5])
def test_t_outside_0_1_is_refused(t):
    with pytest.raises(DraError, match=r"flow time t in \(0, 1\]"):
        create_teacher("lightningdit-tiny", noise=t)


def test_zeroed_channels_are_zero_in_the_residual_stream_before_modulation(tiny):
    """`blocks.2` is the input of blocks[2]: what its norm1 + AdaLN modulation consume; zeroing acts there."""
    images, labels, rows = batch(3)
    x, y, eps, _ = tiny.prepare(images, labels, rows)
    x_t, t = tiny.add_noise(x, eps, torch.full((3,), tiny.default_sigma()))
    seen = {}  # hooks return None: they only look
    hooks = [
        tiny.dit.blocks[2].register_forward_pre_hook(lambda m, args: seen.__setitem__("block_in", args[0].clone())),
        tiny.dit.blocks[2].norm1.register_forward_pre_hook(lambda m, args: seen.__setitem__("norm_in", args[0])),
        tiny.dit.blocks[2].norm1.register_forward_hook(lambda m, args, out: seen.__setitem__("norm_out", out)),
    ]
    with torch.no_grad():
        tiny.dit(x_t, t, y)  # the whole network, no zeroing
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["norm_in"], seen["block_in"], rtol=0, atol=0)

    tiny.set_zero_channels([3, 17])
    try:
        (stream,) = tiny.layer_activations(images, labels, rows)
        feats = tiny(images, labels, rows)
    finally:
        tiny.set_zero_channels([])
    (normed,) = create_teacher("lightningdit-tiny", layer="blocks.2.norm1", zero_channels=[3, 17]).layer_activations(
        images, labels, rows
    )
    keep = [c for c in range(64) if c not in (3, 17)]
    assert stream.shape == (3, 64, 64) and torch.all(stream[..., [3, 17]] == 0)
    torch.testing.assert_close(stream[..., keep], seen["block_in"][..., keep], atol=1e-5, rtol=1e-5)
    assert seen["block_in"][..., [3, 17]].abs().amin() > 0  # the network's own stream is not zero there
    assert torch.all(normed[..., [3, 17]] == 0)
    torch.testing.assert_close(normed[..., keep], seen["norm_out"][..., keep], atol=1e-5, rtol=1e-5)
    assert torch.all(feats[..., [3, 17]] == 0)


def test_layers_are_the_blocks_their_norms_and_the_final_stream(tiny):
    names = set(tiny.feature_modules())
    assert {"blocks.0", "blocks.3", "blocks.3.norm1", "final_layer"} <= names and "blocks.4" not in names
    with pytest.raises(DraError, match="no layer 'blocks.4'"):
        create_teacher("lightningdit-tiny", layer="blocks.4")
    out = create_teacher("lightningdit-tiny", layer="final_layer")(*batch(2))
    assert out.shape == (2, 1, 64)


# ---- the architecture against its formulas ----------------------------------------------------------------------
def test_rope_rotates_row_and_column_halves_by_position():
    head_dim, grid = 16, 4
    rope = RotaryEmbedding2D(head_dim, grid)
    q = torch.randn(1, 1, grid * grid, head_dim)
    out = rope(q)
    freqs = 10000 ** (-torch.arange(0, head_dim // 2, 2, dtype=torch.float64) / (head_dim // 2))  # (4,)
    for token in (0, 5, 11, 15):
        r, c = divmod(token, grid)
        for half, pos in ((0, r), (1, c)):
            seg = q[0, 0, token, half * 8 : (half + 1) * 8].double().view(4, 2)
            z = torch.complex(seg[:, 0], seg[:, 1]) * torch.exp(1j * pos * freqs)
            want = torch.stack([z.real, z.imag], dim=1).flatten().float()
            torch.testing.assert_close(out[0, 0, token, half * 8 : (half + 1) * 8], want, atol=1e-5, rtol=1e-5)


def test_pos_embed_is_the_2d_sincos_table():
    table = sincos_2d(8, 3)  # (9, 8): columns in the first half, rows in the second
    r, c = 2, 1
    omega = [1.0, 0.01]  # 10000^(-k / 2), k = 0, 1
    want = [
        math.sin(c * omega[0]),
        math.sin(c * omega[1]),
        math.cos(c * omega[0]),
        math.cos(c * omega[1]),
        math.sin(r * omega[0]),
        math.sin(r * omega[1]),
        math.cos(r * omega[0]),
        math.cos(r * omega[1]),
    ]
    torch.testing.assert_close(table[r * 3 + c], torch.tensor(want), atol=1e-6, rtol=1e-6)


def test_full_size_lightningdit_xl_has_the_published_parameter_count():
    """LightningDiT-XL/1: "675M" in the paper. 675,256,736 counting `pos_embed` (a frozen parameter in the release,
    294,912 values); 674,961,824 trainable. The VA-VAE f16d32 encoder + quant_conv: 28,417,408."""
    with torch.device("meta"):
        dit, vae = LightningDiT(XL_1), VAEEncoder(F16D32)
    assert sum(p.numel() for p in dit.parameters()) == 675_256_736
    assert sum(p.numel() for p in dit.parameters() if p.requires_grad) == 674_961_824
    assert sum(p.numel() for p in vae.parameters()) == 28_417_408
    shapes = {k: tuple(v.shape) for k, v in dit.state_dict().items()}
    assert len(dit.blocks) == 28 and shapes["x_embedder.proj.weight"] == (1152, 32, 1, 1)
    assert shapes["pos_embed"] == (1, 256, 1152) and shapes["feat_rope.freqs_cos"] == (256, 72)
    assert shapes["y_embedder.embedding_table.weight"] == (1001, 1152)  # 1000 classes + the null class
    assert shapes["blocks.27.mlp.w12.weight"] == (6144, 1152) and shapes["blocks.27.mlp.w3.weight"] == (1152, 3072)
    assert shapes["blocks.0.adaLN_modulation.1.weight"] == (6912, 1152)
    assert shapes["final_layer.linear.weight"] == (32, 1152)
    assert "blocks.0.attn.q_norm.weight" not in shapes  # qk-norm is off in the published XL/1
    vae_shapes = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    assert vae_shapes["encoder.conv_out.weight"] == (64, 512, 3, 3)
    assert vae_shapes["quant_conv.weight"] == (64, 64, 1, 1)
    assert "encoder.down.4.attn.1.q.weight" in vae_shapes and "encoder.down.3.attn.0.q.weight" not in vae_shapes

    # the whole XL teacher path at 256 px, shapes only: resize + crop, encode, noise, stop at blocks.14, pool
    with torch.device("meta"):
        teacher = LightningDiTTeacher(
            LIGHTNINGDIT_XL, dit, vae, torch.zeros(1, 32, 1, 1), torch.ones(1, 32, 1, 1), layer=None, noise=None, seed=0
        )
    images = np.zeros((2, 300, 400, 3), np.uint8)
    (stream,) = teacher.layer_activations(images, [1, 999], [0, 1])
    assert stream.shape == (2, 256, 1152) and teacher(images, [1, 999], [0, 1], VIEWS).shape == (2, 3, 1152)


# ---- through the command line -----------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    """A 64 px image folder in the ImageNet layout: 3 classes, 12 images."""
    root = tmp_path / "images"
    fixtures.write_folder(root, fixtures.random_images(12, 64, 64, 3, seed=7), np.arange(12) % 3, ["a", "b", "c"])
    return root


def test_extract_runs_end_to_end_on_an_image_folder(tmp_path, folder):
    out = tmp_path / "s.zarr"
    args = [
        "extract",
        "--teacher",
        "lightningdit-tiny",
        "--data",
        str(folder),
        "--out",
        str(out),
        "--rows-per-shard",
        "8",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--views",
        "clean,flip",
        "--zero-channels",
        "3,17",
        "--dtype",
        "float32",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    store = FeatureStore.open(out)
    assert store.complete and store.layout.rows == 12 and store.layout.dim == 64
    prov = store.provenance
    assert prov["teacher"] == "lightningdit-tiny" and prov["layer"] == "blocks.2" and prov["noise_kind"] == "t"
    assert prov["noise"] == 0.9 and prov["zeroed_channels"] == [3, 17] and "t = 1 clean" in prov["time_convention"]

    source = open_source(str(folder))
    teacher = create_teacher("lightningdit-tiny", zero_channels=[3, 17])
    rows = np.array([11, 0, 5])
    want = teacher(source.read(rows), source.labels[rows], rows, views=("clean", "flip")).numpy()
    got = store.read(rows)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(got[..., [3, 17]] == 0)


def test_massive_channel_is_detected_and_zeroed(tiny, tmp_path, folder):
    """A channel planted in the residual stream (patch-embedding bias 500) is what `teacher massive-channels`
    reports and what `extract --zero-channels auto` zeroes and records."""
    state = dict(tiny.dit.state_dict())
    state["x_embedder.proj.bias"] = state["x_embedder.proj.bias"].clone().index_fill(0, torch.tensor([41]), 500.0)
    save_release(tiny, tmp_path / "rel", ema_state=state)
    ckpt = tmp_path / "rel" / DIT_FILES[0]
    report = CliRunner().invoke(
        main,
        [
            "teacher",
            "massive-channels",
            "--teacher",
            "lightningdit-tiny",
            "--checkpoint",
            str(ckpt),
            "--data",
            str(folder),
            "--n",
            "6",
        ],
        catch_exceptions=False,
    )
    assert report.exit_code == 0, report.output
    assert "massive (> 20x median): 41" in report.output and "blocks.2 t=0.9" in report.output

    out = tmp_path / "s.zarr"
    args = [
        "extract",
        "--teacher",
        "lightningdit-tiny",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(folder),
        "--out",
        str(out),
        "--rows-per-shard",
        "8",
        "--device",
        "cpu",
        "--zero-channels",
        "auto",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    store = FeatureStore.open(out)
    assert store.provenance["zeroed_channels"] == [41] and np.all(store.read(np.arange(12))[..., 41] == 0)
