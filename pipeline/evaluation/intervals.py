"""Accuracy with its n and a 95 % Wilson score interval (Wilson 1927), the interval reported beside every figure."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n is 0.

    Unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse to a point at k = 0 or k = n.
    """
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Accuracy:
    correct: int
    n: int

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson(self.correct, self.n)

    def to_dict(self) -> dict:
        lo, hi = self.ci95
        return {"accuracy": self.value, "correct": self.correct, "n": self.n, "ci95": [lo, hi], "interval": "Wilson"}

    def __str__(self) -> str:
        lo, hi = self.ci95
        return f"{100 * self.value:.2f} % ({self.correct}/{self.n}, 95 % CI {100 * lo:.1f}-{100 * hi:.1f})"
