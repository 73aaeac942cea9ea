"""EDM network pickles: read without executing code, strict loading, conversion to safetensors.

The pickles are written by tests/edm_pickle_fixture.py in EDM's persistence format from our own EDMDenoiser.
"""

import collections
import dataclasses
import pickle

import numpy as np
import pytest
import torch

from dra_pipeline.errors import DraError
from dra_pipeline.teachers.edm_checkpoint import config_from_edm_kwargs, convert_pickle_to_safetensors, load_denoiser
from dra_pipeline.teachers.edm_pickle import read_edm_pickle
from dra_pipeline.teachers.songunet import CIFAR10_DDPMPP, EDMDenoiser, SongUNetConfig
from tests.edm_pickle_fixture import EasyDict, write_edm_pickle

TINY = SongUNetConfig(
    img_resolution=16,
    model_channels=16,
    channel_mult=(1, 2),
    num_blocks=1,
    attn_resolutions=(8,),
    dropout=0.0,
    label_dim=10,
    augment_dim=9,
)


def random_denoiser(cfg: SongUNetConfig = TINY, seed: int = 0) -> EDMDenoiser:
    """EDMDenoiser with every parameter perturbed, so that zero-initialised layers matter too."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        denoiser = EDMDenoiser(cfg).eval()
        with torch.no_grad():
            for p in denoiser.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return denoiser


def denoise(denoiser: EDMDenoiser, cfg: SongUNetConfig = TINY) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, cfg.img_channels, cfg.img_resolution, cfg.img_resolution, generator=g)
    sigma = torch.tensor([0.002, 0.06, 1.0, 80.0])
    labels = torch.nn.functional.one_hot(torch.tensor([0, 3, 7, 9]), cfg.label_dim).float()
    with torch.no_grad():
        return denoiser(x, sigma, labels)


def assert_same_state(state: dict, denoiser: EDMDenoiser) -> None:
    own = denoiser.state_dict()
    assert sorted(state) == sorted(own)
    for key, value in own.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize("protocol", [1, 2, 4])
def test_round_trip(tmp_path, protocol):
    denoiser = random_denoiser()
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, denoiser, protocol=protocol)

    kwargs, state = read_edm_pickle(path)
    assert config_from_edm_kwargs(kwargs, path) == TINY
    assert "model.enc.8x8_down.conv0.resample_filter" in state  # persistent buffers come along
    assert_same_state(state, denoiser)
    loaded = load_denoiser(path).eval()
    torch.testing.assert_close(denoise(loaded), denoise(denoiser), rtol=0, atol=0)


def test_full_size_cifar10_config(tmp_path):
    cfg = dataclasses.replace(CIFAR10_DDPMPP, label_dim=10)
    denoiser = EDMDenoiser(cfg).eval()
    path = tmp_path / "edm-cifar10-32x32-cond-vp.pkl"
    write_edm_pickle(path, denoiser)

    kwargs, state = read_edm_pickle(path)
    assert config_from_edm_kwargs(kwargs, path) == cfg
    # What EDM's train.py records for --arch=ddpmpp --cond=1: our defaults must supply the rest.
    assert set(kwargs) == {
        "img_resolution",
        "img_channels",
        "label_dim",
        "use_fp16",
        "model_type",
        "embedding_type",
        "encoder_type",
        "decoder_type",
        "channel_mult_noise",
        "resample_filter",
        "model_channels",
        "channel_mult",
        "augment_dim",
        "dropout",
    }
    loaded = load_denoiser(path)
    n_params = sum(p.numel() for p in loaded.parameters())
    assert 55.7e6 < n_params < 55.8e6
    modules = dict(loaded.named_modules())
    for name in ("model.enc.32x32_conv", "model.dec.8x8_in0", "model.dec.8x8_in1", "model.dec.8x8_block4"):
        assert name in modules
    assert "model.dec.16x16_up" in modules
    assert_same_state(state, denoiser)
    assert_same_state(loaded.state_dict(), denoiser)


def test_embedded_module_source_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    src = f"open({str(marker)!r}, 'w').close()\n"
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, random_denoiser(), module_src=src)

    read_edm_pickle(path)
    load_denoiser(path)
    assert not marker.exists()
    exec(src)  # what EDM's own loader would do with it
    assert marker.exists()


class _Payload:
    """Pickles as a call `func(*args)`, e.g. builtins.eval(...)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("module, name", [("os", "system"), ("posix", "system"), ("builtins", "exec")])
