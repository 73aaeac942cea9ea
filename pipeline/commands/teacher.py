"""`dra-pipeline teacher`: list, fit, convert and inspect diffusion teachers."""

from __future__ import annotations

from pathlib import Path

import click

from .options import DATA_DIR


@click.group()
def teacher():
    """Diffusion teachers: list them, fit one on your data."""


@teacher.command("list")
def teacher_list():
    """Registered teachers with their defaults (layer, noise level, feature width, checkpoint path)."""
    from ..teachers import list_teachers

    click.echo(f"{'name':<20} {'data':<14} {'res':>4} {'layer':<22} {'noise':>10} {'dim':>5}  checkpoint")
    for s in list_teachers():
        noise = f"{s.noise_kind}={s.noise:g}"
        ckpt = s.checkpoint or ("(random weights)" if s.family == "tiny" else "(packaged)")
        click.echo(f"{s.name:<20} {s.dataset:<14} {s.resolution:>4} {s.layer:<22} {noise:>10} {s.dim:>5}  {ckpt}")


@teacher.command("fit")
@click.option("--data", "data_text", default="fashion-mnist", show_default=True, help="Image source to train on.")
@DATA_DIR
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
@click.option("--net", default="small", show_default=True, help="Network size: small (1.75 M) or ddpmpp (55.7 M).")
@click.option("--steps", type=int, default=20_000, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--max-minutes", type=float, default=None, help="Stop (resumably) after this much wall time.")
def teacher_fit(data_text, data_dir, out, net, steps, batch_size, lr, seed, device, max_minutes):
    """Train a class-conditional EDM SongUNet on a source; rerun the same command to resume.

    Writes OUT/ema.safetensors (usable as --checkpoint of an EDM teacher), OUT/stats.jsonl and OUT/state.pt.
    """
    import torch
    from tqdm import tqdm

    from ..data import open_source
    from ..data.indexed import IndexedImages
    from ..teachers.fit import FitConfig, fit, network_config

    if device == "cpu":
        torch.set_flush_denormal(True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    images = IndexedImages([open_source(data_text, data_dir=data_dir)])
    cfg = FitConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    with tqdm(total=steps, desc="teacher fit", unit="step", mininterval=2) as bar:
        path = fit(images, network_config(net, images), cfg, out, device=device, max_minutes=max_minutes,
                   progress=lambda step: bar.update(step - bar.n))  # fmt: skip
    click.echo(f"EMA weights: {path}")


@teacher.command("convert")
@click.argument("pkl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.safetensors")
def teacher_convert(pkl: Path, out: Path):
    """Convert an official EDM network pickle to safetensors, once, without executing code from the pickle."""
    from ..teachers.edm_pickle import convert_pickle_to_safetensors

    convert_pickle_to_safetensors(pkl, out)
    click.echo(f"wrote {out}")
