"""Narration for scenarios 08 (pools compared) and 09 (two workers): each pool seen three
ways, who ran what, who answered a broadcast, what a warm shutdown looks like.

Tables of what demo.trace.query finds on the merged timeline, and a few reads with a
deadline. Read-only on Redis, like demo.inspectors: nothing here writes to or deletes a key.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from demo import names
from demo.errors import KitError
from demo.inspectors import pool_processes
from demo.stack import control
from demo.stack.worker import Worker
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, at, is_hop, pid_of
from demo.trace.query import TaskLife
from demo.trace.timeline import Timeline

INIT_HOPS = ("child.init", "worker.process_init")  # worker_process_init: in a child, or solo's
INIT_S, STATS_S, INSPECT_S = 20.0, 2.0, 5.0  # waits: child.init hops, inspect stats, a broadcast


@dataclass(frozen=True)
class PoolView:
    """One worker's pool from three sides: the OS, the trace, the worker's own report."""

    kind: str  # prefork, threads, solo
    main: int  # the MainProcess pid
    children: list[int]  # its OS children
    inits: list[int]  # pids that sent child.init (worker_process_init): it or its children
    stats: dict[str, Any]  # `inspect stats` → "pool"


def look(tl: Timeline, kind: str, worker: Worker, env: Mapping[str, str]) -> PoolView:
    """The pool of a started worker, once every process that will send child.init has."""
    kids = pool_processes(worker.pid).child_pids
    # prefork: each child's first hop; solo: the MainProcess's own; threads: none comes.
    # solo: worker_process_init fires in the MainProcess, which the kit names honestly.
    init_hop = "worker.process_init" if kind == "solo" else "child.init"
    for pid in kids or ([worker.pid] if kind == "solo" else []):
        what = f"the {init_hop} hop of pid {pid}"
        tl.wait_for(event=init_hop, pid=pid, timeout=INIT_S, what=what)
    stats = control.inspect_stats(env, worker.nodename, timeout=STATS_S)["pool"]
    events = tl.events()
    sent = [e for hop in INIT_HOPS for e in q.select(events, event=hop)]
    mine = (e["pid"] for e in sent if worker.pid in (e["pid"], e.get("ppid")))
    inits = sorted(pid for pid in mine if pid is not None)
    return PoolView(kind, worker.pid, kids, inits, stats)


def pools_table(views: Iterable[PoolView]) -> Table:
    table = Table(title="each pool, seen three ways", title_justify="left")
    for column in ("pool", "MainProcess", "OS children", "child.init sent by", "inspect stats"):
        table.add_column(column)
    for v in views:
        said = {k: v.stats[k] for k in ("max-concurrency", "processes", "threads") if k in v.stats}
        cells = [", ".join(map(str, pids)) or "—" for pids in (v.children, v.inits)]
        table.add_row(v.kind, str(v.main), *cells, ", ".join(f"{k}={x}" for k, x in said.items()))
    return table


def whoami_table(rows: Mapping[str, tuple[int, Mapping[str, Any], TaskLife]]) -> Table:
    """pool -> (MainProcess, what whoami returned, its life: the prerun and accepted hops)."""
    table = Table(title="who ran whoami", title_justify="left")
    for column in ("pool", "MainProcess", "returned pid", "ppid", "prerun hop pid", "accepted pid"):
        table.add_column(column)
    for kind, (main, said, life) in rows.items():
        accepted = life["task.accepted"]
        child = accepted.get("child_pid") if accepted else None
        cells = (main, said["pid"], said["ppid"], pid_of(life["task.prerun"]), child)
        table.add_row(kind, *map(str, cells))
    return table


def hop_roles(events: Iterable[TraceEvent], pid: int) -> list[str]:
    """The roles a process gave itself in its own hops (not log lines)."""
    return sorted({e["role"] for e in q.select(events, pid=pid) if is_hop(e)})


def solo_role_note(roles: Sequence[str]) -> str:
    """What to say about the roles a solo MainProcess gave itself in its hops."""
    if names.POOL_CHILD not in roles:
        return "Under solo the MainProcess's hops all say worker-main, as its commands do."
    return (
        "[yellow]Under solo the kit's hops call the MainProcess `pool-child` once solo fired "
        "worker_process_init in it (step 1): the kit's receiver of that signal takes it for a "
        "fork. Its recorded commands still say worker-main.[/]"
    )


def lives_table(lives: Mapping[str, TaskLife], t0: float, title: str) -> Table:
    """label -> a task's life: received | started | ended | received by | ran in (pid, role)."""
    table = Table(title=title, title_justify="left")
    for column in (
        "task",
        "received",
        "started",
        "ended",
        "received by",
        "ran in (its hop's role)",
    ):
        table.add_column(column, no_wrap=True)
    for label, life in lives.items():
        hops = ("task.received", "task.prerun", "task.postrun")
        when = [f"+{at(life[hop]) - t0:5.2f} s" for hop in hops]
        ran = life["task.prerun"]
        role = ran["role"] if ran else "?"
        table.add_row(label, *when, str(life.worker_pid), f"{life.child_pid} ({role})")
    return table


