"""What bf16 autocast does to TRADES training: how many adversarial-example pixels change against fp32 from the same
start, and the step time of each, measured side by side in one run.

    python bench/precision.py [--model wrn-16-4] [--batch 32] [--reps 3] [--device auto]

The model is a freshly initialised classifier (seed 0) on CIFAR-sized random images; the attack is the TRADES
attack (10 sign-gradient steps of 2/255 at eps 8/255 from one uniform start). fp64 against fp32 is the reference
for float noise. Pixel differences are counted in units of 1/255 (any pixel whose value differs).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from dra_pipeline.devices import resolve_device
from dra_pipeline.environment import describe, environment
from dra_pipeline.losses import trades
from dra_pipeline.models import create_model
from dra_pipeline.pgd import frozen_bn_stats, pgd_linf

EPS, STEP, STEPS = 8 / 255, 2 / 255, 10


def adversarial(model, x, generator_seed: int, *, bf16: bool, device) -> torch.Tensor:
    """The TRADES attack's x_adv from a fixed start, under bf16 autocast or not."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        with torch.no_grad(), frozen_bn_stats(model):
            p_clean = F.softmax(model(x).float(), dim=1)
        g = torch.Generator(device=device).manual_seed(generator_seed)
        noise = torch.rand(x.shape, generator=g, device=device)  # float32 draws for every precision: one start

        def start(x0):
            return x0 + (2 * noise.to(x0.dtype) - 1) * EPS

        def kl(logits):
            return F.kl_div(F.log_softmax(logits.float(), 1), p_clean.to(logits.dtype).float(), reduction="sum")

        return pgd_linf(model, x, kl, eps=EPS, step=STEP, steps=STEPS, random_start=start)


def step_seconds(model, x, y, *, bf16: bool, device, reps: int) -> float:
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for rep in range(reps + 1):
        start = time.perf_counter()
        with autocast:
            out = trades(
                model,
                x,
                y,
                eps=EPS,
                step=STEP,
                steps=STEPS,
                beta=5.0,
                label_smoothing=0.1,
                generator=torch.Generator(device=device).manual_seed(rep),
            )
        out.loss.float().backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times[1:])  # the first repetition warms up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="wrn-16-4")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(f"machine: {describe(environment(str(device)))}; model {args.model}, batch {args.batch}, {device}")
    torch.manual_seed(0)
    model = create_model(args.model, dataset="cifar10", num_classes=10, in_channels=3).to(device).train()
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(2)).to(device)
    fp32 = adversarial(model, x, 3, bf16=False, device=device)
    bf16 = adversarial(model, x, 3, bf16=True, device=device)
    fp64 = adversarial(model.double(), x.double(), 3, bf16=False, device=device).float()
    model.float()

    def changed(a, b) -> float:
        return 100 * ((a * 255).round() != (b * 255).round()).float().mean().item()

    print(
        f"adversarial pixels that differ from fp32's: bf16 autocast {changed(bf16, fp32):.1f} %, "
        f"fp64 {changed(fp64, fp32):.1f} % (n = {fp32.numel()} pixel values)"
    )
    t32 = step_seconds(model, x, y, bf16=False, device=device, reps=args.reps)
    t16 = step_seconds(model, x, y, bf16=True, device=device, reps=args.reps)
    print(f"TRADES-10 step: fp32 {t32:.3f} s, bf16 autocast {t16:.3f} s; bf16 / fp32 = {t16 / t32:.2f}")


if __name__ == "__main__":
    main()
