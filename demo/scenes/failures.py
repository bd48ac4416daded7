"""Helpers for scenarios 06 (a task fails, retries) and 07 (a pool child killed mid-task).

What the spy saw, decoded: the results a task stored (SETEX), the messages that carried it
(LPUSH/RPUSH) and its reservations in `unacked` (HSET … HDEL); where its message is now; a
pool child killed by pid; an SMTP sink that stays down until the story starts it. Read-only
on Redis; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import redis
from rich.table import Table

from demo import inspectors
from demo.errors import KitError
from demo.protocol.commands import short
from demo.protocol.envelope import Envelope, EnvelopeError, decode_envelope, decode_result
from demo.scenes.results import result_key
from demo.stack.procs import free_port
from demo.stack.smtp_sink import SmtpSink
from demo.trace.event import TraceEvent, args_of
from demo.trace.timeline import Timeline

Event = TraceEvent
PUSHES = ("LPUSH", "RPUSH")


def is_command(e: Event, *names: str) -> bool:
    args = args_of(e)
    return e.get("event") == "redis.command" and bool(args) and args[0].upper() in names


def command(
    name: str,
    task_id: str | None = None,
    since: float = float("-inf"),
    key: str | None = None,
    role: str | None = None,
) -> Callable[[Event], bool]:
    """A predicate for Timeline.wait_for: Redis command `name` ("LPUSH|RPUSH": either) on
    `key`, for the task, sent by a process of `role`, seen after `since`."""
    return lambda e: (
        is_command(e, *name.split("|"))
        and task_id in (None, e.get("task_id"))
        and float(e.get("ts") or 0.0) > since
        and (key is None or args_of(e)[1:2] == [key])
        and role in (None, e.get("role"))
    )


def stores(task_id: str, status: str) -> Callable[[Event], bool]:
    """A predicate for Timeline.wait_for: the SETEX that stores `status` for the task."""
    key = result_key(task_id)
    return lambda e: (
        is_command(e, "SETEX")
        and args_of(e)[1:2] == [key]
        and f'"status": "{status}"' in "".join(args_of(e)[3:4])
    )


def logged(text: str, since: float = float("-inf")) -> Callable[[Event], bool]:
    """A predicate for Timeline.wait_for: a log line containing `text`, after `since`."""
    return lambda e: (
        e.get("event") == "log"
        and text in str(e.get("message"))
        and float(e.get("ts") or 0.0) > since
    )


def hop(
    name: str, task_id: str | None = None, since: float = float("-inf"), **fields: Any
) -> Callable[[Event], bool]:
    """A predicate for Timeline.wait_for: trace hop `name` (for the task, with these field
    values) after `since`."""
    return lambda e: (
        e.get("event") == name
        and task_id in (None, e.get("task_id"))
        and float(e.get("ts") or 0.0) > since
        and all(e.get(k) == v for k, v in fields.items())
    )


def settle(
    tl: Timeline, r: redis.Redis, task_id: str, state: str, timeout: float = 30.0
) -> Sequence[Event]:
    """The task's events, once its task.postrun hop with `state` is in and the spy has
    shown every command sent so far (a pool child ships its hops a few ms late)."""
    tl.wait_for(
        hop("task.postrun", task_id, state=state), timeout=timeout, what=f"the {state} postrun"
    )
    tl.settle()
    return tl.for_task(task_id)


def settled(tl: Timeline, r: redis.Redis, task_id: str) -> Sequence[Event]:
    """The task's events, once the spy has shown every command sent so far."""
    tl.settle()
    return tl.for_task(task_id)


def wait_running(tl: Timeline, task_id: str, timeout: float = 30.0) -> int:
    """The pid of the pool child running the task, once both sides said it started: the
    MainProcess (task.accepted, the child's ACK on its pipe) and the child (task.prerun)."""
    accepted = tl.wait_for(hop("task.accepted", task_id), timeout=timeout, what="the child's ACK")
    started = tl.wait_for(hop("task.prerun", task_id), timeout=timeout, what="the task's prerun")
    if accepted.get("child_pid") != started.get("pid"):
        raise KitError(f"ACK from {accepted.get('child_pid')} but prerun in {started.get('pid')}")
    if started["pid"] is None:
        raise KitError(f"task {task_id}: its prerun names no pid")
    return started["pid"]


