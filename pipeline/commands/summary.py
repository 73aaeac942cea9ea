"""Result summaries that commands print."""

from __future__ import annotations

import click


def evaluation_summary(done) -> None:
    """The headline numbers, AutoAttack's flags, sanity checks and the files written by `evaluate`."""
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
