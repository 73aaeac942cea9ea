"""`dra-pipeline train`: stage two from the command line (config, data from the store, run directory)."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import DATA_DIR


@click.command("train")
@click.option("--features", type=click.Path(path_type=Path), help="Feature store from `extract` (holds the data).")
@click.option("--config", "preset", help="Preset name in configs/ or a YAML file (default: chosen from the store).")
@click.option("--set", "sets", multiple=True, help="Override one field, e.g. --set train.lr=0.2 (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory (default: runs/<preset>).")
@click.option("--lambda", "weight", type=float, help="DRA weight (shorthand for --set dra.weight=X).")
@click.option("--online-teacher", is_flag=True, help="Compute targets with the store's teacher each step.")
@DATA_DIR
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def train(features, preset, sets, out, weight, online_teacher, data_dir, dry_run):
    """Adversarial training (TRADES, DM-AT recipe) with the DRA alignment loss; rerun the same command to resume.

    --features STORE without --config trains the preset for what the store holds, DRA on. Without --features (or
    with lambda 0) it is the plain DM-AT / AT baseline.
    """
    import yaml

    from dra_pipeline.config import load_config
    from dra_pipeline.presets import recipe_config

    extra = list(sets) + ([f"dra.weight={weight}"] if weight is not None else [])
    extra += ["dra.online_teacher=true"] if online_teacher else []
    if preset is None and features is not None:
        cfg, preset, why = recipe_config(features, tuple(extra))
        click.echo(why, err=True)  # stdout stays the run's own output (with --dry-run: YAML for --config)
    else:
        cfg = load_config(preset, tuple(extra))
    if dry_run:
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return
    out = out or Path("runs") / (Path(preset).stem if preset else "train")
    from dra_pipeline.jobs.train import run_training

    run_training(cfg, features=features, out=out, data_dir=data_dir, echo=click.echo)
