"""Narration for scenarios 06 (a task fails, retries) and 07 (a pool child killed mid-task).

What the processes recorded, decoded: the messages that carried a task (LPUSH/RPUSH) and its
reservations in `unacked` (HSET … HDEL), where its message is now, a message a sweep put back;
a pool child killed by pid; an SMTP sink that stays down until the story starts it.
Questions about the trace go through demo.trace.query; read-only on Redis; every wait has a
deadline.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
from rich.table import Table

from demo import inspectors, names
from demo.errors import KitError
from demo.protocol.commands import short
from demo.stack.procs import free_port
from demo.stack.smtp_sink import SmtpSink
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, args_of, command_name, who
from demo.trace.timeline import Timeline

WAIT_S = 30.0  # a task's hops and commands land on the timeline within this


def settled(
    tl: Timeline,
    task_id: str,
    *,
    state: str | None = None,
    hops: Iterable[str] = (),
    timeout: float = WAIT_S,
) -> list[TraceEvent]:
    """The task's events, once each of `hops` (and with `state`, a task.postrun in that state)
    is on the timeline and every process has shipped the commands it sent so far.

    Each process ships its hops every 0.1 s: the MainProcess's may land after the child's.
    """
    for hop in hops:
        tl.wait_for(event=hop, task_id=task_id, timeout=timeout, what=f"the {hop} hop")
    if state is not None:
        what = f"the {state} postrun"
        tl.wait_for(event="task.postrun", task_id=task_id, state=state, timeout=timeout, what=what)
    tl.settle()
    return tl.for_task(task_id)


def wait_running(tl: Timeline, task_id: str, *, timeout: float = WAIT_S) -> int:
    """The pid of the pool child running the task, once both sides said it started: the
    MainProcess (task.accepted, the child's ACK on its pipe) and the child (task.prerun)."""
    accepted = tl.wait_for(
        event="task.accepted", task_id=task_id, timeout=timeout, what="the child's ACK"
    )
    started = tl.wait_for(
        event="task.prerun", task_id=task_id, timeout=timeout, what="the task's prerun"
    )
    if accepted.get("child_pid") != started["pid"] or started["pid"] is None:
        raise KitError(f"ACK from {accepted.get('child_pid')} but prerun in {started['pid']}")
    return started["pid"]


def by_connection(events: Sequence[TraceEvent]) -> list[TraceEvent]:
    """The events, each spy event labelled with the process that opened its connection.

    A pool child forked after the MainProcess connected (the replacement of a killed child)
    inherits the parent's open sockets: the OS then lists two pids for one connection and
    the spy may name either. Only the process that opened a connection uses it (Celery
    resets its connection pools after a fork), so a command the spy gives to a child of the
    address's first sender is the first sender's. (A child only: a port reused later by an
    unrelated process keeps its own label.)
    """
    owners: dict[str, TraceEvent] = {}
    out: list[TraceEvent] = []
    for e in sorted(events, key=lambda x: x["ts"]):
        addr = e.get("addr")
        if e["event"] != names.REDIS_COMMAND or not addr or addr == names.LUA:
            out.append(e)
            continue
        first = owners.setdefault(addr, e)
        if first["pid"] is not None and e.get("ppid") == first["pid"]:
            e = {**e, "pid": first["pid"], "ppid": first.get("ppid"), "role": first["role"]}
        out.append(e)
    return out


def meta_view(meta: Mapping[str, Any] | None, *, lines: int = 3) -> dict[str, Any]:
    """The stored JSON for display: the traceback cut to its last `lines` lines."""
    view = dict(meta or {})
    tb = view.get("traceback")
    if isinstance(tb, str):
        view["traceback"] = ["…", *tb.strip().splitlines()[-lines:]]
    return view


def pushes_table(found: Sequence[msg.Pushed], t0: float, title: str) -> Table:
    """One row per message: when, by whom, onto which list, its retries, eta, redelivered."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "sent by", "command", "retries", "eta", "redelivered"):
        table.add_column(column, no_wrap=True)
    for p in found:
        ts = p.ts
        eta = "—" if p.eta is None else f"+{p.eta - ts:.2f} s after this push"
        what = short(args_of(p.event)[:2], width=30)
        row = (f"+{ts - t0:6.2f} s", who(p.event), what, str(p.retries), eta, str(p.redelivered))
        table.add_row(*row)
    return table


@dataclass(frozen=True)
class Reservation:
    """A delivery of the task: HSET unacked <tag> (reserved), then the HDEL of that tag."""

    tag: str
    reserved: TraceEvent
    released: TraceEvent | None  # the ack, or the requeue's HDEL; None while still reserved


def reservations(events: Sequence[TraceEvent], task_id: str) -> list[Reservation]:
    found = []
    releases = q.select(events, command="HDEL", key=names.UNACKED)
    for e in q.select(events, command="HSET", key=names.UNACKED, task_id=task_id):
        tag = args_of(e)[2]
        later = (x for x in releases if args_of(x)[2:3] == [tag] and x["ts"] >= e["ts"])
        found.append(Reservation(tag, e, next(later, None)))
    return found


@dataclass(frozen=True)
class Wait:
    """A retry's message from its publication to its start: where its eta was spent."""

    push: msg.Pushed  # the LPUSH of the retry (retries > 0)
    reserved: TraceEvent | None  # the MainProcess's HSET unacked that took it off the list
    released: TraceEvent | None  # the HDEL of that reservation: the ack when a child started it
    started: TraceEvent | None  # the task.prerun of that try

    @property
    def eta(self) -> float:
        return self.push.eta or self.push.ts

    def reserved_before_eta(self, worker_pid: int) -> bool:
        r = self.reserved
        return r is not None and r["pid"] == worker_pid and r["ts"] < self.eta

    def started_after_eta(self, slack_s: float = 0.05) -> bool:
        """Started and released not before the eta (slack: the worker's timer converts the
        eta to its monotonic clock, the trace stamps wall-clock time)."""
        ends = (self.released, self.started)
        return all(e is not None and e["ts"] >= self.eta - slack_s for e in ends)


def retry_waits(events: Sequence[TraceEvent], task_id: str) -> list[Wait]:
    """One Wait per retry message of the task, each matched with what followed it."""
    held = reservations(events, task_id)
    waits = []
    for push in (p for p in msg.pushes(events, [task_id]) if p.retries):
        after = push.ts
        taken = next((h for h in held if h.reserved["ts"] > after), None)
        run = q.first(events, event="task.prerun", task_id=task_id, since=after)
        reserved, released = (taken.reserved, taken.released) if taken else (None, None)
        waits.append(Wait(push, reserved, released, run))
    return waits


def waits_table(waits: Sequence[Wait], t0: float, title: str) -> Table:
    """retries | pushed | reserved | eta | released (acked) | started, seconds from t0."""
    table = Table(title=title, title_justify="left")
    for column in ("retries", "pushed by", "pushed", "reserved", "eta", "acked", "started in"):
        table.add_column(column, no_wrap=True)

    def at(e: TraceEvent | None) -> str:
        return "—" if e is None else f"+{e['ts'] - t0:.2f} s"

    for w in waits:
        started = "—" if w.started is None else f"{at(w.started)} (pid {w.started['pid']})"
        row = (at(w.push.event), at(w.reserved), f"+{w.eta - t0:.2f} s", at(w.released), started)
        table.add_row(str(w.push.retries), who(w.push.event), *row)
    return table


@dataclass(frozen=True)
class Whereabouts:
    """Where a task's message is now: copies in the queue's lists, entries in `unacked`."""

    queued: int
    reserved: tuple[inspectors.Reserved, ...]

    @property
    def gone(self) -> bool:
        return not self.queued and not self.reserved

    def __str__(self) -> str:
        held = ", ".join(f"retries={e.message.summary.get('retries')}" for e in self.reserved)
        return f"in the list: {self.queued}; in unacked: {len(self.reserved)} {held}".strip()


PEEK, UNACKED_LIMIT = 200, 500  # enough to see every message of a scenario


def whereabouts(r: redis.Redis, queue: str, task_id: str) -> Whereabouts:
    view = inspectors.queue_view(r, queue, peek=PEEK)
    queued = sum(m.task_id == task_id for sub in view.sub_queues for m in sub.next_messages)
    held = inspectors.unacked(r, limit=UNACKED_LIMIT).entries
    return Whereabouts(queued, tuple(e for e in held if e.message.task_id == task_id))


def kill_child(worker_pid: int, pid: int, *, deadline_s: float = 10.0) -> float:
    """SIGKILL one pool child of a worker the scenario started; when the signal was sent.

    Refuses any pid that is not a child of that worker: the kit ends only what it started.
    """
    try:
        child = psutil.Process(pid)
        if child.ppid() != worker_pid:
            raise KitError(f"pid {pid} is not a child of worker {worker_pid}: not killing it")
        sent = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=deadline_s)
    except psutil.NoSuchProcess:
        raise KitError(f"pool child {pid} was already gone: the task ended too soon") from None
    except psutil.TimeoutExpired:
        raise KitError(f"pool child {pid} still alive {deadline_s} s after SIGKILL") from None
    return sent


