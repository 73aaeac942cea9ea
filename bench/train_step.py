"""Training-step cost of DRA, measured side by side: plain TRADES, cached-target DRA, online-teacher DRA.

    python bench/train_step.py [--features cache/fashion-mnist.zarr] [--config fmnist-cpu] [--steps 12]

Each mode runs in its own child process (so peak memory is its own) with the same model, batch, data and seed:
the same `training_step` and `BatchLoader` that `train` uses. Reported: median step time, cached / plain
(target <= 1.05), online / cached, time blocked waiting for a batch / step time (target <= 1 %), and peak
memory (CPU: max RSS; GPU: max allocated, cached / plain target <= 1.10).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

MODES = ("plain", "cached", "online")


def child(args) -> dict:
    """Run `args.steps` training steps in one mode; return timings and peak memory."""
    import numpy as np
    import torch

    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.config import load_config
    from dra_pipeline.data import SourceSpec, open_source
    from dra_pipeline.data.batches import BatchLoader, BatchPlan
    from dra_pipeline.data.indexed import IndexedImages
    from dra_pipeline.models import create_model
    from dra_pipeline.run import online_teacher
    from dra_pipeline.stages.train import build_state, training_step

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    sets = [f"dra.weight={0 if args.mode == 'plain' else 1}", f"train.device={args.device}", *args.set]
    cfg = load_config(args.config, tuple(sets))
    store = FeatureStore.open(args.features)
    images = IndexedImages([open_source(SourceSpec.from_dict(s)) for s in store.sources])
    real = images.sources[0]
    plan = BatchPlan(np.arange(len(real)), np.arange(len(real), len(images)), batch_size=cfg.train.batch_size,
                     synthetic_fraction=cfg.data.synthetic_fraction if len(images.sources) > 1 else 0.0,
                     steps_per_epoch=args.steps + args.warmup, seed=0)  # fmt: skip
    use_store = args.mode == "cached"
    loader = BatchLoader(plan, images, store=store if use_store else None, padding=cfg.data.crop_padding,
                         flip=cfg.data.flip)  # fmt: skip
    if use_store:
        store.read(np.arange(1))  # load the store into RAM outside the timing, as train does at its first batch
    torch.manual_seed(0)
    h, w, c = images.image_shape
    model = create_model(cfg.model.name, dataset=real.spec.kind if real.spec.kind != "npz" else "cifar10",
                         num_classes=10, in_channels=c).to(device)  # fmt: skip
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    state = build_state(cfg, model, store.layout.dim if args.mode != "plain" else None, total_steps=10_000)
    if state.head is not None:
        state.head.to(device)
    online = online_teacher(store, images, device) if args.mode == "online" else None
    times = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_start = time.perf_counter()
    waited_before = 0.0
    for i, batch in enumerate(loader.epoch(0)):
        if i == args.warmup:
            waited_before = loader.wait_seconds
        training_step(cfg, state, model.train(), batch, step=i, device=device, online_targets=online)
        sync()
        now = time.perf_counter()
        if i >= args.warmup:
            times.append(now - step_start)
        step_start = time.perf_counter()
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # fmt: skip
    return {"mode": args.mode, "median_s": float(np.median(times)), "mean_s": float(np.mean(times)),
            "wait_s": loader.wait_seconds - waited_before, "total_s": float(np.sum(times)), "peak_bytes": peak,
            "batch": cfg.train.batch_size, "model": cfg.model.name}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=Path("cache/fashion-mnist.zarr"))
    ap.add_argument("--config", default="fmnist-cpu")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. train.batch_size=512")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--mode", help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    print(f"machine: {describe_machine()}")
    results = {}
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    first = next(iter(results.values()))
    print(f"model {first['model']}, batch {first['batch']}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"{args.device}, store {args.features}")  # fmt: skip
    unit = "GiB GPU allocated" if args.device.startswith("cuda") else "GiB max RSS"
    print(f"{'mode':<8} {'median step s':>14} {'wait / step':>12} {'peak ' + unit:>24}")
    for mode, r in results.items():
        print(f"{mode:<8} {r['median_s']:>14.4f} {r['wait_s'] / r['total_s']:>12.4%} {r['peak_bytes'] / 2**30:>24.3f}")
    if "plain" in results and "cached" in results:
        ratio = results["cached"]["median_s"] / results["plain"]["median_s"]
        wait = results["cached"]["wait_s"] / results["cached"]["total_s"]
        mem = results["cached"]["peak_bytes"] / results["plain"]["peak_bytes"]
        print(f"cached-DRA / plain step time: {ratio:.3f} (target <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'})")
        print(f"feature wait / step time (cached): {wait:.4%} (target <= 1 %: {'met' if wait <= 0.01 else 'NOT met'})")
        print(f"peak memory cached / plain: {mem:.3f}" + (" (target <= 1.10 on GPU)" if args.device != "cpu" else ""))
    if "online" in results and "cached" in results:
        print(f"online-teacher / cached step time: {results['online']['median_s'] / results['cached']['median_s']:.3f}")


if __name__ == "__main__":
    main()
