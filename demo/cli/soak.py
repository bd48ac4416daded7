"""`python -m demo soak`: many mails, SMTP outages and killed pool children; what arrived."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from demo.cli.errors import exit_interrupted, one_line_errors
from demo.cli.notes import private_redis


@click.command("soak")
@click.option("--mails", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--outage-s",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="how long each SMTP outage lasts",
)
@click.option(
    "--deadline-s",
    type=click.FloatRange(min=1),
    default=None,
    help="give up waiting after this (default: from --mails)",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="write the report")
@one_line_errors
def soak_command(
    mails: int, concurrency: int, outage_s: float, deadline_s: float | None, json_path: Path | None
) -> None:
    """Send MAILS mails, half acked early, half late, through a stack of the soak's own, with
    two SMTP outages and two pool children killed; count them by Message-ID.

    Exit code 0 when every loss and duplicate is explained, 1 otherwise.
    """
    from demo.soak.runner import run_soak

    for line in private_redis("soak"):
        click.echo(line)
    click.echo(f"soak: {mails} mails, -c {concurrency}, SMTP outages of {outage_s:.0f} s")
    try:
        report = run_soak(
            mails,
            concurrency=concurrency,
            outage_s=outage_s,
            deadline_s=deadline_s,
            progress=click.echo,
        )
    except KeyboardInterrupt:
        # The soak's stack has stopped by then (Stack.stop holds off further Ctrl-Cs). No
        # count: mails still on their way would read as lost.
        exit_interrupted(
            "\ninterrupted: the soak's stack is stopped, nothing left running; no count"
        )
    for line in report.lines():
        click.echo(line)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
    if not report.explained:
        sys.exit(1)
