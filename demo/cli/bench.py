"""`python -m demo bench`: plain Celery, traced, and traced with MONITOR, side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from demo.bench import variants as variants_mod
from demo.bench.report import MODES, SPY
from demo.bench.runner import run_bench
from demo.cli.errors import exit_interrupted, one_line_errors
from demo.cli.notes import private_redis


@click.command("bench")
@click.option("--tasks", type=click.IntRange(min=1), default=1500, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="write the report")
@click.option(
    "--no-monitor",
    is_flag=True,
    help="plain and traced only: the MONITOR lane takes half a run's time",
)
@click.option(
    "--variant",
    "variant_texts",
    multiple=True,
    metavar="NAME=VAR=VALUE[,VAR=VALUE…]",
    help="one more lane, traced with these variables on top (repeatable); e.g. "
    "hops=XRAY_COMMANDS=0, or aa=XRAY_TRACE=0 for an A/A check",
)
@one_line_errors
def bench_command(
    tasks: int,
    rounds: int,
    concurrency: int,
    json_path: Path | None,
    no_monitor: bool,
    variant_texts: tuple[str, ...],
) -> None:
    """Throughput of plain Celery, traced, and traced with MONITOR, side by side.

    Exit code 0 on PASS, FAIL and INCONCLUSIVE (this is a measurement); 1 if a part failed
    or results went missing (then there is nothing to measure).
    """
    try:
        variants = [variants_mod.parse(text) for text in variant_texts]
        variants_mod.check_unique(variants)
    except variants_mod.VariantError as error:
        raise click.BadParameter(str(error), param_hint="--variant") from None
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a log file gets the whole table, not 80 columns of it
    for line in private_redis("bench"):
        console.print(line, highlight=False)
    modes = tuple(m for m in MODES if not (no_monitor and m == SPY))
    console.print(
        f"bench: {len(modes) + len(variants)} modes × {rounds} rounds × {tasks} add tasks, "
        f"-c {concurrency}" + "".join(f"\n  variant {v.label}" for v in variants),
        highlight=False,
    )
    try:
        report = run_bench(
            tasks,
            rounds,
            concurrency,
            progress=lambda m: console.print(m.line()),
            modes=modes,
            variants=variants,
        )
    except KeyboardInterrupt:
        # run_bench has stopped every lane by then, whatever more Ctrl-Cs came meanwhile.
        exit_interrupted("interrupted: every lane is stopped, nothing left running.")
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
    if report.complete:
        console.print(report.table())
    style = {"PASS": "bold green", "INCONCLUSIVE": "bold yellow"}.get(report.outcome, "bold red")
    console.print(report.verdict(), style=style)
    console.print(f"worker and client logs: {report.run_dir}")
    if not report.complete:
        sys.exit(1)


@click.command("bench-capture")
def bench_capture_command() -> None:
    """What recording one Redis command costs the process that sends it (µs)."""
    from demo.bench.capture_cost import measure

    click.echo(measure().line())


@click.command("bench-flush")
@one_line_errors
def bench_flush_command() -> None:
    """What one flush of the trace costs, in its process and in Redis: fixed, and per event."""
    from demo.bench.flush_cost import measure

    click.echo(measure().line())
