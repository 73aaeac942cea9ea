"""`dra-pipeline analyze`: the paper's representation analyses of a run, as JSON, PNG figures and analysis.md."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import COUNT0, DATA_DIR, DEVICE, verbosity
from dra_pipeline.commands.types import comma_list


@click.command("analyze")
@click.option("--run", type=click.Path(path_type=Path), help="Run directory (default: the newest under runs/).")
@click.option("--features", type=click.Path(path_type=Path), help="Feature store (default: the run's own).")
@click.option("--what", callback=comma_list(str), help="Comma list of analyses (default: all of them).")
@click.option("--n", type=int, default=1000, show_default=True, help="Test images, and training images, used.")
@click.option("--seed", type=COUNT0, default=0, show_default=True, help="Image subsets, attack starts, SAE init.")
@click.option("--pgd-steps", type=int, default=20, show_default=True, help="PGD iterations at the run's eps.")
@click.option("--probe-n", type=int, default=200, show_default=True, help="Test images attacked through the teacher.")
@click.option("--sae-steps", type=int, default=500, show_default=True, help="Adam steps per sparse autoencoder.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: RUN/analysis).")
@DEVICE
@DATA_DIR
@verbosity
def analyze(run, features, what, n, seed, pgd_steps, probe_n, sae_steps, out, device, data_dir):
    """Representation analyses of a trained classifier: alignment/uniformity, classification dimension, CKNNA
    with the teacher features, TopK SAEs, frequency saliency, and a linear probe on the teacher (clean and PGD).

    Writes analysis.json, one PNG per analysis and analysis.md (which shows them) into --out.
    """
    from dra_pipeline.analysis.context import Settings
    from dra_pipeline.jobs.analyze import run_analyze

    what = tuple(what) if what else None
    settings = Settings(what=what, seed=seed, pgd_steps=pgd_steps, probe_attack_n=probe_n, sae_steps=sae_steps)
    md, figures, wall = run_analyze(
        run, features=features, settings=settings, n=n, out=out, device=device, data_dir=data_dir
    )
    click.echo(f"wrote {md} ({figures} figures) in {wall} s")
