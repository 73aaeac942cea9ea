"""Writing an analysis to disk: analysis.json (numbers, settings, provenance), one PNG per analysis, and an
analysis.md that shows every figure beside its numbers. Each file is written atomically."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from dra_pipeline.atomic import atomic_write, atomic_write_text

FIGURE_FILES = {
    "align-uniform": "alignment_uniformity.png",
    "cls-dim": "cls_dimension.png",
    "cknna": "cknna.png",
    "sae": "sae.png",
    "frequency": "frequency.png",
    "teacher-probe": "teacher_probe.png",
}
TITLES = {
    "align-uniform": "Alignment and uniformity",
    "cls-dim": "Classification dimension (PCA)",
    "cknna": "CKNNA: classifier vs teacher features",
    "sae": "TopK sparse autoencoders",
    "frequency": "Frequency saliency",
    "teacher-probe": "Linear probe on teacher features",
}


def write_report(analysis, out: Path, header: dict) -> list[Path]:
    """Write analysis (stages.analyze.Analysis) under `out`; header: run, checkpoint, store, settings, ...
    Returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in analysis.figures.items():
        path = out / FIGURE_FILES[name]
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        data = buffer.getvalue()
        atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
        written.append(path)
    record = {
        **header,
        "accuracy": analysis.accuracy,
        "results": analysis.metrics,
        "notes": analysis.notes,
        "seconds": analysis.seconds,
        "figures": {k: FIGURE_FILES[k] for k in analysis.figures},
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


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f} %"


