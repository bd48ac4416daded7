"""Helpers for scenario 11 (ETA, visibility timeout, revoke, time limits).

Pure functions of trace events, and waits on the timeline (each with a deadline). Nothing
here writes to or deletes a key: the scenario acts through Celery's own API, and these
helpers only say who did what, in which order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.table import Table

from demo.errors import KitError
from demo.render.inspect import clock
from demo.scenes.processes import event_body, hop_is
from demo.scenes.results import status_of, writes_of
from demo.trace.event import TraceEvent, args_of, at, pid_of
from demo.trace.timeline import Timeline

Event = TraceEvent


def epoch(iso: str) -> float:
    """An ISO-8601 time with its offset (the `eta` header) as epoch seconds."""
    return datetime.fromisoformat(iso).timestamp()


def scheduled(env: Mapping[str, str], nodename: str, timeout: float = 2.0) -> dict[str, float]:
    """task id -> ETA (epoch s) of what `celery inspect scheduled` says the worker holds."""
    from demo.stack.control import control_app  # imports celery: only when asked

    replies = control_app(env).control.inspect([nodename], timeout=timeout).scheduled() or {}
    if nodename not in replies:
        raise KitError(f"worker {nodename} did not answer `inspect scheduled` within {timeout} s")
    return {entry["request"]["id"]: epoch(entry["eta"]) for entry in replies[nodename]}


@dataclass(frozen=True)
class Scan:
    """One restore_visible sweep: ZRANGE unacked_index <ceiling> 0 BYSCORE REV."""

    event: Event
    ceiling: float  # entries reserved before this (epoch s) would be pushed back to their queue

    @property
    def lag(self) -> float:
        """Seconds between the command and its ceiling: the visibility timeout in force."""
        return float(self.event["ts"]) - self.ceiling


def restore_scans(events: Iterable[Event]) -> list[Scan]:
    """kombu's sweeps of `unacked_index` for messages reserved too long ago."""
    scans = []
    for e in events:
        args = args_of(e)
        sweep = "BYSCORE" in (a.upper() for a in args)
        if e.get("event") == "redis.command" and args[:2] == ["ZRANGE", "unacked_index"] and sweep:
            scans.append(Scan(e, float(args[2])))
    return scans


def restore_tries(events: Iterable[Event]) -> set[int]:
    """Pids that tried to sweep: each sweep first takes kombu's restore mutex
    (SET unacked_mutex <id> NX), and is skipped when another consumer holds it."""
    return {
        pid
        for e in events
        if e.get("event") == "redis.command"
        and [a.upper() for a in args_of(e)[:2]] == ["SET", "UNACKED_MUTEX"]
        and "NX" in (a.upper() for a in args_of(e))
        and (pid := pid_of(e)) is not None
    }


def wait_log(tl: Timeline, text: str, timeout: float = 15.0) -> Event:
    """The first log line containing `text`, waiting for it on the timeline."""
    return tl.wait_for(
        lambda e: e.get("event") == "log" and text in str(e.get("message", "")),
        timeout=timeout,
        what=f"a log line with {text!r}",
    )


