"""The record of a teacher made by `teacher fit` (as docs/teachers/edm-fmnist.md has it): size, training summary,
loss curve and a grid of samples.

    python experiments/teacher_record.py RUN [--samples SAMPLES.npz] --out DIR [--name edm-cifar10-mini]

Reads RUN/config.json, RUN/stats.jsonl and RUN/ema.safetensors; writes DIR/NAME.json (parameters, EMA file size,
steps, images seen, wall time, loss at the end), DIR/NAME-loss.png and, from a `generate` npz whose labels are
i % 10, DIR/NAME-samples.png (one row per class).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def summary(run: Path) -> dict:
    from dra_pipeline.teachers.songunet import EDMDenoiser, SongUNetConfig

    ema = run / "ema.safetensors"
    config = json.loads((run / "config.json").read_text())
    params = sum(p.numel() for p in EDMDenoiser(SongUNetConfig.from_dict(config["network"])).parameters())
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]
    last = stats[-1] if stats else {}
    return {
        "parameters": params,
        "ema_bytes": ema.stat().st_size,
        "steps": last.get("step"),
        "kimg": last.get("kimg"),
        "wall_s": last.get("wall_s"),  # of the last (resumed) fit segment
        "loss_last": last.get("loss"),
        "network": config["network"],
        "fit": config["fit"],
        "sources": [{k: v for k, v in s.items() if k != "path"} for s in config["sources"]],
    }


def loss_figure(run: Path, path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([s["kimg"] for s in stats], [s["loss"] for s in stats])
    ax.set(xlabel="thousands of images seen", ylabel="EDM loss (mean per log interval)", yscale="log", title=name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def samples_figure(samples: Path, path: Path, classes: int = 10) -> None:
    """Grid: row c holds the samples of class c (a `generate` file labels image i with i % classes)."""
    from PIL import Image

    with np.load(samples) as f:
        images, labels = f["image"], f["label"]
    per_class = min(int((labels == c).sum()) for c in range(classes))
    rows = [np.concatenate(images[labels == c][:per_class], axis=1) for c in range(classes)]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    grid.resize((per_class * 64, classes * 64), Image.Resampling.NEAREST).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the `teacher fit` run directory")
    ap.add_argument("--samples", type=Path, help="a `generate` npz of the teacher")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="edm-cifar10-mini")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    record = summary(args.run)
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    loss_figure(args.run, args.out / f"{args.name}-loss.png", args.name)
    if args.samples:
        samples_figure(args.samples, args.out / f"{args.name}-samples.png")
    print(
        f"{args.name}: {record['parameters'] / 1e6:.2f} M parameters, EMA file {record['ema_bytes'] / 2**20:.1f} MiB, "
        f"{record['steps']} steps ({record['kimg']} kimg), loss {record['loss_last']}"
    )


if __name__ == "__main__":
    main()
