"""The paper's comparison at our scale: AT, AT + DRA, DM-AT, DM-AT + DRA (or any of them, --methods) on
Fashion-MNIST or CIFAR-10 (--dataset), several seeds, and a DRA weight sweep; every model AutoAttack-evaluated on
the same test images.

    python experiments/compare.py [--device cpu|cuda] [--parallel K] [--seeds 0,1,2] [--n 1000]
    python experiments/compare.py --dataset cifar10 --methods at,at-dra --seeds 0,1 --sweep '' --device cuda

Steps (each skipped when its output exists, so rerunning the command resumes; an interrupted training or
evaluation resumes from its last epoch or batch; a run whose report.json exists is done, also when its
checkpoints are not there, e.g. brought back alone from another machine):
  1. `generate` SYNTHETIC images with the teacher (DM-AT's synthetic data, label i % 10, seed 0; 100,000 on a GPU,
     5,000 on a CPU, where edm-fmnist's 35-evaluation Heun sampler makes about 2 images/s on 2 cores), only when a
     DM-AT method is compared;
  2. `extract` the teacher's features of the real training set (+ the synthetic images) into one store;
  3. `train` each (method, lambda, seed) with the dataset's preset (fmnist-cpu; experiments/cifar10-short.yaml):
     AT uses real batches only, DM-AT draws 70 % of each batch from the synthetic images (DM-AT's fraction); DRA
     adds lambda * (1 - cos) on the store's targets;
  4. `evaluate` each run's best EMA checkpoint: AutoAttack standard at the run's eps (Fashion-MNIST 0.1, CIFAR-10
     8/255), the first N test images, seed 0;
  5. `analyze` the methods' runs of the first seed (representations, against the store's targets; --no-analyze
     skips it).
Then results.json and results.md (mean +- std over seeds, per-run accuracy and wall times, DRA's effect paired by
seed, and the analyses' headline numbers side by side) and analysis.md (the methods' figures side by side) are
written under ROOT.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dra_pipeline.evaluation.report import point_flags

CLI = [sys.executable, "-m", "dra_pipeline"]
DMAT_FRACTION = 0.7  # DM-AT: 70 % synthetic per batch
METHODS = {  # name: (share of each batch drawn from the synthetic images, DRA on)
    "at": (0.0, False),
    "at-dra": (0.0, True),
    "dmat": (DMAT_FRACTION, False),
    "dmat-dra": (DMAT_FRACTION, True),
}
HERE = Path(__file__).resolve().parent
DATASETS = {  # dataset: defaults of --teacher, --config, --store
    "fashion-mnist": dict(teacher="edm-fmnist", config="fmnist-cpu", store="cache/fashion-mnist-dmat.zarr"),
    "cifar10": dict(
        teacher="edm-cifar10-mini", config=str(HERE / "cifar10-short.yaml"), store="cache/cifar10-mini.zarr"
    ),
}


def run(cmd: list[str], log: Path) -> None:
    """Run one pipeline command with its output in `log`; a failure stops the whole experiment."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f"failed ({code}): {' '.join(cmd)}\n  see {log}")
    print(f"  done in {time.perf_counter() - start:6.0f} s: {' '.join(cmd[3:6])} ... -> {log.name}", flush=True)


def jobs(args) -> list[dict]:
    """(name, synthetic fraction, lambda, seed) of every training run."""
    methods = [(m, METHODS[m][0], args.weight if METHODS[m][1] else 0.0) for m in args.methods]
    # seed-major order: an experiment stopped part-way has every method at its first seeds
    out = [dict(method=m, fraction=f, weight=w, seed=s) for s in args.seeds for m, f, w in methods]
    out += [
        dict(method="dmat-dra", fraction=DMAT_FRACTION, weight=w, seed=s) for s in args.sweep_seeds for w in args.sweep
    ]
    for j in out:
        j["name"] = f"{j['method']}-l{j['weight']:g}-s{j['seed']}"
    return out


def train_and_evaluate(job: dict, args) -> None:
    run_dir = args.root / job["name"]
    if (run_dir / "report.json").is_file():
        return  # done: trained and evaluated (here, or on another machine whose records were brought back)
    run(
        CLI
        + [
            "train",
            "--features",
            str(args.store),
            "--config",
            args.config,
            "--out",
            str(run_dir),
            "--lambda",
            str(job["weight"]),
            "--set",
            f"data.synthetic_fraction={job['fraction']}",
            "--set",
            f"train.seed={job['seed']}",
            "--set",
            f"train.device={args.device}",
            *[a for kv in args.set for a in ("--set", kv)],
        ],
        args.root / "logs" / f"{job['name']}.train.log",
    )
    run(
        CLI
        + [
            "evaluate",
            "--run",
            str(run_dir),
            "--n",
            str(args.n),
            "--seed",
            "0",
            "--batch-size",
            str(args.eval_batch),
            "--device",
            args.device,
            "--attack",
            args.attack,
        ],
        args.root / "logs" / f"{job['name']}.evaluate.log",
    )


