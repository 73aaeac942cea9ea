"""EDM's deterministic sampler (Karras et al. 2022, Algorithm 2 with S_churn = 0): 2nd-order Heun on the ODE

    dx/dt = (x - D(x; t)) / t,      with sigma(t) = t and s(t) = 1,

from x_0 = t_0 n, n ~ N(0, I), over the time steps of eq. 5 down to t_N = 0. Shapes: x (N, C, H, W) in the
denoiser's pixel units ([-1, 1] for EDM); t in the same units (noise standard deviation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0  # EDM's defaults (Table 1, "Ours")

Denoiser = Callable[[Tensor, Tensor, Tensor | None], Tensor]  # D(x (N, C, H, W); sigma (N,), one-hot labels)


def edm_time_steps(
    num_steps: int = 18, *, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> Tensor:
    """EDM eq. 5: t_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then t_N = 0.

    Returns float64 (num_steps + 1,): t_0 = sigma_max, ..., t_{N-1} = sigma_min, t_N = 0.
    """
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2, got {num_steps}")
    i = torch.arange(num_steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    t = (a + i / (num_steps - 1) * (b - a)) ** rho
    return torch.cat([t, t.new_zeros(1)])


@torch.no_grad()
def heun_sample(
    denoiser: Denoiser,
    noise: Tensor,
    labels: Tensor | None = None,
    *,
    num_steps: int = 18,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
) -> Tensor:
    """Integrate the probability-flow ODE from t_0 = sigma_max to 0 with 2 num_steps - 1 denoiser calls.

    noise: standard normal n (N, C, H, W); labels: one-hot (N, label_dim) or None. Returns float64 x_N, the
    denoised images (N, C, H, W). The state is kept in float64 (as EDM does); the denoiser sees float32.
    """
    t = edm_time_steps(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho).to(noise.device)
    n = noise.shape[0]

    def d(x: Tensor, t_i: Tensor) -> Tensor:  # dx/dt = (x - D(x; t)) / t
        sigma = t_i.float().expand(n)
        return (x - denoiser(x.float(), sigma, labels).double()) / t_i

    x = noise.double() * t[0]
    for i in range(num_steps):
        d_i = d(x, t[i])
        x_next = x + (t[i + 1] - t[i]) * d_i  # Euler step
        if i < num_steps - 1:  # t_{i+1} != 0: 2nd-order correction (trapezoid); none on the last step to 0
            x_next = x + (t[i + 1] - t[i]) * (d_i + d(x_next, t[i + 1])) / 2
        x = x_next
    return x
