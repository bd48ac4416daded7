"""`python -m demo trace TASK_ID`: one task's life as a sequence diagram, from the trace stream.

The stream holds the hops and the Redis commands every process of the app recorded (and what
only MONITOR saw, when a `python -m demo spy --monitor` was watching). Terminal by default;
`--mermaid` prints Mermaid text for the docs; `--html FILE` writes a self-contained page.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from demo import names
from demo.cli.errors import one_line_errors
from demo.config import KitConfig
from demo.errors import KitError
from demo.render.mermaid import to_mermaid
from demo.render.sequence_html import to_html
from demo.render.sequence_text import to_rich
from demo.render.tables import hops_table
from demo.stack import state
from demo.trace.sequence import build_sequence
from demo.trace.timeline import Timeline


@click.command("trace")
@click.argument("task_id")
@click.option("--mermaid", is_flag=True, help="print Mermaid sequenceDiagram text")
@click.option("--html", "html_path", type=click.Path(path_type=Path), help="write an HTML page")
@one_line_errors
def trace_command(task_id: str, mermaid: bool, html_path: Path | None) -> None:
    """Show TASK_ID's life: every hop, by process, as a sequence diagram."""
    target = state.target(KitConfig.from_env().state_dir)
    with Timeline(target.broker_url, history=True) as timeline:
        events = timeline.for_task(task_id)
    if not events:
        raise KitError(
            f"no trace event for task {task_id} in this Redis's {names.TRACE_STREAM} stream "
            f"(wrong id, XRAY_TRACE=0, or evicted from the capped stream) [{target}]"
        )
    click.echo(f"using {target}", err=True)
    sequence = build_sequence(events, task_id)
    if html_path is not None:
        html_path.write_text(to_html(sequence, f"Task {task_id}"))
        click.echo(f"wrote {html_path}")
    elif mermaid:
        click.echo(to_mermaid(sequence))
    else:
        console = Console()
        console.print(hops_table(events, title=f"hops of task {task_id}"))
        console.print(to_rich(sequence))
