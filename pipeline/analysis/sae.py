"""TopK sparse autoencoders on representations (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    z     = ReLU(TopK_k(W_enc (x - b_pre) + b_enc))     (m,)  only the k largest pre-activations survive
    x_hat = W_dec z + b_pre                             (D,)

The loss is the normalised reconstruction error  NMSE = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2  (1 for
predicting the mean, 0 for a perfect reconstruction). A representation that a few directions at a time explain
well reaches a low NMSE at small k. Training follows the paper's recipe at toy scale: b_pre starts at the data
mean, W_enc starts as W_dec^T, decoder columns are kept at unit norm, Adam on the MSE; inputs are scaled by one
scalar (NMSE does not depend on it) so one learning rate fits any representation. No AuxK loss: some latents
may die, which only makes the reported loss an upper bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from torch import Tensor, nn

from dra_pipeline.analysis.registry import DPI, AnalysisSpec, register

if TYPE_CHECKING:
    from dra_pipeline.analysis.context import Context

EXPANSION = 2  # latents per input dimension (m = EXPANSION * D)
STEPS = 500  # Adam steps per autoencoder (not converged: compare runs at equal steps, not absolute values)
BATCH = 256  # rows per step
LR = 3e-3  # Adam learning rate, for inputs scaled to unit mean squared deviation per dimension


class TopKSAE(nn.Module):
    def __init__(self, dim: int, latents: int, k: int, *, generator: torch.Generator | None = None):
        super().__init__()
        if not 0 < k <= latents:
            raise ValueError(f"k must lie in [1, {latents}], got {k}")
        self.k = k
        w = torch.randn(dim, latents, generator=generator)
        self.w_dec = nn.Parameter(w / w.norm(dim=0, keepdim=True))  # (D, m), unit-norm columns
        self.w_enc = nn.Parameter(self.w_dec.detach().T.clone())  # (m, D)
        self.b_enc = nn.Parameter(torch.zeros(latents))
        self.b_pre = nn.Parameter(torch.zeros(dim))

    def encode(self, x: Tensor) -> Tensor:
        """x (N, D) -> sparse codes z (N, m) with at most k non-zeros per row, all >= 0."""
        pre = (x - self.b_pre) @ self.w_enc.T + self.b_enc
        top = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, top.values.relu())

    def forward(self, x: Tensor) -> Tensor:
        # a dense (N, m) x (m, D) product: on a CPU it beats gathering the k active columns (measured, k <= 32)
        return self.encode(x) @ self.w_dec.T + self.b_pre

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.w_dec.div_(self.w_dec.norm(dim=0, keepdim=True).clamp_min(1e-12))


def nmse(x: Tensor, x_hat: Tensor) -> float:
    """sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over rows of (N, D); the mean is x's own."""
    x, x_hat = x.double(), x_hat.double()
    return float((x - x_hat).square().sum() / (x - x.mean(0)).square().sum().clamp_min(1e-300))


@dataclass(frozen=True)
class SAEResult:
    ks: tuple[int, ...]
    latents: int  # m
    nmse: dict[str, list[float]]  # evaluation set name -> NMSE per k
    train_nmse: list[float]  # NMSE on the training rows per k

    def to_dict(self) -> dict:
        return {"ks": list(self.ks), "latents": self.latents, "nmse": self.nmse, "train_nmse": self.train_nmse}


def train_sae(
    x: Tensor, k: int, *, latents: int, steps: int = STEPS, batch: int = BATCH, lr: float = LR, seed: int = 0
) -> TopKSAE:
    """Fit a TopK SAE to rows of x (N, D) (already scaled); deterministic given seed."""
    g = torch.Generator().manual_seed(seed)
    x = x.float()
    sae = TopKSAE(x.shape[1], latents, min(k, latents), generator=g)
    with torch.no_grad():
        sae.b_pre.copy_(x.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    for _ in range(steps):
        xb = x[torch.randint(len(x), (min(batch, len(x)),), generator=g)]
        loss = (sae(xb) - xb).square().sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sae.normalise_decoder()
    return sae.eval().requires_grad_(False)


def sae_sweep(
    train: Tensor,
    evaluate: dict[str, Tensor],
    ks: Sequence[int],
    *,
    expansion: int = EXPANSION,
    steps: int = STEPS,
    lr: float = LR,
    seed: int = 0,
) -> SAEResult:
    """One SAE per k on `train` (N, D); NMSE on train and on each evaluation set (name -> (n, D))."""
    train = train.float()
    scale = (train - train.mean(0)).square().mean().sqrt().clamp_min(1e-12)  # scalar: NMSE is unchanged by it
    latents = expansion * train.shape[1]
    out: dict[str, list[float]] = {name: [] for name in evaluate}
    train_nmse = []
    for k in ks:
        with torch.enable_grad():
            sae = train_sae(train / scale, k, latents=latents, steps=steps, lr=lr, seed=seed)
        with torch.no_grad():
            train_nmse.append(nmse(train / scale, sae(train / scale)))
            for name, x in evaluate.items():
                out[name].append(nmse(x.float() / scale, sae(x.float() / scale)))
    return SAEResult(tuple(int(k) for k in ks), latents, out, train_nmse)


# ---- the analysis: figure, runner, analysis.md section --------------------------------------------------------
def figure(ks: Sequence[int], curves: dict[str, Sequence[float]], latents: int, n_train: int) -> Figure:
    """Normalised reconstruction loss of TopK SAEs against k, one curve per evaluation set."""
    fig = Figure(figsize=(6, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    colours = {"test clean": "C0", "test PGD": "C3", "train clean": "C7"}
    for label, values in curves.items():
        ax.plot(ks, values, marker="o", color=colours.get(label), label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("active latents k")
    ax.set_ylabel("normalised MSE  ||x - x_hat||^2 / ||x - mean||^2")
    ax.set_title(f"TopK SAE reconstruction ({latents} latents, {n_train} training rows)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def run(ctx: Context) -> tuple[dict, Figure, list[str]]:
    s, v = ctx.settings, ctx.test_views()
    train_reps = ctx.train_representations()
    result = sae_sweep(train_reps, {"test clean": v.features, "test PGD": v.adv_features}, s.sae_ks,
                       expansion=s.sae_expansion, steps=s.sae_steps, lr=s.sae_lr, seed=s.seed)  # fmt: skip
    curves = {**result.nmse, "train clean": result.train_nmse}
    fig = figure(result.ks, curves, result.latents, n_train=len(train_reps))
    return {**result.to_dict(), "n_train": len(train_reps), "n_test": len(v.x), "steps": s.sae_steps}, fig, []


def markdown(m: dict) -> list[str]:
    out = [
        f"TopK SAEs with {m['latents']} latents, trained {m['steps']} Adam steps on the clean representations of "
        f"{m['n_train']} training images; normalised MSE = ||x - x_hat||^2 / ||x - mean||^2 (0 perfect, 1 = mean).",
        "",
        "| k | " + " | ".join(m["nmse"]) + " | train clean |",
        "|---:|" + "---:|" * (len(m["nmse"]) + 1),
    ]
    for i, k in enumerate(m["ks"]):
        cells = [f"{v[i]:.4f}" for v in m["nmse"].values()] + [f"{m['train_nmse'][i]:.4f}"]
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return out


register(AnalysisSpec("sae", "TopK sparse autoencoders", "sae.png", run, markdown))
