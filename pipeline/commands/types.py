"""Value types of command-line options: radii written as fractions, comma lists."""

from __future__ import annotations

import math

import click


def radius(text) -> float:
    """A radius >= 0 (pixels in [0, 1]): a finite number or a fraction such as 8/255; ValueError otherwise."""
    from dra_pipeline.config import fraction

    value = fraction(text)
    if not 0 <= value < math.inf:
        raise ValueError(f"{text!r} is not a radius >= 0")
    return value


class Eps(click.ParamType):
    """A radius > 0 (pixels in [0, 1]): a finite number or a fraction such as 8/255."""

    name = "eps"

    def convert(self, value, param, ctx) -> float:
        try:
            number = radius(value)
        except (TypeError, ValueError, ZeroDivisionError):
            number = 0.0
        if not number > 0:
            self.fail(f"{value!r} is not a positive finite number or a fraction such as 8/255", param, ctx)
        return number


def comma_list(kind=str):
    """A click callback: 'a,b,a' -> [kind(a), kind(b)], each value once in its first place (None when the option is
    absent), one clear line otherwise."""

    def parse(_ctx, param, text):
        if text is None:
            return None
        try:
            return list(dict.fromkeys(kind(v.strip()) for v in text.split(",") if v.strip()))
        except (ValueError, ZeroDivisionError):
            raise click.BadParameter(f"expected a comma list of {kind.__name__} values, got {text!r}") from None

    return parse
