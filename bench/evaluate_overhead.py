"""Cost of our evaluation path over one bare pyautoattack call, measured side by side, each timed run a fresh process.

    python bench/evaluate_overhead.py [--checkpoint runs/fmnist-cpu-dra/best-ema.pt] [--n 200] [--seed 0]
                                      [--batch-size 200] [--reps 2] [--device cpu]

Both sides evaluate the same checkpoint (eval mode) on the same first n test points with the same seed. Bare:
`AutoAttack(version="standard").run_standard_evaluation(x, y, batch_size=B)` on a model and points loaded once
beforehand. Ours: everything `dra-pipeline evaluate` does below the command line, `jobs.evaluate.
evaluate_checkpoint`: loading the checkpoint and points, hashing the checkpoint, the clean pass, the AutoAttack
components one batch at a time, the state file written atomically after every batch, flag capture, and writing
report.json and report.md.
Each timed run is a fresh process (`--side bare|ours`, started by this script): within one process, successive
AutoAttack calls slow down (bare pyautoattack alone, n=100: 68, 69, 76, 80 s over four calls; a new process is
back at 67 s), which would charge whichever side runs later. Repetitions alternate bare-ours, ours-bare, ... so
machine drift hits both alike. Reported: each wall time, ours / bare over the summed times (target <= 1.05) and
both robust accuracies, which must be equal point by point. CPU time (all threads of the run's process) is printed
beside wall time: on a machine shared with other jobs wall time swings while CPU time does not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dra_pipeline.environment import describe, environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/fmnist-cpu-dra/best-ema.pt")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--reps", type=int, default=2, help="timed runs per side")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir")
    p.add_argument("--side", choices=["bare", "ours"], help=argparse.SUPPRESS)  # one timed run, in a child process
    args = p.parse_args()
    if args.side:
        return timed_run(args)

    import numpy as np
    import torch

    print(f"machine: {describe(environment())}, torch threads {torch.get_num_threads()}")
    print(f"model {args.checkpoint}, first {args.n} test images of its dataset")
    print(
        f"AutoAttack standard Linf at the run's eps, seed {args.seed}, batch {args.batch_size}, {args.device}, "
        f"{args.reps} reps per side, each in a fresh process"
    )
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    cpu: dict[str, list[float]] = {"bare": [], "ours": []}
    robust: dict[str, np.ndarray] = {}
    for rep in range(args.reps):
        order = ("bare", "ours") if rep % 2 == 0 else ("ours", "bare")
        for side in order:
            child = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
            done = subprocess.run(child, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{side} run failed:\n{done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            flags = np.array(result["robust"], dtype=bool)
            times[side].append(result["wall_s"])
            cpu[side].append(result["cpu_s"])
            if side in robust and not np.array_equal(robust[side], flags):
                print(f"warning: {side} gave different points in repetition {rep}")
            robust[side] = flags
            print(
                f"  rep {rep} {side:4s} {result['wall_s']:8.1f} s wall {result['cpu_s']:8.1f} s CPU  "
                f"robust {flags.mean():.4f}",
                flush=True,
            )

    ratio = sum(times["ours"]) / sum(times["bare"])
    cpu_ratio = sum(cpu["ours"]) / sum(cpu["bare"])
    same = np.array_equal(robust["bare"], robust["ours"])
    for side, name in (("bare", "bare pyautoattack"), ("ours", "our path")):
        walls, cpus = ", ".join(f"{t:.1f}" for t in times[side]), ", ".join(f"{t:.1f}" for t in cpu[side])
        print(
            f"{name + ':':18s} wall {walls} s (mean {np.mean(times[side]):.1f}), "
            f"CPU {cpus} s (mean {np.mean(cpu[side]):.1f})"
        )
    print(
        f"ours / bare wall time: {ratio:.3f} (target <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'}); "
        f"CPU time: {cpu_ratio:.3f}"
    )
    print(
        f"robust accuracy: bare {robust['bare'].mean():.4f}, ours {robust['ours'].mean():.4f} "
        f"({int(robust['ours'].sum())}/{args.n}); identical point by point: {'yes' if same else 'NO'}"
    )


def timed_run(args) -> None:
    """One side, timed from the moment the bare side's model and points are in memory; prints one JSON line."""
    import numpy as np
    import torch
    from pyautoattack import AutoAttack

    from dra_pipeline.checkpoints import load_classifier
    from dra_pipeline.evaluation.points import load_points
    from dra_pipeline.jobs.evaluate import EvaluationSettings, evaluate_checkpoint

    loaded = load_classifier(args.checkpoint, args.device)
    info, model = loaded.info, loaded.model
    eps = info["eps"]
    points = load_points(
        info["dataset"],
        "test",
        args.n,
        data_dir=args.data_dir,
        image_size=info.get("image_size"),
        channels=info["in_channels"],
    )
    x, y = points.images, points.labels

    def bare() -> np.ndarray:
        aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=args.seed, device=args.device)
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=args.batch_size)
        return (y_adv.cpu() == y).numpy()

    def ours() -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            done = evaluate_checkpoint(
                Path(args.checkpoint),
                EvaluationSettings(n=args.n, batch_size=args.batch_size, seed=args.seed),
                device=torch.device(args.device),
                out=Path(tmp) / "report.json",
                data_dir=args.data_dir,
            )
            return done.evaluation.worst.robust

    t0, c0 = time.perf_counter(), time.process_time()
    flags = bare() if args.side == "bare" else ours()
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"wall_s": wall_s, "cpu_s": cpu_s, "robust": np.asarray(flags, dtype=bool).tolist()}))


if __name__ == "__main__":
    main()
