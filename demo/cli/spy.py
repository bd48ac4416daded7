"""`python -m demo spy`: the live stream of Redis commands, one line each, with their sender.

By default it follows the trace stream: every process of the app records its own commands
(role, pid, host), at almost no cost. `--monitor` adds Redis MONITOR beside it, as a
cross-check that costs Redis and the reader CPU: a command MONITOR saw that no process
recorded (redis-cli, another application, a process without the kit, a Lua script's own
commands) is shown too, as `unknown` or `lua`, with its address. Until Ctrl-C or --seconds;
failures are one line, exit code 1.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import time
from collections import deque
from typing import Any

import click
import redis
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from demo import names
from demo.cli.errors import one_line_errors
from demo.config import KitConfig
from demo.errors import KitError
from demo.protocol.commands import short
from demo.spy.monitor import Spy
from demo.spy.record import record_events
from demo.stack import state
from demo.trace import capture
from demo.trace.event import TraceEvent, normalise
from demo.trace.timeline import Timeline

ROLE_STYLES = {
    names.CLIENT: "bold cyan",
    names.WORKER_MAIN: "bold green",
    names.POOL_CHILD: "bold yellow",
    names.FLOWER: "bold magenta",
    names.BEAT: "bold blue",
    names.LUA: "blue",
    names.SPY: "dim",
    names.UNKNOWN: "bold red",
}
RECORD_EVERY = 200  # events per stream entry, at most
FOLLOW_BLOCK_S = 0.2  # short, so that Ctrl-C and --seconds land
RECENT_S = 10.0  # how long a recorded command stays available to match a MONITOR line


def format_event(event: dict[str, Any], width: int = 200) -> Text:
    """One terminal line: time, role+pid (coloured per role), summary, the raw command."""
    ts = float(event["ts"])
    clock = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"
    role = str(event.get("role", names.UNKNOWN))
    who = f"{role}:{event['pid']}" if event.get("pid") is not None else role
    if event.get("host") and event["host"] != socket.gethostname():
        who += f"@{event['host']}"  # a process on another host said so itself
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


class _MonitorOnly:
    """MONITOR's lines that no process recorded, each handed out once it is old enough to
    be sure (capture.SHIP_GRACE_S): the rest is already on screen from the stream."""

    def __init__(self) -> None:
        self.lines: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._waiting: list[TraceEvent] = []
        self._recorded: deque[TraceEvent] = deque()

    def recorded(self, events: list[TraceEvent]) -> None:
        self._recorded.extend(events)

    def due(self) -> list[TraceEvent]:
        while not self.lines.empty():
            event = normalise(self.lines.get())
            if event is not None:
                self._waiting.append(event)
        now = time.time()
        while self._recorded and self._recorded[0]["ts"] < now - RECENT_S:
            self._recorded.popleft()
        ripe = [e for e in self._waiting if e["ts"] <= now - capture.SHIP_GRACE_S]
        self._waiting = [e for e in self._waiting if e["ts"] > now - capture.SHIP_GRACE_S]
        return capture.uncaptured(ripe, self._recorded, now=now)


def _watch(url: str, seconds: float | None, console: Console, monitor: bool) -> None:
    """Print commands as they come, until the deadline (or Ctrl-C)."""
    end = None if seconds is None else time.monotonic() + seconds
    extra = _MonitorOnly() if monitor else None
    # Named xray-*: the spy leaves the kit's own connections out of what it shows.
    recorder = redis.Redis.from_url(url, client_name=f"{names.SPY_CLIENT_NAME}-record")
    spy = Spy(url, on_event=extra.lines.put) if extra is not None else None
    source = "the processes' own records" + (" + MONITOR" if spy else "")
    with Timeline(url) as timeline, spy if spy is not None else contextlib.nullcontext():
        console.print(f"[dim]{source} on {escape(url)} — Ctrl-C stops[/dim]", highlight=False)
        while end is None or time.monotonic() < end:
            # A MONITOR-only line this spy recorded comes back from the stream: shown already.
            came = [
                e
                for e in timeline.follow(FOLLOW_BLOCK_S)
                if e["event"] == names.REDIS_COMMAND and "seen_as" not in e
            ]
            shown = came
            if extra is not None and spy is not None:
                if spy.error:
                    raise KitError(f"MONITOR lost its connection: {spy.error}") from None
                extra.recorded(came)
                unseen = extra.due()
                # What only MONITOR saw goes into the stream too, so `demo trace` shows it.
                _record(recorder, [dict(e) for e in unseen])
                shown = sorted([*came, *unseen], key=lambda e: e["ts"])
            for event in shown:
                console.print(format_event(dict(event), console.width), soft_wrap=True)


@click.command("spy")
@click.option("--seconds", type=float, default=None, help="stop after N seconds")
@click.option(
    "--monitor",
    is_flag=True,
    help="add Redis MONITOR (costly): also show commands no process recorded",
)
@one_line_errors
def spy_command(seconds: float | None, monitor: bool) -> None:
    """Watch every Redis command, with the role, pid and host of the process that sent it."""
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops watching
        url = state.stack_env(KitConfig.from_env().state_dir)["CELERY_BROKER_URL"]
        _watch(url, seconds, Console(highlight=False), monitor)
