"""LightningDiT (Yao et al. 2025, "Reconstruction vs. Generation") on VA-VAE latents, written for this project.

The network: a DiT whose blocks use RMSNorm, SwiGLU, 2-D rotary position embedding (RoPE) on queries and keys, and
AdaLN modulation from the sum of a timestep and a class embedding (1000 ImageNet classes plus one null class for
classifier-free guidance). Published XL/1 configuration: 28 blocks, hidden 1152, 16 heads, patch 1 on a 16x16x32
VA-VAE latent (256 tokens); SwiGLU, RoPE and RMSNorm on, qk-norm off, AdaLN with shift. Module and parameter
names follow the released checkpoint (`x_embedder.proj.weight`, `pos_embed`, `t_embedder.mlp.0.weight`,
`y_embedder.embedding_table.weight`, `feat_rope.freqs_cos`, `blocks.0.attn.qkv.weight`, `blocks.0.mlp.w12.weight`,
`blocks.0.adaLN_modulation.1.weight`, `final_layer.linear.weight`, ...), so its state dict loads strictly.

Time runs the other way from DDPM: LightningDiT trains a velocity field on the linear (rectified-flow) path of its
transport code, x_t = t * x1 + (1 - t) * x0 with x1 the (normalised) latent and x0 ~ N(0, I), so t = 0 is pure
noise and t = 1 the clean latent, and the network is told t itself (a float in [0, 1], not t * 1000). A
teacher's noise level (`--t`, `noise=`) is that t. The base class works in noise stds: x_t / t = x1 + sigma x0
with sigma = (1 - t) / t, so t = 1 / (1 + sigma).

Views: `flip` encodes the mirrored image (with the row's noise mirrored) rather than mirroring the latent.

Features: `blocks.i` is the residual stream entering block i (0-based, as the checkpoint numbers its modules), that
is after i blocks, before block i's norm1 and AdaLN modulation; `blocks.14` (the default) is the output of the
first 14 of the 28 blocks. Zeroed massive-activation channels are zeroed in that tensor, i.e. before modulation.
`blocks.i.norm1` is the same stream after block i's RMSNorm, still before modulation; `final_layer` is the stream
after all blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.fetch import hub_file
from dra_pipeline.hashing import named_files_sha256
from dra_pipeline.teachers.base import Teacher, TeacherSpec
from dra_pipeline.teachers.loading import load_strict, read_torch_file
from dra_pipeline.teachers.registry import register_teacher
from dra_pipeline.teachers.vavae import (
    F16D32,
    VAEEncoder,
    VAEEncoderConfig,
    load_latent_stats,
    load_vae_encoder,
)


@dataclass(frozen=True)
class LightningDiTConfig:
    input_size: int = 16  # latent side, latent pixels
    patch_size: int = 1
    in_channels: int = 32  # latent channels
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0  # SwiGLU hidden width is int(2/3 * mlp_ratio * hidden_size)
    num_classes: int = 1000
    null_class: bool = True  # one more embedding row (index num_classes) for the unconditional label (CFG)
    learn_sigma: bool = False  # output 2 * in_channels channels, the second half discarded
    use_qknorm: bool = False
    use_swiglu: bool = True
    use_rope: bool = True
    use_rmsnorm: bool = True
    wo_shift: bool = False  # AdaLN without the shift terms

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid(self) -> int:
        return self.input_size // self.patch_size


XL_1 = LightningDiTConfig()  # lightningdit-xl-imagenet256-{64,800}ep.pt


# ---- building blocks ------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = x.float()
        return (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def _norm(cfg: LightningDiTConfig, dim: int, *, affine: bool) -> nn.Module:
    if cfg.use_rmsnorm:
        return RMSNorm(dim)
    return nn.LayerNorm(dim, elementwise_affine=affine, eps=1e-6)


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """(M,) positions -> (M, dim): sin of positions * omega, then cos, omega_k = 10000^(-k / (dim / 2))."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, grid: int) -> Tensor:
    """Fixed 2-D position embedding (grid * grid, dim), tokens in row-major order: the first half of the channels
    encodes the column, the second half the row (the layout of DiT's / MAE's table, which the checkpoint holds)."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1).float()


class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, H/p * W/p, hidden) tokens in row-major order, by a stride-p p x p convolution."""

    def __init__(self, cfg: LightningDiTConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_channels, cfg.hidden_size, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """t (N,) -> (N, hidden): [cos(t f_k), sin(t f_k)], f_k = 10000^(-k / 128), k < 128, then Linear-SiLU-Linear."""

    frequency_embedding_size = 256

    def __init__(self, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(self.frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: Tensor) -> Tensor:
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    def __init__(self, cfg: LightningDiTConfig):
        super().__init__()
        self.embedding_table = nn.Embedding(cfg.num_classes + int(cfg.null_class), cfg.hidden_size)

    def forward(self, labels: Tensor) -> Tensor:
        return self.embedding_table(labels)


class RotaryEmbedding2D(nn.Module):
    """2-D RoPE on (N, heads, T, head_dim): the first half of head_dim rotates with the token's row, the second half
    with its column; channels pair up as (0, 1), (2, 3), ... with frequencies 10000^(-2k / (head_dim / 2)).

    The cos/sin tables are persistent buffers (T, head_dim), as in the checkpoint (`feat_rope.freqs_cos`)."""

    def __init__(self, head_dim: int, grid: int):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
        half = head_dim // 2
        freqs = 1.0 / 10000 ** (torch.arange(0, half, 2, dtype=torch.float32) / half)  # (half / 2,)
        angles = (torch.arange(grid, dtype=torch.float32)[:, None] * freqs[None]).repeat_interleave(2, dim=1)
        table = torch.cat(
            [angles[:, None, :].expand(grid, grid, half), angles[None, :, :].expand(grid, grid, half)], dim=-1
        ).reshape(grid * grid, head_dim)
        self.register_buffer("freqs_cos", table.cos())
        self.register_buffer("freqs_sin", table.sin())

    def forward(self, x: Tensor) -> Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)  # (a, b) -> (-b, a)
        return (x * self.freqs_cos + rotated * self.freqs_sin).to(x.dtype)  # keep q, k in autocast's dtype


class Attention(nn.Module):
    def __init__(self, cfg: LightningDiTConfig):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.q_norm = _norm(cfg, cfg.head_dim, affine=True) if cfg.use_qknorm else nn.Identity()
        self.k_norm = _norm(cfg, cfg.head_dim, affine=True) if cfg.use_qknorm else nn.Identity()
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor, rope: RotaryEmbedding2D | None) -> Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, c))


