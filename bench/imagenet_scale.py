"""The ImageNet path at full size on random weights: LightningDiT-XL/1 extraction and one ConvNeXt-B TRADES-DRA step.

    python bench/imagenet_scale.py [--device cuda] [--rows 1024] [--batch-size 128] [--student-batch 64]

Extraction: the full LightningDiT-XL/1 (675 M parameters) with its VA-VAE f16d32 encoder, random weights, on random
256 x 256 images (an npz source), through `stages.extract` into a store, against the bare teacher forward on the
same images; images/s and peak GPU memory of each. Training: one TRADES-3 + DRA step (Lion, eps 4/255, bf16 autocast
and channels-last on GPU) of the full ConvNeXt-B at 224 px onto 1152-d targets; images/s and peak memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dra_pipeline.environment import describe, environment


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def extraction(args, device: torch.device, tmp: Path) -> None:
    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.data import open_source
    from dra_pipeline.data.indexed import IndexedImages
    from dra_pipeline.stages.extract import extract
    from dra_pipeline.teachers.lightningdit import F16D32, LIGHTNINGDIT_XL, XL_1, LightningDiT, LightningDiTTeacher
    from dra_pipeline.teachers.vavae import VAEEncoder

    rng = np.random.default_rng(0)
    np.savez(
        tmp / "images.npz",
        image=rng.integers(0, 256, (args.rows, 256, 256, 3), dtype=np.uint8),
        label=rng.integers(0, 1000, args.rows),
    )
    images = IndexedImages([open_source(str(tmp / "images.npz"))])
    torch.manual_seed(0)
    with torch.device(device):
        dit, vae = LightningDiT(XL_1), VAEEncoder(F16D32)
        stats = torch.zeros(1, 32, 1, 1), torch.ones(1, 32, 1, 1)
    teacher = LightningDiTTeacher(LIGHTNINGDIT_XL, dit, vae, *stats, layer=None, noise=None, seed=0).to(device).eval()
    autocast = device.type == "cuda"
    params = sum(p.numel() for p in teacher.parameters())
    pixels, labels = images.read(np.arange(args.rows))
    rows = np.arange(args.rows)
    bs = args.batch_size
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        teacher(pixels[:bs], labels[:bs], rows[:bs])  # warm-up
        reset(device)
        start = time.perf_counter()
        for a in range(0, args.rows, bs):
            teacher(pixels[a : a + bs], labels[a : a + bs], rows[a : a + bs]).cpu()
        sync(device)
        bare, bare_mem = args.rows / (time.perf_counter() - start), peak_gib(device)
    store = FeatureStore.create(
        tmp / "s.zarr",
        sources=images.describe(),
        labels=images.labels,
        views=("clean",),
        dim=1152,
        meta=teacher.provenance(("clean",)),
        rows_per_shard=bs * 4,
    )
    reset(device)
    start = time.perf_counter()
    extract(teacher, images, store, views=("clean",), batch_size=bs, autocast=autocast)
    sync(device)
    staged, staged_mem = args.rows / (time.perf_counter() - start), peak_gib(device)
    assert store.complete
    print(f"LightningDiT-XL/1 + VA-VAE encoder: {params / 1e6:.1f} M parameters, 256 px, batch {bs}, {args.rows} rows")
    print(f"  bare teacher forward: {bare:8.1f} img/s, peak {bare_mem:.2f} GiB")
    print(f"  extract (store):      {staged:8.1f} img/s, peak {staged_mem:.2f} GiB, ratio {staged / bare:.3f}")
    del teacher, dit, vae


def training_step(args, device: torch.device) -> None:
    from dra_pipeline.config import load_config
    from dra_pipeline.data.batches import Batch
    from dra_pipeline.distributed import Dist
    from dra_pipeline.models import create_model
    from dra_pipeline.stages.train import build_state, channels_last, training_step

    precision = "bf16" if device.type == "cuda" else "fp32"  # the docstring's setting: bf16 autocast on GPU
    cfg = load_config("imagenet-convnext-b-dra", (f"train.device={device.type}", f"train.precision={precision}"))
    torch.manual_seed(0)
    model = create_model("convnext-b", dataset="imagenet", num_classes=1000, in_channels=3).to(device)
    if channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    state = build_state(cfg, model, 1152, 100, model_info={})
    state.head.to(device)
    n = args.student_batch
    batch = Batch(
        torch.rand(n, 3, 224, 224),
        torch.randint(0, 1000, (n,)),
        np.arange(n),
        torch.randn(n, 1152),
        np.zeros(n, dtype=bool),
    )
    dist = Dist(device=device)
    training_step(cfg, state, model.train(), batch, step=0, steps_per_epoch=100, dist=dist)  # warm-up
    reset(device)
    times = []
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        metrics = training_step(cfg, state, model.train(), batch, step=step, steps_per_epoch=100, dist=dist)
        sync(device)
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    median = float(np.median(times))
    print(
        f"ConvNeXt-B ({params / 1e6:.1f} M) TRADES-{cfg.attack.steps} + DRA step, 224 px, batch {n}, Lion, "
        f"{'bf16 autocast' if precision == 'bf16' else 'fp32'}: {median:.3f} s/step = {n / median:.1f} img/s, "
        f"peak {peak_gib(device):.2f} GiB, loss {metrics['loss']:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--student-batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    print(f"machine: {describe(environment())}")
    with tempfile.TemporaryDirectory() as tmp:
        extraction(args, device, Path(tmp))
    training_step(args, device)


if __name__ == "__main__":
    main()
