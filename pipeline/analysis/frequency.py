"""Frequency saliency: where in the 2-D spectrum perturbations (or input gradients) put their magnitude.

map(u, v) = mean over images n and channels c of |DFT_2(delta_nc)(u, v)|, with the DFT's zero frequency shifted
to the centre (fftshift), so low frequencies sit in the middle of the image and the highest at its border.
Frequencies are in cycles per pixel, in [-1/2, 1/2) along each axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from dra_pipeline.analysis.adversarial import input_gradients
from dra_pipeline.analysis.numbers import pct
from dra_pipeline.analysis.registry import DPI, AnalysisSpec, register

if TYPE_CHECKING:
    from dra_pipeline.analysis.context import Context


@dataclass(frozen=True)
class FourierMap:
    magnitude: np.ndarray  # (H, W) mean |DFT|, zero frequency at [H // 2, W // 2]
    freq_y: np.ndarray  # (H,) cycles per pixel of each row
    freq_x: np.ndarray  # (W,) cycles per pixel of each column

    @property
    def radius(self) -> np.ndarray:
        """(H, W) frequency radius sqrt(fy^2 + fx^2), cycles per pixel, in [0, 1/sqrt(2)]."""
        return np.hypot(self.freq_y[:, None], self.freq_x[None, :])

    def mean_radius(self) -> float:
        """Magnitude-weighted mean frequency radius, cycles per pixel, DC excluded; low = low-frequency."""
        w = self.magnitude.copy()
        w[len(self.freq_y) // 2, len(self.freq_x) // 2] = 0.0
        return float((w * self.radius).sum() / max(w.sum(), 1e-300))

    def high_frequency_share(self, cutoff: float = 0.25) -> float:
        """Share of the (non-DC) magnitude at radius above `cutoff` cycles per pixel (half the Nyquist 0.5)."""
        w = self.magnitude.copy()
        w[len(self.freq_y) // 2, len(self.freq_x) // 2] = 0.0
        return float(w[self.radius > cutoff].sum() / max(w.sum(), 1e-300))

    def radial_profile(self, bins: int = 14) -> tuple[np.ndarray, np.ndarray]:
        """(bin centres in cycles per pixel (bins,), mean magnitude in each radius bin (bins,)) up to 0.5."""
        edges = np.linspace(0.0, 0.5, bins + 1)
        r, m = self.radius.ravel(), self.magnitude.ravel()
        which = np.digitize(r, edges) - 1
        profile = np.array([m[which == b].mean() if (which == b).any() else np.nan for b in range(bins)])
        return (edges[:-1] + edges[1:]) / 2, profile

    def peak(self) -> tuple[float, float]:
        """(fy, fx) in cycles per pixel of the largest non-DC magnitude."""
        w = self.magnitude.copy()
        w[len(self.freq_y) // 2, len(self.freq_x) // 2] = -np.inf
        i, j = np.unravel_index(np.argmax(w), w.shape)
        return float(self.freq_y[i]), float(self.freq_x[j])


def fourier_map(delta: Tensor) -> FourierMap:
    """delta (N, C, H, W) perturbations or gradients -> their mean centred Fourier magnitude."""
    d = delta.detach().double().cpu()
    spectrum = torch.fft.fftshift(torch.fft.fft2(d, dim=(-2, -1)), dim=(-2, -1)).abs()
    h, w = d.shape[-2:]
    return FourierMap(
        magnitude=spectrum.mean(dim=(0, 1)).numpy(),
        freq_y=np.fft.fftshift(np.fft.fftfreq(h)),
        freq_x=np.fft.fftshift(np.fft.fftfreq(w)),
    )


# ---- the analysis: figure, runner, analysis.md section --------------------------------------------------------
def figure(maps: dict[str, FourierMap], n: int) -> Figure:
    """Centred log-magnitude spectra, one panel per map (axes in cycles per pixel, zero frequency in the middle,
    positive frequencies up and right), and their radial profiles, each normalised to its own maximum."""
    fig = Figure(figsize=(4.6 * (len(maps) + 1), 4.4), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(maps) + 1))
    for i, (ax, (label, m)) in enumerate(zip(axes, maps.items())):
        mag = np.log10(m.magnitude / max(m.magnitude.max(), 1e-300) + 1e-6)
        dy, dx = m.freq_y[1] - m.freq_y[0], m.freq_x[1] - m.freq_x[0]
        extent = (m.freq_x[0] - dx / 2, m.freq_x[-1] + dx / 2, m.freq_y[0] - dy / 2, m.freq_y[-1] + dy / 2)
        im = ax.imshow(mag, cmap="magma", origin="lower", extent=extent, vmin=max(mag.min(), -3), vmax=0)
        share = 100 * m.high_frequency_share()
        ax.set_title(f"{label}\nmean radius {m.mean_radius():.3f} cyc/px, >0.25: {share:.0f} %", fontsize=10)
        ax.set_xlabel("horizontal frequency (cycles / pixel)")
        ax.set_ylabel("vertical frequency (cycles / pixel)")
        fig.colorbar(im, ax=ax, label="log10 |DFT| / max", shrink=0.85)
        centres, profile = m.radial_profile()
        axes[-1].plot(centres, profile / np.nanmax(profile), marker="o", color=f"C{3 if i == 0 else 0}", label=label)
    axes[-1].set_yscale("log")
    axes[-1].set_xlabel("frequency radius (cycles / pixel)")
    axes[-1].set_ylabel("mean |DFT| in the ring / max")
    axes[-1].set_title("Radial profile", fontsize=10)
    axes[-1].grid(alpha=0.3, which="both")
    axes[-1].legend(fontsize=8)
    fig.suptitle(f"Mean Fourier magnitude, zero frequency centred (n = {n})")
    return fig


def run(ctx: Context) -> tuple[dict, Figure, list[str]]:
    v = ctx.test_views()
    gradients = input_gradients(ctx.model, ctx.test.x, ctx.test.y, batch_size=ctx.settings.batch_size)
    maps = {"PGD perturbation x_adv - x": fourier_map(v.x_adv - v.x), "input gradient dCE/dx": fourier_map(gradients)}
    metrics = {
        label: {
            "mean_radius_cycles_per_pixel": m.mean_radius(),
            "high_frequency_share_above_0.25": m.high_frequency_share(),
            "peak_cycles_per_pixel": list(m.peak()),
        }
        for label, m in maps.items()
    }
    return {**metrics, "n": len(v.x)}, figure(maps, n=len(v.x)), []


def markdown(m: dict) -> list[str]:
    out = [
        "Mean |DFT| over images and channels, zero frequency centred; radius in cycles per pixel (Nyquist 0.5). "
        "A low mean radius means low-frequency (smooth, shape-like) structure.",
        "",
        "| map | mean radius (cyc/px) | share above 0.25 cyc/px | peak (fy, fx) |",
        "|---|---:|---:|---|",
    ]
    for label, r in m.items():
        if label == "n":
            continue
        fy, fx = r["peak_cycles_per_pixel"]
        out.append(
            f"| {label} | {r['mean_radius_cycles_per_pixel']:.3f} | "
            f"{pct(r['high_frequency_share_above_0.25'])} | ({fy:.3f}, {fx:.3f}) |"
        )
    return out


register(AnalysisSpec("frequency", "Frequency saliency", "frequency.png", run, markdown))