def transaction(events: Sequence[TraceEvent], inside: TraceEvent) -> list[TraceEvent]:
    """The commands of the (WATCH …) MULTI … EXEC that `inside` belongs to, on its connection
    (MONITOR shows a transaction's commands when EXEC runs them, in order)."""
    same = q.select(events, event=names.REDIS_COMMAND, addr=inside.get("addr"))
    said = [command_name(e) for e in same]
    mark = (inside["ts"], args_of(inside))
    at = next(i for i, e in enumerate(same) if (e["ts"], args_of(e)) == mark)
    multi = max((i for i in range(at + 1) if said[i] == "MULTI"), default=at)
    after = max((i for i in range(multi) if said[i] == "EXEC"), default=-1)
    watch = [i for i in range(after + 1, multi) if said[i] == "WATCH"]
    end = next((i for i in range(at, len(same)) if said[i] == "EXEC"), at)
    return same[(watch or [multi])[0] : end + 1]


@contextlib.contextmanager
def smtp_sink_down(folder: Path) -> Iterator[SmtpSink]:
    """An SMTP sink on a free port, not started: whoever connects is refused until
    `.start()`. Stopped on the way out, whatever happened."""
    sink = SmtpSink(free_port(), folder)
    try:
        yield sink
    finally:
        sink.stop()


