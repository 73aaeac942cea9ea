"""`dra-pipeline evaluate`: clean and robust accuracy of a run's classifier, written as report.json + report.md."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import COUNT0, COUNT1, DATA_DIR, DEVICE, verbosity
from dra_pipeline.commands.types import Eps, comma_list, radius

FILE, FOLDER = click.Path(dir_okay=False, path_type=Path), click.Path(file_okay=False, path_type=Path)


@click.command("evaluate")
@click.option("--run", type=FOLDER, help="Run directory (uses its best-ema.pt; default: the newest run).")
@click.option("--checkpoint", type=FILE, help="A train checkpoint instead of a run's best-ema.pt.")
@click.option(
    "--attack", default="autoattack", show_default=True, help="autoattack, or apgd-ce,square,... (worst case)."
)
@click.option("--norm", type=click.Choice(["Linf", "L2"]), default="Linf", show_default=True, help="Threat model.")
@click.option("--eps", type=Eps(), help="Radius, pixels in [0, 1], e.g. 8/255 (default: the eps the run trained at).")
@click.option("--n", type=int, help="Evaluate N images (default: the whole split).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--data", help="Another source: an image folder (e.g. ImageNet val), .npz, .h5 or NAME:SPLIT.")
@click.option("--preprocessing", type=click.Choice(["Res256Crop224", "Crop288", "none"]), help="RobustBench's.")
@click.option("--selection", type=click.Choice(["first", "random"]), help="First n, or n drawn with a fixed seed.")
@click.option("--subset", type=FILE, help="File listing the images (row numbers or folder-relative paths).")
@click.option("--batch-size", type=COUNT1, default=500, show_default=True, help="Points per attacked batch.")
@click.option("--seed", type=COUNT0, default=0, show_default=True, help="Seeds every attack.")
@DEVICE
@click.option("--out", type=FILE, help="Report JSON (default: report.json beside the checkpoint).")
@click.option("--sanity", is_flag=True, help="Also run the sanity checks (eps grid, chance, more steps, ...).")
@click.option(
    "--eps-grid",
    callback=comma_list(radius),
    help="Also accuracy at these radii, e.g. 0,2/255,4/255,8/255 (PGD-20; L2: APGD-CE-20) -> <out>-eps-grid.png.",
)
@click.option("--model-info", is_flag=True, help="Also write a RobustBench-style <out>-model-info.json.")
@DATA_DIR
@verbosity
def evaluate(run, checkpoint, device, out, data_dir, **settings):
    """Per-point worst-case robust accuracy (AutoAttack standard by default) with 95 % intervals.

    With no arguments: the newest run's best-ema.pt on its dataset's test split at the run's eps. Rerunning the
    same command resumes an interrupted evaluation from <out>.state.json.
    """
    from dra_pipeline.api import evaluate as run_evaluation
    from dra_pipeline.commands.progress import AttackProgress
    from dra_pipeline.commands.summary import evaluation_summary

    with AttackProgress() as progress:
        done = run_evaluation(
            run, checkpoint=checkpoint, device=device, out=out, data_dir=data_dir, progress=progress, **settings
        )
    evaluation_summary(done)
