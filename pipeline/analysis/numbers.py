"""Numbers as analysis.md prints them: '-' for missing values."""

from __future__ import annotations

import math


def pct(x) -> str:
    """A fraction in [0, 1] as a percentage with one decimal."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f} %"


def num(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
