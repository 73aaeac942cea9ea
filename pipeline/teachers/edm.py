"""EDM-family teachers: our DDPM++ SongUNet with EDM preconditioning, read at a decoder layer and sigma.

Checkpoints: the official EDM pickles (read by `edm_pickle.read_edm_pickle`, which executes nothing from the
file) or safetensors files written by `teacher convert` / `teacher fit`, whose metadata holds the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from dra_pipeline.atomic import atomic_write
from dra_pipeline.errors import DraError
from dra_pipeline.teachers.base import Teacher, TeacherSpec
from dra_pipeline.teachers.registry import register_teacher
from dra_pipeline.teachers.songunet import EDMDenoiser, SongUNetConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
SAFETENSORS_FORMAT = "dra-songunet-edm"


class EDMTeacher(Teacher):
    def __init__(self, spec: TeacherSpec, denoiser: EDMDenoiser, *, layer, noise, seed):
        super().__init__(spec, layer=layer, noise=noise, seed=seed)
        self.denoiser = denoiser

    def feature_modules(self) -> dict[str, nn.Module]:
        unet = self.denoiser.model
        return {**{f"enc.{k}": m for k, m in unet.enc.items()}, **{f"dec.{k}": m for k, m in unet.dec.items()}}

    def run(self, x_noisy: Tensor, level: Tensor, labels: Tensor) -> None:
        self.denoiser(x_noisy, level, self.one_hot(labels))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def config_from_edm_kwargs(kwargs: dict, where: Path) -> SongUNetConfig:
    """Map EDMPrecond's recorded init kwargs onto our config; refuse settings we do not implement."""
    required = {
        "model_type": "SongUNet",
        "embedding_type": "positional",
        "encoder_type": "standard",
        "decoder_type": "standard",
        "channel_mult_noise": 1,
    }
    for key, want in required.items():
        if key in kwargs and kwargs[key] != want:
            raise DraError(f"{where}: unsupported EDM network {key}={kwargs[key]!r} (this tool implements {want!r})")
    if list(kwargs.get("resample_filter", [1, 1])) != [1, 1]:
        raise DraError(f"{where}: unsupported resample_filter {kwargs['resample_filter']!r} (implemented: [1, 1])")
    fields = {f.name for f in dataclasses.fields(SongUNetConfig)}
    return SongUNetConfig.from_dict({k: v for k, v in kwargs.items() if k in fields})


def load_denoiser(path: Path) -> EDMDenoiser:
    """An EDMDenoiser from an EDM .pkl or our .safetensors, loaded with strict key and shape checks."""
    if not path.is_file():
        raise DraError(f"checkpoint {path} not found")
    if path.suffix == ".pkl":
        from dra_pipeline.teachers.edm_pickle import read_edm_pickle

        kwargs, state = read_edm_pickle(path)
        cfg = config_from_edm_kwargs(kwargs, path)
    elif path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != SAFETENSORS_FORMAT:
            raise DraError(
                f"{path}: not a {SAFETENSORS_FORMAT} safetensors file (metadata format={meta.get('format')!r})"
            )
        cfg = SongUNetConfig.from_dict(json.loads(meta["config"]))
        state = load_file(str(path))
    else:
        raise DraError(f"{path}: expected an EDM .pkl or a .safetensors checkpoint")
    denoiser = EDMDenoiser(cfg)
    load_strict(denoiser, state, path)
    return denoiser


def load_strict(module: nn.Module, state: dict[str, Tensor], where: Path, *, assign: bool = False) -> None:
    """load_state_dict(strict=True) with the first missing/unexpected/mis-shaped key named in one line.

    assign=True takes the given tensors as the module's (for a module built on the meta device).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise DraError(
            f"{where}: state dict does not match the network ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise DraError(
                f"{where}: {key} has shape {tuple(value.shape)}, the network expects {tuple(own[key].shape)}"
            )
    module.load_state_dict(state, strict=True, assign=assign)


def save_safetensors(denoiser: EDMDenoiser, path: Path, extra: dict | None = None) -> None:
    """Write weights + config (metadata) by temp file and rename."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in denoiser.state_dict().items()}
    meta = {"format": SAFETENSORS_FORMAT, "config": json.dumps(denoiser.cfg.to_dict()), **(extra or {})}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={k: str(v) for k, v in meta.items()}))


