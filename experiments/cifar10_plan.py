"""How much of the CIFAR-10 comparison fits the time left on a time-limited GPU host (bench/gpu_record.sh, cifar10).

    python experiments/cifar10_plan.py --step STEP.json --root ROOT --store STORE --seeds 0,1 --left-s 400 [--epochs N]

Reads the measured step time (bench/train_step.py --json: the plain and cached-DRA medians of the experiment's
config on its store), the runs already evaluated under ROOT (experiments/compare.py's layout: ROOT/<run>/report.json)
and the seconds left, and prints `EPOCHS SEEDS` (e.g. `30 0,1`): the training seeds whose AT and AT + DRA runs
both fit, at the experiment's epoch count. That count is fixed once, in ROOT/plan.json, so that runs made on
different machines are the same experiment: 30 epochs when one seed's pair fits, else as many as fit (at least
10). Exit status 3, with one line saying why, when no pair fits.

Cost model (every run of the machine trains at once on one GPU; no speed-up from running them side by side is
assumed): a run's epoch is steps x the cached-DRA step time x (1 + VALIDATION), the validation being PGD-40 on 1024
images plus the EMA and checkpoints; its AutoAttack on n points is AUTOATTACK_FWD x n image forward-equivalents at
the training step's rate x EVAL_INEFFICIENCY (later attack stages run on the few still-robust points).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

VALIDATION = 0.10  # PGD-40 on 1024 images is ~6 % of a 96-step TRADES-10 epoch at batch 512; + EMA, checkpoints
TRADES_FWD = 27  # forward-equivalents per image of a TRADES-10 step: 1 + 10 x (1 + 1) + 2 x (1 + 2)
AUTOATTACK_FWD = 5000  # per point, standard version: APGD-CE 200, APGD-T 900, FAB-T ~1350, Square ~2500 (half robust)
EVAL_INEFFICIENCY = 2.0  # small batches late in the cascade, Python overhead
MARGIN_S = 30  # process start-up, data, the summary
METHODS = ("at", "at-dra")


@dataclass(frozen=True)
class Plan:
    epochs: int
    seeds: list[int]
    projected_s: float  # training + AutoAttack of the planned runs


def run_seconds(epochs: int, *, step_s: float, steps_per_epoch: int, batch: int, n_eval: int) -> float:
    """Projected wall time of one run: its training epochs and its AutoAttack."""
    train = epochs * steps_per_epoch * step_s * (1 + VALIDATION)
    evaluate = AUTOATTACK_FWD * n_eval / (TRADES_FWD * batch) * step_s * EVAL_INEFFICIENCY
    return train + evaluate


def plan(
    *,
    step_s: float,
    steps_per_epoch: int,
    batch: int,
    n_eval: int,
    pending_seeds: list[int],
    left_s: float,
    epochs: int | None,
    max_epochs: int = 30,
    min_epochs: int = 10,
) -> Plan | None:
    """The seeds (whole AT / AT + DRA pairs, in the given order) and epoch count that fit `left_s`; `epochs` fixed
    when an earlier machine chose it. None when not even one pair fits."""
    budget = left_s - MARGIN_S

    def cost(e: int, seeds: int) -> float:
        one = run_seconds(e, step_s=step_s, steps_per_epoch=steps_per_epoch, batch=batch, n_eval=n_eval)
        return seeds * len(METHODS) * one

    if not pending_seeds:
        return Plan(epochs or max_epochs, [], 0.0)
    e = epochs or max_epochs
    fits = [k for k in range(1, len(pending_seeds) + 1) if cost(e, k) <= budget]
    if fits:
        return Plan(e, pending_seeds[: max(fits)], cost(e, max(fits)))
    if epochs is not None:
        return None
    per_epoch = cost(1, 1) - cost(0, 1)
    e = min(max_epochs, math.floor((budget - cost(0, 1)) / per_epoch)) if per_epoch > 0 else max_epochs
    if e < min_epochs:
        return None
    return Plan(e, pending_seeds[:1], cost(e, 1))


def pending(root: Path, seeds: list[int], weight: float) -> list[int]:
    """Seeds with a run of either method not yet evaluated (compare.py names the runs)."""
    from compare import jobs

    runs = jobs(argparse.Namespace(methods=list(METHODS), weight=weight, seeds=seeds, sweep=[], sweep_seeds=[]))
    return [s for s in seeds if not all((root / j["name"] / "report.json").is_file() for j in runs if j["seed"] == s)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=Path, required=True, help="bench/train_step.py --json output")
    ap.add_argument("--root", type=Path, required=True, help="compare.py's --root (runs, plan.json)")
    ap.add_argument("--store", type=Path, required=True, help="the experiment's feature store")
    ap.add_argument("--config", default=str(Path(__file__).with_name("cifar10-short.yaml")))
    ap.add_argument("--set", action="append", default=[], help="the experiment's config overrides")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--weight", type=float, default=0.5, help="AT + DRA's lambda (compare.py --weight)")
    ap.add_argument("--n", type=int, default=1000, help="AutoAttack points per run")
    ap.add_argument("--left-s", type=float, required=True, help="seconds left for training and evaluation")
    ap.add_argument("--epochs", type=int, help="fix the epoch count (default: ROOT/plan.json's, else chosen here)")
    args = ap.parse_args()

    from dra_pipeline.cache import FeatureStore
    from dra_pipeline.config import load_config

    cfg = load_config(args.config, tuple(args.set))
    real = FeatureStore.open(args.store).sources[0]["count"]
    steps_per_epoch = math.ceil((cfg.data.epoch_images or real - cfg.data.validation) / cfg.train.batch_size)
    step = json.loads(args.step.read_text())["modes"]
    step_s = max(m["median_s"] for m in step.values())  # the slower mode (cached-DRA) for every run
    recorded = args.root / "plan.json"
    epochs = args.epochs or (json.loads(recorded.read_text())["epochs"] if recorded.is_file() else None)
    seeds = pending(args.root, [int(s) for s in args.seeds.split(",") if s.strip()], args.weight)
    found = plan(
        step_s=step_s,
        steps_per_epoch=steps_per_epoch,
        batch=cfg.train.batch_size,
        n_eval=args.n,
        pending_seeds=seeds,
        left_s=args.left_s,
        epochs=epochs,
    )
    if found is None:
        batch = cfg.train.batch_size
        one = run_seconds(epochs or 30, step_s=step_s, steps_per_epoch=steps_per_epoch, batch=batch, n_eval=args.n)
        print(
            f"cifar10_plan: no AT / AT + DRA pair fits {args.left_s:.0f} s (one run at {epochs or 30} epochs: "
            f"{one:.0f} s projected from a {step_s:.3f} s step, {steps_per_epoch} steps per epoch)",
            file=sys.stderr,
        )
        sys.exit(3)
    args.root.mkdir(parents=True, exist_ok=True)
    if not recorded.is_file():
        record = {"epochs": found.epochs, "step_s": step_s, "steps_per_epoch": steps_per_epoch, "config": args.config}
        recorded.write_text(json.dumps({**record, "sets": args.set}, indent=2) + "\n")
    print(
        f"plan: {found.epochs} epochs, seeds {found.seeds or 'none (all evaluated)'}, {found.projected_s:.0f} s "
        f"projected of {args.left_s:.0f} s ({step_s:.3f} s/step, {steps_per_epoch} steps/epoch)",
        file=sys.stderr,
    )
    print(found.epochs, ",".join(map(str, found.seeds)))


if __name__ == "__main__":
    main()
