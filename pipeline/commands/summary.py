"""Result summaries that commands print."""

from __future__ import annotations

import click

from dra_pipeline.errors import DraError


def evaluation_summary(done) -> None:
    """The headline numbers, AutoAttack's flags, sanity checks, the eps grid and the files written by `evaluate`;
    a failed sanity check makes the command fail once all is printed."""
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
    grid = done.evaluation.eps_grid
    if grid is not None:
        click.echo(
            f"{grid.attack} robust accuracy by eps: "
            + ", ".join(f"{e:.4g} {100 * a:.1f} %" for e, a in zip(grid.eps, grid.robust))
        )
    written = (done.json, done.markdown, done.model_info, done.eps_grid)
    click.echo("wrote " + " and ".join(str(path) for path in written if path))
    failed = [check.name for check in done.evaluation.sanity or [] if not check.passed]
    if failed:
        raise DraError(f"sanity checks failed: {', '.join(failed)} (see {done.markdown})")