def by_connection(events: Sequence[Event]) -> list[Event]:
    """The events, each spy event labelled with the process that opened its connection.

    A pool child forked after the MainProcess connected (the replacement of a killed child)
    inherits the parent's open sockets: the OS then lists two pids for one connection and
    the spy may name either. Only the process that opened a connection uses it (Celery
    resets its connection pools after a fork), so a command the spy gives to a child of the
    address's first sender is the first sender's. (A child only: a port reused later by an
    unrelated process keeps its own label.)
    """
    owners: dict[str, Event] = {}
    out: list[Event] = []
    for e in sorted(events, key=lambda x: float(x.get("ts") or 0.0)):
        addr = e.get("addr")
        if e.get("event") != "redis.command" or not addr or addr == "lua":
            out.append(e)
            continue
        first = owners.setdefault(str(addr), e)
        if first.get("pid") is not None and e.get("ppid") == first.get("pid"):
            e = {**e, "pid": first["pid"], "ppid": first.get("ppid"), "role": first.get("role")}
        out.append(e)
    return out


class Stored(NamedTuple):
    """One SETEX of the task's result key, as the spy saw it, decoded."""

    event: Event
    meta: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.meta.get("status"))


def stored(events: Iterable[Event], task_id: str) -> list[Stored]:
    """Every value written to celery-task-meta-<id>, in order."""
    key = result_key(task_id)
    return [
        Stored(e, decode_result(args_of(e)[3]))
        for e in events
        if is_command(e, "SETEX") and args_of(e)[1:2] == [key] and len(args_of(e)) > 3
    ]


def pids(found: Iterable[Stored]) -> set[int]:
    """The pids that sent these SETEXes."""
    return {(x.event["pid"] or 0) for x in found}


def meta_view(meta: Mapping[str, Any], lines: int = 3) -> dict[str, Any]:
    """The stored JSON for display: the traceback cut to its last `lines` lines."""
    view = dict(meta)
    tb = meta.get("traceback")
    if isinstance(tb, str):
        view["traceback"] = ["…", *tb.strip().splitlines()[-lines:]]
    return view


@dataclass(frozen=True)
class Push:
    """A message carrying the task onto a list (a publish, a retry, a requeue)."""

    event: Event
    envelope: Envelope

    @property
    def retries(self) -> int:
        return int(self.envelope.headers.get("retries") or 0)

    @property
    def eta(self) -> float | None:
        """The eta header as epoch seconds; None when the message may run at once."""
        raw = self.envelope.headers.get("eta")
        return datetime.fromisoformat(raw).timestamp() if isinstance(raw, str) else None

    @property
    def redelivered(self) -> bool:
        return bool(self.envelope.headers.get("redelivered"))


def pushes(events: Iterable[Event], task_id: str | None = None) -> list[Push]:
    """LPUSH/RPUSH of task messages (of `task_id` when given), decoded, in order."""
    found = []
    for e in events:
        if not is_command(e, *PUSHES) or len(args_of(e)) < 3:
            continue
        try:
            envelope = decode_envelope(args_of(e)[2])
        except EnvelopeError:
            continue
        if task_id in (None, envelope.task_id):
            found.append(Push(e, envelope))
    return found


def pushes_table(found: Sequence[Push], t0: float, title: str) -> Table:
    """One row per message: when, by whom, onto which list, its retries, eta, redelivered."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "sent by", "command", "retries", "eta", "redelivered"):
        table.add_column(column, no_wrap=True)
    for p in found:
        ts = float(p.event["ts"])
        eta = "—" if p.eta is None else f"+{p.eta - ts:.2f} s after this push"
        who = f"{p.event.get('role')} {p.event.get('pid')}"
        what = short(args_of(p.event)[:2], width=30)
        table.add_row(f"+{ts - t0:6.2f} s", who, what, str(p.retries), eta, str(p.redelivered))
    return table


@dataclass(frozen=True)
class Reservation:
    """A delivery of the task: HSET unacked <tag> (reserved), then the HDEL of that tag."""

    tag: str
    reserved: Event
    released: Event | None  # the ack, or the requeue's HDEL; None while still reserved


def reservations(events: Sequence[Event], task_id: str) -> list[Reservation]:
    found = []
    for e in events:
        args = args_of(e)
        if is_command(e, "HSET") and args[1:2] == ["unacked"] and e.get("task_id") == task_id:
            tag = args[2]
            later = (
                x
                for x in events
                if is_command(x, "HDEL")
                and args_of(x)[1:3] == ["unacked", tag]
                and float(x["ts"]) >= float(e["ts"])
            )
            found.append(Reservation(tag, e, next(later, None)))
    return found


@dataclass(frozen=True)
class Wait:
    """A retry's message from its publication to its start: where its eta was spent."""

    push: Push  # the LPUSH of the retry (retries > 0)
    reserved: Event | None  # the MainProcess's HSET unacked that took it off the list
    released: Event | None  # the HDEL of that reservation: the ack when a child started it
    started: Event | None  # the task.prerun of that try

    @property
    def eta(self) -> float:
        return self.push.eta or float(self.push.event["ts"])

    def reserved_before_eta(self, worker_pid: int) -> bool:
        r = self.reserved
        return r is not None and r.get("pid") == worker_pid and float(r["ts"]) < self.eta

    def started_after_eta(self, slack_s: float = 0.05) -> bool:
        """Started and released not before the eta (slack: the worker's timer converts the
        eta to its monotonic clock, the trace stamps wall-clock time)."""
        ends = (self.released, self.started)
        return all(e is not None and float(e["ts"]) >= self.eta - slack_s for e in ends)


