"""The analysis figures, drawn with matplotlib's object API (no pyplot state): each function returns a Figure.

Every figure shows one analysis; titles name the quantity, axes carry units, and the caption-like subtitle
carries n. Colours: classifier clean = C0, adversarial = C3, teacher = C2, pixels = C7.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from dra_pipeline.analysis.frequency import FourierMap

DPI = 120


def alignment_uniformity(points: Sequence[dict], distances: dict[str, np.ndarray], n: int) -> Figure:
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


def cls_dimension(
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


def cknna(ks: Sequence[int], curves: dict[str, Sequence[float]], n: int, teacher: str) -> Figure:
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


def sae(ks: Sequence[int], curves: dict[str, Sequence[float]], latents: int, n_train: int) -> Figure:
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


def frequency(maps: dict[str, FourierMap], n: int) -> Figure:
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


def teacher_probe(bars: dict[str, tuple[float, float]], n_attack: int, eps: float) -> Figure:
    """Grouped bars: clean and PGD accuracy (fractions) per model, on the same attacked images."""
    fig = Figure(figsize=(6, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    names = list(bars)
    x = np.arange(len(names))
    clean = [100 * bars[k][0] for k in names]
    robust = [100 * bars[k][1] for k in names]
    for offset, values, label, colour in ((-0.2, clean, "clean", "C0"), (0.2, robust, f"PGD eps={eps:g}", "C3")):
        rects = ax.bar(x + offset, values, 0.4, label=label, color=colour)
        ax.bar_label(rects, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Linear probe on frozen teacher features (n = {n_attack} attacked)")
    ax.legend(fontsize=8)
    return fig
