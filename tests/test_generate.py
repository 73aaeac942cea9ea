"""`generate`: EDM's Heun sampler, class-balanced per-image-seeded samples, resumable chunks, the DM-AT npz."""

import math
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dra_pipeline.cli import main
from dra_pipeline.data import open_source
from dra_pipeline.errors import DraError
from dra_pipeline.jobs.generate import generate_file as generate
from dra_pipeline.stages.generate import sample_images
from dra_pipeline.teachers.edm_checkpoint import save_denoiser
from dra_pipeline.teachers.sampler import edm_time_steps, heun_sample
from dra_pipeline.teachers.songunet import EDMDenoiser, SongUNetConfig
from tests.test_cli import assert_one_line_error

TINY = SongUNetConfig(
    img_resolution=8,
    img_channels=1,
    label_dim=3,
    model_channels=16,
    channel_mult=(1, 2),
    num_blocks=1,
    attn_resolutions=(),
    dropout=0.0,
)


def tiny_denoiser(cfg: SongUNetConfig = TINY) -> EDMDenoiser:
    """A random conditional denoiser whose output depends clearly on the label: every weight Xavier-initialised
    (SongUNet starts its residual branches near 0), the output conv at gain 0.3 to keep most pixels in range.
    """
    torch.manual_seed(0)
    d = EDMDenoiser(cfg)
    for name, p in d.named_parameters():
        if p.dim() > 1:
            torch.nn.init.xavier_uniform_(p, gain=0.3 if "aux_conv" in name else 1.0)
    return d.eval()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def denoiser():
    return tiny_denoiser()


def load(path):
    with np.load(path) as z:
        return z["image"], z["label"]


# ---- the sampler ----------------------------------------------------------------------------------------------
def test_time_steps_follow_edm_eq_5():
    t = edm_time_steps(18)
    assert t.dtype == torch.float64 and t.shape == (19,)
    assert t[0] == pytest.approx(80, rel=1e-12) and t[17] == pytest.approx(0.002, rel=1e-12) and t[18] == 0
    assert bool((t[1:] < t[:-1]).all())
    i, n = 5, 18
    want = (80 ** (1 / 7) + i / (n - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert t[i].item() == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError):
        edm_time_steps(1)


def test_heun_with_a_constant_denoiser_ends_exactly_at_the_constant():
    """D(x; t) = c makes dx/dt = (x - c)/t, solved by x(t) = c + (x_0 - c) t / t_0: Euler and Heun are exact."""
    c = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    calls = []

    def constant(x, sigma, labels):
        calls.append(sigma[0].item())
        return c.expand_as(x)

    x = heun_sample(constant, torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1)), num_steps=18)
    torch.testing.assert_close(x, c.double().expand_as(x), rtol=0, atol=1e-12)
    assert len(calls) == 2 * 18 - 1  # no 2nd-order correction on the last step, to t_N = 0
    assert calls[0] == pytest.approx(80) and min(calls) == pytest.approx(0.002)


def test_heun_on_gaussian_data_follows_the_exact_ode_solution():
    """Data N(mu, s^2): D(x; t) = mu + s^2/(s^2 + t^2) (x - mu); the ODE gives x(t) = mu + (x_0 - mu) r(t)/r(t_0),
    r(t) = sqrt(s^2 + t^2). Heun is 2nd order: doubling the steps divides the error by about 4.
    """
    mu, s = 0.3, 0.5
    n = torch.randn(1000, 1, 1, 1, generator=torch.Generator().manual_seed(0))

    def gaussian(x, sigma, labels):
        return mu + s**2 / (s**2 + sigma.view(-1, 1, 1, 1) ** 2) * (x - mu)

    exact = mu + (80 * n.double() - mu) * s / math.sqrt(s**2 + 80**2)
    errors = [(heun_sample(gaussian, n, num_steps=k) - exact).abs().max().item() for k in (18, 36, 72)]
    assert errors[0] < 0.15 and errors[1] < errors[0] / 3.5 and errors[2] < errors[1] / 3.5, errors


# ---- the stage ------------------------------------------------------------------------------------------------
def test_images_do_not_depend_on_batch_or_chunk_size(tmp_path, denoiser):
    a = generate(denoiser, tmp_path / "a.npz", count=11, seed=5, steps=6, batch_size=11, chunk_size=11)
    b = generate(denoiser, tmp_path / "b.npz", count=11, seed=5, steps=6, batch_size=2, chunk_size=3)
    (ia, la), (ib, lb) = load(a), load(b)
    assert ia.dtype == np.uint8 and ia.shape == (11, 8, 8, 1) and ia.tobytes() == ib.tobytes()
    assert np.array_equal(la, lb)
    assert len(np.unique(ia.reshape(11, -1), axis=0)) == 11  # every image has its own noise
    c = generate(denoiser, tmp_path / "c.npz", count=11, seed=6, steps=6, batch_size=11, chunk_size=11)
    assert load(c)[0].tobytes() != ia.tobytes()


