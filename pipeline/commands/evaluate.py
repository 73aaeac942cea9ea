"""`dra-pipeline evaluate`: clean and robust accuracy of a run's classifier, written as report.json + report.md."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dra_pipeline.commands.options import DATA_DIR


@click.command("evaluate")
@click.option("--run", type=click.Path(file_okay=False, path_type=Path), help="Run directory (uses its best-ema.pt).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), help="A train checkpoint instead.")
@click.option(
    "--attack",
    default="autoattack",
    show_default=True,
    help="autoattack (APGD-CE, APGD-T, FAB-T, Square), apgd-ce, apgd-t, fab-t, square, pgd or fgsm; "
    "a comma list is one per-point worst case.",
)
@click.option("--norm", type=click.Choice(["Linf", "L2"], case_sensitive=False), default="Linf", show_default=True)
@click.option("--eps", type=float, help="Radius, pixels in [0, 1] (default: the eps the run trained at).")
@click.option("--n", type=int, help="Evaluate the first N images of the split (default: all of them).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option(
    "--data",
    help="Evaluate on this source instead of the model's dataset split: an image folder (e.g. "
    "ImageNet's val), .npz, .h5 or NAME:SPLIT.",
)
@click.option(
    "--preprocessing",
    type=click.Choice(["Res256Crop224", "Crop288", "none"]),
    help="RobustBench's resize/crop for image folders (default Res256Crop224 for folders).",
)
@click.option(
    "--selection",
    type=click.Choice(["first", "random"]),
    help="Which n images: the first n (default for named datasets, as RobustBench) or n drawn with a fixed "
    "seed (default otherwise: folders are ordered by class).",
)
@click.option(
    "--subset",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file listing the images to evaluate, one row number or folder-relative path per line "
    "(e.g. RobustBench's 5000 ImageNet val images).",
)
@click.option("--batch-size", type=int, default=500, show_default=True, help="Points per attacked batch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds every attack (AutoAttack, PGD starts).")
@click.option("--device", help="cpu or cuda[:i] (default: cuda if available).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report JSON (default: report.json beside the checkpoint); the .md goes beside it.",
)
@click.option("--sanity", is_flag=True, help="Also run the sanity checks (eps grid, chance, more steps, ...).")
@click.option("--model-info", is_flag=True, help="Also write a RobustBench-style <out>-model-info.json.")
@DATA_DIR
def evaluate(
    run,
    checkpoint,
    attack,
    norm,
    eps,
    n,
    split,
    data,
    preprocessing,
    selection,
    subset,
    batch_size,
    seed,
    device,
    out,
    sanity,
    model_info,
    data_dir,
):
    """Per-point worst-case robust accuracy (AutoAttack standard by default) with 95 % intervals.

    With no arguments: the newest run's best-ema.pt, its dataset's test split, AutoAttack standard at the run's
    eps. An ImageNet model: --data VAL_FOLDER --n 5000 (RobustBench's Res256Crop224, 5000 images drawn with a
    fixed seed, or --subset LIST). Rerunning the same command resumes an interrupted evaluation from <out>.state.json.
    """
    from dra_pipeline.errors import DraError
    from dra_pipeline.evaluation.attacks import AUTOATTACK_STANDARD, check_norm, expand_attacks

    names = expand_attacks(attack)
    check_norm(norm, names)
    if eps is not None and not eps > 0:
        raise DraError(f"--eps must be positive (got {eps:g})")
    if batch_size < 1:
        raise DraError(f"--batch-size must be at least 1 (got {batch_size})")
    if model_info and names != list(AUTOATTACK_STANDARD):
        raise DraError("--model-info reports AutoAttack accuracy: use it with --attack autoattack")

    import torch

    from dra_pipeline.evaluation.inputs import resolve_checkpoint
    from dra_pipeline.evaluation.sanity import SanityConfig
    from dra_pipeline.evaluation.session import evaluate_checkpoint

    try:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise DraError(f"--device {device}: not a device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DraError(f"--device {device}: no CUDA device available")
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    path = resolve_checkpoint(run=run, checkpoint=checkpoint)
    with _Progress() as progress:
        done = evaluate_checkpoint(
            path,
            attacks=names,
            norm=norm,
            eps=eps,
            n=n,
            split=split,
            batch_size=batch_size,
            seed=seed,
            device=device,
            out=out,
            sanity=SanityConfig() if sanity else None,
            robustbench=model_info,
            data_dir=data_dir,
            data=data,
            preprocessing=preprocessing,
            selection=selection,
            subset=subset,
            echo=click.echo,
            progress=progress,
        )
    r, c = done.report["robust"], done.report["clean"]
    lo, hi = r["ci95"]
    click.echo(
        f"clean {100 * c['accuracy']:.2f} %, robust {100 * r['accuracy']:.2f} % "
        f"(95 % CI {100 * lo:.1f}-{100 * hi:.1f}, n {r['n']}) in {done.report['wall_s']:.0f} s"
    )
    for flag in done.evaluation.flags:
        click.echo(f"AutoAttack flag: {flag}")
    for check in done.evaluation.sanity or []:
        click.echo(f"{'pass' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
    click.echo(f"wrote {done.json} and {done.markdown}" + (f" and {done.model_info}" if done.model_info else ""))
    failed = [check.name for check in done.evaluation.sanity or [] if not check.passed]
    if failed:
        raise DraError(f"sanity checks failed: {', '.join(failed)} (see {done.markdown})")


class _Progress:
    """Per attack: a tqdm bar over its batches on a terminal, otherwise one line per batch; a line when it ends."""

    def __init__(self):
        self.bar = None
        self.tty = sys.stderr.isatty()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def __call__(self, step) -> None:
        from tqdm import tqdm

        done = step.batches_done == step.batches
        if self.tty and step.batches and (self.bar is None or self.bar.desc != step.attack):
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=step.batches, initial=step.batches_done, desc=step.attack, unit="batch", leave=False)
        elif self.bar is not None:
            self.bar.update(step.batches_done - self.bar.n)
        robust = f"robust {100 * step.robust / step.n:.2f} % ({step.robust}/{step.n})"
        if not self.tty and not done:
            click.echo(f"  {step.attack} batch {step.batches_done}/{step.batches}: {robust}, {step.seconds:.0f} s")
        if done:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            click.echo(f"  {step.attack:8s} {robust}, {step.seconds:.1f} s")
