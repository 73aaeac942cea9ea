"""Train an EDM-preconditioned, class-conditional SongUNet on an image source (`dra-pipeline teacher fit`).

EDM's training objective (Karras et al. 2022, eq. 8 with Table 1's VP-free "EDM" column):
    ln(sigma) ~ N(P_mean, P_std^2),  lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2
    loss = lambda(sigma) * || D(x + sigma * n; sigma, y) - x ||^2,   n ~ N(0, I),  x in [-1, 1]
Adam with a linear learning-rate warm-up, and an EMA of the weights whose half-life (in images) ramps up with
the images seen. The run directory holds `state.pt` (everything needed to resume bit-for-bit on the same
device), `stats.jsonl` (one line per logged step) and `ema.safetensors` (the teacher); rerunning the same
command resumes.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dra_pipeline.atomic import atomic_write, atomic_write_text
from dra_pipeline.data.indexed import IndexedImages
from dra_pipeline.errors import DraError
from dra_pipeline.teachers.edm_checkpoint import save_denoiser
from dra_pipeline.teachers.songunet import EDMDenoiser, SongUNetConfig

# Networks `teacher fit` can build; resolution, channels and classes come from the data.
NETWORKS = {
    # edm-fmnist: 1.75 M parameters; 28 -> 14 -> 7 px, attention at 14 px.
    "small": dict(model_channels=32, channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(14, 16), dropout=0.1),
    # edm-cifar10-mini: 3.95 M parameters on 32 x 32 x 3 with 10 classes, 15.1 MiB of float32 EMA weights (under
    # the 25 MB budget, and under 16 MiB, the largest file some time-limited GPU hosts send back); 32 -> 16 -> 8 px,
    # channels 32, 64, 128, attention at 16 px and in the 8 px bottleneck, DDPM++'s embedding width (4 x 32);
    # 1.28 GFLOP per image forward, 1/33 of DDPM++'s: about 8 minutes of fitting on one H200 sees millions of images.
    "cifar-mini": dict(model_channels=32, channel_mult=(1, 2, 4), num_blocks=2, attn_resolutions=(16,), dropout=0.1),
    # EDM's CIFAR-10 DDPM++ (55.7 M parameters): for GPUs.
    "ddpmpp": dict(model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,), dropout=0.13),
}


def network_config(name: str, images: IndexedImages) -> SongUNetConfig:
    if name not in NETWORKS:
        raise DraError(f"unknown network {name!r}; choose from {', '.join(NETWORKS)}")
    h, w, c = images.image_shape
    if h != w:
        raise DraError(f"teacher fit needs square images, got {h}x{w}")
    return SongUNetConfig(img_resolution=h, img_channels=c, label_dim=images.num_classes, **NETWORKS[name])


@dataclass(frozen=True)
class FitConfig:
    steps: int = 20_000  # optimizer steps
    batch_size: int = 256  # images per step
    lr: float = 1e-3  # Adam learning rate after warm-up
    lr_warmup_steps: int = 1000  # linear ramp from 0
    ema_halflife_kimg: float = 50.0  # EMA half-life, thousands of images
    ema_rampup_ratio: float = 0.05  # half-life is at most this fraction of the images seen so far
    p_mean: float = -1.2  # ln(sigma) mean of the training noise distribution
    p_std: float = 1.2  # ln(sigma) std
    seed: int = 0
    log_every: int = 100  # steps between stats lines
    checkpoint_every: int = 1000  # steps between resumable checkpoints


def edm_loss(
    net: EDMDenoiser,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    p_mean: float,
    p_std: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Per-image weighted denoising loss, (N,). x: clean images (N, C, H, W) in [-1, 1]."""
    n = x.shape[0]
    sigma = torch.exp(p_mean + p_std * torch.randn(n, device=x.device, generator=generator))
    sd = net.cfg.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    noise = torch.randn(x.shape, device=x.device, generator=generator) * sigma.view(-1, 1, 1, 1)
    denoised = net(x + noise, sigma, labels)
    return weight * ((denoised - x) ** 2).mean(dim=(1, 2, 3))


