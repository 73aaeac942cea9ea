"""Alignment and uniformity of L2-normalised representations (Wang & Isola 2020, "Understanding contrastive
representation learning through alignment and uniformity on the hypersphere", eqs. 4-5).

Both are losses (lower is "better"): alignment is small when positive pairs map close together, uniformity is
small when the representations spread evenly over the unit sphere. Here a positive pair is an image and its
adversarial example (or, for stored teacher features, two views of one image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from dra_pipeline.analysis.numbers import num
from dra_pipeline.analysis.registry import DPI, AnalysisSpec, register

if TYPE_CHECKING:
    from dra_pipeline.analysis.context import Context

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


# ---- the analysis: figure, runner, analysis.md section --------------------------------------------------------
def figure(points: Sequence[dict], distances: dict[str, np.ndarray], n: int) -> Figure:
    """points: {"label", "alignment", "uniformity"} per representation; distances: label -> positive-pair
    distances ||u - v||_2 (n,). Left: the (alignment, uniformity) plane; right: distance histograms."""
    fig = Figure(figsize=(10, 4.2), dpi=DPI, layout="constrained")
    ax, hx = fig.subplots(1, 2)
    for i, p in enumerate(points):
        ax.scatter(p["alignment"], p["uniformity"], s=60, color=f"C{i}", label=p["label"], zorder=3)
    ax.set_xlabel("alignment  E ||u - u'||^2  (lower: positive pairs closer)")
    ax.set_ylabel("uniformity  log E exp(-2 ||u_i - u_j||^2)")
    ax.set_title("Alignment vs uniformity (Wang & Isola 2020)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    bins = np.linspace(0, 2, 41)
    for i, (label, d) in enumerate(distances.items()):
        hx.hist(d, bins=bins, alpha=0.5, color=f"C{i}", label=label, density=True)
    hx.set_xlabel("positive-pair distance ||u - u'||_2 (unit sphere, max 2)")
    hx.set_ylabel("density")
    hx.set_title(f"Positive-pair distances (n = {n})")
    hx.legend(fontsize=8)
    return fig


def run(ctx: Context) -> tuple[dict, Figure, list[str]]:
    v = ctx.test_views()
    rows = {
        "classifier": {
            "positive_pairs": "test image vs its PGD example",
            "alignment": alignment(v.features, v.adv_features),
            "uniformity": uniformity(v.features),
            "uniformity_adversarial": uniformity(v.adv_features),
            "n": len(v.x),
        }
    }
    distances = {"classifier: image vs PGD": pair_distances(v.features, v.adv_features).numpy()}
    notes = []
    if ctx.stored is not None and "flip" in ctx.views:
        clean, flip = ctx.stored_view("clean"), ctx.stored_view("flip")
        rows["teacher_stored"] = {
            "positive_pairs": "stored clean view vs flip view of the same training image",
            "alignment": alignment(clean, flip),
            "uniformity": uniformity(clean),
            "n": len(clean),
        }
        distances["teacher (stored): clean vs flip"] = pair_distances(clean, flip).numpy()
    elif ctx.stored is not None:
        clean = ctx.stored_view("clean")
        rows["teacher_stored"] = {"positive_pairs": None, "alignment": None, "uniformity": uniformity(clean),
                                  "n": len(clean)}  # fmt: skip
        notes.append(
            f"the store holds only the view(s) {', '.join(ctx.views)}: no stored positive pairs (extract with "
            "--views clean,flip for a clean-vs-flip alignment); its uniformity is reported"
        )
    if ctx.teacher is not None:
        z, z_adv = ctx.teacher_test("clean"), ctx.teacher_test("adv")
        rows["teacher_recomputed"] = {
            "positive_pairs": "teacher features of a test image vs of the classifier's PGD example (noise fixed)",
            "alignment": alignment(z, z_adv),
            "uniformity": uniformity(z),
            "n": len(z),
        }
        distances["teacher: image vs classifier's PGD"] = pair_distances(z, z_adv).numpy()
    else:
        notes.append("no teacher network: teacher features of the PGD examples were not computed")
    labels = {
        "classifier": "classifier (test, PGD pairs)",
        "teacher_stored": "teacher, stored (train rows)",
        "teacher_recomputed": "teacher (test, PGD pairs)",
    }
    points = [{"label": labels[k], **r} for k, r in rows.items() if r["alignment"] is not None]
    return rows, figure(points, distances, n=len(v.x)), notes


def markdown(m: dict) -> list[str]:
    out = [
        "Wang & Isola (2020) on L2-normalised representations: alignment = E ||u - u'||^2 over positive pairs "
        "(lower: pairs closer), uniformity = log E exp(-2 ||u_i - u_j||^2) over all pairs (lower: more spread).",
        "",
        "| representation | positive pairs | alignment | uniformity | n |",
        "|---|---|---:|---:|---:|",
    ]
    for key, r in m.items():
        out.append(
            f"| {key.replace('_', ' ')} | {r.get('positive_pairs') or '-'} | {num(r.get('alignment'), 4)} "
            f"| {num(r.get('uniformity'), 3)} | {r.get('n')} |"
        )
    if "uniformity_adversarial" in m.get("classifier", {}):
        value = m["classifier"]["uniformity_adversarial"]
        out += ["", f"Uniformity of the classifier's PGD representations: {value:.3f}."]
    return out


register(AnalysisSpec("align-uniform", "Alignment and uniformity", "alignment_uniformity.png", run, markdown))
