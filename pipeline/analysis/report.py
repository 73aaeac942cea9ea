"""Writing an analysis to disk: analysis.json (numbers, settings, provenance), one PNG per analysis, and an
analysis.md that shows every figure beside its numbers. Each file is written atomically."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from dra_pipeline.analysis.numbers import pct
from dra_pipeline.analysis.registry import ANALYSES
from dra_pipeline.atomic import atomic_write, atomic_write_text


def write_report(analysis, out: Path, header: dict) -> list[Path]:
    """Write analysis (stages.analyze.Analysis) under `out`; header: run, checkpoint, store, settings, ...
    Returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in analysis.figures.items():
        path = out / ANALYSES[name].figure
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        data = buffer.getvalue()
        atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
        written.append(path)
    record = {
        **header,
        "accuracy": analysis.accuracy,
        "results": analysis.metrics,
        "analysis_notes": analysis.notes,  # per analysis; header["notes"] are the run's
        "seconds": analysis.seconds,
        "figures": {k: ANALYSES[k].figure for k in analysis.figures},
    }
    atomic_write_text(out / "analysis.json", json.dumps(_clean(record), indent=1) + "\n")
    atomic_write_text(out / "analysis.md", markdown(analysis, header))
    return [*written, out / "analysis.json", out / "analysis.md"]


def _clean(value):
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown(analysis, header: dict) -> str:
    """analysis.md: provenance, then one section per analysis with its numbers, notes and figure."""
    s, env = header.get("settings", {}), header.get("environment", {})
    lines = [
        f"# Representation analysis of `{header.get('run')}`",
        "",
        f"- checkpoint: `{header.get('checkpoint')}` (epoch {header.get('epoch')}), model {header.get('model')}, "
        f"dataset {header.get('dataset')}, eps {header.get('eps')} (L-inf, pixels in [0, 1])",
        f"- feature store: `{header.get('store')}`; teacher: {header.get('teacher') or 'none'}",
        f"- n = {header.get('n_test')} test and {header.get('n_train')} training images (seed {s.get('seed')}); "
        f"PGD-{s.get('pgd_steps')} (step 2.5 eps / steps, random start, cross-entropy)",
        f"- {env.get('device_name')} ({env.get('device')}), torch {env.get('versions', {}).get('torch')}, "
        f"{header.get('wall_s')} s, {env.get('date')}",
        f"- command: `{header.get('command')}`",
    ]
    acc = analysis.accuracy
    if acc:
        lines.append(
            f"- classifier on these test images: clean {pct(acc['clean'])}, PGD-{acc['pgd_steps']} "
            f"{pct(acc['pgd'])} (n = {acc['n']})"
        )
    for note in header.get("notes", []):
        lines.append(f"- note: {note}")
    for name, spec in ANALYSES.items():
        if name not in analysis.metrics and name not in analysis.notes:
            continue
        lines += ["", f"## {spec.title}", ""]
        if name in analysis.metrics:
            lines += spec.markdown(analysis.metrics[name])
        for note in analysis.notes.get(name, []):
            lines += ["", f"Note: {note}."]
        if name in analysis.figures:
            lines += ["", f"![{spec.title}]({spec.figure})"]
    return "\n".join(lines) + "\n"
