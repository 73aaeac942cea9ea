"""Alignment and uniformity of L2-normalised representations (Wang & Isola 2020, "Understanding contrastive
representation learning through alignment and uniformity on the hypersphere", eqs. 4-5).

Both are losses (lower is "better"): alignment is small when positive pairs map close together, uniformity is
small when the representations spread evenly over the unit sphere. Here a positive pair is an image and its
adversarial example (or, for stored teacher features, two views of one image).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA = 2.0  # exponent on the positive-pair distance (the paper's default)
T = 2.0  # temperature of the Gaussian potential (the paper's default)


def normalise(f: Tensor) -> Tensor:
    """(N, D) -> (N, D) float64 rows of unit L2 norm."""
    return F.normalize(f.double(), dim=1)


# ---- eq. 4: L_align = E_{(x, y) ~ p_pos} || f(x) - f(y) ||_2^alpha ----------------------------------------------
def alignment(a: Tensor, b: Tensor, *, alpha: float = ALPHA) -> float:
    """Mean ||a_i/|a_i| - b_i/|b_i|||^alpha over the pairs (a_i, b_i); a, b: (N, D). 0 for identical pairs,
    at most 2^alpha (opposite pairs)."""
    if a.shape != b.shape:
        raise ValueError(f"positive pairs need equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float((normalise(a) - normalise(b)).norm(dim=1).pow(alpha).mean())


def pair_distances(a: Tensor, b: Tensor) -> Tensor:
    """||a_i/|a_i| - b_i/|b_i|||_2 per pair: (N,) float64 in [0, 2]."""
    return (normalise(a) - normalise(b)).norm(dim=1)


# ---- eq. 5: L_uniform = log E_{x, y ~ p_data iid} exp(-t || f(x) - f(y) ||_2^2) ---------------------------------
def uniformity(f: Tensor, *, t: float = T) -> float:
    """log of the mean Gaussian potential exp(-t ||u_i - u_j||^2) over all pairs i < j of the normalised rows
    of f (N, D), N >= 2. In [-4t, 0]: 0 when all rows coincide; -4t is approached only by antipodal pairs."""
    u = normalise(f)
    if len(u) < 2:
        raise ValueError("uniformity needs at least two representations")
    sq = torch.pdist(u).square()  # the N(N-1)/2 pairs i < j
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(len(sq)))
