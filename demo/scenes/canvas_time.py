"""Helpers for scenarios 10 (chain, group, chord) and 11 (ETA, revoke, time limits).

Pure functions of trace events, read-only views of Redis, and waits on the timeline (each
with a deadline). Nothing here writes to or deletes a key: the scenarios act through
Celery's own API, and these helpers only say who did what, in which order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rich.table import Table

from demo import inspectors as ins
from demo.envelope import Envelope, EnvelopeError, decode_envelope
from demo.errors import KitError
from demo.inspectors_view import clock
from demo.scenes.processes import event_body, hop_is, wait_for_each
from demo.timeline import Timeline

Event = Mapping[str, Any]
GROUP_PREFIX = "celery-taskset-meta-"  # celery/backends/base.py KeyValueStoreBackend
# The commands that change the chord's bookkeeping (celery/backends/redis.py, the Lua
# scripts CHORD_PART_RETURN_LUA and CHORD_CLEANUP_LUA, and set_chord_size).
CHORD_WRITES = frozenset({"SET", "DEL", "ZADD", "SADD", "ZRANGE"})


def args_of(e: Event) -> list[str]:
    """A spied command's name and arguments as strings ([] for a trace hop)."""
    return [str(arg) for arg in e.get("command") or ()]


def _short(value: object) -> str:
    return str(value)[:8] if value else "—"


@dataclass(frozen=True)
class Published:
    """One task message as an LPUSH carried it, and the process that sent it."""

    event: Event
    envelope: Envelope

    @property
    def ts(self) -> float:
        return float(self.event["ts"])

    @property
    def pid(self) -> int | None:
        pid = self.event.get("pid")
        return int(pid) if pid is not None else None

    @property
    def task_id(self) -> str | None:
        return self.envelope.task_id

    def header(self, name: str) -> Any:
        return self.envelope.headers.get(name)


def headers(messages: Iterable[Published], name: str) -> list[Any]:
    """One header of each message, in order (None where absent)."""
    return [m.header(name) for m in messages]


def _decoded(e: Event) -> Published | None:
    args = args_of(e)
    if e.get("event") != "redis.command" or len(args) < 3 or args[0].upper() != "LPUSH":
        return None
    try:
        return Published(e, decode_envelope(args[2]))
    except EnvelopeError:
        return None  # an LPUSH that is not a task message (a control reply)


def published(events: Iterable[Event], task_ids: Collection[str] | None = None) -> list[Published]:
    """The task messages the spy saw pushed (of `task_ids` when given), in ts order."""
    found = [p for e in events if (p := _decoded(e)) is not None]
    return [p for p in found if task_ids is None or p.task_id in task_ids]


def wait_published(tl: Timeline, task_id: str, timeout: float = 30.0) -> Published:
    """The LPUSH of task `task_id`, waiting for the spy to see it."""
    event = tl.wait_for(
        lambda e: e.get("task_id") == task_id and _decoded(e) is not None,
        timeout,
        f"the LPUSH of task {task_id}",
    )
    found = _decoded(event)
    assert found is not None  # the predicate decoded it already
    return found


def published_table(
    rows: Sequence[Published], labels: Mapping[str, str], t0: float, title: str
) -> Table:
    """Who pushed each message, and the headers that link canvas steps together."""
    table = Table(title=title, title_justify="left")
    columns = ("time", "sent by", "task", "id", "args", "root_id", "parent_id", "group [index]")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for p in rows:
        group = p.header("group")
        where = f"{_short(group)} [{p.header('group_index')}]" if group else "—"
        table.add_row(
            f"+{p.ts - t0:.3f} s",
            f"{p.event.get('role')} {p.pid}",
            labels.get(p.task_id or "", p.envelope.task or "?"),
            _short(p.task_id),
            json.dumps(p.envelope.args)[:24],
            _short(p.header("root_id")),
            _short(p.header("parent_id")),
            where,
        )
    return table


def first_command(
    events: Iterable[Event], name: str, key: str, since: float = float("-inf")
) -> Event | None:
    """The first Redis command `name` on exactly `key` (lua ones included) after `since`."""
    for e in events:
        args = args_of(e)
        late = e.get("event") == "redis.command" and float(e["ts"]) > since
        if late and len(args) > 1 and args[0].upper() == name and args[1] == key:
            return e
    return None


def wait_command(
    tl: Timeline, name: str, key: str, count: int = 1, timeout: float = 20.0
) -> list[Event]:
    """The first `count` commands `name` on exactly `key`, waiting for each on the timeline."""
    return wait_for_each(tl, lambda e: args_of(e)[:2] == [name, key], count, timeout, name)


def sent(write: Event | None, pid: int, *args: str) -> bool:
    """`write` exists, was sent by `pid`, and its arguments after the key are `args`."""
    return write is not None and write.get("pid") == pid and args_of(write)[2:] == list(args)