def retry_waits(events: Sequence[Event], task_id: str) -> list[Wait]:
    """One Wait per retry message of the task, each matched with what followed it."""
    held = reservations(events, task_id)
    runs = [e for e in events if e.get("event") == "task.prerun" and e.get("task_id") == task_id]
    waits = []
    for push in (p for p in pushes(events, task_id) if p.retries):
        after = float(push.event["ts"])
        taken = next((h for h in held if float(h.reserved["ts"]) > after), None)
        run = next((e for e in runs if float(e["ts"]) > after), None)
        reserved, released = (taken.reserved, taken.released) if taken else (None, None)
        waits.append(Wait(push, reserved, released, run))
    return waits


def waits_table(waits: Sequence[Wait], t0: float, title: str) -> Table:
    """retries | pushed | reserved | eta | released (acked) | started, seconds from t0."""
    table = Table(title=title, title_justify="left")
    for column in ("retries", "pushed by", "pushed", "reserved", "eta", "acked", "started in"):
        table.add_column(column, no_wrap=True)

    def at(e: Event | None) -> str:
        return "—" if e is None else f"+{float(e['ts']) - t0:.2f} s"

    for w in waits:
        started = "—" if w.started is None else f"{at(w.started)} (pid {w.started['pid']})"
        pushed_by = f"{w.push.event.get('role')} {w.push.event.get('pid')}"
        row = (at(w.push.event), at(w.reserved), f"+{w.eta - t0:.2f} s", at(w.released), started)
        table.add_row(str(w.push.retries), pushed_by, *row)
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


def whereabouts(r: redis.Redis, queue: str, task_id: str) -> Whereabouts:
    view = inspectors.queue_view(r, queue, peek=200)
    queued = sum(m.task_id == task_id for sub in view.sub_queues for m in sub.next_messages)
    held = inspectors.unacked(r, limit=500).entries
    return Whereabouts(queued, tuple(e for e in held if e.message.task_id == task_id))


def kill_child(worker_pid: int, pid: int, deadline_s: float = 10.0) -> float:
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


def transaction(events: Sequence[Event], inside: Event) -> list[Event]:
    """The commands of the (WATCH …) MULTI … EXEC that `inside` belongs to, on its connection
    (MONITOR shows a transaction's commands when EXEC runs them, in order)."""
    addr = inside.get("addr")
    same = [e for e in events if e.get("event") == "redis.command" and e.get("addr") == addr]
    mark = (inside.get("ts"), args_of(inside))
    at = next(i for i, e in enumerate(same) if (e.get("ts"), args_of(e)) == mark)
    multi = max((i for i in range(at + 1) if is_command(same[i], "MULTI")), default=at)
    after = max((i for i in range(multi) if is_command(same[i], "EXEC")), default=-1)
    watch = [i for i in range(after + 1, multi) if is_command(same[i], "WATCH")]
    end = next((i for i in range(at, len(same)) if is_command(same[i], "EXEC")), at)
    return same[(watch or [multi])[0] : end + 1]


def log_lines(path: Path, contains: str) -> list[str]:
    """Lines of a worker's log file that contain `contains` (billiard's own log lines do
    not go through Celery's loggers, so only the file has them)."""
    if not path.exists():
        return []
    return [
        line.strip() for line in path.read_text(errors="replace").splitlines() if contains in line
    ]


def pids_of(events: Iterable[Event], *names: str, before: float = float("inf")) -> list[int]:
    """The pids behind the hops or Redis commands named, in order (those before `before`)."""
    return [
        (e["pid"] or 0)
        for e in events
        if (e.get("event") in names or is_command(e, *names)) and float(e["ts"]) < before
    ]


def hops(events: Iterable[Event], *names: str) -> list[Event]:
    return [e for e in events if e.get("event") in names]


def messages(events: Iterable[Event], contains: str) -> list[Event]:
    """The log hops whose message contains `contains`."""
    return [e for e in events if e.get("event") == "log" and contains in str(e.get("message"))]


@contextlib.contextmanager
def smtp_sink_down(folder: Path) -> Iterator[SmtpSink]:
    """An SMTP sink on a free port, not started: whoever connects is refused until
    `.start()`. Stopped on the way out, whatever happened."""
    sink = SmtpSink(free_port(), folder)
    try:
        yield sink
    finally:
        sink.stop()
