"""diffusers teachers: DDPM CIFAR-10 (pixel UNet) and DiT-XL/2 ImageNet 256 (latent transformer), read at a timestep.

Both are DDPM-timestep models: the noise level is an integer t in [0, T) and the input is the VP form
x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps. The base class thinks in EDM sigmas (the `extra-sigma` view draws one
per row), so `TimestepTeacher` converts: sigma_t = sqrt((1 - abar_t) / abar_t) and a sigma maps to the nearest t.

Checkpoints are Hugging Face repo ids (default `google/ddpm-cifar10-32`, `facebook/DiT-XL-2-256`), whose files are
fetched into the hub cache by huggingface_hub, or local folders in the same layout; either way diffusers'
`from_pretrained` loads exactly the files that are hashed into the provenance. diffusers is imported only when a
teacher is built.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.fetch import hub_file
from dra_pipeline.hashing import folder_sha256
from dra_pipeline.teachers.base import Teacher, TeacherSpec
from dra_pipeline.teachers.registry import register_teacher

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")  # diffusers' preference order
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # a Hugging Face repo id: owner/name


# ---- DDPM forward process (Ho et al. 2020, eq. 4) and its EDM sigma (Karras et al. 2022, VP row of Table 1) -----
def vp_sigma(alphas_cumprod: Tensor) -> Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t): the noise std of x_t / sqrt(abar_t) = x + sigma_t eps."""
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def nearest_timestep(alphas_cumprod: Tensor, sigma: Tensor) -> Tensor:
    """Timesteps (N,) long whose sigma_t is nearest `sigma` (N,) in log space; out-of-range sigmas clamp to 0 or T-1."""
    log_sigma_t = vp_sigma(alphas_cumprod.double()).log()
    return (log_sigma_t[None, :] - sigma.double().log()[:, None]).abs().argmin(dim=1)


