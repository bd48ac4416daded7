"""Narration for the scenarios about the worker's processes (01, 05): tables of its pool
children over time, of which child ran which task, of the pids each source reports, and of
the autoscaler's decisions.

The children, the tasks they ran and when they were forked and left come from the one query
layer (demo.trace.query.children, ran_by, held); this module only draws them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from demo import names
from demo.trace import query
from demo.trace.event import TraceEvent
from demo.trace.query import Child

BAR = 40  # characters of a lifeline
_EPSILON_S = 1e-6  # a lifeline over no time at all still has cells


def _bar(child: Child, t0: float, t1: float) -> str:
    step = max(t1 - t0, _EPSILON_S) / BAR
    cells = []
    for i in range(BAR):
        t = t0 + (i + 0.5) * step
        alive = child.born <= t and (child.left is None or t < child.left)
        cells.append("━" if alive else "·")
    return "".join(cells)


def children_table(
    children: Sequence[Child],
    t0: float,
    t1: float,
    alive: Collection[int],
    title: str = "the pool's children over time",
) -> Table:
    """One row per child: when it was forked and left (ms from t0), its tasks, a lifeline."""
    table = Table(title=title, title_justify="left")
    for column in ("pid", "name", "forked", "exited", "tasks", "OS now"):
        table.add_column(column, no_wrap=True)
    table.add_column(f"lifeline: {0:.1f} s … {t1 - t0:.1f} s", no_wrap=True)

    def ms(ts: float) -> str:
        return f"{(ts - t0) * 1000:+.0f} ms"

    for c in children:
        state = "alive" if c.pid in alive else "gone"
        cells = (str(c.pid), c.name or "—", ms(c.born), "—" if c.left is None else ms(c.left))
        table.add_row(*cells, str(len(c.tasks)), state, Text(_bar(c, t0, t1)))
    return table


def tasks_table(
    task_ids: Sequence[str],
    events: Sequence[TraceEvent],
    reported: Mapping[str, int],
    title: str = "task → the process that ran it",
) -> Table:
    """One row per task: the pid of its task.prerun hop, that child's name and how many
    tasks it had run by then, and the pid the task itself returned."""
    pids = query.ran_by(events, task_ids)
    process_names = {
        e["pid"]: e["process_name"]
        for e in query.select(events, event=names.LOG)
        if e["pid"] is not None and e.get("process_name")
    }
    table = Table(title=title, title_justify="left")
    for column in ("#", "task id", "task.prerun pid", "name", "its n-th task", "task returned"):
        table.add_column(column, no_wrap=True)
    seen: dict[int, int] = {}
    for i, tid in enumerate(task_ids, 1):
        pid = pids.get(tid)
        row: tuple[str, ...] = ("—",) * 3
        if pid is not None:
            seen[pid] = seen.get(pid, 0) + 1
            row = (str(pid), process_names.get(pid, "—"), str(seen[pid]))
        table.add_row(str(i), tid[:8] + "…", *row, str(reported.get(tid, "—")))
    return table


def pids_table(views: Mapping[str, Iterable[int]], title: str) -> Table:
    """One row per source of truth: who says it, and the pids it names (sorted)."""
    table = Table(title=title, title_justify="left")
    table.add_column("who says")
    table.add_column("pids")
    for who, pids in views.items():
        table.add_row(who, ", ".join(map(str, sorted(pids))))
    return table


# celery/worker/autoscale.py `Autoscaler._grow` logs this at INFO before billiard's Pool.grow.
_SCALING_UP = re.compile(r"Scaling up (?P<n>\d+) processes\.")


@dataclass(frozen=True)
class ScaleUp:
    """One `Scaling up N processes.` of a worker's autoscaler, with what the trace says of
    that moment."""

    ts: float
    grew: int  # the N of the log line
    before: int  # the pool's processes before it: the boot children plus earlier growth
    held: int  # tasks received and not finished then (demo.trace.query.held)
    after: str  # the MainProcess's log line just before it


def scale_ups(events: Sequence[TraceEvent], worker_pid: int, boot: int) -> list[ScaleUp]:
    """Each scale-up the worker logged, in order, starting from `boot` processes."""
    found, procs, previous = [], boot, ""
    for e in query.select(events, event=names.LOG, pid=worker_pid):
        message = str(e.get("message", ""))
        m = _SCALING_UP.fullmatch(message)
        if m is not None:
            held = query.held(events, worker_pid, e["ts"])
            found.append(ScaleUp(e["ts"], int(m["n"]), procs, held, previous))
            procs += int(m["n"])
        previous = message
    return found


def scale_table(ups: Sequence[ScaleUp], t0: float) -> Table:
    """One row per scale-up: when, after which log line, tasks held against processes."""
    table = Table(title="the autoscaler's decisions", title_justify="left")
    for column in ("at", "just after", "tasks held", "processes", "log line"):
        table.add_column(column, no_wrap=True)
    for up in ups:
        after = re.sub(r"\[[0-9a-f-]{36}\]", "[…]", up.after)
        table.add_row(
            f"{(up.ts - t0) * 1000:+.0f} ms",
            after,
            str(up.held),
            f"{up.before} → {up.before + up.grew}",
            f"Scaling up {up.grew} processes.",
        )
    return table
