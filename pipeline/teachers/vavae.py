"""VA-VAE f16d32 encoder (Yao et al. 2025, "Reconstruction vs. Generation"), written for this project.

VA-VAE has the architecture of the LDM / VQGAN-KL autoencoder: a convolutional encoder (ResNet blocks,
GroupNorm(32, eps 1e-6), SiLU, single-head spatial attention at the lowest resolution, stride-2 convolutions with
(0, 1, 0, 1) padding) whose output `quant_conv` maps to the posterior moments (mean, log-variance). Only the
encoder is built here; parameter names and shapes follow the released checkpoint
(`vavae-imagenet256-f16d32-dinov2.pt`: `state_dict` -> `encoder.conv_in.weight`, `encoder.down.0.block.0.norm1.weight`,
..., `encoder.mid.attn_1.q.weight`, `quant_conv.weight`), so those keys load strictly. Its other parts (decoder,
post_quant_conv, and the training-only `loss.*`, `foundation_model.*`, `linear_proj.*`) are not needed to encode
and are skipped.

Latents: the posterior *mean* (VA-VAE's own `encode_images` samples the posterior; a sample would add noise that
does not depend on the row seed), then LightningDiT's latent normalisation `(z - mean) / std` with the per-channel
statistics of its `latents_stats.pt` (a dict of `mean` and `std` tensors, shape (1, C, 1, 1)); LightningDiT's
`latent_multiplier` is 1.0 for VA-VAE.

Shapes: images (N, 3, R, R) in [-1, 1] -> latents (N, z, R / 16, R / 16) for the f16d32 configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dra_pipeline.errors import DraError
from dra_pipeline.teachers.loading import load_strict, read_torch_file


@dataclass(frozen=True)
class VAEEncoderConfig:
    resolution: int = 256  # input side the attention placement is computed for (as in the release), pixels
    in_channels: int = 3
    ch: int = 128  # base width
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # per level; len - 1 stride-2 downsamplings (f16 for 5 levels)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)  # levels whose side (from `resolution`) is listed get attention
    z_channels: int = 32  # latent channels; the encoder outputs 2 * z_channels (mean and log-variance)
    embed_dim: int = 32  # quant_conv output is 2 * embed_dim
    num_groups: int = 32  # GroupNorm groups

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


F16D32 = VAEEncoderConfig()  # vavae-imagenet256-f16d32-dinov2.pt
ENCODER_PREFIXES = ("encoder.", "quant_conv.")


def _norm(cfg: VAEEncoderConfig, channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(cfg.num_groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm1-SiLU-conv1-norm2-SiLU-conv2 plus the input (a 1x1 `nin_shortcut` when the width changes)."""

    def __init__(self, cfg: VAEEncoderConfig, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(cfg, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(cfg, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))  # dropout 0 in the release
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions with 1x1-conv projections, added to the input."""

    def __init__(self, cfg: VAEEncoderConfig, channels: int):
        super().__init__()
        self.norm = _norm(cfg, channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).flatten(2).transpose(1, 2).unsqueeze(1) for m in (self.q, self.k, self.v))  # (N, 1, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return x + self.proj_out(out.squeeze(1).transpose(1, 2).reshape(n, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 convolution after zero padding of one pixel on the right and bottom only."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Level(nn.Module):
    """One resolution of the encoder: `block` (ResnetBlocks), `attn` (empty or one per block), `downsample`."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        if downsample is not None:
            self.downsample = downsample


class Mid(nn.Module):
    def __init__(self, cfg: VAEEncoderConfig, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(cfg, channels, channels)
        self.attn_1 = AttnBlock(cfg, channels)
        self.block_2 = ResnetBlock(cfg, channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: VAEEncoderConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        widths = [cfg.ch * m for m in (1, *cfg.ch_mult)]  # input width of each level, then its output widths
        side, levels = cfg.resolution, []
        for i, mult in enumerate(cfg.ch_mult):
            blocks, attns, width = [], [], widths[i]
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(cfg, width, cfg.ch * mult))
                width = cfg.ch * mult
                if side in cfg.attn_resolutions:
                    attns.append(AttnBlock(cfg, width))
            last = i == len(cfg.ch_mult) - 1
            levels.append(Level(blocks, attns, None if last else Downsample(width)))
            side = side if last else side // 2
        self.down = nn.ModuleList(levels)
        top = cfg.ch * cfg.ch_mult[-1]
        self.mid = Mid(cfg, top)
        self.norm_out = _norm(cfg, top)
        self.conv_out = nn.Conv2d(top, 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[i](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAEEncoder(nn.Module):
    """`encoder` + `quant_conv`: images in [-1, 1] (N, 3, R, R) -> posterior moments (N, 2 * embed_dim, r, r)."""

    def __init__(self, cfg: VAEEncoderConfig = F16D32):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(x))

    def posterior_mean(self, x: Tensor) -> Tensor:
        """The mean of the diagonal Gaussian posterior (N, embed_dim, R / f, R / f): the first half of the moments."""
        return self(x)[:, : self.cfg.embed_dim]


def load_vae_encoder(module: VAEEncoder, path: Path, *, assign: bool = False) -> None:
    """Load the `encoder.*` and `quant_conv.*` weights of a VA-VAE checkpoint strictly (missing, unexpected or
    mis-shaped keys among them raise a DraError naming them), as float32; the checkpoint's other parts are skipped.

    The file is a torch checkpoint holding the state dict itself or a dict with it under `state_dict`.
    assign=True takes the file's tensors as the module's (for a module built on the meta device).
    """
    ckpt = read_torch_file(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise DraError(f"{path}: expected a VA-VAE checkpoint (a state dict, or a dict with one under 'state_dict')")
    encoder_state = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith(ENCODER_PREFIXES)}
    if not all(isinstance(v, Tensor) for v in encoder_state.values()):
        raise DraError(f"{path}: encoder entries that are not tensors")
    if not encoder_state:
        sample = sorted(k for k in state if isinstance(k, str))[:3]
        raise DraError(f"{path}: no encoder.* or quant_conv.* weights (keys start {sample}); not a VA-VAE checkpoint?")
    encoder_state = {k: v.float() if v.is_floating_point() else v for k, v in encoder_state.items()}
    load_strict(module, encoder_state, path, assign=assign)


def load_latent_stats(path: Path, channels: int) -> tuple[Tensor, Tensor]:
    """Per-channel latent mean and std, each (1, channels, 1, 1) float32, from LightningDiT's `latents_stats.pt`."""
    if not path.is_file():
        raise DraError(f"latent statistics file {path} not found (LightningDiT's latents_stats.pt: mean and std)")
    stats = read_torch_file(path)
    if not (isinstance(stats, dict) and "mean" in stats and "std" in stats):
        found = sorted(stats) if isinstance(stats, dict) else type(stats).__name__
        raise DraError(f"{path}: expected a dict with 'mean' and 'std' tensors (LightningDiT's format), found {found}")
    out = []
    for name in ("mean", "std"):
        value = stats[name]
        if not isinstance(value, Tensor) or value.numel() != channels:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise DraError(f"{path}: '{name}' should hold {channels} values (one per latent channel), got {shape}")
        out.append(value.detach().float().reshape(1, channels, 1, 1).clone())
    if not torch.all(out[1] > 0):
        raise DraError(f"{path}: 'std' has non-positive entries")
    return out[0], out[1]