def test_samples_depend_on_the_label_and_not_on_the_global_rng(denoiser):
    noise = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)).expand(3, -1, -1, -1)
    x = heun_sample(denoiser, noise, torch.eye(3), num_steps=6)  # one noise, classes 0, 1, 2
    assert (x[0] - x[1]).abs().max() > 0.05 and (x[1] - x[2]).abs().max() > 0.05
    first = sample_images(denoiser, np.array([4]), seed=0, steps=6)
    torch.manual_seed(123)
    assert sample_images(denoiser, np.array([4]), seed=0, steps=6).tobytes() == first.tobytes()
    # torch's CPU generator would see seeds 0 and 2**32 (and so (seed << 32) + i for any seed) as one seed
    assert sample_images(denoiser, np.array([4]), seed=2**32, steps=6).tobytes() != first.tobytes()


def test_output_is_a_class_balanced_memory_mappable_npz(tmp_path, denoiser):
    out = generate(denoiser, tmp_path / "synth.npz", count=10, seed=0, steps=6, batch_size=4, chunk_size=4)
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["image.npy", "label.npy"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    images, labels = load(out)
    assert labels.dtype == np.int64 and labels.tolist() == [i % 3 for i in range(10)]
    src = open_source(str(out))
    assert src.image_shape == (8, 8, 1) and src.num_classes == 3
    assert np.array_equal(src.labels, labels) and np.array_equal(src.read(np.arange(10)), images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth.npz"]  # the parts folder is gone


def test_resume_after_an_interrupted_run_gives_the_same_bytes(tmp_path, denoiser):
    kw = dict(count=10, seed=1, steps=6, batch_size=2, chunk_size=4)
    ref, _ = load(generate(denoiser, tmp_path / "ref.npz", **kw))
    out = tmp_path / "run.npz"
    parts = tmp_path / ".run.npz.parts"

    def interrupt_after_6(n, done=[0]):  # noqa: B006  (counts across calls)
        done[0] += n
        if done[0] >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(denoiser, out, progress=interrupt_after_6, **kw)
    assert sorted(p.name for p in parts.iterdir()) == ["chunk-000000.npz", "settings.json"]
    (parts / ".chunk-000001.npz.0123abcd.tmp").write_bytes(b"half a chunk")  # a write cut off by kill -9
    progress = []
    generate(denoiser, out, progress=progress.append, **kw)
    assert progress[0] == 4  # chunk 0 was not recomputed
    images, labels = load(out)
    assert images.tobytes() == ref.tobytes() and labels.tolist() == [i % 3 for i in range(10)]
    assert not parts.exists()


def test_parts_made_with_other_settings_are_refused(tmp_path, denoiser):
    out = tmp_path / "run.npz"

    def stop(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(denoiser, out, count=6, seed=0, steps=6, batch_size=2, chunk_size=2, progress=stop)
    with pytest.raises(DraError, match="seed was 0, now 1"):
        generate(denoiser, out, count=6, seed=1, steps=6, batch_size=2, chunk_size=2)
    other = tiny_denoiser()
    torch.nn.init.zeros_(other.model.map_label.bias)
    other.model.map_label.bias.data += 0.1
    with pytest.raises(DraError, match="denoiser_sha256"):
        generate(other, out, count=6, seed=0, steps=6, batch_size=2, chunk_size=2)


def test_an_existing_output_is_never_overwritten(tmp_path, denoiser):
    out = tmp_path / "x.npz"
    out.write_bytes(b"precious")
    with pytest.raises(DraError, match="already exists"):
        generate(denoiser, out, count=2, seed=0)
    assert out.read_bytes() == b"precious"


def test_an_unconditional_denoiser_is_refused(tmp_path):
    uncond = EDMDenoiser(SongUNetConfig(**{**TINY.to_dict(), "label_dim": 0})).eval()
    with pytest.raises(DraError, match="class-conditional"):
        generate(uncond, tmp_path / "y.npz", count=2, seed=0)


# ---- the command ----------------------------------------------------------------------------------------------
def test_generate_command_with_a_tiny_checkpoint(tmp_path):
    """A tiny 14 px conditional checkpoint stands in for edm-fmnist's weights (10 classes, has dec.7x7_block2)."""
    ckpt = tmp_path / "tiny.safetensors"
    save_denoiser(
        tiny_denoiser(SongUNetConfig(**{**TINY.to_dict(), "img_resolution": 14, "label_dim": 10, "num_blocks": 2})),
        ckpt,
    )
    out = tmp_path / "new" / "folder" / "synth.npz"  # folders that do not exist yet are made
    args = ["generate", "--checkpoint", str(ckpt), "--n", "12", "--out", str(out), "--steps", "2"]
    result = CliRunner().invoke(main, [*args, "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    src = open_source(str(out))
    assert src.image_shape == (14, 14, 1) and src.labels.tolist() == [i % 10 for i in range(12)]
    assert_one_line_error(CliRunner().invoke(main, args), "already exists")
    tiny = CliRunner().invoke(main, ["generate", "--teacher", "tiny", "--n", "2", "--out", str(tmp_path / "t.npz")])
    assert_one_line_error(tiny, "EDM-family")
