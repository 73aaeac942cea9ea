"""The analyses `analyze` can run, registered once: each analysis module registers its name, title, figure file,
what it needs (a feature store, the teacher network), its runner and its analysis.md section."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dra_pipeline.analysis.context import Context

DPI = 120  # resolution of every analysis figure


@dataclass(frozen=True)
class AnalysisSpec:
    name: str  # as --what names it, e.g. "cknna"
    title: str  # its analysis.md section heading
    figure: str  # its PNG file name
    run: Callable[[Context], tuple[dict, Figure, list[str]]]  # -> (JSON-able numbers, figure, notes)
    markdown: Callable[[dict], list[str]]  # numbers -> analysis.md lines
    needs_store: bool = False  # cannot run without stored teacher features
    needs_teacher: bool = False  # cannot run without the teacher network


ANALYSES: dict[str, AnalysisSpec] = {}  # in the order analysis.md shows them


def register(spec: AnalysisSpec) -> AnalysisSpec:
    if spec.name in ANALYSES:
        raise ValueError(f"analysis {spec.name!r} registered twice")
    ANALYSES[spec.name] = spec
    return spec
