"""Classification dimension: how many principal components of the penultimate representation the classifier
needs to classify as well as with all of them.

PCA is fitted on the clean representations F (N, D): mean mu, components u_1..u_D (orthonormal, by decreasing
variance). Classification after projecting onto the top k components, as the DRA paper does it: the model's own
head is applied to the projected-and-reconstructed representation

    logits_k(f) = head(mu + U_k U_k^T (f - mu)),    U_k = [u_1 .. u_k]  (D, k)

so k = D reproduces the model's own predictions and k = 0 predicts head(mu) for every image. Adversarial
representations are projected onto the *clean* components (the attack is against the full model; nothing is
refitted). CLS-95 / CLS-99: the smallest k whose clean accuracy reaches 95 % / 99 % of the full (k = D) clean
accuracy; the robust dimensions are the same on adversarial accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from dra_pipeline.analysis.numbers import pct
from dra_pipeline.analysis.registry import DPI, AnalysisSpec, register

if TYPE_CHECKING:
    from dra_pipeline.analysis.context import Context


@dataclass(frozen=True)
class ClsDimension:
    ks: np.ndarray  # (K,) numbers of components evaluated, 0..D
    accuracy: np.ndarray  # (K,) clean accuracy in [0, 1] with the top-k components
    adv_accuracy: np.ndarray | None  # (K,) adversarial accuracy in [0, 1], adversarial projected on clean components
    explained: np.ndarray  # (D,) cumulative fraction of clean variance in the top-k components, k = 1..D
    cls: dict[str, int]  # "95", "99" -> smallest k reaching that share of the full clean accuracy
    robust: dict[str, int] | None  # the same on adversarial accuracy

    def to_dict(self) -> dict:
        full = {"clean": float(self.accuracy[-1])}
        if self.adv_accuracy is not None:
            full["adversarial"] = float(self.adv_accuracy[-1])
        return {
            "full_accuracy": full,
            "cls_95": self.cls["95"],
            "cls_99": self.cls["99"],
            "robust_95": None if self.robust is None else self.robust["95"],
            "robust_99": None if self.robust is None else self.robust["99"],
            "dim": int(self.ks[-1]),
            "ks": self.ks.tolist(),
            "accuracy": self.accuracy.round(6).tolist(),
            "adv_accuracy": None if self.adv_accuracy is None else self.adv_accuracy.round(6).tolist(),
            "explained_variance": self.explained.round(6).tolist(),
        }


def pca(f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """f (N, D) -> (mean (D,), components (D, D) as columns by decreasing variance, variances (D,)), float64."""
    f = f.double()
    mu = f.mean(0)
    _, s, vh = torch.linalg.svd(f - mu, full_matrices=True)
    var = torch.zeros(f.shape[1], dtype=torch.float64)
    var[: len(s)] = s.square() / max(len(f) - 1, 1)
    return mu, vh.T, var


def smallest_k(ks: np.ndarray, accuracy: np.ndarray, share: float) -> int:
    """The smallest k with accuracy[k] >= share * accuracy at the last (full) k."""
    reached = accuracy >= share * accuracy[-1] - 1e-12
    return int(ks[np.argmax(reached)])


@torch.no_grad()
def classification_dimension(
    features: Tensor, labels: Tensor, head: Callable[[Tensor], Tensor], adv_features: Tensor | None = None
) -> ClsDimension:
    """features (N, D) clean penultimate representations, labels (N,), head: (n, D) float32 -> logits;
    adv_features (N, D) of the adversarial examples, optional. Evaluates every k = 0..D."""
    mu, u, var = pca(features)
    dim = features.shape[1]
    ks = np.arange(dim + 1)
    labels = labels.long()

    def accuracies(f: Tensor) -> np.ndarray:
        scores = (f.double() - mu) @ u  # (N, D) coordinates on the components
        out = np.empty(len(ks))
        for k in ks:
            recon = mu + scores[:, :k] @ u[:, :k].T
            out[k] = float((head(recon.float()).argmax(1) == labels).double().mean())
        return out

    clean = accuracies(features)
    adv = accuracies(adv_features) if adv_features is not None else None
    explained = (var.cumsum(0) / var.sum().clamp_min(1e-300)).numpy()
    shares = {"95": 0.95, "99": 0.99}
    return ClsDimension(
        ks=ks,
        accuracy=clean,
        adv_accuracy=adv,
        explained=explained,
        cls={name: smallest_k(ks, clean, s) for name, s in shares.items()},
        robust=None if adv is None else {name: smallest_k(ks, adv, s) for name, s in shares.items()},
    )


# ---- the analysis: figure, runner, analysis.md section --------------------------------------------------------
def figure(
    ks: np.ndarray, clean: np.ndarray, adv: np.ndarray | None, explained: np.ndarray, marks: dict[str, int], n: int
) -> Figure:
    """Accuracy with the top-k principal components (clean, adversarial), marks: label -> k; explained variance."""
    fig = Figure(figsize=(10, 4.2), dpi=DPI, layout="constrained")
    ax, ex = fig.subplots(1, 2)
    ax.plot(ks, 100 * clean, color="C0", label="clean")
    if adv is not None:
        ax.plot(ks, 100 * adv, color="C3", label="PGD (projected on clean components)")
    styles = {"CLS-95": ("C0", ":"), "CLS-99": ("C0", "--"), "robust-95": ("C3", ":"), "robust-99": ("C3", "--")}
    for label, k in marks.items():
        color, ls = styles.get(label, ("k", ":"))
        ax.axvline(k, color=color, ls=ls, lw=1, label=f"{label} = {k}")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, ks[-1])
    ax.set_xlabel("principal components kept, k (0, then log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Accuracy after projecting onto the top-k components (n = {n})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ex.plot(np.arange(1, len(explained) + 1), 100 * explained, color="C0")
    ex.set_xscale("log")
    ex.set_xlabel("principal components, k")
    ex.set_ylabel("cumulative explained variance (%)")
    ex.set_title("PCA of clean penultimate representations")
    ex.grid(alpha=0.3)
    return fig


def run(ctx: Context) -> tuple[dict, Figure, list[str]]:
    v = ctx.test_views()
    device = next(ctx.model.parameters()).device
    result = classification_dimension(v.features, v.y, lambda f: ctx.model.head(f.to(device)).cpu(),
                                      adv_features=v.adv_features)  # fmt: skip
    marks = {"CLS-95": result.cls["95"], "CLS-99": result.cls["99"],
             "robust-95": result.robust["95"], "robust-99": result.robust["99"]}  # fmt: skip
    fig = figure(result.ks, result.accuracy, result.adv_accuracy, result.explained, marks, n=len(v.x))
    notes = []
    if result.adv_accuracy[-1] == 0:
        notes.append("PGD accuracy of the full model is 0: the robust dimension is 0 by definition")
    method = "head(mu + U_k U_k^T (f - mu)), PCA fitted on the clean test representations"
    return {**result.to_dict(), "n": len(v.x), "method": method}, fig, notes


def markdown(m: dict) -> list[str]:
    full = m["full_accuracy"]
    return [
        "Accuracy when the penultimate representation f is replaced by mu + U_k U_k^T (f - mu) (top-k principal "
        "components of the clean test representations) and the model's own head classifies it; PGD "
        "representations are projected onto the clean components.",
        "",
        "| | value |",
        "|---|---:|",
        f"| representation width | {m['dim']} |",
        f"| full clean / PGD accuracy | {pct(full.get('clean'))} / {pct(full.get('adversarial'))} |",
        f"| CLS-95 / CLS-99 (components for 95 % / 99 % of clean accuracy) | {m['cls_95']} / {m['cls_99']} |",
        f"| robust dimension 95 / 99 (same on PGD accuracy) | {m['robust_95']} / {m['robust_99']} |",
        f"| n | {m['n']} |",
    ]


register(AnalysisSpec("cls-dim", "Classification dimension (PCA)", "cls_dimension.png", run, markdown))