def test_dangerous_global_is_refused(tmp_path, module, name):
    marker = tmp_path / "pwned"
    arg = f"touch {marker}" if name == "system" else f"open({str(marker)!r}, 'w').close()"
    path = tmp_path / "evil.pkl"
    path.write_bytes(f"c{module}\n{name}\n(V{arg}\ntR.".encode())  # protocol 0: module.name(arg)

    with pytest.raises(DraError, match=rf"refusing to load global {module}\.{name} ") as err:
        read_edm_pickle(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_dangerous_global_inside_an_edm_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "net.pkl"
    evil = _Payload(eval, f"open({str(marker)!r}, 'w').close()")
    write_edm_pickle(path, random_denoiser(), extra={"augment_pipe": evil})

    with pytest.raises(DraError, match=r"refusing to load global builtins\.eval "):
        load_denoiser(path)
    assert not marker.exists()


def test_tensor_view_beyond_its_storage_is_refused(tmp_path):
    storage = torch.zeros(4)._typed_storage()
    view = _Payload(torch._utils._rebuild_tensor_v2, storage, 2, (1000,), (1,), False, collections.OrderedDict())
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, random_denoiser(), extra={"augment_pipe": view})
    with pytest.raises(DraError, match="exceeds its 4-element storage"):
        read_edm_pickle(path)


def test_numpy_scalars_and_easydicts_are_read(tmp_path):
    path = tmp_path / "net.pkl"
    dataset_kwargs = EasyDict(resolution=np.int64(32), p=np.float64(0.12), dtype=torch.float32, size=torch.Size([3]))
    write_edm_pickle(path, random_denoiser(), extra={"dataset_kwargs": dataset_kwargs})
    _, state = read_edm_pickle(path)
    assert_same_state(state, random_denoiser())


def _drop_bias(denoiser):
    denoiser.model.map_layer0.bias = None  # leaves a None parameter, which the reader skips


def _reshape_weight(denoiser):
    denoiser.model.map_layer1.weight = torch.nn.Parameter(torch.zeros(3, 3))


@pytest.mark.parametrize(
    "damage, key",
    [(_drop_bias, "model.map_layer0.bias"), (_reshape_weight, "model.map_layer1.weight")],
)
def test_mismatched_state_is_refused(tmp_path, damage, key):
    denoiser = random_denoiser()
    damage(denoiser)
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, denoiser)
    with pytest.raises(DraError, match=key):
        load_denoiser(path)


def test_other_preconditioning_is_refused(tmp_path):
    path = tmp_path / "baseline-cifar10-32x32-uncond-vp.pkl"
    write_edm_pickle(path, random_denoiser(), precond="VPPrecond")
    with pytest.raises(DraError, match="VPPrecond"):
        read_edm_pickle(path)


@pytest.mark.parametrize("content", ["garbage", "truncated", "no-ema", "cyclic", "missing"])
def test_unreadable_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "net.pkl"
    if content == "garbage":
        path.write_bytes(b"this is not a pickle")
    elif content == "truncated":
        write_edm_pickle(path, random_denoiser())
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "no-ema":
        path.write_bytes(pickle.dumps({"G_ema": 1}))
    elif content == "cyclic":
        denoiser = random_denoiser()
        denoiser.model.enc["loop"] = denoiser.model.enc
        write_edm_pickle(path, denoiser)
    with pytest.raises(DraError) as err:
        read_edm_pickle(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_convert_to_safetensors(tmp_path):
    denoiser = random_denoiser()
    pkl, out = tmp_path / "net.pkl", tmp_path / "net.safetensors"
    write_edm_pickle(pkl, denoiser)

    convert_pickle_to_safetensors(pkl, out)
    loaded = load_denoiser(out).eval()
    assert loaded.cfg == TINY
    assert_same_state(loaded.state_dict(), denoiser)
    torch.testing.assert_close(denoise(loaded), denoise(denoiser), rtol=0, atol=0)

    before = out.read_bytes()
    with pytest.raises(DraError, match="already exists"):
        convert_pickle_to_safetensors(pkl, out)
    assert out.read_bytes() == before
