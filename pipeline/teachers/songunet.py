"""DDPM++ U-Net (Song et al. 2021) with EDM preconditioning (Karras et al. 2022), written for this project.

Parameter names and shapes follow the layout of the released EDM checkpoints (`model.enc.32x32_conv.weight`,
`model.dec.8x8_block4.affine.bias`, the `resample_filter` buffers, ...), so their state dicts load strictly.
Only the configuration EDM uses for its DDPM++ models is built: positional noise embedding, "standard" encoder
and decoder, [1, 1] resampling filter (2x2 average down, nearest up), one attention head.

Shapes: images (N, C, H, W) in [-1, 1]; sigma (N,) noise standard deviation in the same units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SongUNetConfig:
    img_resolution: int = 32  # side of the (square) input
    img_channels: int = 3
    label_dim: int = 0  # classes for a conditional model, 0 for unconditional
    augment_dim: int = 0  # EDM's augmentation-label width (9 for the CIFAR-10 models), ignored at inference
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.13  # active only in train mode
    sigma_data: float = 0.5  # EDM preconditioning

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> SongUNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


# EDM's CIFAR-10 DDPM++ configuration (edm-cifar10-32x32-{cond,uncond}-vp.pkl): about 55.7 M parameters.
CIFAR10_DDPMPP = SongUNetConfig(augment_dim=9)


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class Conv2d(nn.Module):
    """kernel x kernel convolution (kernel 0: none), optionally preceded by 2x up- or down-sampling."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, up: bool = False, down: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.up, self.down = in_channels, out_channels, up, down
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel)) if kernel else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel else None
        if kernel:
            nn.init.xavier_uniform_(self.weight)
        if up or down:  # separable [1, 1] filter, normalised: a 2x2 box of 1/4
            self.register_buffer("resample_filter", torch.full((1, 1, 2, 2), 0.25))
        else:
            self.resample_filter = None

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        if self.up:  # transposed conv with 4 * box = nearest-neighbour 2x upsampling
            x = F.conv_transpose2d(x, (self.resample_filter * 4).tile(c, 1, 1, 1), groups=c, stride=2)
        if self.down:  # 2x2 average pooling
            x = F.conv2d(x, self.resample_filter.tile(c, 1, 1, 1), groups=c, stride=2)
        if self.weight is not None:
            x = F.conv2d(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2)
        return x


