"""Questions asked of the merged trace, answered in one place.

Every scene, the trace CLI, the docs generator and the tests ask through this module, the
way Celery's `celery/events/state.py` is the one model over its event stream: which events
match some criteria (`where`, `select`, `first`), what a task's life looked like (`life`),
what a result write stored (`result_writes`), which pool children a worker had and what each
ran (`children`, `ran_by`), how many tasks a worker held at a given moment (`held`). Pure
functions of events: no I/O, no waiting (the timeline waits).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from demo import names
from demo.protocol.envelope import EnvelopeError, decode_result
from demo.trace.event import TraceEvent, args_of, command_name, key_of

Predicate = Callable[[TraceEvent], bool]
_NEVER = float("-inf")


def where(
    *,
    event: str | None = None,
    command: str | Collection[str] | None = None,
    task_id: str | None = None,
    role: str | None = None,
    pid: int | None = None,
    ppid: int | None = None,
    key: str | None = None,
    key_prefix: str | None = None,
    key_suffix: str | None = None,
    containing: str | None = None,
    since: float = _NEVER,
    until: float = float("inf"),
    **fields: Any,
) -> Predicate:
    """A predicate matching every criterion given.

    `command` is a Redis command name (or several); `key`, `key_prefix` and `key_suffix` look
    at its first argument; `containing` is text in a log line's message; `since` and `until`
    bound ts (exclusive, inclusive); any other keyword is a field that must equal its value
    (`where(event="task.postrun", state="RETRY")`).
    """
    commands = {command} if isinstance(command, str) else set(command or ())
    if commands:
        event = names.REDIS_COMMAND

    def match(e: TraceEvent) -> bool:
        if event is not None and e["event"] != event:
            return False
        if not since < e["ts"] <= until:
            return False
        if task_id is not None and e.get("task_id") != task_id:
            return False
        if role is not None and e["role"] != role:
            return False
        if pid is not None and e["pid"] != pid:
            return False
        if ppid is not None and e.get("ppid") != ppid:
            return False
        if commands and command_name(e) not in commands:
            return False
        if key is not None or key_prefix is not None or key_suffix is not None:
            first_arg = key_of(e)
            if key is not None and first_arg != key:
                return False
            if key_prefix is not None and not first_arg.startswith(key_prefix):
                return False
            if key_suffix is not None and not first_arg.endswith(key_suffix):
                return False
        if containing is not None and containing not in e.get("message", ""):
            return False
        return all(e.get(name) == value for name, value in fields.items())

    return match


def select(events: Iterable[TraceEvent], **criteria: Any) -> list[TraceEvent]:
    """The events matching `where(**criteria)`, in the order given."""
    match = where(**criteria)
    return [e for e in events if match(e)]


def first(events: Iterable[TraceEvent], **criteria: Any) -> TraceEvent | None:
    """The first event matching `where(**criteria)`, or None."""
    match = where(**criteria)
    return next((e for e in events if match(e)), None)


def last(events: Sequence[TraceEvent], **criteria: Any) -> TraceEvent | None:
    """The last event matching `where(**criteria)`, or None."""
    match = where(**criteria)
    return next((e for e in reversed(events) if match(e)), None)


def since(events: Iterable[TraceEvent], after: float) -> list[TraceEvent]:
    return [e for e in events if e["ts"] > after]


def pids(events: Iterable[TraceEvent]) -> list[int]:
    """The distinct pids that sent these events, in order of first appearance."""
    return list(dict.fromkeys(e["pid"] for e in events if e["pid"] is not None))


def gaps(events: Sequence[TraceEvent]) -> list[float]:
    """Seconds between consecutive events."""
    return [b["ts"] - a["ts"] for a, b in itertools.pairwise(events)]


def per_second(events: Sequence[TraceEvent]) -> float:
    """How often these events happened: intervals per second from the first to the last
    (0.0 for fewer than two, or no time between them)."""
    if len(events) < 2:
        return 0.0
    span = events[-1]["ts"] - events[0]["ts"]
    return (len(events) - 1) / span if span > 0 else 0.0


def roles(events: Iterable[TraceEvent]) -> dict[int, str]:
    """pid -> the most specific role that pid declared (a worker process may speak as
    `client` before its worker signal names it)."""
    found: dict[int, str] = {}
    for e in events:
        pid, role = e["pid"], e["role"]
        if pid is not None and (role not in (names.CLIENT, names.UNKNOWN) or pid not in found):
            found[pid] = role
    return found


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultWrite:
    """A SETEX of `celery-task-meta-<id>`: who stored what, and when."""

    event: TraceEvent
    meta: dict[str, Any] | None  # the decoded result document; None if it could not be read

    @property
    def pid(self) -> int | None:
        return self.event["pid"]

    @property
    def ts(self) -> float:
        return self.event["ts"]

    @property
    def ttl(self) -> int:
        return int(args_of(self.event)[2])

    @property
    def status(self) -> str:
        """SUCCESS, FAILURE, RETRY, …; `?` when the value was cut or unreadable."""
        return str((self.meta or {}).get("status", "?"))

    @property
    def exc_type(self) -> str | None:
        """For a failure, the exception's type name as Celery stored it."""
        result = (self.meta or {}).get("result")
        kind = result.get("exc_type") if isinstance(result, dict) else None
        return str(kind) if kind else None

    def __str__(self) -> str:
        return f"{self.status} {self.exc_type}" if self.exc_type else self.status


