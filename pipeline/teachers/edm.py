"""EDM-family teachers: our DDPM++ SongUNet with EDM preconditioning, read at a decoder layer and sigma.

Checkpoints: the official EDM pickles (read by `edm_pickle.read_edm_pickle`, which executes nothing from the
file) or safetensors files written by `teacher convert` / `teacher fit`, whose metadata holds the config. The
CIFAR-10 pickles NVIDIA publishes are downloaded into $DRA_HOME/checkpoints when no --checkpoint is given.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.fetch import Remote, checkpoints_dir, download, edm_remote
from dra_pipeline.hashing import file_sha256
from dra_pipeline.teachers.base import Teacher, TeacherSpec
from dra_pipeline.teachers.edm_checkpoint import load_denoiser
from dra_pipeline.teachers.registry import register_teacher
from dra_pipeline.teachers.songunet import EDMDenoiser, SongUNetConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"


class EDMTeacher(Teacher):
    def __init__(self, spec: TeacherSpec, denoiser: EDMDenoiser, *, layer, noise, seed):
        super().__init__(spec, layer=layer, noise=noise, seed=seed)
        self.denoiser = denoiser

    def feature_modules(self) -> dict[str, nn.Module]:
        unet = self.denoiser.model
        return {**{f"enc.{k}": m for k, m in unet.enc.items()}, **{f"dec.{k}": m for k, m in unet.dec.items()}}

    def run(self, x_noisy: Tensor, level: Tensor, labels: Tensor) -> None:
        self.denoiser(x_noisy, level, self.one_hot(labels))


def _builder(default_checkpoint: str, cfg: SongUNetConfig | None = None, remote: Remote | None = None):
    """Builder for an EDM teacher: weights from --checkpoint, else `remote` downloaded into $DRA_HOME/checkpoints,
    else the default path, else random init of `cfg`."""

    def build(spec: TeacherSpec, *, checkpoint: Path | None, layer, noise, seed) -> EDMTeacher:
        if cfg is not None and checkpoint is None:  # a random-weight teacher (tests)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                teacher = EDMTeacher(spec, EDMDenoiser(cfg), layer=layer, noise=noise, seed=seed)
            teacher.checkpoint_sha256 = "random-init-seed-0"
            return teacher
        if checkpoint is None and remote is not None:
            path = download(remote, checkpoints_dir() / remote.filename)
        else:
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


COND_REMOTE = edm_remote("edm-cifar10-32x32-cond-vp")
UNCOND_REMOTE = edm_remote("edm-cifar10-32x32-uncond-vp")
EDM_CIFAR10 = _edm_spec(
    "edm-cifar10",
    "cifar10",
    10,
    COND_REMOTE.url,
    "EDM DDPM++ VP, class-conditional, CIFAR-10 (NVlabs/edm release)",
)
EDM_CIFAR10_UNCOND = _edm_spec(
    "edm-cifar10-uncond",
    "cifar10",
    0,
    UNCOND_REMOTE.url,
    "EDM DDPM++ VP, unconditional, CIFAR-10 (NVlabs/edm release)",
)
EDM_CIFAR100 = _edm_spec(  # NVIDIA publishes no CIFAR-100 network: no download, the file is the user's
    "edm-cifar100",
    "cifar100",
    100,
    "checkpoints/edm-cifar100-32x32-cond-vp.pkl",
    "EDM DDPM++ VP, class-conditional, CIFAR-100 (a checkpoint you trained with EDM's code)",
)
register_teacher(EDM_CIFAR10)(_builder("", remote=COND_REMOTE))
register_teacher(EDM_CIFAR10_UNCOND)(_builder("", remote=UNCOND_REMOTE))
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

# Trained by this project on CIFAR-10 (`teacher fit --net cifar-mini`), packaged once made: a CIFAR-10 teacher that
# works offline, without EDM's download. Its layer is the last 8x8 decoder block before the upsampling (the rule
# docs/recipe.md records for EDM teachers) at DDAE's sigma; `teacher probe` on CIFAR-10 checks both.
EDM_CIFAR10_MINI_FILE = "edm-cifar10-mini.safetensors"
EDM_CIFAR10_MINI = _edm_spec(
    "edm-cifar10-mini",
    "cifar10",
    10,
    "",
    "EDM SongUNet (3.95 M parameters) trained by this project on CIFAR-10; packaged once made",
    layer="dec.8x8_block2",
    dim=128,
)


def _packaged_builder(filename: str, how: str):
    """Builder for a teacher whose weights ship in the package: --checkpoint, else WEIGHTS_DIR/filename; when that
    file is not there, one line saying how to make it."""
    build_packaged = _builder(str(WEIGHTS_DIR / filename))

    def build(spec: TeacherSpec, *, checkpoint: Path | None, layer, noise, seed) -> EDMTeacher:
        if checkpoint is None and not (WEIGHTS_DIR / filename).is_file():
            raise DraError(f"{spec.name}: its weights are not packaged in this install ({filename}); {how}")
        return build_packaged(spec, checkpoint=checkpoint, layer=layer, noise=noise, seed=seed)

    return build


register_teacher(EDM_CIFAR10_MINI)(
    _packaged_builder(
        EDM_CIFAR10_MINI_FILE,
        "make them with `bash bench/gpu_record.sh --phases teacher` on a CUDA host (`teacher fit --net cifar-mini`) "
        "and copy the EMA weights to pipeline/teachers/weights/, or pass --checkpoint FILE",
    )
)
