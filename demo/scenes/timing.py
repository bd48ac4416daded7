"""Narration for scenario 11 (ETA, visibility timeout, revoke, time limits).

Built on demo.trace.query and demo.trace.messages: kombu's sweeps of `unacked_index`, the
worker's answer to `inspect scheduled`, the log line of a time limit. Nothing here writes to
or deletes a key: the scenario acts through Celery's own API, and these helpers only say who
did what, in which order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.table import Table

from demo import names
from demo.errors import KitError
from demo.protocol.envelope import EnvelopeError, decode_body
from demo.render.inspect import clock
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, args_of, who
from demo.trace.timeline import Timeline

ID_CHARS = 8  # an id is shown by its first characters


def eta_task(events: Iterable[TraceEvent]) -> str:
    """The id of the first task pushed with an `eta` header (a countdown task)."""
    found = [p.task_id for p in msg.pushes(events) if p.eta is not None and p.task_id]
    if not found:
        raise KitError("no task message with an `eta` header on the timeline")
    return str(found[0])


def scheduled(env: Mapping[str, str], nodename: str, *, timeout: float) -> dict[str, float]:
    """task id -> ETA (epoch s) of what `celery inspect scheduled` says the worker holds."""
    from demo.stack.control import inspect_scheduled  # imports celery: only when asked

    entries = inspect_scheduled(env, nodename, timeout=timeout)
    return {e["request"]["id"]: datetime.fromisoformat(e["eta"]).timestamp() for e in entries}


def scheduled_line(etas: Mapping[str, float]) -> str:
    """`inspect scheduled`'s answer, one line: short id and ETA (local time) of each task."""
    held = ", ".join(f"{tid[:ID_CHARS]} due {clock(eta)}" for tid, eta in etas.items())
    return f"celery inspect scheduled → {held or 'nothing'}"


@dataclass(frozen=True)
class Scan:
    """One restore_visible sweep: ZRANGE unacked_index <ceiling> 0 BYSCORE REV."""

    event: TraceEvent
    ceiling: float  # entries reserved before this (epoch s) would be pushed back to their queue

    @property
    def lag(self) -> float:
        """Seconds between the command and its ceiling: the visibility timeout in force."""
        return self.event["ts"] - self.ceiling


def _has(e: TraceEvent, word: str) -> bool:
    return word in (arg.upper() for arg in args_of(e))


def restore_scans(events: Iterable[TraceEvent]) -> list[Scan]:
    """kombu's sweeps of `unacked_index` for messages reserved too long ago."""
    ranges = q.select(events, command="ZRANGE", key=names.UNACKED_INDEX)
    return [Scan(e, float(args_of(e)[2])) for e in ranges if _has(e, "BYSCORE")]


def restore_tries(events: Iterable[TraceEvent]) -> set[int]:
    """Pids that tried to sweep: each sweep first takes kombu's restore mutex
    (SET unacked_mutex <id> NX), and is skipped when another consumer holds it."""
    takes = q.select(events, command="SET", key=names.UNACKED_MUTEX)
    return {pid for e in takes if _has(e, "NX") and (pid := e["pid"]) is not None}


def scans_table(scans: Sequence[Scan], title: str) -> Table:
    """Who swept `unacked_index`, and for entries reserved before when (timed from the first)."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "sent by", "ceiling (epoch s)", "sent − ceiling"):
        table.add_column(column, no_wrap=True)
    for scan in scans:
        e = scan.event
        since = e["ts"] - scans[0].event["ts"]
        table.add_row(f"{since:+.3f} s", who(e), f"{scan.ceiling:.3f}", f"{scan.lag:.1f} s")
    return table


def outcome(result: Any, *, timeout: float) -> str:
    """What `result.get()` gave the client: the value's repr, or the exception's class name."""
    try:
        return repr(result.get(timeout=timeout))
    except Exception as exc:  # the task's own exception, rebuilt by the client: that is the point
        return type(exc).__name__


def limit_logged(
    tl: Timeline, kind: str, seconds: int, task_name: str, task_id: str, *, timeout: float
) -> TraceEvent:
    """The MainProcess's log line when a time limit fires on the task: `kind` is Soft or Hard."""
    text = f"{kind} time limit ({seconds}s) exceeded for {task_name}[{task_id}]"
    return tl.wait_for(event=names.LOG, containing=text, timeout=timeout, what=repr(text))


def read_before_each(reads: Sequence[TraceEvent], writes: Sequence[TraceEvent]) -> bool:
    """Every write has at least one read of its own: after the write before it, before it."""
    bounds = [float("-inf"), *(w["ts"] for w in writes)]
    return bool(writes) and all(
        any(low < r["ts"] < high for r in reads) for low, high in itertools.pairwise(bounds)
    )


def reply_body(e: TraceEvent) -> dict[str, Any]:
    """What a worker's control reply (an LPUSH onto the asker's reply list) says, by node:
    {nodename: answer}; {} when it cannot be read."""
    try:
        body = decode_body(args_of(e)[2], "control reply")
    except (EnvelopeError, IndexError):
        return {}
    return body if isinstance(body, dict) else {}


def discarded(
    tl: Timeline, task_name: str, task_id: str, *, since: float, timeout: float
) -> tuple[TraceEvent, TraceEvent]:
    """A worker discarding a revoked task after `since`: its log line, then its ack (HDEL)."""
    text = f"Discarding revoked task: {task_name}[{task_id}]"
    said = tl.wait_for(
        event=names.LOG, containing=text, since=since, timeout=timeout, what=repr(text)
    )
    acked = tl.wait_for(
        command="HDEL", task_id=task_id, since=since, timeout=timeout, what="its ack (HDEL)"
    )
    return said, acked


def revoked_id(events: Iterable[TraceEvent]) -> str:
    """The task id of the first `revoke` broadcast on the pidbox."""
    found = msg.control_commands(events, "revoke")
    if not found:
        raise KitError("no `revoke` broadcast on the timeline")
    return str(found[0].arguments.get("task_id"))


@dataclass(frozen=True)
class Hello:
    """A worker's mingle as it starts: its `hello` broadcast on the pidbox, and the LPUSHes
    of the workers that answered it."""

    command: msg.ControlCommand
    replies: list[TraceEvent]

    @classmethod
    def read(cls, tl: Timeline, since: float) -> Hello:
        """The first `hello` broadcast after `since`, once every process has shipped it."""
        tl.settle()
        events = q.since(tl.events(), since)
        sent = msg.control_commands(events, "hello")
        if not sent or sent[0].reply_list is None:
            raise KitError("no `hello` broadcast (with a reply list) on the timeline")
        return cls(sent[0], q.select(events, command="LPUSH", key=sent[0].reply_list))

    def revoked_by(self, pid: int) -> list[str]:
        """The revoked ids the answer of worker `pid` carried."""
        answers = [reply_body(e) for e in self.replies if e["pid"] == pid]
        return [str(t) for a in answers for node in a.values() for t in node.get("revoked", ())]
