"""Select trace events and show them as evidence: log lines, Redis commands, hops, processes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psutil
from rich.table import Table
from rich.text import Text

from demo.protocol.commands import short

Event = Mapping[str, Any]
_NOT_HOPS = {"log", "redis.command"}


def select(
    events: Iterable[Event],
    event: str | None = None,
    task_id: str | None = None,
    role: str | None = None,
    command: str | None = None,
    key: str | None = None,
) -> list[Event]:
    """The events matching every criterion given; `command` is a Redis command name, `key`
    a prefix of its first argument."""
    found = []
    for e in events:
        if event is not None and e.get("event") != event:
            continue
        if task_id is not None and e.get("task_id") != task_id:
            continue
        if role is not None and e.get("role") != role:
            continue
        args: Sequence[str] = e.get("command") or ()
        if command is not None and (not args or str(args[0]).upper() != command):
            continue
        if key is not None and (len(args) < 2 or not str(args[1]).startswith(key)):
            continue
        found.append(e)
    return found


def first(events: Iterable[Event], **criteria: Any) -> Event | None:
    matches = select(events, **criteria)
    return matches[0] if matches else None


def _cells(*values: object) -> list[Text]:
    # Text, not str: rich would read "Task add[3f2c…]" as markup and eat the task id.
    return [Text(str(value)) for value in values]


def _who(e: Event) -> str:
    return f"{e.get('role', '?')} {e.get('pid', '?')}"


def _clock(e: Event, t0: float) -> str:
    return f"+{(float(e['ts']) - t0) * 1000:8.1f} ms"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def logs_table(events: Sequence[Event], title: str = "log lines, by process") -> Table:
    table = _table(title, "time", "process", "name", "message")
    t0 = float(events[0]["ts"]) if events else 0.0
    for e in select(events, event="log"):
        table.add_row(*_cells(_clock(e, t0), _who(e), e.get("process_name", ""), e["message"]))
    return table


def commands_table(
    events: Sequence[Event], title: str = "Redis commands, by sender", width: int = 70
) -> Table:
    table = _table(title, "time", "sent by", "what it does", "command")
    t0 = float(events[0]["ts"]) if events else 0.0
    for e in select(events, event="redis.command"):
        table.add_row(
            *_cells(_clock(e, t0), _who(e), e.get("summary", ""), short(e["command"], width))
        )
    return table


def hops_table(events: Sequence[Event], title: str = "trace hops") -> Table:
    table = _table(title, "time", "process", "hop", "details")
    t0 = float(events[0]["ts"]) if events else 0.0
    skip = {"ts", "event", "role", "pid", "ppid", "host", "task_id", "task"}
    for e in events:
        if e.get("event") in _NOT_HOPS:
            continue
        details = ", ".join(f"{k}={v}" for k, v in e.items() if k not in skip)
        table.add_row(*_cells(_clock(e, t0), _who(e), e["event"], details))
    return table


def process_table(
    main_pid: int, title: str = "the worker's processes, as the OS sees them"
) -> Table:
    table = _table(title, "pid", "ppid", "role", "started", "command")
    try:
        main = psutil.Process(main_pid)
        family = [main, *main.children()]
    except psutil.NoSuchProcess:
        return table
    for proc in family:
        with proc.oneshot():
            role = "MainProcess" if proc.pid == main_pid else "pool child"
            table.add_row(
                str(proc.pid),
                str(proc.ppid()),
                role,
                f"{proc.create_time():.3f}",
                " ".join(proc.cmdline())[:60],
            )
    return table


def args_of(e: Event) -> list[str]:
    """A spied command's name and arguments as strings ([] for a trace hop)."""
    return [str(arg) for arg in e.get("command") or ()]


def pid_of(event: Event | None) -> int | None:
    return int(event["pid"]) if event is not None and event.get("pid") is not None else None


def at(event: Event | None) -> float:
    """An event's ts; +inf for an event that never happened, so order checks stay simple."""
    return float(event["ts"]) if event is not None else float("inf")