def analyze(job: dict, args) -> None:
    run_dir = args.root / job["name"]
    if not (run_dir / "analysis" / "analysis.json").is_file():
        run(
            CLI
            + [
                "analyze",
                "--run",
                str(run_dir),
                "--features",
                str(args.store),
                "--n",
                "1000",
                "--seed",
                "0",
                "--device",
                args.device,
            ],
            args.root / "logs" / f"{job['name']}.analyze.log",
        )


def first_seed_runs(all_jobs: list[dict], args) -> list[dict]:
    """The methods' runs of the first training seed (none when --seeds is empty: a sweep on its own)."""
    return all_jobs[: len(args.methods)] if args.seeds else []


def analysed(all_jobs: list[dict], args) -> list[tuple[dict, dict]]:
    """(job, analysis.json) of the first seed's runs that have been analysed."""
    out = []
    for j in first_seed_runs(all_jobs, args):
        path = args.root / j["name"] / "analysis" / "analysis.json"
        if path.is_file():
            out.append((j, json.loads(path.read_text())))
    return out


def representation_table(pairs: list[tuple[dict, dict]]) -> list[str]:
    """Headline numbers of each analysis, one column per method."""

    def pair(values, fmt):
        return " / ".join(format(v, fmt) for v in values)

    def sae8(r, split):
        return r["sae"]["nmse"][split][r["sae"]["ks"].index(8)]

    pgd_share, au = "PGD perturbation x_adv - x", "align-uniform"
    rows = [
        ("clean / PGD-20 accuracy, % (n=1000)", lambda r, a: pair((100 * a["clean"], 100 * a["pgd"]), ".1f")),
        ("alignment, clean vs PGD (lower: closer)", lambda r, a: f"{r[au]['classifier']['alignment']:.3f}"),
        ("uniformity (lower: more spread)", lambda r, a: f"{r[au]['classifier']['uniformity']:.3f}"),
        (
            "CLS-95 / CLS-99 / robust-95 (of 200)",
            lambda r, a: pair((r["cls-dim"][k] for k in ("cls_95", "cls_99", "robust_95")), "d"),
        ),
        (
            "CKNNA with the teacher, clean / PGD (k=10)",
            lambda r, a: pair((r["cknna"]["cknna"][k] for k in ("classifier (clean)", "classifier (PGD)")), ".3f"),
        ),
        (
            "SAE normalised MSE at k=8, clean / PGD",
            lambda r, a: pair((sae8(r, "test clean"), sae8(r, "test PGD")), ".4f"),
        ),
        (
            "high-frequency share of PGD perturbations (> 0.25 cycles/px)",
            lambda r, a: f"{r['frequency'][pgd_share]['high_frequency_share_above_0.25']:.3f}",
        ),
    ]
    lines = ["| analysis | " + " | ".join(j["method"] for j, _ in pairs) + " |", "|---|" + "---:|" * len(pairs)]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(d["results"], d["accuracy"]) for _, d in pairs) + " |")
    return lines


def figures_page(pairs: list[tuple[dict, dict]], args) -> None:
    """analysis.md under ROOT: each analysis's figure for the methods side by side."""
    header = "| analysis | " + " | ".join(j["name"] for j, _ in pairs) + " |"
    lines = ["# Representation analyses, first seed, side by side", "", header, "|---|" + "---|" * len(pairs)]
    for what in pairs[0][1]["figures"]:
        cells = [f"![{j['name']} {what}]({j['name']}/analysis/{d['figures'][what]})" for j, d in pairs]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    (args.root / "analysis.md").write_text("\n".join(lines) + "\n")


def mean_and_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation over seeds (None for one seed: no spread from a single run)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def mean_std(mean: float, std: float | None) -> str:
    """Percent, with the sample standard deviation over seeds when there are several."""
    return f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} +- {100 * std:.2f}"


