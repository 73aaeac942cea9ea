"""CKNNA: centered kernel alignment restricted to mutual k-nearest neighbours (Huh, Cheung, Wang, Isola 2024,
"The Platonic representation hypothesis", appendix A), and the mutual-kNN overlap metric of the same paper.

With phi_i, psi_i the two representations of item i (each L2-normalised, kernels K_ij = <phi_i, phi_j> and
L_ij = <psi_i, psi_j>, i.e. cosine similarity), the paper's alignment is

    Align(K, L) = sum_ij alpha(i, j) (K_ij - E_l[K_il]) (L_ij - E_l[L_il])
    alpha(i, j) = 1[i != j  and  phi_j in knn_K(phi_i)  and  psi_j in knn_L(psi_i)]
    CKNNA(K, L) = Align(K, L) / sqrt(Align(K, K) Align(L, L))

where knn(.) are the k items most similar to i (excluding i) and E_l averages a kernel row over all items.
Align(K, K) uses K's own neighbourhoods. CKNNA(X, X) = 1; independent representations give about 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from torch import Tensor

from dra_pipeline.analysis.registry import DPI, AnalysisSpec, register

if TYPE_CHECKING:
    from dra_pipeline.analysis.context import Context

K_NEIGHBOURS = 10  # neighbourhood size (the paper's choice)


def cosine_kernel(f: Tensor) -> Tensor:
    """(N, D) -> (N, N) float64 Gram matrix of the L2-normalised rows."""
    u = F.normalize(f.double().flatten(1), dim=1)
    return u @ u.T


def knn_mask(kernel: Tensor, k: int) -> Tensor:
    """(N, N) bool: mask[i, j] when j is among the k items most similar to i (largest kernel value), j != i."""
    n = kernel.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must lie in [1, {n - 1}] for {n} items, got {k}")
    scores = kernel.clone()
    scores.fill_diagonal_(float("-inf"))
    mask = torch.zeros_like(kernel, dtype=torch.bool)
    return mask.scatter_(1, scores.topk(k, dim=1).indices, True)


def _align(kc: Tensor, lc: Tensor, mask: Tensor) -> Tensor:
    return (kc * lc)[mask].sum()


def cknna(a: Tensor, b: Tensor, *, k: int = K_NEIGHBOURS) -> float:
    """CKNNA between representations a (N, Da) and b (N, Db) of the same N items; in [-1, 1]."""
    if len(a) != len(b):
        raise ValueError(f"representations of different item counts: {len(a)} and {len(b)}")
    ka, kb = cosine_kernel(a), cosine_kernel(b)
    ma, mb = knn_mask(ka, k), knn_mask(kb, k)
    ca, cb = ka - ka.mean(1, keepdim=True), kb - kb.mean(1, keepdim=True)  # K_ij - E_l[K_il]
    den = torch.sqrt(_align(ca, ca, ma) * _align(cb, cb, mb))
    return float(_align(ca, cb, ma & mb) / den) if den > 0 else 0.0


def mutual_knn(a: Tensor, b: Tensor, *, k: int = K_NEIGHBOURS) -> float:
    """Mean fraction of each item's k nearest neighbours shared by the two representations; in [0, 1]."""
    ma, mb = knn_mask(cosine_kernel(a), k), knn_mask(cosine_kernel(b), k)
    return float((ma & mb).sum(1).double().mean() / k)


# ---- the analysis: figure, runner, analysis.md section --------------------------------------------------------
def figure(ks: Sequence[int], curves: dict[str, Sequence[float]], n: int, teacher: str) -> Figure:
    """CKNNA against the teacher features as a function of the neighbourhood size k, one curve per representation."""
    fig = Figure(figsize=(6, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    colours = {"classifier (clean)": "C0", "classifier (PGD)": "C3", "raw pixels": "C7"}
    for label, values in curves.items():
        ax.plot(ks, values, marker="o", color=colours.get(label), label=label)
    ax.set_xscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("neighbourhood size k")
    ax.set_ylabel("CKNNA with the teacher features")
    ax.set_title(f"CKNNA vs {teacher} features (n = {n} training images)")
    ax.axhline(0, color="k", lw=0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def run(ctx: Context) -> tuple[dict, Figure, list[str]]:
    target = ctx.stored_view("clean")
    v = ctx.train_views()
    reps = {"classifier (clean)": v.features, "classifier (PGD)": v.adv_features, "raw pixels": ctx.train.x.flatten(1)}
    ks = [k for k in ctx.settings.cknna_ks if k < len(target)]
    curves = {label: [cknna(r, target, k=k) for k in ks] for label, r in reps.items()}
    k = min(ctx.settings.cknna_k, len(target) - 1)
    metrics = {
        "k": k,
        "n": len(target),
        "cknna": {label: cknna(r, target, k=k) for label, r in reps.items()},
        "mutual_knn": {label: mutual_knn(r, target, k=k) for label, r in reps.items()},
        "curve_ks": ks,
        "curves": curves,
    }
    notes = [
        "teacher side: the stored clean-view features of the same training rows (the DRA targets); classifier "
        "side: its penultimate representation of the un-augmented image and of its PGD example"
    ]
    return metrics, figure(ks, curves, n=len(target), teacher="teacher"), notes


def markdown(m: dict) -> list[str]:
    out = [
        f"CKNNA (Huh et al. 2024) with k = {m['k']} mutual nearest neighbours, cosine kernels, n = {m['n']} "
        "training images; mutual kNN = mean share of shared neighbours.",
        "",
        "| representation | CKNNA | mutual kNN |",
        "|---|---:|---:|",
    ]
    for label, value in m["cknna"].items():
        out.append(f"| {label} | {value:.4f} | {m['mutual_knn'][label]:.4f} |")
    return out


register(AnalysisSpec("cknna", "CKNNA: classifier vs teacher features", "cknna.png", run, markdown, needs_store=True))
