"""`python -m demo live`: the X-ray of a stack that is already running, or of a trace file.

`demo up` shows it by itself. This command serves the same terminal stream and page for
a stack started elsewhere: the running `demo up`'s Redis, the one CELERY_BROKER_URL names
(docker-compose's: `CELERY_BROKER_URL=redis://127.0.0.1:6379/0`, or the compose service
`xray`), or a `--json-trace` file written by a scenario (`--trace FILE`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import click

from demo.cli.errors import one_line_errors
from demo.config import KitConfig
from demo.stack import state


@click.command("live")
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="show a --json-trace file instead of following a Redis",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 in a container")
@click.option("--port", type=int, default=0, help="the page's port (default: a free one)")
@click.option("--flower-url", default=None, help="Flower, for the links (default: the stack's)")
@click.option("--quiet", is_flag=True, help="print only what happens to the processes")
@click.option("--logs-only", is_flag=True, help="print only the worker's own log lines")
@click.option("--no-terminal", is_flag=True, help="serve the page only")
@click.option("--seconds", type=float, default=None, help="stop after N seconds")
@one_line_errors
def live_command(
    trace_path: Path | None,
    host: str,
    port: int,
    flower_url: str | None,
    quiet: bool,
    logs_only: bool,
    no_terminal: bool,
    seconds: float | None,
) -> None:
    """Watch a running stack live, in this terminal and on a page (or open a trace file)."""
    from demo.live.launch import start_live, terminal_mode
    from demo.live.server import LiveServer
    from demo.live.sources import Sources

    config = KitConfig.from_env()
    running = state.load(config.state_dir) or {}
    flower = flower_url or running.get("flower")
    stop = threading.Event()
    if trace_path is not None:
        sources = Sources(flower)
        opened = sources.open_file(trace_path)
        server = LiveServer(sources, host=host, port=port, state_dir=config.state_dir).start()
        click.echo(f"the trace {trace_path}, on {server.url}/?source={opened.key} — Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(seconds)
        server.stop()
        return
    target = state.target(config.state_dir)
    click.echo(f"using {target}", err=True)
    url = target.broker_url
    live = start_live(
        url,
        mode=terminal_mode(quiet=quiet, logs_only=logs_only, off=no_terminal),
        flower=flower,
        state_dir=config.state_dir,
        host=host,
        port=port,
        title="Redis",
    )
    click.echo(f"X-ray of {url}, live on {live.url} — Ctrl-C stops")
    live.stream()
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.5):
                if deadline is not None and time.monotonic() >= deadline:
                    break
    finally:
        live.close()