def dra_effect(rows: list[dict], robust_flags: dict, weight: float, bases: list[str]) -> list[str]:
    """DRA's effect paired by training seed: (X + DRA) - X for each method X in `bases` (at, dmat) at lambda
    `weight`, in percentage points, with the test points robust under one model of the pair only (same points, same
    attack)."""
    by_key = {(r["method"], r["weight"], r["seed"]): r for r in rows}
    lines = [
        "| comparison | seeds | clean diff (pp) | AutoAttack diff (pp) | AutoAttack diff per seed (pp) | "
        "points robust only with DRA / only without |",
        "|---|---|---:|---:|---|---|",
    ]
    for base in bases:
        pairs = [
            (r, by_key[(f"{base}-dra", weight, r["seed"])])
            for r in rows
            if (r["method"], r["weight"]) == (base, 0.0) and (f"{base}-dra", weight, r["seed"]) in by_key
        ]
        if not pairs:
            continue
        clean = [d["clean"] - b["clean"] for b, d in pairs]
        robust = [d["robust"] - b["robust"] for b, d in pairs]
        only = [
            (
                int((robust_flags[d["name"]] & ~robust_flags[b["name"]]).sum()),
                int((robust_flags[b["name"]] & ~robust_flags[d["name"]]).sum()),
            )
            for b, d in pairs
        ]
        clean_cell, robust_cell = (mean_std(*mean_and_std(v)) for v in (clean, robust))
        lines.append(
            f"| {base}-dra - {base} | {','.join(str(b['seed']) for b, _ in pairs)} | {clean_cell} | "
            f"{robust_cell} | {', '.join(f'{100 * v:+.2f}' for v in robust)} | "
            f"{', '.join(f'{a} / {b}' for a, b in only)} |"
        )
    return lines if len(lines) > 2 else []


