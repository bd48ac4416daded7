"""Helpers for scenarios 08 (pools compared) and 09 (two workers): who ran what, who wrote
the result, who answered a broadcast, all read from the merged timeline.

Pure functions of trace events, rich tables of them, and a few reads with a deadline.
Read-only on Redis, like demo.inspectors: nothing here writes to or deletes a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rich.table import Table

from demo.errors import KitError
from demo.inspectors import pool_processes
from demo.scenes import processes as proc
from demo.scenes import results as res
from demo.stack.worker import Worker
from demo.trace.event import TraceEvent, pid_of
from demo.trace.timeline import Timeline

Event = TraceEvent
RESULT_PREFIX = "celery-task-meta-"  # celery/backends/base.py KeyValueStoreBackend
PIDBOX = "/0.celery.pidbox"  # kombu's fanout topic for the `celery.pidbox` exchange
REPLY_SUFFIX = ".reply.celery.pidbox"  # <oid>.reply.celery.pidbox: one list per client


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
        proc.wait_hop(tl, init_hop, pid, timeout=20)
    stats = res.worker_stats(env, worker.nodename)["pool"]
    inits = sorted(
        sender
        for e in tl.events()
        if e.get("event") in {"child.init", "worker.process_init"}
        and (sender := e["pid"]) is not None
        and worker.pid in (sender, e.get("ppid"))
    )
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


def whoami_table(
    rows: Mapping[str, tuple[int, Mapping[str, Any], Event | None, Event | None]],
) -> Table:
    """pool -> (MainProcess, what whoami returned, its task.prerun hop, its task.accepted hop)."""
    table = Table(title="who ran whoami", title_justify="left")
    for column in ("pool", "MainProcess", "returned pid", "ppid", "prerun hop pid", "accepted pid"):
        table.add_column(column)
    for kind, (main, said, pre, acc) in rows.items():
        cells = (main, said["pid"], said["ppid"], pid_of(pre), acc and acc.get("child_pid"))
        table.add_row(kind, *map(str, cells))
    return table


def hop(events: Iterable[Event], name: str, task_id: str) -> Event | None:
    """The first `name` hop carrying this task id."""
    return next((e for e in events if e.get("event") == name and e.get("task_id") == task_id), None)


def hop_roles(events: Iterable[Event], pid: int) -> list[str]:
    """The roles a process gave itself in its own hops (not the spy's guess, not log lines)."""
    skip = ("log", "redis.command")
    return sorted(
        {str(e["role"]) for e in events if e.get("pid") == pid and e["event"] not in skip}
    )


def solo_role_note(roles: Sequence[str]) -> str:
    """What to say about the roles a solo MainProcess gave itself in its hops."""
    if "pool-child" not in roles:
        return "Under solo the MainProcess's hops all say worker-main, as the spy does."
    return (
        "[yellow]Under solo the kit's hops call the MainProcess `pool-child` once solo fired "
        "worker_process_init in it (step 1): the kit's receiver of that signal takes it for a "
        "fork. Only the spy's role (from the command line) says worker-main.[/]"
    )


def brpops(
    events: Iterable[Event], pid: int, queue: str, after: float, before: float
) -> list[Event]:
    """The BRPOPs on `queue` that `pid` sent strictly between two moments."""
    return [
        e
        for e in events
        if e.get("pid") == pid
        and proc.is_command(e, "BRPOP", queue)
        and after < float(e["ts"]) < before
    ]


def who(e: Event | None) -> tuple[str, int, int]:
    """(role, pid, ppid) of the sender; ("", 0, 0) for an event never seen."""
    if e is None:
        return ("", 0, 0)
    return e["role"], e["pid"] or 0, e.get("ppid") or 0


def wait_brpop(tl: Timeline, pid: int, queue: str, timeout: float = 15.0) -> Event:
    """The first BRPOP on `queue` sent by `pid`, waiting for it on the timeline."""

    def asked(e: Event) -> bool:
        return proc.is_command(e, "BRPOP", queue) and e.get("pid") == pid

    return tl.wait_for(asked, timeout=timeout, what=f"a BRPOP {queue} from pid {pid}")


def hop_is(e: Event, name: str, pid: int) -> bool:
    return e.get("event") == name and e.get("pid") == pid


def offline_of(pid: int) -> Callable[[Event], bool]:
    """A predicate: `pid` PUBLISHed worker-offline (celery/worker/heartbeat.py, Heart.stop)."""
    return lambda e: (
        proc.is_command(e, "PUBLISH")
        and str(e["command"][1]).endswith(".celeryev/worker.offline")
        and e.get("pid") == pid
    )


def moments(rows: Sequence[tuple[str, float | None, int | None]], t0: float) -> Table:
    """what | when (s after t0) | which pid: a few moments of one story, in time order."""
    table = Table(title="the warm shutdown, seconds after worker-offline", title_justify="left")
    for column in ("moment", "when", "pid"):
        table.add_column(column, no_wrap=True)
    for what, when, pid in sorted(rows, key=lambda row: row[1] or 1e18):
        at = f"+{when - t0:5.2f} s" if when else "not seen"
        table.add_row(what, at, str(pid if pid is not None else "—"))
    return table


def setex(events: Iterable[Event], task_id: str) -> Event | None:
    """The spy's SETEX of the task's result key: who really wrote the result."""
    key = RESULT_PREFIX + task_id
    return next((e for e in events if proc.is_command(e, "SETEX", key)), None)


@dataclass(frozen=True)
class Run:
    """One task's life on one worker, from its hops: received, started, ended, by whom."""

    label: str
    task_id: str
    received: float
    started: float
    ended: float
    received_by: int  # pid of the task.received hop (the worker's MainProcess)
    ran_in: int  # pid of the task.prerun hop
    role: str  # the role that process gave itself in that hop


def wait_runs(tl: Timeline, labels: Mapping[str, str], timeout: float) -> dict[str, Run]:
    """label -> Run, once every task id in `labels` has its task.postrun hop on the timeline."""
    end = time.monotonic() + timeout
    while True:
        events = tl.events()
        found = {
            tid: [hop(events, n, tid) for n in ("task.received", "task.prerun", "task.postrun")]
            for tid in labels
        }
        if all(all(h is not None for h in hops) for hops in found.values()):
            break
        if time.monotonic() >= end:
            missing = [labels[t] for t, hops in found.items() if any(h is None for h in hops)]
            raise KitError(f"not ended within {timeout} s: {', '.join(missing)}")
        time.sleep(0.05)
    runs = {}
    for tid, (got, pre, post) in found.items():
        assert got is not None and pre is not None and post is not None  # checked above
        runs[labels[tid]] = Run(
            labels[tid],
            tid,
            float(got["ts"]),
            float(pre["ts"]),
            float(post["ts"]),
            (got["pid"] or 0),
            (pre["pid"] or 0),
            str(pre.get("role")),
        )
    return runs


def runs_table(runs: Iterable[Run], t0: float, title: str) -> Table:
    """task | received | started | ended | received by | ran in (pid, role)."""
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
    for r in runs:
        at = [f"+{ts - t0:5.2f} s" for ts in (r.received, r.started, r.ended)]
        table.add_row(r.label, *at, str(r.received_by), f"{r.ran_in} ({r.role})")
    return table


def ts(e: Event | None) -> float:
    """An event's time; 0.0 for a missing event."""
    return e["ts"] if e is not None else 0.0


def since(events: Iterable[Event], after: float) -> list[Event]:
    return [e for e in events if float(e.get("ts") or 0.0) > after]


@dataclass(frozen=True)
class Broadcast:
    """One `inspect`/`control` broadcast as the spy saw it."""

    publish: Event  # PUBLISH /0.celery.pidbox by the client
    body: dict[str, Any]  # the command it carried: method, destination, reply_to, ticket
    replies: tuple[Event, ...]  # LPUSH <oid>.reply.celery.pidbox, one per answering worker
    reads: tuple[Event, ...]  # the client's BRPOPs on that reply list


def broadcast(events: Sequence[Event], method: str, after: float) -> Broadcast:
    """The last PUBLISH of `method` on the pidbox after `after`, the LPUSHes answering it
    and the BRPOPs that read them. Call it after tl.settle(): the spy must have seen them."""
    published = [
        (e, proc.event_body(e)) for e in proc.published(since(events, after), ".celery.pidbox")
    ]
    mine = [(e, body) for e, body in published if body.get("method") == method]
    if not mine:
        raise KitError(f"no PUBLISH of `{method}` on {PIDBOX} seen: is the spy running?")
    publish, body = mine[-1]
    reply_list = str(body["reply_to"]["routing_key"]) + REPLY_SUFFIX
    later = since(events, float(publish["ts"]))
    replies = tuple(e for e in later if proc.is_command(e, "LPUSH", reply_list))
    reads = tuple(e for e in later if proc.is_command(e, "BRPOP", reply_list))
    return Broadcast(publish, body, replies, reads)


def inspect(
    tl: Timeline, r: redis.Redis, env: Mapping[str, str], method: str, workers: int
) -> tuple[dict[str, Any], Broadcast]:
    """`celery inspect METHOD` to every worker, done once `workers` replies came in (without
    a limit, a broadcast waits out its timeout: it cannot know how many will answer); the
    replies, and the broadcast as the spy saw it."""
    from demo.stack.control import control_app  # imports celery: only when asked

    asked = time.time()
    inspector = control_app(env).control.inspect(limit=workers, timeout=5)
    replies: dict[str, Any] = getattr(inspector, method)() or {}
    tl.settle()  # the spy has shown every reply by now
    return replies, broadcast(tl.events(), method, asked)


@dataclass(frozen=True)
class WarmStop:
    """A worker's warm shutdown while one of its children ran a task, from the trace."""

    offline: Event  # its PUBLISH of worker-offline
    postrun: Event | None  # the running task's task.postrun hop, if seen
    shutdown: Event | None  # its worker.shutdown hop, if seen
    exits: dict[int, float]  # child pid -> ts of its child.shutdown hop

    @classmethod
    def read(cls, events: Sequence[Event], offline: Event, task_id: str) -> WarmStop:
        pid = offline["pid"]
        down = next(
            (e for e in events if e.get("event") == "worker.shutdown" and e["pid"] == pid), None
        )
        exits = {
            (e["pid"] or 0): float(e["ts"])
            for e in events
            if e.get("event") == "child.shutdown" and e.get("ppid") == pid
        }
        return cls(offline, hop(events, "task.postrun", task_id), down, exits)

    def table(self) -> Table:
        def row(what: str, e: Event | None) -> tuple[str, float | None, int | None]:
            return (what, e["ts"] if e else None, e["pid"] if e else None)

        rows = [
            row("worker-offline PUBLISH", self.offline),
            row("the task's task.postrun", self.postrun),
        ]
        rows += [(f"child {k} exits", ts, k) for k, ts in self.exits.items()]
        return moments([*rows, row("worker.shutdown hop", self.shutdown)], self.offline["ts"])


def received_by(events: Iterable[Event], task_ids: Iterable[str]) -> dict[str, list[int]]:
    """task id -> the pids of every task.received hop for it (one per delivery)."""
    found: dict[str, list[int]] = {tid: [] for tid in task_ids}
    for e in events:
        if e.get("event") == "task.received" and e.get("task_id") in found:
            found[str(e["task_id"])].append(e["pid"] or 0)
    return found


def share_table(
    workers: Mapping[str, int],
    got: Mapping[str, Sequence[int]],
    ran: Mapping[str, int],
    children: Mapping[int, int],
    title: str,
) -> Table:
    """One row per worker: its MainProcess, how many tasks it received, which children ran them.

    `children` maps a child pid to its parent, read from the hops (the child may be gone)."""
    table = Table(title=title, title_justify="left")
    for column in ("worker", "MainProcess", "received", "ran in its children (pid: tasks)"):
        table.add_column(column, no_wrap=True)
    for node, pid in workers.items():
        mine = [tid for tid, pids in got.items() if pid in pids]
        counts: dict[int, int] = {}
        for tid in mine:
            if children.get(ran.get(tid, -1)) == pid:
                counts[ran[tid]] = counts.get(ran[tid], 0) + 1
        kids = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "—"
        table.add_row(node, str(pid), str(len(mine)), kids)
    return table


def parents(events: Iterable[Event]) -> dict[int, int]:
    """pid -> ppid for every process that sent a trace hop (the spy's events included)."""
    return {(e["pid"] or 0): (e.get("ppid") or 0) for e in events if e.get("pid") and e.get("ppid")}


def log_lines(log: Path, needle: str) -> list[str]:
    """The lines of a worker's log file containing `needle`: what Celery printed with
    `safe_say` (straight to stdout, not through logging, so not in the trace)."""
    if not log.exists():
        return []
    return [line.strip() for line in log.read_text(errors="replace").splitlines() if needle in line]
