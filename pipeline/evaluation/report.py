"""report.json and report.md for an evaluation, and the optional RobustBench-style model-info JSON.

The JSON holds everything needed to judge and reproduce the figure: clean and robust accuracy with n and a 95 %
Wilson interval, the robust accuracy after each attack of the cascade, eps, norm, seed, batch size, every
attack's settings, AutoAttack's flags, the sanity checks, the model and data provenance, package versions,
device and wall time, and per-point outcomes (np.packbits of the clean and robust flags, row i = bit i, as hex)
so that two models evaluated on the same points can be compared pairwise. With an eps grid, the accuracy against
eps goes into both reports and a figure, <stem>-eps-grid.png.
"""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path

import numpy as np

from dra_pipeline.atomic import atomic_write, atomic_write_text
from dra_pipeline.environment import environment
from dra_pipeline.errors import DraError
from dra_pipeline.evaluation.intervals import Accuracy


def build_report(evaluation, *, model: dict, data: dict, wall_s: float, state: dict | None = None) -> dict:
    """The report as a dict. `evaluation` is a stages.evaluate.Evaluation; `model` and `data` describe what was
    evaluated (checkpoint, hash, model_info; source, fingerprint, rows); `state` where progress was kept."""
    worst = evaluation.worst
    n = len(worst.clean)
    clean = Accuracy(int(worst.clean.sum()), n)
    robust = Accuracy(int(worst.robust.sum()), n)
    cascade = [
        {
            "attack": a.name,
            "given": a.given,
            "broken": a.broken,
            "robust_after": Accuracy(a.robust_after, n).to_dict(),
            "seconds": round(a.seconds, 3),
            "settings": a.settings,
        }
        for a in worst.attacks
    ]
    return {
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": model,
        "trial": model.get("trial"),  # {rows, of}: the model was trained on a trial store (extract --n)'s first rows
        "data": data,
        "attack": {
            "attacks": [a.name for a in worst.attacks],
            "norm": evaluation.norm,
            "eps": evaluation.eps,
            "seed": evaluation.seed,
            "batch_size": evaluation.batch_size,
            "worst_case": "per point: robust only if correct on the clean image and under every attack",
        },
        "clean": clean.to_dict(),
        "robust": robust.to_dict(),
        "per_attack": cascade,
        "autoattack_flags": evaluation.flags,
        "sanity": None if evaluation.sanity is None else [c.to_dict() for c in evaluation.sanity],
        "eps_grid": None if evaluation.eps_grid is None else evaluation.eps_grid.to_dict(),
        "environment": environment(evaluation.device),
        "wall_s": round(wall_s, 3),
        "attack_s": round(sum(a.seconds for a in worst.attacks), 3),
        "resume": {**(state or {}), "restored_batches": worst.restored_batches},
        "points": {
            "encoding": "hex of numpy.packbits(flags) (big-endian bit order); row i of the points is bit i",
            "clean": np.packbits(worst.clean).tobytes().hex(),
            "robust": np.packbits(worst.robust).tobytes().hex(),
        },
    }


def trial_line(trial: dict) -> str:
    """What a report says of a model trained on a trial store (extract --n): 'trial run: trained on N of M rows'."""
    return f"trial run: trained on {trial['rows']:,} of {trial['of']:,} rows (extract --n); not a full result"