def fit(
    images: IndexedImages,
    net_cfg: SongUNetConfig,
    cfg: FitConfig,
    run_dir: Path,
    *,
    device: str = "cpu",
    max_minutes: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Train (or resume) to cfg.steps; returns the path of the EMA weights. Stops early, resumably, after
    max_minutes of wall time."""
    if images.image_shape != (net_cfg.img_resolution, net_cfg.img_resolution, net_cfg.img_channels):
        raise DraError(
            f"images are {images.image_shape}, the network is configured for "
            f"{net_cfg.img_resolution}x{net_cfg.img_resolution}x{net_cfg.img_channels}"
        )
    if net_cfg.label_dim and images.num_classes > net_cfg.label_dim:
        raise DraError(f"images have {images.num_classes} classes, the network {net_cfg.label_dim}")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    config = {"network": net_cfg.to_dict(), "fit": asdict(cfg), "sources": images.describe()}
    if config_path.exists():
        recorded = json.loads(config_path.read_text())
        for key in ("network", "sources"):
            if recorded[key] != json.loads(json.dumps(config[key])):
                raise DraError(f"{run_dir} holds a run with a different {key}; choose another --out")
    atomic_write_text(config_path, json.dumps(config, indent=2))

    torch.manual_seed(cfg.seed)
    net = EDMDenoiser(net_cfg).to(device).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    step = 0
    state_path = run_dir / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["generator"].cpu())
        step = int(state["step"])

    x_all = torch.as_tensor(images.read(np.arange(len(images)))[0]).permute(0, 3, 1, 2).to(device)
    y_all = torch.as_tensor(images.labels, device=device)
    start, loss_sum, logged = time.perf_counter(), torch.zeros((), device=device), 0
    with open(run_dir / "stats.jsonl", "a") as stats:
        while step < cfg.steps:
            idx = torch.randint(len(images), (cfg.batch_size,), device=device, generator=gen)
            x = x_all[idx].float() / 127.5 - 1
            y = F.one_hot(y_all[idx], net_cfg.label_dim).float() if net_cfg.label_dim else None
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.lr_warmup_steps)
            loss = edm_loss(net, x, y, p_mean=cfg.p_mean, p_std=cfg.p_std, generator=gen).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            _update_ema(ema, net, step, cfg)
            loss_sum += loss.detach()
            if progress:
                progress(step)
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean_loss = loss_sum.item() / (step - logged)
                if not np.isfinite(mean_loss):  # checked per log interval: a per-step .item() stalls a GPU
                    raise DraError(f"loss became {mean_loss} by step {step}; last good checkpoint kept in {state_path}")
                line = {
                    "step": step,
                    "kimg": step * cfg.batch_size / 1000,
                    "loss": mean_loss,
                    "lr": opt.param_groups[0]["lr"],
                    "wall_s": time.perf_counter() - start,
                }
                stats.write(json.dumps(line) + "\n")
                stats.flush()
                loss_sum.zero_()
                logged = step
            out_of_time = max_minutes is not None and time.perf_counter() - start > 60 * max_minutes
            if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
                _save_state(state_path, net, ema, opt, gen, step)
                save_denoiser(ema, run_dir / "ema.safetensors", {"step": step, "kimg": step * cfg.batch_size / 1000})
            if out_of_time:
                break
    return run_dir / "ema.safetensors"


def _update_ema(ema: EDMDenoiser, net: EDMDenoiser, step: int, cfg: FitConfig) -> None:
    nimg = step * cfg.batch_size
    halflife = min(cfg.ema_halflife_kimg * 1000, nimg * cfg.ema_rampup_ratio)
    beta = 0.5 ** (cfg.batch_size / max(halflife, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), net.parameters()):
            p_ema.lerp_(p, 1 - beta)


def _save_state(path: Path, net, ema, opt, gen, step: int) -> None:
    state = {
        "net": net.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "generator": gen.get_state(),
        "step": step,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