def _builder(default_checkpoint: str, cfg: SongUNetConfig | None = None):
    """Builder for an EDM teacher: weights from --checkpoint or the default path, else random init of `cfg`."""

    def build(spec: TeacherSpec, *, checkpoint: Path | None, layer, noise, seed) -> EDMTeacher:
        if cfg is not None and checkpoint is None:  # a random-weight teacher (tests)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                teacher = EDMTeacher(spec, EDMDenoiser(cfg), layer=layer, noise=noise, seed=seed)
            teacher.checkpoint_sha256 = "random-init-seed-0"
            return teacher
        path = checkpoint or Path(default_checkpoint)
        if not path.is_file():
            raise DraError(
                f"{spec.name}: checkpoint {path} not found; put the file there (see README, 'Teachers') "
                "or pass --checkpoint"
            )
        teacher = EDMTeacher(spec, load_denoiser(path), layer=layer, noise=noise, seed=seed)
        if teacher.denoiser.cfg.label_dim != spec.label_dim:
            raise DraError(f"{path}: label_dim {teacher.denoiser.cfg.label_dim}, {spec.name} needs {spec.label_dim}")
        teacher.checkpoint_sha256 = file_sha256(path)
        return teacher

    return build


def _edm_spec(name, dataset, label_dim, checkpoint, description, **kw) -> TeacherSpec:
    base = dict(
        family="edm",
        resolution=32,
        channels=3,
        in_range=(-1.0, 1.0),
        label_dim=label_dim,
        layer="dec.8x8_block4",
        noise=0.06,
        noise_kind="sigma",
        dim=256,
    )
    return TeacherSpec(name=name, dataset=dataset, checkpoint=checkpoint, description=description, **{**base, **kw})


EDM_CIFAR10 = _edm_spec(
    "edm-cifar10",
    "cifar10",
    10,
    "checkpoints/edm-cifar10-32x32-cond-vp.pkl",
    "EDM DDPM++ VP, class-conditional, CIFAR-10 (NVlabs/edm release)",
)
EDM_CIFAR10_UNCOND = _edm_spec(
    "edm-cifar10-uncond",
    "cifar10",
    0,
    "checkpoints/edm-cifar10-32x32-uncond-vp.pkl",
    "EDM DDPM++ VP, unconditional, CIFAR-10 (NVlabs/edm release)",
)
EDM_CIFAR100 = _edm_spec(
    "edm-cifar100",
    "cifar100",
    100,
    "checkpoints/edm-cifar100-32x32-cond-vp.pkl",
    "EDM DDPM++ VP, class-conditional, CIFAR-100 (a checkpoint you trained with EDM's code)",
)
register_teacher(EDM_CIFAR10)(_builder(EDM_CIFAR10.checkpoint))
register_teacher(EDM_CIFAR10_UNCOND)(_builder(EDM_CIFAR10_UNCOND.checkpoint))
register_teacher(EDM_CIFAR100)(_builder(EDM_CIFAR100.checkpoint))

# Random-weight SongUNets for tests: 16 px, two levels, no attention, ~0.1 M parameters.
TINY_CONFIG = SongUNetConfig(
    img_resolution=16, model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(), dropout=0.0
)
for _name, _channels in (("tiny", 3), ("tiny-gray", 1)):
    _spec = TeacherSpec(
        name=_name,
        family="tiny",
        dataset="fashion-mnist" if _channels == 1 else "cifar10",
        resolution=16,
        channels=_channels,
        in_range=(-1.0, 1.0),
        label_dim=0,
        layer="dec.8x8_block1",
        noise=0.1,
        noise_kind="sigma",
        dim=32,
        checkpoint="",
        description=f"random-weight {_channels}-channel SongUNet (tests)",
    )
    register_teacher(_spec)(_builder("", dataclasses.replace(TINY_CONFIG, img_channels=_channels)))

# The embedded default: trained by this project (`teacher fit`, see docs/teachers/edm-fmnist.md), shipped in the
# package. Default layer and sigma chosen by `teacher probe` (docs/teachers/edm-fmnist-probe.md).
EDM_FMNIST = TeacherSpec(
    name="edm-fmnist",
    family="edm",
    dataset="fashion-mnist",
    resolution=28,
    channels=1,
    in_range=(-1.0, 1.0),
    label_dim=10,
    layer="dec.7x7_block1",
    noise=0.02,
    noise_kind="sigma",
    dim=64,
    checkpoint="",
    description="EDM SongUNet (1.75 M parameters) trained by this project on Fashion-MNIST; ships in the package",
)
register_teacher(EDM_FMNIST)(_builder(str(WEIGHTS_DIR / "edm-fmnist.safetensors")))