def point_flags(report: dict, which: str) -> np.ndarray:
    """The per-point `which` ("clean" or "robust") outcomes of a report as bools, shape (n,), row i = point i."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(report["points"][which]), dtype=np.uint8))
    return bits[: report[which]["n"]].astype(bool)


def _pct(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{100 * d['accuracy']:.2f} % | {d['correct']}/{d['n']} | {100 * lo:.1f}-{100 * hi:.1f} %"


def render_markdown(report: dict, figure: str | None = None) -> str:
    """report.md; `figure` names the eps-grid PNG beside it, when there is one."""
    a, m, d, env = report["attack"], report["model"], report["data"], report["environment"]
    lines = [
        f"# Evaluation of {m.get('checkpoint', 'a model')}",
        "",
        f"{m.get('name', '?')} on {d.get('source', '?')} ({d.get('selection', '')}), {a['norm']} eps {a['eps']:g}, "
        f"seed {a['seed']}, batch size {a['batch_size']}. Robust accuracy is the per-point worst case over "
        f"{', '.join(a['attacks']) or 'no attack'}.",
        *(["", f"**{trial_line(report['trial']).capitalize()}.**"] if report.get("trial") else []),
        "",
        "| | accuracy | correct / n | 95 % CI (Wilson) |",
        "|---|---:|---:|---:|",
        f"| clean | {_pct(report['clean'])} |",
        f"| robust | {_pct(report['robust'])} |",
        "",
        "| after attack | robust accuracy | correct / n | 95 % CI | given | broken | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    cascade = report["per_attack"]
    lines += [
        f"| {c['attack']} | {_pct(c['robust_after'])} | {c['given']} | {c['broken']} | {c['seconds']:.1f} |"
        for c in cascade
    ]
    lines += ["", "Attack settings:", ""]
    lines += [f"- {c['attack']}: " + ", ".join(f"{k} {v}" for k, v in c["settings"].items()) for c in cascade]
    flags = report["autoattack_flags"]
    lines += ["", "AutoAttack flags: " + ("none" if not flags else ""), *[f"- {f}" for f in flags]]
    if report["sanity"] is not None:
        lines += ["", "## Sanity checks", "", "| check | result | measured |", "|---|---|---|"]
        for c in report["sanity"]:
            detail = c["detail"].replace("|", "\\|")  # a bare | would end the table cell
            lines.append(f"| {c['name']} | {'pass' if c['passed'] else '**FAIL**'} | {detail} |")
    grid = report.get("eps_grid")
    if grid:
        lines += ["", f"## Accuracy against eps ({grid['attack']}, n {grid['n']})", ""]
        lines += ["| eps | robust: worst case up to eps | attack at eps alone |", "|---:|---:|---:|"]
        rows = zip(grid["eps"], grid["robust"], grid["alone"])
        lines += [f"| {e:.4g} ({255 * e:.3g}/255) | {100 * r:.2f} % | {100 * a:.2f} % |" for e, r, a in rows]
        lines += ["", f"![robust accuracy against eps]({figure})"] if figure else []
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    restored = report["resume"].get("restored_batches", 0)
    lines += [
        "",
        f"Machine: {env['device_name']} ({env['device']}, {env['torch_threads']} torch threads); {versions}.",
        f"Wall time {report['wall_s']:.1f} s (attacks {report['attack_s']:.1f} s, summed over resumed runs)"
        + (f"; {restored} batches restored from the saved state." if restored else "."),
        f"Checkpoint sha256 {m.get('sha256', '?')[:16]}, data fingerprint {d.get('fingerprint', '?')}; "
        f"written {report['created']}.",
        "",
    ]
    return "\n".join(lines)


REPORT_KEYS = ("model", "data", "attack", "clean", "robust", "points")  # every report.json holds these
MODEL_INFO_KEYS = ("threat_model", "autoattack_acc", "clean_acc")  # and every model-info JSON these
STATE_KEYS = ("format", "key", "attacks")  # and every resumable evaluation state (evaluation/state.py)
EPS_GRID_TITLE = "dra-pipeline eps grid"  # PNG metadata: marks a figure this tool wrote (and may replace)
_MAX_REPORT_BYTES = 64 << 20  # a larger file is not one of our reports (and is not read to find out)


def report_paths(json_path: Path) -> dict[str, Path]:
    """Every file an evaluation writes for `json_path`: report JSON, report.md, resumable state, model info."""
    json_path = Path(json_path)
    return {
        "json": json_path,
        "markdown": json_path.with_suffix(".md"),
        "state": json_path.with_name(json_path.stem + ".state.json"),
        "model_info": json_path.with_name(json_path.stem + "-model-info.json"),
        "eps_grid": json_path.with_name(json_path.stem + "-eps-grid.png"),
    }


def check_report_target(json_path: Path, *, model_info: bool = False, eps_grid: bool = False) -> None:
    """Refuse (one DraError line) a report path that would replace anything but an earlier report of this tool:
    a checkpoint, a store, a folder, any other file. `json_path` must end in .json; the siblings written with it
    (report_paths: report.md, the resumable state, with model_info the model-info JSON, with eps_grid the figure) are
    checked too."""
    json_path = Path(json_path)
    if json_path.suffix != ".json":
        raise DraError(f"--out {json_path}: a report is a .json file (report.md is written beside it)")
    paths = report_paths(json_path)
    ours = {
        "json": _holds_keys(REPORT_KEYS),
        "markdown": _is_report_markdown,
        "state": _holds_keys(STATE_KEYS),
        "model_info": _holds_keys(MODEL_INFO_KEYS),
        "eps_grid": _is_eps_grid_png,
    }
    for kind, is_ours in ours.items():
        path = paths[kind]
        if (kind == "model_info" and not model_info) or (kind == "eps_grid" and not eps_grid):
            continue
        if path.exists() and not (path.is_file() and is_ours(path)):
            what = "a folder" if path.is_dir() else "a file this tool did not write as a report"
            raise DraError(f"{path} exists and is {what}; it is left alone: choose another --out")


def _holds_keys(keys: tuple[str, ...]):
    def check(path: Path) -> bool:
        if path.stat().st_size > _MAX_REPORT_BYTES:
            return False
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(d, dict) and all(k in d for k in keys)

    return check


def _is_report_markdown(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"# Evaluation of "
    except OSError:
        return False


def _is_eps_grid_png(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x89PNG" and EPS_GRID_TITLE.encode() in f.read(4096)
    except OSError:
        return False


def draw_eps_grid(grid: dict, title: str):
    """A matplotlib Figure of a report's eps grid: robust accuracy (%) against eps, the attack alone dotted."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6), dpi=110, layout="constrained")
    ax = fig.subplots()
    eps = [255 * e for e in grid["eps"]]
    ax.plot(eps, [100 * a for a in grid["robust"]], marker="o", color="C3", label="worst case up to eps")
    ax.plot(eps, [100 * a for a in grid["alone"]], ls=":", marker=".", color="C7", label=f"{grid['attack']} alone")
    ax.set(xlabel="eps (x 1/255)", ylabel=f"accuracy (%, n = {grid['n']})", ylim=(0, 100), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def write_reports(report: dict, json_path: Path) -> tuple[Path, Path]:
    """report.json at `json_path` and report.md beside it (same stem), each replaced atomically; with an eps grid,
    its figure <stem>-eps-grid.png too."""
    json_path = Path(json_path)
    paths = report_paths(json_path)
    figure = None
    if report.get("eps_grid"):
        buffer = io.BytesIO()
        title = f"{report['model'].get('name', '')} {report['attack']['norm']}"
        draw_eps_grid(report["eps_grid"], title).savefig(buffer, format="png", metadata={"Title": EPS_GRID_TITLE})
        atomic_write(paths["eps_grid"], lambda tmp: tmp.write_bytes(buffer.getvalue()))
        figure = paths["eps_grid"].name
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(paths["markdown"], render_markdown(report, figure))
    return json_path, paths["markdown"]


def model_info(report: dict, *, name: str) -> dict:
    """A RobustBench-style model-info entry (their model_info/<dataset>/<threat>/<name>.json fields). Fields only
    the authors know (paper link, venue, extra data) are left empty to fill in by hand."""
    a, m = report["attack"], report["model"]
    return {
        "link": "",
        "name": name,
        "authors": "",
        "additional_data": None,
        "number_forward_passes": 1,
        "dataset": m.get("dataset"),
        "venue": "",
        "architecture": m.get("name"),
        "eps": f"{a['eps']:g}",
        "threat_model": a["norm"],
        "clean_acc": f"{100 * report['clean']['accuracy']:.2f}",
        "reported": "",
        "autoattack_acc": f"{100 * report['robust']['accuracy']:.2f}",
        "n_points": report["robust"]["n"],
        "footnote": f"AutoAttack standard (pyautoattack), seed {a['seed']}, first {report['robust']['n']} test points"
        + (f"; {trial_line(report['trial'])}" if report.get("trial") else ""),
        "unreliable": any(not c["passed"] for c in report["sanity"] or []) or bool(report["autoattack_flags"]),
    }