class SwiGLU(nn.Module):
    """w3(silu(a) * b) with (a, b) the two halves of w12(x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class GeluMlp(nn.Module):
    """fc1-GELU(tanh)-fc2: the MLP of a LightningDiT built without SwiGLU (timm's Mlp names)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x: Tensor, shift: Tensor | None, scale: Tensor) -> Tensor:
    """AdaLN modulation of tokens (N, T, C) by per-image (N, C) scale and shift: x * (1 + scale) + shift."""
    x = x * (1 + scale[:, None])
    return x if shift is None else x + shift[:, None]


class LightningDiTBlock(nn.Module):
    def __init__(self, cfg: LightningDiTConfig):
        super().__init__()
        dim, mlp_hidden = cfg.hidden_size, int(cfg.hidden_size * cfg.mlp_ratio)
        self.norm1 = _norm(cfg, dim, affine=False)
        self.attn = Attention(cfg)
        self.norm2 = _norm(cfg, dim, affine=False)
        self.mlp = SwiGLU(dim, int(2 / 3 * mlp_hidden)) if cfg.use_swiglu else GeluMlp(dim, mlp_hidden)
        self.wo_shift = cfg.wo_shift
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, (4 if cfg.wo_shift else 6) * dim))

    def forward(self, x: Tensor, c: Tensor, rope: RotaryEmbedding2D | None) -> Tensor:
        if self.wo_shift:
            scale_msa, gate_msa, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(4, dim=1)
            shift_msa = shift_mlp = None
        else:
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope)
        return x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, cfg: LightningDiTConfig, out_channels: int):
        super().__init__()
        self.norm_final = _norm(cfg, cfg.hidden_size, affine=False)
        self.linear = nn.Linear(cfg.hidden_size, cfg.patch_size**2 * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden_size, 2 * cfg.hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class LightningDiT(nn.Module):
    """Velocity field v(x_t, t, y): latents (N, C, S, S), t (N,) in [0, 1] (1 = clean), labels (N,) -> (N, C, S, S)."""

    def __init__(self, cfg: LightningDiTConfig = XL_1):
        super().__init__()
        self.cfg = cfg
        self.out_channels = cfg.in_channels * (2 if cfg.learn_sigma else 1)
        self.x_embedder = PatchEmbed(cfg)
        self.t_embedder = TimestepEmbedder(cfg.hidden_size)
        self.y_embedder = LabelEmbedder(cfg)
        # fixed (never trained) but a parameter in the release, so it is in the state dict
        self.pos_embed = nn.Parameter(sincos_2d(cfg.hidden_size, cfg.grid)[None], requires_grad=False)
        self.feat_rope = RotaryEmbedding2D(cfg.head_dim, cfg.grid) if cfg.use_rope else None
        self.blocks = nn.ModuleList(LightningDiTBlock(cfg) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(cfg, self.out_channels)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random weights for tests: xavier-uniform linear layers, N(0, 0.02) embeddings, zero biases.

        Unlike the training initialisation, AdaLN and output layers are *not* zeroed: that would make every block
        the identity, and a random teacher needs blocks that matter. Real weights come from the checkpoint.
        """
        if self.pos_embed.is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

    def condition(self, t: Tensor, labels: Tensor) -> Tensor:
        """The AdaLN conditioning vector (N, hidden): timestep embedding + class embedding."""
        return self.t_embedder(t) + self.y_embedder(labels)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        h = self.x_embedder(x) + self.pos_embed
        c = self.condition(t, labels)
        for block in self.blocks:
            h = block(h, c, self.feat_rope)
        return self.unpatchify(self.final_layer(h, c))[:, : self.cfg.in_channels]

    def unpatchify(self, x: Tensor) -> Tensor:
        """(N, T, p * p * C) -> (N, C, S, S)."""
        p, g, c = self.cfg.patch_size, self.cfg.grid, self.out_channels
        return x.reshape(len(x), g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(len(x), c, g * p, g * p)


# ---- the teacher ----------------------------------------------------------------------------------------------------
class LightningDiTTeacher(Teacher):
    """Images -> VA-VAE posterior mean -> (z - mean) / std -> x_t = t z + (1 - t) eps -> LightningDiT at a block."""

    def __init__(
        self,
        spec: TeacherSpec,
        dit: LightningDiT,
        vae: VAEEncoder,
        latent_mean: Tensor,
        latent_std: Tensor,
        *,
        layer,
        noise,
        seed,
    ):
        super().__init__(spec, layer=layer, noise=noise, seed=seed)
        if not 0 < self.noise <= 1:
            raise DraError(
                f"{spec.name}: the noise level is the flow time t in (0, 1] (t = 1 clean, t -> 0 pure "
                f"noise); got {self.noise:g}"
            )
        self.dit = dit
        self.vae = vae
        self.register_buffer("latent_mean", latent_mean)
        self.register_buffer("latent_std", latent_std)

    def feature_modules(self) -> dict[str, nn.Module]:
        blocks = self.dit.blocks
        return {
            **{f"blocks.{i}": b for i, b in enumerate(blocks)},
            **{f"blocks.{i}.norm1": b.norm1 for i, b in enumerate(blocks)},
            "final_layer": self.dit.final_layer,
        }

    def register_feature_hook(self, layer: str, module: nn.Module, hook):
        """`blocks.i` and `final_layer` are read at the module's *input* (the residual stream); norms at the output."""
        if layer.endswith(".norm1"):
            return module.register_forward_hook(hook)
        return module.register_forward_pre_hook(lambda m, args: hook(m, args, args[0]))

    def encode(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] (N, 3, R, R) -> normalised latents (N, z, R / f, R / f): the posterior mean, no noise."""
        return (self.vae.posterior_mean(x) - self.latent_mean) / self.latent_std

    def default_sigma(self) -> float:
        return (1 - self.noise) / self.noise

    def add_noise(self, x: Tensor, eps: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """x_t = t x + (1 - t) eps with t = 1 / (1 + sigma) per row (N,); returns (x_t, t)."""
        t = 1 / (1 + sigma.double())
        tt = t.view(-1, *[1] * (x.dim() - 1))
        return (tt * x.double() + (1 - tt) * eps.double()).to(x.dtype), t.float()

    @torch.no_grad()
    def layer_activations(self, images, labels, rows, views=("clean",)) -> list[Tensor]:
        """As in the base class, except the `flip` view: it encodes the mirrored image, with the row's noise
        mirrored. A VAE latent is not flip-equivariant (learned kernels, one-sided padding), so mirroring the latent
        is not the latent of the mirrored image; LightningDiT's own pipeline likewise encodes flipped images."""
        views = tuple(views)
        others = [v for v in views if v != "flip"]
        outputs = dict(zip(others, super().layer_activations(images, labels, rows, others)))  # checks view names
        if "flip" in views:
            mirrored = np.ascontiguousarray(np.asarray(images)[:, :, ::-1])
            x, labels_t, eps, _ = self.prepare(mirrored, labels, rows)
            fixed = torch.full((len(x),), self.default_sigma(), device=x.device)
            outputs["flip"] = self.capture(*self.add_noise(x, eps.flip(-1), fixed), labels_t)
        return [outputs[v] for v in views]

    def prepare(self, images, labels, rows):
        labels = np.asarray(labels)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.spec.label_dim):  # checked before any device
            raise DraError(f"{self.spec.name} takes class labels in [0, {self.spec.label_dim - 1}] (ImageNet ids)")
        return super().prepare(images, labels, rows)

    def run(self, x_noisy: Tensor, level: Tensor, labels: Tensor) -> None:
        self.dit(x_noisy, level, labels)

    def provenance(self, views) -> dict:
        return {
            **super().provenance(views),
            "time_convention": "x_t = t * x + (1 - t) * eps; t = 0 noise, t = 1 clean",
            "latents": "VA-VAE posterior mean, (z - mean) / std from latents_stats.pt",
        }


# ---- checkpoints ----------------------------------------------------------------------------------------------------
DIT_FILES = ("lightningdit-xl-imagenet256-800ep.pt", "lightningdit-xl-imagenet256-64ep.pt")  # preference order
VAE_FILE = "vavae-imagenet256-f16d32-dinov2.pt"
STATS_FILE = "latents_stats.pt"
# The release's Hugging Face repos (file names as LightningDiT's README links them); the statistics sit with the VAE.
DIT_REPO = "hustvl/lightningdit-xl-imagenet256-800ep"
VAE_REPO = "hustvl/vavae-imagenet256-f16d32-dinov2"


@dataclass(frozen=True)
class ReleaseFiles:
    dit: Path
    vae: Path
    stats: Path

    def sha256(self) -> str:
        """The checkpoint hash: the three files by name, as if side by side in one folder, wherever they are."""
        return named_files_sha256({p.name: p for p in (self.dit, self.vae, self.stats)})


def release_files(spec: TeacherSpec, checkpoint: Path | None) -> ReleaseFiles:
    """The three release files: `checkpoint` is their folder, or the LightningDiT .pt file with the others beside it;
    without one, the files of the release's Hugging Face repos, from the hub cache (downloaded into it if absent)."""
    if checkpoint is None:
        instead = f"or put {DIT_FILES[0]}, {VAE_FILE} and {STATS_FILE} in a folder and pass it as --checkpoint"
        return ReleaseFiles(
            hub_file(DIT_REPO, DIT_FILES[0], instead=instead),
            hub_file(VAE_REPO, VAE_FILE, instead=instead),
            hub_file(VAE_REPO, STATS_FILE, instead=instead),
        )
    wanted = f"{DIT_FILES[0]} (or {DIT_FILES[1]}), {VAE_FILE} and {STATS_FILE}"
    if checkpoint.is_file():
        root, dit = checkpoint.parent, checkpoint
    elif checkpoint.is_dir():
        root = checkpoint
        dit = next((root / n for n in DIT_FILES if (root / n).is_file()), None)
    else:
        raise DraError(
            f"{spec.name}: checkpoint {checkpoint} not found; it should be a folder holding {wanted} "
            "(see README, 'Teachers')"
        )
    missing = [] if dit else [f"{DIT_FILES[0]} (or {DIT_FILES[1]}): the LightningDiT-XL/1 weights"]
    if not (root / VAE_FILE).is_file():
        missing.append(f"{VAE_FILE}: the VA-VAE f16d32 weights")
    if not (root / STATS_FILE).is_file():
        missing.append(f"{STATS_FILE}: the latent mean and std")
    if missing or dit is None:
        raise DraError(f"{spec.name}: {root} lacks {'; '.join(missing)} (see README, 'Teachers')")
    return ReleaseFiles(dit, root / VAE_FILE, root / STATS_FILE)


def dit_state_dict(ckpt, path: Path) -> dict[str, Tensor]:
    """The weights in a LightningDiT checkpoint: its `ema` entry when present, else `model` or `state_dict`, else the
    dict itself (a bare state dict). A `module.` or `_orig_mod.` prefix on every key (DDP, torch.compile) is dropped."""
    state = ckpt
    if isinstance(ckpt, dict):
        state = next((ckpt[k] for k in ("ema", "model", "state_dict") if isinstance(ckpt.get(k), dict)), ckpt)
    if not (isinstance(state, dict) and state and all(isinstance(v, Tensor) for v in state.values())):
        found = sorted(map(str, ckpt))[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise DraError(
            f"{path}: expected LightningDiT weights (a state dict, or one under 'ema', 'model' or "
            f"'state_dict'); found {found}"
        )
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _float32(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_lightningdit(cfg: LightningDiTConfig, path: Path) -> LightningDiT:
    """A LightningDiT from a checkpoint file, built on the meta device and filled with the file's tensors (strict)."""
    with torch.device("meta"):
        dit = LightningDiT(cfg)
    load_strict(dit, _float32(dit_state_dict(read_torch_file(path), path)), path, assign=True)
    return dit


def load_vae(cfg: VAEEncoderConfig, path: Path) -> VAEEncoder:
    with torch.device("meta"):
        vae = VAEEncoder(cfg)
    load_vae_encoder(vae, path, assign=True)
    return vae


def _builder(dit_cfg: LightningDiTConfig, vae_cfg: VAEEncoderConfig, *, random_without_checkpoint: bool):
    def build(spec: TeacherSpec, *, checkpoint: Path | None, layer, noise, seed) -> LightningDiTTeacher:
        if random_without_checkpoint and checkpoint is None:  # a random-weight teacher (tests)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                dit, vae = LightningDiT(dit_cfg), VAEEncoder(vae_cfg)
            zeros, ones = torch.zeros(1, vae_cfg.embed_dim, 1, 1), torch.ones(1, vae_cfg.embed_dim, 1, 1)
            teacher = LightningDiTTeacher(spec, dit, vae, zeros, ones, layer=layer, noise=noise, seed=seed)
            teacher.checkpoint_sha256 = "random-init-seed-0"
            return teacher
        files = release_files(spec, checkpoint)
        mean, std = load_latent_stats(files.stats, vae_cfg.embed_dim)
        dit = load_lightningdit(dit_cfg, files.dit)
        teacher = LightningDiTTeacher(
            spec, dit, load_vae(vae_cfg, files.vae), mean, std, layer=layer, noise=noise, seed=seed
        )
        teacher.checkpoint_sha256 = files.sha256()
        return teacher

    return build


# The default t is a guess to be tuned with `teacher probe`: VA-VAE latents are normalised to unit std per channel,
# and t = 0.9 gives noise-to-signal (1 - t) / t = 0.11, close to dit-xl-2-256's default (0.12 at t = 33 of 1000).
LIGHTNINGDIT_XL = TeacherSpec(
    name="lightningdit-xl",
    family="lightningdit",
    dataset="imagenet",
    resolution=256,
    channels=3,
    in_range=(-1.0, 1.0),
    label_dim=1000,
    layer="blocks.14",
    noise=0.9,
    noise_kind="t",
    dim=1152,
    checkpoint=DIT_REPO,
    description="LightningDiT-XL/1 on VA-VAE f16d32 latents (posterior mean), class-conditional, ImageNet 256 "
    "(hustvl/LightningDiT release); flow time t (1 = clean); residual stream after 14 of 28 blocks, pooled over "
    "256 tokens",
)
register_teacher(LIGHTNINGDIT_XL)(_builder(XL_1, F16D32, random_without_checkpoint=False))

# Random-weight LightningDiT + VA-VAE encoder for tests: 32 px images, f4 encoder (16 -> 32 channels, attention at
# 8 px) to 8x8x8 latents, a 4-block, 64-wide DiT with 4 heads (head_dim 16); every published switch on.
TINY_DIT = LightningDiTConfig(input_size=8, in_channels=8, hidden_size=64, depth=4, num_heads=4)
TINY_VAE = VAEEncoderConfig(
    resolution=32,
    ch=16,
    ch_mult=(1, 2, 2),
    num_res_blocks=1,
    attn_resolutions=(8,),
    z_channels=8,
    embed_dim=8,
    num_groups=8,
)
LIGHTNINGDIT_TINY = TeacherSpec(
    name="lightningdit-tiny",
    family="tiny",
    dataset="imagenet",
    resolution=32,
    channels=3,
    in_range=(-1.0, 1.0),
    label_dim=1000,
    layer="blocks.2",
    noise=0.9,
    noise_kind="t",
    dim=64,
    checkpoint="",
    description="random-weight LightningDiT (4 blocks, 64 wide) on a tiny VA-VAE encoder (tests); --checkpoint "
    "takes files in the release layout",
)
register_teacher(LIGHTNINGDIT_TINY)(_builder(TINY_DIT, TINY_VAE, random_without_checkpoint=True))
