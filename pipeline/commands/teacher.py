"""`dra-pipeline teacher`: list and convert diffusion teachers; fit, probe and massive-channels in teacher_*.py."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import verbosity
from dra_pipeline.commands.teacher_fit import teacher_fit
from dra_pipeline.commands.teacher_massive import massive_channels
from dra_pipeline.commands.teacher_probe import probe


@click.group()
@verbosity
def teacher():
    """Diffusion teachers: list them, fit one on your data, probe their layers."""


teacher.add_command(teacher_fit)
teacher.add_command(probe)
teacher.add_command(massive_channels)


@teacher.command("list")
@verbosity
def teacher_list():
    """Registered teachers with their defaults (layer, noise level, feature width, weights: path, URL or hub repo)."""
    from dra_pipeline.teachers import list_teachers
    from dra_pipeline.teachers.edm import WEIGHTS_DIR

    click.echo(f"{'name':<20} {'data':<14} {'res':>4} {'layer':<22} {'noise':>10} {'dim':>5}  checkpoint")
    for s in list_teachers():
        noise = f"{s.noise_kind}={s.noise:g}"
        packaged = "(packaged)" if (WEIGHTS_DIR / f"{s.name}.safetensors").is_file() else "(not made)"
        ckpt = s.checkpoint or ("(random weights)" if s.family == "tiny" else packaged)
        click.echo(f"{s.name:<20} {s.dataset:<14} {s.resolution:>4} {s.layer:<22} {noise:>10} {s.dim:>5}  {ckpt}")


@teacher.command("convert")
@click.argument("pkl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.safetensors")
@verbosity
def teacher_convert(pkl: Path, out: Path):
    """Convert an official EDM network pickle to safetensors, once, without executing code from the pickle."""
    from dra_pipeline.teachers.edm_checkpoint import convert_pickle_to_safetensors

    convert_pickle_to_safetensors(pkl, out)
    click.echo(f"wrote {out}")