def share_table(
    events: Sequence[TraceEvent], workers: Mapping[str, int], task_ids: Iterable[str], title: str
) -> Table:
    """One row per worker (node -> MainProcess pid): how many of the tasks it received, and
    which of its children ran them (the prerun hop's ppid: the child may be gone)."""
    table = Table(title=title, title_justify="left")
    for column in ("worker", "MainProcess", "received", "ran in (child pid: tasks)"):
        table.add_column(column, no_wrap=True)
    ids = list(task_ids)
    for node, pid in workers.items():
        mine = [t for t in ids if q.first(events, event="task.received", task_id=t, pid=pid)]
        counts: dict[int, int] = {}
        for run in (q.first(events, event="task.prerun", task_id=t, ppid=pid) for t in mine):
            if run is not None and run["pid"] is not None:
                counts[run["pid"]] = counts.get(run["pid"], 0) + 1
        kids = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "—"
        table.add_row(node, str(pid), str(len(mine)), kids)
    return table


@dataclass(frozen=True)
class Broadcast(msg.ControlCommand):
    """One `inspect`/`control` broadcast as the processes recorded it: its PUBLISH on the
    pidbox, and what answered it."""

    replies: tuple[TraceEvent, ...]  # LPUSH <oid>.reply.celery.pidbox, one per answering worker
    reads: tuple[TraceEvent, ...]  # the client's BRPOPs on that reply list


def read_broadcast(events: Sequence[TraceEvent], method: str, after: float) -> Broadcast:
    """The last PUBLISH of `method` on the pidbox after `after`, the LPUSHes answering it
    and the BRPOPs that read them. Call it after tl.settle(): every process must have
    shipped them."""
    sent = msg.control_commands(events, method, since=after)
    if not sent:
        raise KitError(f"no PUBLISH of `{method}` on the pidbox on the timeline")
    command, later = sent[-1], q.since(events, sent[-1].ts)
    if command.reply_list is None:
        raise KitError(f"`{method}` was broadcast without reply_to: no worker answers it")
    replies = tuple(q.select(later, command="LPUSH", key=command.reply_list))
    reads = tuple(q.select(later, command="BRPOP", key=command.reply_list))
    return Broadcast(command.event, command.body, replies, reads)


def inspect(
    tl: Timeline, env: Mapping[str, str], method: str, *, workers: int, timeout: float = INSPECT_S
) -> tuple[dict[str, Any], Broadcast]:
    """`celery inspect METHOD` to every worker, done once `workers` replies came in (without
    a limit, a broadcast waits out its timeout: it cannot know how many will answer); the
    replies, and the broadcast as the processes recorded it."""
    asked = time.time()
    replies = control.inspect_all(env, method, workers=workers, timeout=timeout)
    tl.settle()  # every process has shipped its reply by now
    return replies, read_broadcast(tl.events(), method, asked)


def busy_and_idle(
    tl: Timeline, task_id: str, workers: Collection[Worker], *, timeout: float
) -> tuple[TraceEvent, Worker, Worker]:
    """The task's task.prerun, the worker whose child runs it (the hop's ppid), the other one."""
    pre = tl.wait_for(event="task.prerun", task_id=task_id, timeout=timeout, what="its prerun")
    busy = [w for w in workers if w.pid == pre.get("ppid")]
    idle = [w for w in workers if w.pid != pre.get("ppid")]
    if len(busy) != 1 or len(idle) != 1:
        raise KitError(f"task {task_id} runs in pid {pre['pid']}: not one of two workers' child")
    return pre, busy[0], idle[0]


def moments(rows: Sequence[tuple[str, float | None, int | None]], t0: float) -> Table:
    """what | when (s after t0) | which pid: a few moments of one story, in time order."""
    table = Table(title="the warm shutdown, seconds after worker-offline", title_justify="left")
    for column in ("moment", "when", "pid"):
        table.add_column(column, no_wrap=True)
    for what, when, pid in sorted(rows, key=lambda row: row[1] or float("inf")):
        said = f"+{when - t0:5.2f} s" if when else "not seen"
        table.add_row(what, said, str(pid if pid is not None else "—"))
    return table


@dataclass(frozen=True)
class WarmStop:
    """A worker's warm shutdown while one of its children ran a task, from the trace."""

    offline: TraceEvent  # its PUBLISH of worker-offline
    postrun: TraceEvent | None  # the running task's task.postrun hop, if seen
    shutdown: TraceEvent | None  # its worker.shutdown hop, if seen
    exits: dict[int, float]  # child pid -> ts of its child.shutdown hop

    @classmethod
    def read(cls, events: Sequence[TraceEvent], offline: TraceEvent, task_id: str) -> WarmStop:
        pid = offline["pid"]
        exits = {
            e["pid"]: e["ts"]
            for e in q.select(events, event="child.shutdown", ppid=pid)
            if e["pid"] is not None
        }
        return cls(
            offline,
            q.first(events, event="task.postrun", task_id=task_id),
            q.first(events, event="worker.shutdown", pid=pid),
            exits,
        )

    def table(self) -> Table:
        def row(what: str, e: TraceEvent | None) -> tuple[str, float | None, int | None]:
            return (what, e["ts"] if e else None, e["pid"] if e else None)

        rows = [
            row("worker-offline PUBLISH", self.offline),
            row("the task's task.postrun", self.postrun),
        ]
        rows += [(f"child {k} exits", ts, k) for k, ts in self.exits.items()]
        return moments([*rows, row("worker.shutdown hop", self.shutdown)], self.offline["ts"])
