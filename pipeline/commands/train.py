"""`dra-pipeline train`: stage two from the command line (config, data from the store, run directory)."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import COUNT0, COUNT1, DATA_DIR, TRAIN_DEVICE, verbosity

PRESET = " (shorthand for --set train.{}=X; default: the preset's)"


@click.command("train")
@click.option("--features", type=click.Path(path_type=Path), help="Feature store from `extract` (holds the data).")
@click.option("--config", "preset", help="Preset name in configs/ or a YAML file (default: chosen from the store).")
@click.option("--set", "sets", multiple=True, help="Override one field, e.g. --set train.lr=0.2 (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory (default: runs/<preset>).")
@click.option("--lambda", "weight", type=float, help="DRA weight (shorthand for --set dra.weight=X).")
@TRAIN_DEVICE
@click.option("--seed", type=COUNT0, help="Seeds batches, crops and attack starts" + PRESET.format("seed"))
@click.option("--epochs", type=COUNT1, help="Epochs" + PRESET.format("epochs"))
@click.option("--lr", type=float, help="Peak learning rate" + PRESET.format("lr"))
@click.option("--batch-size", type=COUNT1, help="Global batch, all processes" + PRESET.format("batch_size"))
@click.option("--online-teacher", is_flag=True, help="Compute targets with the store's teacher each step.")
@DATA_DIR
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
@verbosity
@click.pass_context
def train(ctx, features, preset, sets, out, weight, device, online_teacher, data_dir, dry_run, **knobs):
    """Adversarial training (TRADES, DM-AT recipe) with the DRA alignment loss; rerun the same command to resume.

    --features STORE without --config trains the preset for what the store holds, DRA on. Without --features (or
    with lambda 0) it is the plain DM-AT / AT baseline. --device is train.device when given (default: the preset's).
    """
    from dra_pipeline import api
    from dra_pipeline.commands.progress import progress_bar

    given = ctx.get_parameter_source("device") != click.core.ParameterSource.DEFAULT
    knobs.update(device=device if given else None, dra_weight=weight, online_teacher=online_teacher or None)
    if dry_run:  # stdout is the config alone (usable as --config); the preset's reason goes to stderr
        import yaml

        cfg, _ = api.train_config(features, config=preset, sets=sets, **knobs)
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return
    api.train(features, config=preset, out=out, sets=sets, data_dir=data_dir, progress=progress_bar, **knobs)