def scans_table(scans: Sequence[Scan], t0: float, title: str) -> Table:
    """Who swept `unacked_index`, and for entries reserved before when."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "sent by", "ceiling (epoch s)", "sent − ceiling"):
        table.add_column(column, no_wrap=True)
    for scan in scans:
        e = scan.event
        who = f"{e.get('role')} {e.get('pid')}"
        table.add_row(
            f"{float(e['ts']) - t0:+.3f} s", who, f"{scan.ceiling:.3f}", f"{scan.lag:.1f} s"
        )
    return table


def outcome(result: Any, timeout: float = 30.0) -> str:
    """What `result.get()` gave the client: the value's repr, or the exception's class name."""
    try:
        return repr(result.get(timeout=timeout))
    except Exception as exc:  # the task's own exception, rebuilt by the client: that is the point
        return type(exc).__name__


def hops(events: Iterable[Event], name: str, task_id: str) -> list[Event]:
    """The trace hops `name` for one task, in ts order."""
    return [e for e in events if e.get("event") == name and e.get("task_id") == task_id]


@dataclass(frozen=True)
class Trail:
    """One task's life, from every process: the hops, the Redis writes, the log lines."""

    received: Event | None  # task.received (MainProcess)
    started: Event | None  # task.prerun (pool child)
    ended: Event | None  # task.postrun (pool child)
    reserved: Event | None  # ZADD unacked_index: its score is the reservation time
    acked: Event | None  # HDEL unacked
    writes: tuple[Event, ...]  # SETEX celery-task-meta-<id>, each time it was written
    failures: tuple[Event, ...]  # task.failure hops, from whichever process sent them
    logs: tuple[Event, ...]  # log lines naming the task, in their text or their fields

    @property
    def stored(self) -> list[tuple[int | None, str]]:
        """(pid that wrote it, status and exception type) for each write of the result."""
        return [(pid_of(w), status_of(w)) for w in self.writes]


def trail(events: Sequence[Event], task_id: str) -> Trail:
    """Everything the timeline knows about one task."""

    def first_hop(name: str) -> Event | None:
        found = hops(events, name, task_id)
        return found[0] if found else None

    def first_cmd(name: str) -> Event | None:
        return next(
            (e for e in events if e.get("task_id") == task_id and args_of(e)[:1] == [name]), None
        )

    logs = [
        e
        for e in events
        if e.get("event") == "log"
        and (e.get("task_id") == task_id or task_id in str(e.get("message")))
    ]
    return Trail(
        first_hop("task.received"),
        first_hop("task.prerun"),
        first_hop("task.postrun"),
        first_cmd("ZADD"),
        first_cmd("HDEL"),
        tuple(writes_of(events, task_id)),
        tuple(hops(events, "task.failure", task_id)),
        tuple(logs),
    )


def wait_broadcast(tl: Timeline, since: float, timeout: float = 10.0) -> Event:
    """The first control command PUBLISHed on /0.celery.pidbox after `since`."""
    return tl.wait_for(
        lambda e: args_of(e)[:2] == ["PUBLISH", "/0.celery.pidbox"] and float(e["ts"]) > since,
        timeout=timeout,
        what="a control command on /0.celery.pidbox",
    )


def control_command(publish: Event) -> tuple[str, Any]:
    """(method, task_id argument) of a control command PUBLISHed on the pidbox channel."""
    body = event_body(publish)
    return str(body.get("method")), (body.get("arguments") or {}).get("task_id")


def wait_limit(tl: Timeline, kind: str, seconds: int, task: str, name: str) -> Event:
    """The MainProcess's `Soft`/`Hard time limit (Ns) exceeded for name[id]` log line."""
    return wait_log(tl, f"{kind} time limit ({seconds}s) exceeded for {name}[{task}]")


def wait_new_child(tl: Timeline, worker_pid: int, since: float, timeout: float = 15.0) -> Event:
    """The child.init hop of a child `worker_pid` forked after `since`."""
    return tl.wait_for(
        hop_is("child.init", ppid=worker_pid, since=since), timeout=timeout, what="a new child"
    )


def logs_of(events: Iterable[Event], pid: int, since: float) -> list[Event]:
    """The log lines one process printed after `since`: some name no task in their fields."""
    return [e for e in events if e.get("event") == "log" and e.get("pid") == pid and at(e) > since]


def scheduled_line(etas: Mapping[str, float]) -> str:
    """`inspect scheduled`'s answer, one line: short id and ETA (local time) of each task."""
    held = ", ".join(f"{tid[:8]} due {clock(eta)}" for tid, eta in etas.items()) or "nothing"
    return f"celery inspect scheduled → {held}"
