"""Training curves from a run's per-epoch records: metrics.csv (as timm's summary.csv, one row per epoch), curves.png
(losses, alignment, clean and robust validation accuracy, learning rate) and, when the `tensorboard` package is
installed, TensorBoard scalars under RUN/tensorboard."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dra_pipeline.atomic import atomic_write, atomic_write_text

COLUMNS = (
    "epoch",
    "loss",
    "align",
    "clean_acc",
    "adv_acc",
    "val_clean",
    "val_robust",
    "val_n",
    "lr",
    "momentum",
    "epoch_s",
    "feature_wait_s",
)


def write_metrics_csv(records: list[dict], path: Path) -> None:
    """One row per epoch record, the COLUMNS first, any further fields after them."""
    extra = sorted({k for r in records for k in r} - set(COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, *extra], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, buffer.getvalue())


def draw_curves(records: list[dict], title: str):
    """A matplotlib Figure of the records against the epoch: training losses, alignment loss, validation
    accuracies (clean and PGD, with n), learning rate."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in records]
    fig = Figure(figsize=(12, 3.6), dpi=110, layout="constrained")
    loss, align, acc, lr = fig.subplots(1, 4)
    loss.plot(epochs, [r["loss"] for r in records], marker="o", color="C0", label="total loss")
    loss.set_title("training loss")
    align.plot(epochs, [r["align"] for r in records], marker="o", color="C2")
    align.set_title("DRA alignment  1 - cos")
    n = records[-1].get("val_n")
    acc.plot(epochs, [100 * r["val_clean"] for r in records], marker="o", color="C0", label="clean")
    acc.plot(epochs, [100 * r["val_robust"] for r in records], marker="o", color="C3", label="robust (PGD)")
    acc.plot(epochs, [100 * r["adv_acc"] for r in records], ls=":", color="C3", label="training adversarial")
    acc.set_title(f"validation accuracy (%, n = {n})")
    acc.legend(fontsize=7)
    lr.plot(epochs, [r["lr"] for r in records], marker="o", color="C7")
    lr.set_title("learning rate")
    for ax in (loss, align, acc, lr):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


def write_curves_png(records: list[dict], path: Path, title: str) -> None:
    buffer = io.BytesIO()
    draw_curves(records, title).savefig(buffer, format="png")
    data = buffer.getvalue()
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def tensorboard_writer(folder: Path):
    """A TensorBoard SummaryWriter on `folder`, or None when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder))
