"""`python -m demo bench-live`: latency from event to screen, and the live page's footprint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from demo.bench.live import MS, LiveBench, Phase, run_bench_live
from demo.cli.errors import exit_interrupted, one_line_errors

COLUMNS = "rate|achieved|tasks|shown|page p50|page p95|term p50|term p95|lines|X-ray CPU"
TABLE_W = 110  # the figures' table, whole, even in a narrow terminal


def _ms(phase_latency: float | None) -> str:
    return "—" if phase_latency is None else f"{phase_latency * MS:.0f}"


def _tables(report: LiveBench) -> tuple[Table, Table]:
    latency = Table(title="latency, event to screen (ms)")
    for column in COLUMNS.split("|"):
        latency.add_column(column, justify="right")
    phase: Phase
    for phase in report.phases:
        latency.add_row(
            f"{phase.rate:.0f}/s",
            f"{phase.achieved:.0f}/s",
            str(phase.sent),
            str(phase.shown),
            _ms(phase.page.quantile(0.5)),
            _ms(phase.page.quantile(0.95)),
            _ms(phase.terminal.quantile(0.5)),
            _ms(phase.terminal.quantile(0.95)),
            str(len(phase.terminal.samples)),
            f"{phase.kit_cpu:.0%}",
        )
    footprint = Table(title="the page and the kit after N tasks")
    for column in ("tasks", "page JS heap MB", "page DOM nodes", "kit RSS MB"):
        footprint.add_column(column, justify="right")
    for f in report.footprints:
        footprint.add_row(str(f.tasks), f"{f.heap_mb:.1f}", str(f.dom_nodes), f"{f.rss_mb:.0f}")
    return latency, footprint


@click.command("bench-live")
@click.option("--tasks", type=click.IntRange(min=100), default=10_000, show_default=True)
@click.option(
    "--fast-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="how long the 200 tasks/s phase lasts",
)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="write the figures")
@one_line_errors
def bench_live_command(
    tasks: int, fast_seconds: float, concurrency: int, json_path: Path | None
) -> None:
    """How soon the terminal and the page show a task (1 and 200 tasks/s), and what the page
    holds after many tasks (a measurement, not a test: it always exits 0 once measured)."""
    console = Console(width=max(Console().width, TABLE_W))
    try:
        report = run_bench_live(
            fast_s=fast_seconds,
            total=tasks,
            concurrency=concurrency,
            progress=lambda text: console.print(f"[dim]{text}[/]"),
        )
    except KeyboardInterrupt:
        # The Ctrl-C reached Playwright's driver too (the same terminal): its pending
        # futures would each print a traceback-like notice when collected.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        exit_interrupted(
            "interrupted: the bench's stack and browser are stopped, nothing left running"
        )
    for table in _tables(report):
        console.print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(report.as_dict(), indent=2))
        console.print(f"figures written to {json_path}")
