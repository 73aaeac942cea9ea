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

import numpy as np
import torch
from torch import Tensor


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
