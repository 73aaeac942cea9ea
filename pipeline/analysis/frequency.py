"""Frequency saliency: where in the 2-D spectrum perturbations (or input gradients) put their magnitude.

map(u, v) = mean over images n and channels c of |DFT_2(delta_nc)(u, v)|, with the DFT's zero frequency shifted
to the centre (fftshift), so low frequencies sit in the middle of the image and the highest at its border.
Frequencies are in cycles per pixel, in [-1/2, 1/2) along each axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


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
