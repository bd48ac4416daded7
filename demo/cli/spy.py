"""`python -m demo spy`: the live, attributed stream of Redis commands, one line each.

Wired into demo/cli/__init__.py as a subcommand; it MONITORs the running stack's Redis (or the one
CELERY_BROKER_URL names) until Ctrl-C or --seconds. Failures are one line, exit code 1.
"""

from __future__ import annotations

import queue
import sys
import time
from typing import Any

import click
import redis
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from demo import names
from demo.config import KitConfig
from demo.errors import KitError
from demo.protocol.commands import short
from demo.spy.monitor import Spy
from demo.spy.record import record_events
from demo.stack import state
from envoi_mails.settings import SettingsError

ROLE_STYLES = {
    names.CLIENT: "bold cyan",
    names.WORKER_MAIN: "bold green",
    names.POOL_CHILD: "bold yellow",
    names.FLOWER: "bold magenta",
    names.LUA: "blue",
    names.SPY: "dim",
    names.UNKNOWN: "bold red",
}
RECORD_EVERY = 200  # events per stream entry, at most


def format_event(event: dict[str, Any], width: int = 200) -> Text:
    """One terminal line: time, role+pid (coloured per role), summary, the raw command."""
    ts = float(event["ts"])
    clock = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"
    role = str(event.get("role", names.UNKNOWN))
    who = f"{role}:{event['pid']}" if event.get("pid") is not None else role
    if event.get("via") == names.LUA:
        who += " (lua)"
    line = Text(f"{clock} ")
    line.append(f"{who:<22}", style=ROLE_STYLES.get(role, "white"))
    line.append(f" {event.get('summary', '')}")
    line.append(f"  {short(event.get('command', []), width=max(width // 2, 40))}", style="dim")
    return line


def _record(recorder: redis.Redis | None, batch: list[dict[str, Any]]) -> None:
    """Add what the spy saw to the trace stream, so `demo trace` shows the commands too."""
    if recorder is None or not batch:
        return
    record_events(recorder, batch)
    batch.clear()


def _watch(target: state.Target, seconds: float | None, console: Console, record: bool) -> None:
    """Print events as the spy delivers them, until the deadline (or Ctrl-C)."""
    url = target.broker_url
    lines: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    end = None if seconds is None else time.monotonic() + seconds
    # Named xray-*: the spy leaves the kit's own connections out of what it shows.
    name = f"{names.SPY_CLIENT_NAME}-record"
    recorder = redis.Redis.from_url(url, client_name=name) if record else None
    batch: list[dict[str, Any]] = []
    with Spy(url, on_event=lines.put) as spy:
        console.print(f"[dim]MONITOR on {escape(str(target))} — Ctrl-C stops[/dim]", soft_wrap=True)
        while end is None or time.monotonic() < end:
            try:
                event = lines.get(timeout=0.2)  # short, so that Ctrl-C and --seconds land
            except queue.Empty:
                _record(recorder, batch)
                if spy.error:
                    raise KitError(f"the spy lost its connection: {spy.error}") from None
                continue
            console.print(format_event(event, console.width), soft_wrap=True)
            batch.append(event)
            if len(batch) >= RECORD_EVERY:
                _record(recorder, batch)
        _record(recorder, batch)


@click.command("spy")
@click.option("--seconds", type=float, default=None, help="stop after N seconds")
@click.option(
    "--record/--no-record",
    default=True,
    help=f"also add what it sees to the {names.TRACE_STREAM} stream (for `demo trace`)",
)
def spy_command(seconds: float | None, record: bool) -> None:
    """Watch every Redis command, with the role and pid of the process that sent it."""
    console = Console(highlight=False)
    try:
        _watch(state.target(KitConfig.from_env().state_dir), seconds, console, record)
    except KeyboardInterrupt:
        pass
    except (KitError, SettingsError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