def _num(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(analysis, header: dict) -> str:
    """analysis.md: provenance, then one section per analysis with its numbers, notes and figure."""
    s = header.get("settings", {})
    lines = [
        f"# Representation analysis of `{header.get('run')}`",
        "",
        f"- checkpoint: `{header.get('checkpoint')}` (epoch {header.get('epoch')}), model {header.get('model')}, "
        f"dataset {header.get('dataset')}, eps {header.get('eps')} (L-inf, pixels in [0, 1])",
        f"- feature store: `{header.get('store')}`; teacher: {header.get('teacher') or 'none'}",
        f"- n = {header.get('n_test')} test and {header.get('n_train')} training images (seed {s.get('seed')}); "
        f"PGD-{s.get('pgd_steps')} (step 2.5 eps / steps, random start, cross-entropy)",
        f"- {header.get('device')}, torch {header.get('torch')}, {header.get('wall_s')} s, {header.get('date')}",
        f"- command: `{header.get('command')}`",
    ]
    acc = analysis.accuracy
    if acc:
        lines.append(
            f"- classifier on these test images: clean {_pct(acc['clean'])}, PGD-{acc['pgd_steps']} "
            f"{_pct(acc['pgd'])} (n = {acc['n']})"
        )
    for note in header.get("notes", []):
        lines.append(f"- note: {note}")
    for name, title in TITLES.items():
        if name not in analysis.metrics and name not in analysis.notes:
            continue
        lines += ["", f"## {title}", ""]
        if name in analysis.metrics:
            lines += _SECTIONS[name](analysis.metrics[name])
        for note in analysis.notes.get(name, []):
            lines += ["", f"Note: {note}."]
        if name in analysis.figures:
            lines += ["", f"![{title}]({FIGURE_FILES[name]})"]
    return "\n".join(lines) + "\n"


def _align_uniform(m: dict) -> list[str]:
    out = [
        "Wang & Isola (2020) on L2-normalised representations: alignment = E ||u - u'||^2 over positive pairs "
        "(lower: pairs closer), uniformity = log E exp(-2 ||u_i - u_j||^2) over all pairs (lower: more spread).",
        "",
        "| representation | positive pairs | alignment | uniformity | n |",
        "|---|---|---:|---:|---:|",
    ]
    for key, r in m.items():
        out.append(
            f"| {key.replace('_', ' ')} | {r.get('positive_pairs') or '-'} | {_num(r.get('alignment'), 4)} "
            f"| {_num(r.get('uniformity'), 3)} | {r.get('n')} |"
        )
    if "uniformity_adversarial" in m.get("classifier", {}):
        value = m["classifier"]["uniformity_adversarial"]
        out += ["", f"Uniformity of the classifier's PGD representations: {value:.3f}."]
    return out


def _cls_dim(m: dict) -> list[str]:
    full = m["full_accuracy"]
    return [
        "Accuracy when the penultimate representation f is replaced by mu + U_k U_k^T (f - mu) (top-k principal "
        "components of the clean test representations) and the model's own head classifies it; PGD "
        "representations are projected onto the clean components.",
        "",
        "| | value |",
        "|---|---:|",
        f"| representation width | {m['dim']} |",
        f"| full clean / PGD accuracy | {_pct(full.get('clean'))} / {_pct(full.get('adversarial'))} |",
        f"| CLS-95 / CLS-99 (components for 95 % / 99 % of clean accuracy) | {m['cls_95']} / {m['cls_99']} |",
        f"| robust dimension 95 / 99 (same on PGD accuracy) | {m['robust_95']} / {m['robust_99']} |",
        f"| n | {m['n']} |",
    ]


def _cknna(m: dict) -> list[str]:
    out = [
        f"CKNNA (Huh et al. 2024) with k = {m['k']} mutual nearest neighbours, cosine kernels, n = {m['n']} "
        "training images; mutual kNN = mean share of shared neighbours.",
        "",
        "| representation | CKNNA | mutual kNN |",
        "|---|---:|---:|",
    ]
    for label, value in m["cknna"].items():
        out.append(f"| {label} | {value:.4f} | {m['mutual_knn'][label]:.4f} |")
    return out


def _sae(m: dict) -> list[str]:
    out = [
        f"TopK SAEs with {m['latents']} latents, trained {m['steps']} Adam steps on the clean representations of "
        f"{m['n_train']} training images; normalised MSE = ||x - x_hat||^2 / ||x - mean||^2 (0 perfect, 1 = mean).",
        "",
        "| k | " + " | ".join(m["nmse"]) + " | train clean |",
        "|---:|" + "---:|" * (len(m["nmse"]) + 1),
    ]
    for i, k in enumerate(m["ks"]):
        cells = [f"{v[i]:.4f}" for v in m["nmse"].values()] + [f"{m['train_nmse'][i]:.4f}"]
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return out


def _frequency(m: dict) -> list[str]:
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
            f"{_pct(r['high_frequency_share_above_0.25'])} | ({fy:.3f}, {fx:.3f}) |"
        )
    return out


def _teacher_probe(m: dict) -> list[str]:
    c = m["classifier_on_attacked"]
    return [
        f"Logistic regression on the teacher's pooled features of {m['n_train']} training images (L-BFGS, as "
        f"`teacher probe`); L-inf PGD-{m['steps']} at eps {m['eps']:g} through the teacher and the probe.",
        "",
        "| model | clean (all n_test) | clean (attacked) | PGD (attacked) |",
        "|---|---:|---:|---:|",
        f"| teacher + linear probe | {_pct(m['clean'])} (n = {m['n_test']}) | {_pct(m['clean_attacked'])} | "
        f"{_pct(m['pgd'])} (n = {m['n_attack']}) |",
        f"| classifier | - | {_pct(c['clean'])} | {_pct(c['pgd'])} |",
    ] + _stored_probe(m.get("stored_features_probe"))


def _stored_probe(s: dict | None) -> list[str]:
    if not s:
        return []
    return [
        "",
        f"The same probe on the stored features of the training rows (the DRA targets, fitted on {s['n_train']}, "
        f"scored on the other {s['n_test']}): {_pct(s['accuracy'])}.",
    ]


_SECTIONS = {
    "align-uniform": _align_uniform,
    "cls-dim": _cls_dim,
    "cknna": _cknna,
    "sae": _sae,
    "frequency": _frequency,
    "teacher-probe": _teacher_probe,
}
