"""`dra-pipeline analyze`: the paper's representation analyses of a run, as JSON, PNG figures and analysis.md."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import DATA_DIR

ANALYSES = ("align-uniform", "cls-dim", "cknna", "sae", "frequency", "teacher-probe")  # = stages.analyze.ANALYSES


def _what(_ctx, _param, value: str) -> tuple[str, ...]:
    names = tuple(w.strip() for w in value.split(",") if w.strip())
    unknown = [w for w in names if w not in ANALYSES]
    if unknown or not names:
        raise click.BadParameter(f"unknown analyses {unknown or [value]}; choose from {','.join(ANALYSES)}")
    return names


@click.command("analyze")
@click.option("--run", type=click.Path(path_type=Path), help="Run directory (default: the newest under runs/).")
@click.option("--features", type=click.Path(path_type=Path), help="Feature store (default: the run's own).")
@click.option(
    "--what", default=",".join(ANALYSES), show_default=True, callback=_what, help="Comma-separated analyses to run."
)
@click.option("--n", type=int, default=1000, show_default=True, help="Test images, and training images, used.")
@click.option("--seed", type=int, default=0, show_default=True, help="Image subsets, attack starts, SAE init.")
@click.option("--pgd-steps", type=int, default=20, show_default=True, help="PGD iterations at the run's eps.")
@click.option(
    "--probe-n",
    type=int,
    default=200,
    show_default=True,
    help="Test images attacked through the teacher (teacher-probe).",
)
@click.option("--sae-steps", type=int, default=500, show_default=True, help="Adam steps per sparse autoencoder.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: RUN/analysis).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@DATA_DIR
def analyze(run, features, what, n, seed, pgd_steps, probe_n, sae_steps, out, device, data_dir):
    """Representation analyses of a trained classifier: alignment/uniformity, classification dimension, CKNNA
    with the teacher features, TopK SAEs, frequency saliency, and a linear probe on the teacher (clean and PGD).

    Writes analysis.json, one PNG per analysis and analysis.md (which shows them) into --out.
    """
    import datetime
    import time

    import torch

    from dra_pipeline.analysis.inputs import load_inputs
    from dra_pipeline.analysis.report import write_report
    from dra_pipeline.checkpoints import newest_run
    from dra_pipeline.stages.analyze import Settings, settings_dict
    from dra_pipeline.stages.analyze import analyze as run_analyses

    start = time.perf_counter()
    run = run or newest_run("runs")
    if device == "cpu":
        torch.set_flush_denormal(True)
    inputs = load_inputs(run, features=features, n=n, seed=seed, what=what, data_dir=data_dir, device=device)
    info = inputs.classifier.info
    settings = Settings(what=what, seed=seed, pgd_steps=pgd_steps, probe_attack_n=probe_n, sae_steps=sae_steps)
    views = tuple(inputs.store.layout.views) if inputs.store is not None else ("clean",)
    result = run_analyses(
        inputs.classifier.model,
        eps=info["eps"],
        num_classes=info["num_classes"],
        test=inputs.test,
        train=inputs.train,
        stored=inputs.stored,
        views=views,
        teacher=inputs.teacher,
        settings=settings,
        log=lambda msg: click.echo(msg, err=True),
    )
    prov = inputs.store.provenance if inputs.store is not None else {}
    teacher = (
        (
            f"{prov.get('teacher')} (layer {prov.get('layer')}, {prov.get('noise_kind', 'sigma')} "
            f"{prov.get('noise')}, seed {prov.get('seed')})"
        )
        if prov
        else None
    )
    header = {
        "run": str(run),
        "checkpoint": str(inputs.classifier.checkpoint),
        "epoch": inputs.classifier.epoch,
        "model": info["name"],
        "dataset": info["dataset"],
        "eps": info["eps"],
        "store": str(inputs.store_path) if inputs.store_path else None,
        "store_views": list(views),
        "teacher": teacher,
        "n_test": len(inputs.test.x),
        "n_train": len(inputs.train.x),
        "settings": settings_dict(settings),
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": _command(run, features, what, n, seed, pgd_steps, probe_n, sae_steps),
        "notes": inputs.notes,
    }
    header["wall_s"] = round(time.perf_counter() - start, 1)
    out = out or Path(run) / "analysis"
    write_report(result, out, header)
    click.echo(f"wrote {out / 'analysis.md'} ({len(result.figures)} figures) in {header['wall_s']} s")


def _command(run, features, what, n, seed, pgd_steps, probe_n, sae_steps) -> str:
    """The command that reproduces this analysis, with every setting spelled out."""
    store = f" --features {features}" if features else ""
    return (
        f"dra-pipeline analyze --run {run}{store} --what {','.join(what)} --n {n} --seed {seed} "
        f"--pgd-steps {pgd_steps} --probe-n {probe_n} --sae-steps {sae_steps}"
    )