class TimestepTeacher(Teacher):
    """A teacher told an integer DDPM timestep; `self.noise` is that timestep for the clean and flip views."""

    def __init__(self, spec: TeacherSpec, alphas_cumprod: Tensor, *, layer, noise, seed):
        super().__init__(spec, layer=layer, noise=noise, seed=seed)
        self.register_buffer("alphas_cumprod", alphas_cumprod.double(), persistent=False)  # (T,)
        steps = len(alphas_cumprod)
        if not (self.noise.is_integer() and 0 <= self.noise < steps):
            raise DraError(f"{spec.name}: noise is a DDPM timestep, an integer in [0, {steps - 1}]; got {self.noise:g}")

    def default_sigma(self) -> float:
        return float(vp_sigma(self.alphas_cumprod[int(self.noise)]))

    def add_noise(self, x: Tensor, eps: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps at t nearest each row's sigma (N,); returns (x_t, t)."""
        t = nearest_timestep(self.alphas_cumprod, sigma)
        abar = self.alphas_cumprod[t].view(-1, *[1] * (x.dim() - 1))
        return abar.sqrt().to(x.dtype) * x + (1 - abar).sqrt().to(x.dtype) * eps, t


class DDPMTeacher(TimestepTeacher):
    """A pixel-space diffusers UNet2DModel (unconditional)."""

    def __init__(self, spec: TeacherSpec, unet: nn.Module, alphas_cumprod: Tensor, *, layer, noise, seed):
        super().__init__(spec, alphas_cumprod, layer=layer, noise=noise, seed=seed)
        self.unet = unet

    def feature_modules(self) -> dict[str, nn.Module]:
        unet = self.unet
        return {
            **{f"down_blocks.{i}": m for i, m in enumerate(unet.down_blocks)},
            "mid_block": unet.mid_block,
            **{f"up_blocks.{i}": m for i, m in enumerate(unet.up_blocks)},
        }

    def run(self, x_noisy: Tensor, level: Tensor, labels: Tensor) -> None:
        self.unet(x_noisy, level)


class DiTTeacher(TimestepTeacher):
    """A class-conditional latent DiT: images -> VAE posterior mean * scaling_factor -> noised latent -> transformer."""

    def __init__(
        self, spec: TeacherSpec, transformer: nn.Module, vae: nn.Module, alphas_cumprod: Tensor, *, layer, noise, seed
    ):
        super().__init__(spec, alphas_cumprod, layer=layer, noise=noise, seed=seed)
        self.transformer = transformer
        self.vae = vae

    def feature_modules(self) -> dict[str, nn.Module]:
        return {f"transformer_blocks.{i}": m for i, m in enumerate(self.transformer.transformer_blocks)}

    def encode(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] (N, 3, R, R) -> latents (N, 4, R/8, R/8); the posterior mean, so no sampling noise."""
        return self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor

    def run(self, x_noisy: Tensor, level: Tensor, labels: Tensor) -> None:
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.spec.label_dim):
            raise DraError(f"{self.spec.name} takes class labels in [0, {self.spec.label_dim - 1}] (ImageNet ids)")
        self.transformer(x_noisy, timestep=level, class_labels=labels)


# ---- loading a folder in the Hugging Face layout (a local one, or the hub cache's snapshot of a repo) ------------
def checkpoint_folder(spec: TeacherSpec, checkpoint: Path | None, components: list[tuple[str, str, bool]]) -> Path:
    """The folder holding the model's files: `checkpoint` when it is a folder, else the hub-cache snapshot of the
    repo it names (default: the spec's repo), each component's files fetched first. A component is (subfolder,
    config file, flat): flat ones may also sit at the repo's root; a model's config.json brings its weights."""
    given = checkpoint or Path(spec.checkpoint)
    if given.is_dir():
        return given
    repo = given.as_posix()
    if not REPO_ID.fullmatch(repo):
        raise DraError(
            f"{spec.name}: checkpoint folder {given} not found; put the files there (see README, 'Teachers') "
            "or pass --checkpoint"
        )
    instead = "or put the repo's files in a folder and pass it as --checkpoint (see README, 'Teachers')"
    if checkpoint is not None:
        instead = f"no folder {given} exists either; {instead}"
    roots = []
    for name, config_file, flat in components:
        names = [f"{name}/{config_file}", *([config_file] if flat else [])]
        config = hub_file(repo, *names, instead=instead)
        found = next(n for n in names if config.as_posix().endswith("/" + n))
        if config_file == "config.json":
            prefix = found[: -len(config_file)]
            hub_file(repo, *(prefix + w for w in WEIGHT_FILES), instead=instead)
        roots.append(config.parents[found.count("/")])
    return roots[0]  # one snapshot folder: every file comes from the revision the repo's main branch names


def find_component(root: Path, name: str, config_file: str, *, flat: bool = False) -> Path:
    """The folder holding a component's `config_file`: root/name, or (flat=True) root itself."""
    for folder in (root / name, root) if flat else (root / name,):
        if (folder / config_file).is_file():
            return folder
    where = f"{name}/{config_file}" + (f" or {config_file}" if flat else "")
    raise DraError(f"{root}: no {where} (expected the Hugging Face repo layout; see README, 'Teachers')")


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise DraError(f"{folder}: no {' or '.join(WEIGHT_FILES)}")


def load_model(cls, folder: Path) -> nn.Module:
    """A diffusers model from `folder`, reading exactly the weight file `weights_file` names (the one hashed)."""
    use_safetensors = weights_file(folder).suffix == ".safetensors"
    # low_cpu_mem_usage=True needs accelerate (not a dependency); without it diffusers warns and falls back to False.
    return cls.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False, use_safetensors=use_safetensors)


def load_alphas_cumprod(folder: Path) -> Tensor:
    """abar_t (T,) from a scheduler_config.json; any DDPM-family scheduler (DDPM, DDIM, ...) shares its betas."""
    from diffusers import DDPMScheduler

    config = DDPMScheduler.load_config(folder)
    return DDPMScheduler.from_config(config).alphas_cumprod


def model_files(folder: Path) -> list[Path]:
    """The files that define a loaded model: its config.json and the weight file read."""
    return [folder / "config.json", weights_file(folder)]


def build_ddpm(spec: TeacherSpec, *, checkpoint: Path | None, layer, noise, seed) -> DDPMTeacher:
    """UNet2DModel + scheduler from `unet/` and `scheduler/`, or config.json + scheduler_config.json at the root."""
    from diffusers import UNet2DModel

    root = checkpoint_folder(
        spec, checkpoint, [("unet", "config.json", True), ("scheduler", "scheduler_config.json", True)]
    )
    unet_dir = find_component(root, "unet", "config.json", flat=True)
    scheduler_dir = find_component(root, "scheduler", "scheduler_config.json", flat=True)
    unet = load_model(UNet2DModel, unet_dir)
    got = (unet.config.in_channels, unet.config.sample_size)
    if got != (spec.channels, spec.resolution):
        raise DraError(
            f"{unet_dir}: UNet takes {got[0]} channels at {got[1]} px; {spec.name} needs "
            f"{spec.channels} at {spec.resolution}"
        )
    teacher = DDPMTeacher(spec, unet, load_alphas_cumprod(scheduler_dir), layer=layer, noise=noise, seed=seed)
    files = [*model_files(unet_dir), scheduler_dir / "scheduler_config.json"]
    teacher.checkpoint_sha256 = folder_sha256(root, files)
    return teacher


def build_dit(spec: TeacherSpec, *, checkpoint: Path | None, layer, noise, seed) -> DiTTeacher:
    """DiT transformer, AutoencoderKL and scheduler from the `transformer/`, `vae/` and `scheduler/` subfolders."""
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    components = [("transformer", "config.json", False), ("vae", "config.json", False)]
    root = checkpoint_folder(spec, checkpoint, [*components, ("scheduler", "scheduler_config.json", False)])
    dirs = {
        "transformer": find_component(root, "transformer", "config.json"),
        "vae": find_component(root, "vae", "config.json"),
        "scheduler": find_component(root, "scheduler", "scheduler_config.json"),
    }
    # The public repo names the class Transformer2DModel (legacy); its config and keys load into the DiT class.
    transformer = load_model(DiTTransformer2DModel, dirs["transformer"])
    vae = load_model(AutoencoderKL, dirs["vae"])
    latent_side = spec.resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    tc = transformer.config
    if (tc.in_channels, tc.sample_size) != (vae.config.latent_channels, latent_side):
        raise DraError(
            f"{root}: the transformer takes {tc.in_channels}x{tc.sample_size}^2 latents, the VAE gives "
            f"{vae.config.latent_channels}x{latent_side}^2 at {spec.resolution} px"
        )
    if tc.num_embeds_ada_norm != spec.label_dim:
        raise DraError(f"{dirs['transformer']}: {tc.num_embeds_ada_norm} classes, {spec.name} needs {spec.label_dim}")
    alphas_cumprod = load_alphas_cumprod(dirs["scheduler"])
    teacher = DiTTeacher(spec, transformer, vae, alphas_cumprod, layer=layer, noise=noise, seed=seed)
    files = [*model_files(dirs["transformer"]), *model_files(dirs["vae"]), dirs["scheduler"] / "scheduler_config.json"]
    teacher.checkpoint_sha256 = folder_sha256(root, files)
    return teacher


# Default timesteps are guesses to be tuned by a linear-probe sweep. Both repos use the linear beta schedule
# (1e-4 .. 0.02, T = 1000). t = 14 has sigma_t = 0.060, the EDM teachers' default sigma on pixels in [-1, 1]
# (data std ~0.5). DiT latents have std ~1 (that is what scaling_factor is for), so the same noise-to-signal
# ratio, 0.12, is sigma_t = 0.12: t = 33.
DDPM_CIFAR10 = TeacherSpec(
    name="ddpm-cifar10",
    family="ddpm",
    dataset="cifar10",
    resolution=32,
    channels=3,
    in_range=(-1.0, 1.0),
    label_dim=0,
    layer="up_blocks.1",
    noise=14,
    noise_kind="t",
    dim=256,
    checkpoint="google/ddpm-cifar10-32",
    description="DDPM, unconditional, CIFAR-10 (google/ddpm-cifar10-32 via diffusers); layer up_blocks.1 is the "
    "8x8 decoder stage, output upsampled to 16x16",
)
DIT_XL_2_256 = TeacherSpec(
    name="dit-xl-2-256",
    family="dit",
    dataset="imagenet",
    resolution=256,
    channels=3,
    in_range=(-1.0, 1.0),
    label_dim=1000,
    layer="transformer_blocks.14",
    noise=33,
    noise_kind="t",
    dim=1152,
    checkpoint="facebook/DiT-XL-2-256",
    description="DiT-XL/2, class-conditional, ImageNet 256 (facebook/DiT-XL-2-256 via diffusers); SD VAE latents "
    "(posterior mean), block 14 of 28, pooled over 256 tokens",
)
register_teacher(DDPM_CIFAR10)(build_ddpm)
register_teacher(DIT_XL_2_256)(build_dit)