@dataclass(frozen=True)
class Redelivery:
    """A task published once and put back by a visibility-timeout sweep, from the trace."""

    published: list[msg.Pushed]  # the client's LPUSH
    back: list[msg.Pushed]  # the sweeping worker's RPUSH
    reserved: list[TraceEvent]  # the worker's ZADD unacked_index
    received: list[TraceEvent]  # its task.received hops
    reads: list[TraceEvent]  # the pool children's GETs on the result key
    writes: list[q.ResultWrite]

    @classmethod
    def read(
        cls, events: Sequence[TraceEvent], task_id: str, *, client: int, worker: int
    ) -> Redelivery:
        mine = [e for e in events if e.get("task_id") == task_id]
        pushes = msg.pushes(mine)
        return cls(
            [p for p in pushes if p.pid == client],
            [p for p in pushes if p.pid == worker],
            q.select(mine, command="ZADD", key=names.UNACKED_INDEX, pid=worker),
            q.select(mine, event="task.received"),
            q.select(mine, command="GET", role=names.POOL_CHILD),
            q.result_writes(mine, task_id),
        )

    @property
    def eta(self) -> float:
        """The ETA its message carries (+inf if none was published)."""
        return (self.published[0].eta if self.published else None) or float("inf")

    @property
    def pushed_back_after(self) -> float:
        """Seconds from its first reservation to the first time the sweep put it back."""
        if not self.back or not self.reserved:
            return float("nan")
        return self.back[0].ts - self.reserved[0]["ts"]
