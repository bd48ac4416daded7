"""Trace events as evidence tables: log lines, Redis commands, hops, tasks' lives, and a
worker's processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.table import Table
from rich.text import Text

from demo import names
from demo.errors import KitError
from demo.inspectors.pool import pool_processes
from demo.protocol.commands import short
from demo.trace import query
from demo.trace.event import TraceEvent, args_of, is_hop, who
from demo.trace.query import TaskLife


def _cells(*values: object) -> list[Text]:
    # Text, not str: rich would read "Task add[3f2c…]" as markup and eat the task id.
    return [Text(str(value)) for value in values]


def _clock(e: TraceEvent, t0: float) -> str:
    return f"+{(e['ts'] - t0) * 1000:8.1f} ms"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def logs_table(events: Sequence[TraceEvent], title: str = "log lines, by process") -> Table:
    table = _table(title, "time", "process", "name", "message")
    t0 = events[0]["ts"] if events else 0.0
    for e in query.select(events, event=names.LOG):
        message = e.get("message", "")
        table.add_row(*_cells(_clock(e, t0), who(e), e.get("process_name", ""), message))
    return table


def commands_table(
    events: Sequence[TraceEvent], title: str = "Redis commands, by sender", width: int = 70
) -> Table:
    table = _table(title, "time", "sent by", "what it does", "command")
    t0 = events[0]["ts"] if events else 0.0
    for e in query.select(events, event=names.REDIS_COMMAND):
        table.add_row(
            *_cells(_clock(e, t0), who(e), e.get("summary", ""), short(args_of(e), width))
        )
    return table


def hops_table(events: Sequence[TraceEvent], title: str = "trace hops") -> Table:
    table = _table(title, "time", "process", "hop", "details")
    t0 = events[0]["ts"] if events else 0.0
    skip = {"ts", "event", "role", "pid", "ppid", "host", "task_id", "task"}
    for e in filter(is_hop, events):
        details = ", ".join(f"{k}={v}" for k, v in e.items() if k not in skip)
        table.add_row(*_cells(_clock(e, t0), who(e), e["event"], details))
    return table


def _after(e: TraceEvent | None, t0: float) -> str:
    return "—" if e is None else f"+{e['ts'] - t0:6.2f} s"


def task_lives_table(
    lives: Sequence[TaskLife],
    t0: float,
    labels: Mapping[str, str] | None = None,
    title: str = "each task's life, seconds after the first publish",
) -> Table:
    """task | received by | received | started | ended | ran in: one row per task's life."""
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("task", "received by", "received", "started", "ended", "ran in"):
        table.add_column(column, no_wrap=True)
    for life in lives:
        table.add_row(
            (labels or {}).get(life.task_id, life.task_id[:8]),
            f"MainProcess {life.worker_pid}" if life.worker_pid else "—",
            *(_after(life[hop], t0) for hop in ("task.received", "task.prerun", "task.postrun")),
            f"child {life.child_pid}" if life.child_pid else "—",
        )
    return table


def process_table(
    main_pid: int, title: str = "the worker's processes, as the OS sees them"
) -> Table:
    table = _table(title, "pid", "ppid", "role", "started", "command")
    try:
        pool = pool_processes(main_pid)
    except KitError:  # the worker is gone: nothing to show
        return table
    for proc in (pool.main, *pool.children):
        role = "MainProcess" if proc is pool.main else "pool child"
        command = " ".join(proc.cmdline)[:60]
        table.add_row(str(proc.pid), str(proc.ppid), role, f"{proc.create_time:.3f}", command)
    return table
