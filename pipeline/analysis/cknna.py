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

import torch
import torch.nn.functional as F
from torch import Tensor

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