def callbacks(messages: Iterable[Published]) -> set[str | None]:
    """The chord callback ids the messages carry in their body (None for a message without)."""
    return {
        (m.envelope.embed.get("chord") or {}).get("options", {}).get("task_id") for m in messages
    }


def group_key(group_id: str, suffix: str = "") -> str:
    return f"{GROUP_PREFIX}{group_id}{suffix}"


def group_keys(r: redis.Redis, group_id: str) -> dict[str, ins.KeyInfo]:
    """suffix ("" or ".j", ".s"…) -> the key's type, size and TTL, for one group's keys."""
    keys = ins.scan_keys(r, group_key(group_id) + "*", 50)[0]
    return {info.key.removeprefix(group_key(group_id)): info for info in ins.key_infos(r, keys)}


def chord_trail(events: Iterable[Event], group_id: str) -> list[Event]:
    """The writes to a chord's bookkeeping keys, whoever sent them (in Lua or not)."""
    prefix = group_key(group_id)
    trail = []
    for e in events:
        args = args_of(e)
        if e.get("event") != "redis.command" or len(args) < 2:
            continue
        if args[0].upper() in CHORD_WRITES and args[1].startswith(prefix):
            trail.append(e)
    return trail


def _arg(value: str, group_id: str, width: int = 28) -> str:
    """A command argument, the group's key shortened to its suffix, cut to `width`."""
    text = value.replace(group_key(group_id), "<gid>")
    return text if len(text) <= width else text[: width - 1] + "…"


def chord_table(events: Sequence[Event], group_id: str, t0: float, title: str) -> Table:
    """The chord's bookkeeping writes and the callback's LPUSH, by sender, in ts order."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "sent by", "how", "command", "key", "arguments"):
        table.add_column(column, no_wrap=True)
    for e in sorted(events, key=lambda e: float(e["ts"])):
        args = args_of(e)
        rest = " ".join(_arg(a, group_id) for a in args[2:])
        table.add_row(
            f"+{float(e['ts']) - t0:.3f} s",
            f"{e.get('role')} {e.get('pid')}",
            "in Lua" if e.get("via") == "lua" else "",
            args[0].upper(),
            _arg(args[1], group_id, 14),
            rest if len(rest) <= 48 else rest[:47] + "…",
        )
    return table


def stored_at(events: Iterable[Event], task_id: str) -> float:
    """When the result of `task_id` was first written (its first SETEX); inf if never."""
    writes = writes_of(events, task_id)
    return float(writes[0]["ts"]) if writes else float("inf")


def epoch(iso: str) -> float:
    """An ISO-8601 time with its offset (the `eta` header) as epoch seconds."""
    return datetime.fromisoformat(iso).timestamp()


def scheduled(env: Mapping[str, str], nodename: str, timeout: float = 2.0) -> dict[str, float]:
    """task id -> ETA (epoch s) of what `celery inspect scheduled` says the worker holds."""
    from demo.client import control_app  # imports celery: only when asked

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
        timeout,
        f"a log line with {text!r}",
    )


def writes_of(events: Iterable[Event], task_id: str) -> list[Event]:
    """The SETEX commands that stored (or overwrote) the result of `task_id`."""
    key = f"celery-task-meta-{task_id}"
    return [e for e in events if args_of(e)[:2] == ["SETEX", key]]


def status_of(write: Event) -> str:
    """The status a result SETEX wrote, and the exception type for a failure."""
    meta = json.loads(args_of(write)[3])
    result = meta.get("result")
    kind = result.get("exc_type") if isinstance(result, dict) else None
    return f"{meta.get('status')} {kind}" if kind else str(meta.get("status"))


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


def at(event: Event | None) -> float:
    """An event's ts; +inf for an event that never happened, so order checks stay simple."""
    return float(event["ts"]) if event is not None else float("inf")


def pid_of(event: Event | None) -> int | None:
    return int(event["pid"]) if event is not None and event.get("pid") is not None else None


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
        timeout,
        "a control command on /0.celery.pidbox",
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
    return tl.wait_for(hop_is("child.init", ppid=worker_pid, since=since), timeout, "a new child")


def logs_of(events: Iterable[Event], pid: int, since: float) -> list[Event]:
    """The log lines one process printed after `since`: some name no task in their fields."""
    return [e for e in events if e.get("event") == "log" and e.get("pid") == pid and at(e) > since]


def scheduled_line(etas: Mapping[str, float]) -> str:
    """`inspect scheduled`'s answer, one line: short id and ETA (local time) of each task."""
    held = ", ".join(f"{tid[:8]} due {clock(eta)}" for tid, eta in etas.items()) or "nothing"
    return f"celery inspect scheduled → {held}"