def train_seconds(run_dir: Path) -> float | None:
    """Training wall time: the epochs' times in stats.jsonl (validation included), summed."""
    path = run_dir / "stats.jsonl"
    if not path.is_file():
        return None
    times = [json.loads(line).get("epoch_s") for line in path.read_text().splitlines() if line.strip()]
    return sum(t for t in times if t is not None) or None


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def summarise(all_jobs: list[dict], args) -> None:
    rows, robust_flags = [], {}
    for j in all_jobs:
        path = args.root / j["name"] / "report.json"
        if not path.is_file():
            continue  # with --summary: a run not yet evaluated
        report = json.loads(path.read_text())
        rows.append(
            {
                **j,
                "clean": report["clean"]["accuracy"],
                "robust": report["robust"]["accuracy"],
                "n": report["robust"]["n"],
                "wall_s": report.get("wall_s"),
                "train_s": train_seconds(args.root / j["name"]),
            }
        )
        robust_flags[j["name"]] = point_flags(report, "robust")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["weight"]), []).append(r)

    table = []
    for (method, weight), rs in groups.items():
        (cm, cs), (rm, rsd) = mean_and_std([r["clean"] for r in rs]), mean_and_std([r["robust"] for r in rs])
        table.append(
            {
                "method": method,
                "lambda": weight,
                "seeds": [r["seed"] for r in rs],
                "n": rs[0]["n"],
                "clean_mean": cm,
                "clean_std": cs,
                "autoattack_mean": rm,
                "autoattack_std": rsd,
            }
        )
    (args.root / "results.json").write_text(json.dumps({"runs": rows, "table": table}, indent=2))
    lines = [f"| method | lambda | seeds | clean (%) | {args.attack} (%) | n |", "|---|---:|---|---:|---:|---:|"]
    for t in table:
        lines.append(
            f"| {t['method']} | {t['lambda']:g} | {','.join(map(str, t['seeds']))} | "
            f"{mean_std(t['clean_mean'], t['clean_std'])} | "
            f"{mean_std(t['autoattack_mean'], t['autoattack_std'])} | {t['n']} |"
        )
    lines.append(f"\n{len(rows)} of {len(all_jobs)} runs evaluated.")
    if rows:
        lines += [
            "",
            f"| run | clean (%) | {args.attack} (%) | n | train wall s | evaluate wall s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['name']} | {100 * r['clean']:.2f} | {100 * r['robust']:.2f} | {r['n']} | {seconds(r['train_s'])} | "
            f"{seconds(r['wall_s'])} |"
            for r in rows
        ]
    bases = [m for m in args.methods if not METHODS[m][1] and f"{m}-dra" in args.methods]
    effect = dra_effect(rows, robust_flags, args.weight, bases)
    if effect:
        lines += [
            "",
            f"DRA's effect at lambda {args.weight:g}, paired by training seed (mean +- std over seeds):",
            "",
            *effect,
        ]
    pairs = analysed(all_jobs, args)
    if pairs:
        lines += [
            "",
            f"Representations (seed {pairs[0][0]['seed']}, `analyze --n 1000`):",
            "",
            *representation_table(pairs),
        ]
        figures_page(pairs, args)
    (args.root / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        sys.exit(f"compare: --methods takes a comma list of {', '.join(METHODS)}; got {text!r}")
    return methods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=list(DATASETS), default="fashion-mnist")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list of at, at-dra, dmat, dmat-dra")
    ap.add_argument("--teacher", help="the store's teacher (default: edm-fmnist; CIFAR-10: edm-cifar10-mini)")
    ap.add_argument("--teacher-checkpoint", type=Path, help="the teacher's weights, if not its packaged ones")
    ap.add_argument("--data-dir", type=Path, help="folder holding the named dataset (sets DRA_DATA_DIR)")
    ap.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True, help="step 5")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--parallel", type=int, default=1, help="runs trained/evaluated at once")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds of the methods ('' for the sweep only)")
    ap.add_argument("--weight", type=float, default=0.5, help="DRA lambda of the methods' table")
    ap.add_argument("--sweep", default="0.1,0.25,1,2", help="further lambdas for DM-AT + DRA ('' for none)")
    ap.add_argument("--sweep-seeds", default="0", help="seeds of the sweep's runs")
    ap.add_argument("--n", type=int, default=1000, help="AutoAttack test images (the first n)")
    ap.add_argument("--eval-batch", type=int, default=500)
    ap.add_argument("--attack", default="autoattack", help="evaluate's attack (autoattack; others for rehearsals)")
    ap.add_argument("--synthetic", type=int, help="images generated with the teacher (100,000 on cuda, 5,000 on cpu)")
    ap.add_argument("--config", help="training preset or YAML file (default: the dataset's)")
    ap.add_argument("--set", action="append", default=[], help="extra training override (e.g. a quick rehearsal)")
    ap.add_argument("--root", type=Path, default=Path("runs/compare"))
    ap.add_argument("--summary", action="store_true", help="only tabulate the runs evaluated so far")
    ap.add_argument("--store", type=Path, help="feature store (default: the dataset's, under cache/)")
    ap.add_argument("--synthetic-file", type=Path, help="where the generated npz goes (default: ROOT/...)")
    args = ap.parse_args()
    args.methods = parse_methods(args.methods)
    defaults = DATASETS[args.dataset]
    args.teacher = args.teacher or defaults["teacher"]
    args.config = args.config or defaults["config"]
    args.store = args.store or Path(defaults["store"])
    if args.data_dir:
        os.environ["DRA_DATA_DIR"] = str(args.data_dir.resolve())  # for every command run below
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.sweep = [float(w) for w in args.sweep.split(",") if w.strip()]
    args.sweep_seeds = [int(s) for s in args.sweep_seeds.split(",")]
    if args.synthetic is None:
        args.synthetic = 5_000 if args.device == "cpu" else 100_000
    args.root.mkdir(parents=True, exist_ok=True)
    synthetic = args.synthetic_file or args.root / f"synthetic-{args.teacher}.npz"
    uses_synthetic = any(METHODS[m][0] > 0 for m in args.methods) or bool(args.sweep)
    teacher_weights = ["--checkpoint", str(args.teacher_checkpoint)] if args.teacher_checkpoint else []
    start = time.perf_counter()
    if args.summary:
        return summarise(jobs(args), args)
    if uses_synthetic and not synthetic.is_file():
        run(
            CLI
            + [
                "generate",
                "--teacher",
                args.teacher,
                *teacher_weights,
                "--n",
                str(args.synthetic),
                "--out",
                str(synthetic),
                "--seed",
                "0",
                "--batch-size",
                "2000" if args.device != "cpu" else "200",
                "--device",
                args.device,
            ],
            args.root / "logs" / "generate.log",
        )
    run(
        CLI
        + [
            "extract",
            "--teacher",
            args.teacher,
            *teacher_weights,
            "--data",
            args.dataset,
            *(["--synthetic", str(synthetic)] if uses_synthetic else []),
            "--out",
            str(args.store),
            "--views",
            "clean,flip",
            "--batch-size",
            "1024",
            "--device",
            args.device,
        ],
        args.root / "logs" / "extract.log",
    )
    all_jobs = jobs(args)
    print(f"{len(all_jobs)} runs, {args.parallel} at a time, on {args.device}", flush=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda j: train_and_evaluate(j, args), all_jobs))
        if args.analyze:
            list(pool.map(lambda j: analyze(j, args), first_seed_runs(all_jobs, args)))
    summarise(all_jobs, args)
    print(f"compare: {time.perf_counter() - start:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
