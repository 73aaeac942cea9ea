"""`dra-pipeline extract`: stage one from the command line (teacher, data, store, torchrun ranks)."""

from __future__ import annotations

from pathlib import Path

import click

from dra_pipeline.commands.options import COUNT0, COUNT1, DATA_DIR, DEVICE, verbosity


def _views(_ctx, _param, text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


@click.command("extract")
@click.option("--teacher", required=True, help="Registered teacher (see `teacher list`).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Teacher weights: file, folder or hub repo id.")
@click.option("--data", help="Real image source (default: the teacher's training set, train split).")
@click.option("--synthetic", multiple=True, help="DM-AT synthetic .npz files appended after the real rows.")
@DATA_DIR
@click.option("--out", type=click.Path(path_type=Path), help="Store path (default: cache/<dataset>.zarr).")
@click.option("--layer", help="Module whose output is pooled (default: the teacher's).")
@click.option("--sigma", type=float, help="Noise std of EDM-family teachers, images in [-1, 1].")
@click.option("--t", type=float, help="Timestep: DDPM/DiT steps; LightningDiT t in [0, 1], 1 = clean.")
@click.option(
    "--views", default="clean", show_default=True, callback=_views, help="Comma list: clean, flip, extra-sigma."
)
@click.option("--zero-channels", default="none", show_default=True, help="auto, none, or a comma list of channels.")
@click.option("--seed", type=COUNT0, default=0, show_default=True, help="Row r's noise comes from (seed, r).")
@click.option("--teacher-labels", type=click.Choice(["true", "fixed"]), default="true", help="Label told: true or 0.")
@click.option("--batch-size", type=COUNT1, default=256, show_default=True)
@click.option("--workers", type=COUNT1, default=1, show_default=True, help="Threads decoding images (JPEG folders).")
@click.option("--rows-per-shard", type=COUNT1, default=4096, show_default=True)
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@DEVICE
@click.option("--n", type=COUNT1, help="Only the first N rows (a smaller store, for trials).")
@click.option("--overwrite", is_flag=True, help="Replace a store made with other settings, once the new one is done.")
@verbosity
def extract(data_dir, **settings):
    """Run a frozen teacher once over every image and write pooled features into a sharded Zarr store.

    Rerunning the same command resumes. Under torchrun, rank r fills shards r, r+W, r+2W, ...
    """
    from dra_pipeline.api import extract as run_extract
    from dra_pipeline.commands.progress import progress_bar

    done = run_extract(data_dir=data_dir, progress=progress_bar, **settings)
    if done.rank == 0:
        state = "complete" if not done.missing else f"{done.missing} shards missing: rerun to resume"
        state += f" ({done.repaired} damaged shards rewritten)" if done.repaired else ""
        click.echo(
            f"{done.store}: {done.rows} rows x {len(done.views)} views x {done.dim}, "
            f"wrote {done.shards_written} shards, {state}"
        )
