"""Inputs for bench/gpu_check.sh, made on the host that runs it (no data or weights to download):

    python bench/gpu_setup.py --rows 50000 --out WORK

writes OUT/synthetic.npz (DM-AT's format: `image` uint8 (rows, 32, 32, 3), `label` (rows,), random pixels, seed 0)
and OUT/edm-cifar10-random.safetensors (the full class-conditional DDPM++ CIFAR-10 network, 55.7 M parameters,
random weights, seed 0) so that `extract --teacher edm-cifar10` and the online teacher run at EDM's real size and cost.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from dra_pipeline.teachers.edm_checkpoint import save_denoiser
from dra_pipeline.teachers.songunet import CIFAR10_DDPMPP, EDMDenoiser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.rows, 32, 32, 3), dtype=np.uint8)
    np.savez(args.out / "synthetic.npz", image=images, label=rng.integers(0, 10, args.rows))
    torch.manual_seed(0)
    net = EDMDenoiser(dataclasses.replace(CIFAR10_DDPMPP, label_dim=10))
    save_denoiser(net, args.out / "edm-cifar10-random.safetensors")
    print(f"{args.out}: synthetic.npz ({args.rows} rows), edm-cifar10-random.safetensors")


if __name__ == "__main__":
    main()