def result_writes(events: Iterable[TraceEvent], task_id: str) -> list[ResultWrite]:
    """Every SETEX that stored (or overwrote) the task's result, in order."""
    found = []
    for e in select(events, command="SETEX", key=names.result_key(task_id)):
        try:
            meta: dict[str, Any] | None = decode_result(args_of(e)[3])
        except (EnvelopeError, IndexError):
            meta = None
        found.append(ResultWrite(e, meta))
    return found


def returned(events: Iterable[TraceEvent], task_id: str) -> Any:
    """What the task returned, as its last SUCCESS write stored it; None if none was stored."""
    done = [write for write in result_writes(events, task_id) if write.status == "SUCCESS"]
    return (done[-1].meta or {}).get("result") if done else None


# -- a task's life --------------------------------------------------------------------------

# The hops of a task's life, in the order they happen for a successful task.
LIFE = (
    "task.published",
    "task.received",
    "task.accepted",
    "task.acked",
    "task.prerun",
    "result.stored",
    "task.postrun",
)


@dataclass(frozen=True)
class TaskLife:
    """One task's life from the trace: each hop's first event, None if not (yet) seen."""

    task_id: str
    hops: dict[str, TraceEvent | None]

    def __getitem__(self, hop: str) -> TraceEvent | None:
        return self.hops[hop]

    def at(self, hop: str) -> float | None:
        e = self.hops[hop]
        return e["ts"] if e is not None else None

    @property
    def worker_pid(self) -> int | None:
        """The MainProcess that received it."""
        e = self.hops["task.received"]
        return e["pid"] if e is not None else None

    @property
    def child_pid(self) -> int | None:
        """The process that ran it (a pool child; the MainProcess itself with --pool solo)."""
        e = self.hops["task.prerun"]
        return e["pid"] if e is not None else None

    def has(self, *hops: str) -> bool:
        return all(self.hops[hop] is not None for hop in hops)

    def overlaps(self, other: TaskLife) -> bool:
        """Both ran at the same moment for a while."""
        spans = [(t.at("task.prerun"), t.at("task.postrun")) for t in (self, other)]
        (a0, a1), (b0, b1) = spans
        if a0 is None or a1 is None or b0 is None or b1 is None:
            return False
        return max(a0, b0) < min(a1, b1)


def life(events: Iterable[TraceEvent], task_id: str) -> TaskLife:
    """The task's life: for each hop of LIFE, its first event."""
    hops: dict[str, TraceEvent | None] = dict.fromkeys(LIFE)
    for e in events:
        if e.get("task_id") == task_id and e["event"] in hops and hops[e["event"]] is None:
            hops[e["event"]] = e
    return TaskLife(task_id, hops)


def lives(events: Sequence[TraceEvent], task_ids: Iterable[str]) -> list[TaskLife]:
    """A TaskLife per task id, in the order given."""
    return [life(events, task_id) for task_id in task_ids]


def ran_by(events: Iterable[TraceEvent], task_ids: Collection[str] | None = None) -> dict[str, int]:
    """task id -> pid of the process whose `task.prerun` names it (the first one)."""
    found: dict[str, int] = {}
    for e in select(events, event="task.prerun"):
        tid, pid = e.get("task_id"), e["pid"]
        if tid and pid is not None and tid not in found and (task_ids is None or tid in task_ids):
            found[tid] = pid
    return found


# -- a worker's children --------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """One pool child of a worker, as its own hops describe it."""

    pid: int
    name: str  # ForkPoolWorker-N from its log lines; "" if it logged nothing
    born: float  # its child.init
    left: float | None  # its child.shutdown, if seen
    tasks: tuple[str, ...]  # the task ids it ran, in order


def children(events: Sequence[TraceEvent], worker_pid: int) -> list[Child]:
    """The pool children `worker_pid` forked (their child.init hops), in order of birth."""
    found = []
    for init in select(events, event="child.init", ppid=worker_pid):
        pid = init["pid"]
        if pid is None:
            continue
        shutdown = first(events, event="child.shutdown", pid=pid)
        named = first(events, event=names.LOG, pid=pid)
        ran = [e.get("task_id", "") for e in select(events, event="task.prerun", pid=pid)]
        found.append(
            Child(
                pid,
                named.get("process_name", "") if named else "",
                init["ts"],
                shutdown["ts"] if shutdown else None,
                tuple(ran),
            )
        )
    return found


def task_logs(events: Iterable[TraceEvent], task_id: str) -> list[TraceEvent]:
    """The log lines about one task: its id in their fields or in their text (a worker's
    `Discarding revoked task: add[<id>]` names it only in the text)."""
    return [
        e
        for e in select(events, event=names.LOG)
        if e.get("task_id") == task_id or task_id in e.get("message", "")
    ]


def held(
    events: Iterable[TraceEvent], worker_pid: int, ts: float, hop: str = "task.postrun"
) -> int:
    """Tasks `worker_pid` had received by `ts` for which none of its children had sent `hop`
    by then. With task.postrun (finished): at most as many as Celery's
    `state.reserved_requests` held, which drops a task only once the MainProcess has read its
    child's READY. With task.prerun: the tasks still waiting for a child."""
    received = done = 0
    for e in events:
        if e["ts"] <= ts and e["event"] == "task.received" and e["pid"] == worker_pid:
            received += 1
        elif e["ts"] <= ts and e["event"] == hop and e.get("ppid") == worker_pid:
            done += 1
    return received - done
