"""Training-step cost of DRA, measured side by side: plain TRADES, cached-target DRA, online-teacher DRA.

    python bench/train_step.py [--features cache/fashion-mnist.zarr] [--config fmnist-cpu] [--steps 12]

All modes use the same model, batch, data and seed, and the same `training_step` and `BatchLoader` that `train`
uses. Their steps are timed interleaved in one process (plain, cached, online, plain, ...), so machine drift
hits every mode alike; peak memory is measured per mode in a fresh child process.
Reported: median step time; cached / plain (target <= 1.05 on a CPU, <= 1.02 on a GPU); online / cached; time blocked
waiting for a batch over step time (target <= 1 %, GPU <= 0.5 %); peak memory (CPU: max RSS; GPU: max allocated,
cached / plain target <= 1.05);
FLOPs per image of the whole step (clean pass, attack steps, outer loss, DRA head, backward; counted with
FlopCounterMode on a --flop-batch batch), images/s and MFU against the device's dense peak for the step's
precision (bench/mfu.py: bf16, or TF32 for an fp32 step on CUDA; --peak-tflops overrides the table).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from dra_pipeline.environment import describe, environment

MODES = ("plain", "cached", "online")
# Targets: cached-DRA / plain step time, feature wait / step time, peak memory cached / plain. On a GPU tighter (the
# cost of DRA must vanish where the step is fast); on a CPU, those of docs/performance.md's CPU rows.
TARGETS = {"cuda": (1.02, 0.005, 1.05), "cpu": (1.05, 0.01, None)}


def setup(args, mode: str, extra_sets: tuple[str, ...] = ()):
    """(cfg, state, model, loader, online_targets, device) for one mode, built identically (seed 0)."""
    import numpy as np
    import torch

    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.config import load_config
    from dra_pipeline.data import SourceSpec, open_source
    from dra_pipeline.data.batches import BatchLoader, BatchPlan
    from dra_pipeline.data.indexed import IndexedImages
    from dra_pipeline.jobs.train import online_teacher
    from dra_pipeline.models import create_model
    from dra_pipeline.stages.train import build_state, channels_last

    device = torch.device(args.device)
    if device.type == "cuda":  # as `train` runs an fp32 step (jobs/train.py): TF32 matmuls and convolutions
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    sets = [f"dra.weight={0 if mode == 'plain' else 1}", f"train.device={args.device}", *args.set, *extra_sets]
    cfg = load_config(args.config, tuple(sets))
    store = FeatureStore.open(args.features)
    images = IndexedImages([open_source(SourceSpec.from_dict(s)) for s in store.sources])
    real = images.sources[0]
    plan = BatchPlan(
        np.arange(len(real)),
        np.arange(len(real), len(images)),
        batch_size=cfg.train.batch_size,
        synthetic_fraction=cfg.data.synthetic_fraction if len(images.sources) > 1 else 0.0,
        steps_per_epoch=args.steps + args.warmup,
        seed=0,
    )
    use_store = mode == "cached"
    loader = BatchLoader(
        plan, images, store=store if use_store else None, padding=cfg.data.crop_padding, flip=cfg.data.flip
    )
    if use_store:
        store.read(np.arange(1))  # load the store into RAM outside the timing, as train does at its first batch
    torch.manual_seed(0)
    c = images.image_shape[2]
    dataset = real.spec.kind if real.spec.kind != "npz" else "cifar10"
    model = create_model(cfg.model.name, dataset=dataset, num_classes=10, in_channels=c).to(device)
    if channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    state = build_state(cfg, model, store.layout.dim if mode != "plain" else None, 10_000, model_info={})
    if state.head is not None:
        state.head.to(device)
    online = online_teacher(store, images, device) if mode == "online" else None
    return cfg, state, model, loader, online, device


def timed(args, modes: list[str]) -> dict:
    """Steps of every mode interleaved (mode A step i, mode B step i, ...), so drift hits all modes alike."""
    import numpy as np
    import torch

    from dra_pipeline.distributed import Dist
    from dra_pipeline.stages.train import training_step

    if args.device == "cpu":
        torch.set_flush_denormal(True)
    runs = {m: setup(args, m) for m in modes}
    iters = {m: iter(r[3].epoch(0)) for m, r in runs.items()}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = {m: [] for m in modes}
    waits = {m: 0.0 for m in modes}
    for i in range(args.warmup + args.steps):
        for m in modes:
            cfg, state, model, loader, online, device = runs[m]
            wait_before = loader.wait_seconds
            start = time.perf_counter()
            batch = next(iters[m])
            training_step(
                cfg,
                state,
                model.train(),
                batch,
                step=i,
                steps_per_epoch=loader.plan.steps_per_epoch,
                dist=Dist(device=device),
                online_targets=online,
            )
            sync()
            if i >= args.warmup:
                times[m].append(time.perf_counter() - start)
                waits[m] += loader.wait_seconds - wait_before
    first = runs[modes[0]][0]
    return {
        m: {
            "median_s": float(np.median(times[m])),
            "wait_s": waits[m],
            "total_s": float(np.sum(times[m])),
            "batch": first.train.batch_size,
            "model": first.model.name,
        }
        for m in modes
    }


def peak_memory(args, mode: str) -> int:
    """Peak memory of a few steps of one mode alone (this process): GPU max allocated, else max RSS, bytes."""
    import torch

    from dra_pipeline.distributed import Dist
    from dra_pipeline.stages.train import training_step

    cfg, state, model, loader, online, device = setup(args, mode)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i, batch in zip(range(3), loader.epoch(0)):
        training_step(
            cfg,
            state,
            model.train(),
            batch,
            step=i,
            steps_per_epoch=loader.plan.steps_per_epoch,
            dist=Dist(device=device),
            online_targets=online,
        )
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def flops_per_image(args, mode: str) -> float:
    """FLOPs of one whole training step of `mode` per image, counted on a --flop-batch batch (convolution and
    matrix-product FLOPs grow linearly with the batch)."""
    from mfu import count_flops

    from dra_pipeline.distributed import Dist
    from dra_pipeline.stages.train import training_step

    cfg, state, model, loader, online, device = setup(args, mode, (f"train.batch_size={args.flop_batch}",))
    batch = next(iter(loader.epoch(0)))

    def step() -> None:
        training_step(
            cfg,
            state,
            model.train(),
            batch,
            step=1,  # not the first step, whose batch-norm momentum differs (no FLOPs either way)
            steps_per_epoch=loader.plan.steps_per_epoch,
            dist=Dist(device=device),
            online_targets=online,
        )

    return count_flops(step) / len(batch.labels)


def mfu_lines(args, results: dict) -> tuple[list[str], dict]:
    """FLOPs per image, images/s and MFU of each mode against the dense peak for the step's precision: the printed
    lines, and the peak used (each mode's images_per_s, achieved_tflops and mfu are added to `results`)."""
    import torch
    from mfu import choose_peak, mfu, step_precision

    from dra_pipeline.config import load_config

    cfg = load_config(args.config, (f"train.device={args.device}", *args.set))
    device = torch.device(args.device)
    precision = step_precision(cfg.train.precision, device.type, torch.backends.cuda.matmul.allow_tf32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = choose_peak(name, precision, args.peak_tflops)
    lines = [
        f"MFU: FLOPs per image counted with FlopCounterMode over one whole step (batch {args.flop_batch}: clean pass, "
        f"{cfg.attack.steps} attack steps, outer loss, DRA head, backward); step precision {precision}; "
        f"peak {peak.label if peak.tflops else 'unknown'}",
        f"{'mode':<8} {'GFLOP/img':>10} {'img/s':>9} {'TFLOP/s':>9} {'MFU':>8}",
    ]
    for mode, r in results.items():
        rate = r["batch"] / r["median_s"]
        r["images_per_s"], r["achieved_tflops"] = rate, r["flops_per_image"] * rate / 1e12
        r["mfu"] = mfu(r["flops_per_image"], rate, peak.tflops) if peak.tflops else None
        cell = f"{r['mfu']:>8.2%}" if peak.tflops else f"{'n/a':>8}"
        lines.append(f"{mode:<8} {r['flops_per_image'] / 1e9:>10.2f} {rate:>9.1f} {r['achieved_tflops']:>9.2f} {cell}")
    if not peak.tflops:
        lines.append(f"MFU: {peak.label}")
    return lines, {"precision": precision, "gpu": name, "peak_tflops": peak.tflops, "peak": peak.label}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=Path("cache/fashion-mnist.zarr"))
    ap.add_argument("--config", default="fmnist-cpu")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. train.batch_size=512")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--flop-batch", type=int, default=4, help="batch on which a step's FLOPs are counted")
    ap.add_argument("--peak-tflops", type=float, help="dense peak TFLOP/s for MFU (default: bench/mfu.py's table)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory children (a quicker timing)")
    ap.add_argument("--json", type=Path, help="also write the per-mode results (seconds, img/s, FLOPs) here")
    ap.add_argument("--mode", help=argparse.SUPPRESS)  # child process: peak memory of one mode
    args = ap.parse_args()
    if args.mode:  # child: peak memory of one mode in a fresh process
        print(json.dumps({"peak_bytes": peak_memory(args, args.mode)}))
        return
    print(f"machine: {describe(environment())}")
    modes = args.modes.split(",")
    results = timed(args, modes)
    for mode in [] if args.no_memory else modes:
        cmd = [sys.executable, __file__, "--mode", mode, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
        results[mode].update(json.loads(out.stdout.strip().splitlines()[-1]))
    for mode in modes:
        results[mode]["flops_per_image"] = flops_per_image(args, mode)
    first = next(iter(results.values()))
    print(
        f"model {first['model']}, batch {first['batch']}, {args.steps} timed steps after {args.warmup} warm-up, "
        f"{args.device}, store {args.features}"
    )
    unit = "GiB GPU allocated" if args.device.startswith("cuda") else "GiB max RSS"
    print(f"{'mode':<8} {'median step s':>14} {'wait / step':>12} {'peak ' + unit:>24}")
    for mode, r in results.items():
        peak = f"{r['peak_bytes'] / 2**30:>24.3f}" if "peak_bytes" in r else f"{'-':>24}"
        print(f"{mode:<8} {r['median_s']:>14.4f} {r['wait_s'] / r['total_s']:>12.4%} {peak}")
    if "plain" in results and "cached" in results:
        ratio = results["cached"]["median_s"] / results["plain"]["median_s"]
        wait = results["cached"]["wait_s"] / results["cached"]["total_s"]
        step_target, wait_target, mem_target = TARGETS["cuda" if args.device.startswith("cuda") else "cpu"]

        def met(ok: bool) -> str:
            return "met" if ok else "NOT met"

        print(f"cached-DRA / plain step time: {ratio:.3f} (target <= {step_target}: {met(ratio <= step_target)})")
        print(f"feature wait / step (cached): {wait:.4%} (target <= {wait_target:.1%}: {met(wait <= wait_target)})")
        if not args.no_memory:
            mem = results["cached"]["peak_bytes"] / results["plain"]["peak_bytes"]
            target = f" (target <= {mem_target}: {met(mem <= mem_target)})" if mem_target else ""
            print(f"peak memory cached / plain: {mem:.3f}{target}")
    if "online" in results and "cached" in results:
        print(f"online-teacher / cached step time: {results['online']['median_s'] / results['cached']['median_s']:.3f}")
    lines, peak = mfu_lines(args, results)
    print("\n".join(lines))
    if args.json:
        record = {"device": args.device, "config": args.config, "sets": args.set, **peak, "modes": results}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
