"""The paper's representation analyses of one trained classifier (and, given its store, of the teacher features).

`analyze` takes everything as explicit inputs (a Context: model, images, stored features, teacher, settings) and
returns numbers and figures; pipeline/analysis/report.py writes them to disk. Which analyses exist, and what each
computes, is pipeline/analysis (one module per analysis, registered once); which run is `settings.what`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from dra_pipeline.analysis import ANALYSES
from dra_pipeline.analysis.context import Context
from dra_pipeline.errors import DraError

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    metrics: dict  # analysis name -> JSON-able numbers
    figures: dict[str, Figure]  # analysis name -> figure
    notes: dict[str, list[str]] = field(default_factory=dict)  # analysis name -> remarks for analysis.md
    seconds: dict[str, float] = field(default_factory=dict)  # analysis name -> wall time
    accuracy: dict = field(default_factory=dict)  # the classifier's clean and PGD accuracy on the test images


def selected(what: tuple[str, ...] | None) -> tuple[str, ...]:
    """The analyses to run, in registry order (None: all); unknown names are one clear line."""
    if what is None:
        return tuple(ANALYSES)
    unknown = [w for w in what if w not in ANALYSES]
    if unknown or not what:
        raise DraError(f"unknown analyses {unknown or list(what)}; choose from {','.join(ANALYSES)}")
    return tuple(name for name in ANALYSES if name in what)


def analyze(ctx: Context) -> Analysis:
    """Run the selected analyses on ctx.model (eval mode) at L-inf radius ctx.eps (pixels in [0, 1]). Analyses whose
    inputs are missing (no store, no teacher) are skipped with a note."""
    out = Analysis(metrics={}, figures={})
    for name in selected(ctx.settings.what):
        spec = ANALYSES[name]
        if spec.needs_store and ctx.stored is None:
            out.notes[name] = ["skipped: no feature store (pass --features)"]
            continue
        if spec.needs_teacher and ctx.teacher is None:
            out.notes[name] = ["skipped: no teacher (the store's teacher could not be rebuilt, or no store)"]
            continue
        log.info(f"{name} ...")
        start = time.perf_counter()
        metrics, fig, notes = spec.run(ctx)
        out.seconds[name] = round(time.perf_counter() - start, 2)
        out.metrics[name], out.figures[name] = metrics, fig
        if notes:
            out.notes[name] = notes
        log.info(f"{name} done in {out.seconds[name]:.1f} s")
    if "test" in ctx._cache:
        v = ctx.test_views()
        out.accuracy = {"clean": v.accuracy, "pgd": v.adv_accuracy, "n": len(v.x), "pgd_steps": ctx.settings.pgd_steps}
    return out