class GroupNorm(nn.Module):
    def __init__(self, num_channels: int, eps: float = 1e-6, num_groups: int = 32, min_channels_per_group: int = 4):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class UNetBlock(nn.Module):
    """Pre-norm residual block conditioned on the embedding (additive shift), optional self-attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.dropout = dropout
        self.skip_scale = math.sqrt(0.5)
        self.norm0 = GroupNorm(in_channels)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down)
        self.affine = Linear(emb_channels, out_channels)
        self.norm1 = GroupNorm(out_channels)
        self.conv1 = Conv2d(out_channels, out_channels, 3)
        nn.init.xavier_uniform_(self.conv1.weight, gain=1e-5)  # residual branch starts near zero
        self.skip = None
        if out_channels != in_channels or up or down:
            self.skip = Conv2d(in_channels, out_channels, 1, up=up, down=down)
        self.attention = attention
        if attention:
            self.norm2 = GroupNorm(out_channels)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1)
            self.proj = Conv2d(out_channels, out_channels, 1)
            nn.init.xavier_uniform_(self.proj.weight, gain=1e-5)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = F.silu(self.norm1(h + self.affine(emb)[:, :, None, None].to(h.dtype)))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        x = (h + (self.skip(x) if self.skip is not None else x)) * self.skip_scale
        if self.attention:  # one head over all positions
            n, c, hh, ww = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(n, c, 3, hh * ww).unbind(2)
            weights = torch.softmax(torch.einsum("ncq,nck->nqk", q, k / math.sqrt(c)), dim=2)
            attended = torch.einsum("nqk,nck->ncq", weights, v).reshape(n, c, hh, ww)
            x = (self.proj(attended) + x) * self.skip_scale
        return x


def positional_embedding(x: Tensor, channels: int, max_positions: int = 10000) -> Tensor:
    """(N,) -> (N, channels): [sin, cos] of x at geometric frequencies 1 .. 1/max_positions (endpoint included).

    The sin half comes first: that is the order the released DDPM++ weights were trained with.
    """
    freqs = torch.arange(channels // 2, dtype=torch.float32, device=x.device) / (channels // 2 - 1)
    angles = x.float()[:, None] * (1 / max_positions) ** freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class SongUNet(nn.Module):
    """The raw network F(c_in * x, c_noise, labels); `EDMDenoiser` wraps it with the preconditioning."""

    def __init__(self, cfg: SongUNetConfig):
        super().__init__()
        self.cfg = cfg
        emb_channels = cfg.model_channels * cfg.channel_mult_emb
        self.noise_channels = cfg.model_channels
        self.map_label = Linear(cfg.label_dim, self.noise_channels) if cfg.label_dim else None
        self.map_augment = Linear(cfg.augment_dim, self.noise_channels, bias=False) if cfg.augment_dim else None
        self.map_layer0 = Linear(self.noise_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        block = dict(emb_channels=emb_channels, dropout=cfg.dropout)

        self.enc = nn.ModuleDict()
        channels, skips = cfg.img_channels, []
        resolutions = _resolutions(cfg.img_resolution, len(cfg.channel_mult))
        for level, (mult, res) in enumerate(zip(cfg.channel_mult, resolutions)):
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(channels, cfg.model_channels, 3)
                channels = cfg.model_channels
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(channels, channels, down=True, **block)
            skips.append(channels)
            for i in range(cfg.num_blocks):
                out = cfg.model_channels * mult
                self.enc[f"{res}x{res}_block{i}"] = UNetBlock(
                    channels, out, attention=res in cfg.attn_resolutions, **block
                )
                channels = out
                skips.append(channels)

        self.dec = nn.ModuleDict()
        for level in reversed(range(len(cfg.channel_mult))):
            mult, res = cfg.channel_mult[level], resolutions[level]
            if level == len(cfg.channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(channels, channels, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(channels, channels, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(channels, channels, up=True, **block)
            for i in range(cfg.num_blocks + 1):
                out = cfg.model_channels * mult
                attention = i == cfg.num_blocks and res in cfg.attn_resolutions
                self.dec[f"{res}x{res}_block{i}"] = UNetBlock(channels + skips.pop(), out, attention=attention, **block)
                channels = out
        res = resolutions[0]
        self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(channels)
        self.dec[f"{res}x{res}_aux_conv"] = Conv2d(channels, cfg.img_channels, 3)
        nn.init.zeros_(self.dec[f"{res}x{res}_aux_conv"].weight)

    def embedding(self, c_noise: Tensor, labels: Tensor | None) -> Tensor:
        emb = positional_embedding(c_noise, self.noise_channels)
        if self.map_label is not None:
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        return F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

    def forward(self, x: Tensor, c_noise: Tensor, labels: Tensor | None = None) -> Tensor:
        emb = self.embedding(c_noise, labels)
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for name, block in self.dec.items():
            if name.endswith("aux_norm"):
                out = block(x)
            elif name.endswith("aux_conv"):
                return block(F.silu(out))
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        raise AssertionError("unreachable: the decoder ends with aux_conv")


def _resolutions(size: int, levels: int) -> list[int]:
    """Side length at each level: halved (floor) per level, e.g. 28 -> [28, 14, 7]."""
    out = [size]
    for _ in range(levels - 1):
        out.append(out[-1] // 2)
    return out


# -------------------------------------------------------------------------------------------------- EDM (eq. 7)
@dataclass(frozen=True)
class Preconditioning:
    """EDM Table 1: c_skip, c_out, c_in, c_noise as functions of sigma, for data std sigma_data."""

    sigma_data: float = 0.5

    def __call__(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sd2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise


class EDMDenoiser(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise, labels). State-dict keys start with `model.`."""

    def __init__(self, cfg: SongUNetConfig):
        super().__init__()
        self.cfg = cfg
        self.precond = Preconditioning(cfg.sigma_data)
        self.model = SongUNet(cfg)

    def forward(self, x: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        """x: (N, C, H, W) noisy images; sigma: (N,); labels: (N, label_dim) one-hot or None."""
        sigma = sigma.float().reshape(-1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = self.precond(sigma)
        if self.cfg.label_dim and labels is None:
            raise ValueError("a class-conditional model needs one-hot labels")
        f = self.model(c_in * x.float(), c_noise.flatten(), None if labels is None else labels.float())
        return c_skip * x.float() + c_out * f.float()
