"""Helpers for scenario 12: Celery's event stream as the spy saw it, and Flower's side of it.

Task events travel as PUBLISHes on `/<db>.celeryev/task.multi` (a list of events a message,
celery/events/dispatcher.py EventDispatcher.flush); worker events on
`/<db>.celeryev/worker.<type>`; control commands on `/<db>.celery.pidbox`. This module decodes
those PUBLISHes from the timeline, summarises which Redis commands a process sent, and asks
Flower's HTTP API (open on 127.0.0.1, FLOWER_UNAUTHENTICATED_API set by demo.stack.flower).
Read-only: nothing here writes to Redis.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rich.table import Table
from rich.text import Text

from demo import inspectors as ins
from demo.errors import KitError
from demo.protocol.envelope import EnvelopeError, decode_event_body
from demo.render.inspect import escape
from demo.scenes.processes import command_is, ran_by, wait_for_each
from demo.stack.flower import Flower
from demo.trace.event import TraceEvent
from demo.trace.timeline import Timeline

Event = TraceEvent
TASK_MULTI = ".celeryev/task.multi"
HEARTBEAT = ".celeryev/worker.heartbeat"
PIDBOX = ".celery.pidbox"
QUEUE_LISTS = ("celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169")
# Commands that would read a message's or a result's content (not just count or index it).
CONTENT_READS = frozenset(
    {"HGET", "HGETALL", "HMGET", "HSCAN", "HVALS", "LRANGE", "LINDEX", "GET", "MGET"}
)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _args(e: Event) -> Sequence[str]:
    return e.get("command") or ()


def _ts(e: Event) -> float:
    return float(e.get("ts") or 0.0)


@dataclass(frozen=True)
class Batch:
    """One PUBLISH on an events channel and the Celery events its body carries."""

    ts: float
    pid: int | None  # the sender, as the spy attributed the connection
    role: str
    channel: str
    events: tuple[dict[str, Any], ...]

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("uuid") == task_id]


def batches(events: Iterable[Event], suffix: str = TASK_MULTI, since: float = 0.0) -> list[Batch]:
    """Every PUBLISH on a channel ending with `suffix` after `since`, decoded, in ts order."""
    found = []
    for e in events:
        args = _args(e)
        if len(args) < 3 or str(args[0]).upper() != "PUBLISH" or not args[1].endswith(suffix):
            continue
        if _ts(e) <= since:
            continue
        try:
            body = tuple(decode_event_body(args[2]))
        except EnvelopeError:
            body = ()  # capped by the spy (ARG_CAP) or not an event: shown as empty
        found.append(Batch(_ts(e), e.get("pid"), str(e.get("role")), str(args[1]), body))
    return found


def carrying(found: Iterable[Batch], task_ids: Collection[str]) -> list[Batch]:
    """The batches holding at least one event of these tasks."""
    return [b for b in found if any(ev.get("uuid") in task_ids for ev in b.events)]


def task_events(found: Iterable[Batch], task_id: str) -> list[dict[str, Any]]:
    """One task's events, in the order they were published."""
    return [ev for b in found for ev in b.of(task_id)]


def batches_table(
    found: Sequence[Batch], labels: Mapping[str, str], title: str, t0: float | None = None
) -> Table:
    """time | sent by | n | the events inside (type, task label, the event's own pid field)."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "PUBLISH sent by", "n", "events in the body: type task (pid field)"):
        table.add_column(column, overflow="fold")
    start = t0 if t0 is not None else (found[0].ts if found else 0.0)
    for b in found:
        inside = ", ".join(
            f"{ev.get('type')} {labels.get(str(ev.get('uuid')), '')} ({ev.get('pid')})".replace(
                "  ", " "
            )
            for ev in b.events
        )
        sender = f"{b.role} {b.pid}"
        table.add_row(f"+{(b.ts - start) * 1000:7.1f} ms", sender, str(len(b.events)), inside)
    return table


def of_tasks(tl: Timeline, task_ids: Collection[str]) -> list[Batch]:
    """The task.multi PUBLISHes on the timeline that carry events of these tasks."""
    return carrying(batches(tl.events()), task_ids)


def wait_task_events(
    tl: Timeline, task_ids: Collection[str], each: int = 3, timeout: float = 15.0
) -> list[Batch]:
    """The task.multi PUBLISHes of these tasks, once they carry `each` events per task (or
    at the deadline: the caller's expectation then says what is missing). task-succeeded
    leaves the MainProcess after the child's READY, so the client may hold a result
    before the event that reports it is published."""
    deadline = time.monotonic() + timeout
    while True:
        tl.settle()
        sent = of_tasks(tl, task_ids)
        if all(len(task_events(sent, t)) >= each for t in task_ids):
            return sent
        if time.monotonic() > deadline:
            return sent
        time.sleep(0.1)


def wait_heartbeats(
    tl: Timeline,
    pid: int,
    count: int,
    since: float = 0.0,
    timeout: float = 10.0,
    freq: float | None = None,
) -> list[Event]:
    """The first `count` worker-heartbeat PUBLISHes of `pid` after `since` (of this `freq`:
    the Heart's own say 2.0, one asked for by a `heartbeat` control command says 5)."""
    beat = command_is("PUBLISH", suffix=HEARTBEAT, since=since)

    def match(e: Event) -> bool:
        return beat(e) and e.get("pid") == pid and freq in (None, first_event(e).get("freq"))

    return wait_for_each(tl, match, count, timeout, f"a heartbeat from pid {pid}")


def answered(
    tl: Timeline, pids: Sequence[int], since: float, timeout: float = 10.0
) -> dict[int, Event | None]:
    """pid -> its first freq-5 worker-heartbeat after `since` (the answer to a `heartbeat`
    control command, celery/worker/control.py heartbeat), or None if none came in time."""
    found: dict[int, Event | None] = {}
    for pid in pids:
        try:
            found[pid] = wait_heartbeats(tl, pid, 1, since, timeout, freq=5)[0]
        except KitError:
            found[pid] = None
    return found


def first_event(publish: Event) -> dict[str, Any]:
    """The Celery event a worker-event PUBLISH carries (one event a message); {} if none."""
    try:
        return decode_event_body(str(_args(publish)[2]))[0]
    except (EnvelopeError, IndexError):
        return {}


def control_methods(events: Iterable[Event], pid: int | None, since: float = 0.0) -> Counter[str]:
    """method -> how many times `pid` broadcast it on the pidbox (inspect, enable_events …)."""
    methods: Counter[str] = Counter()
    for e in events:
        args = _args(e)
        if e.get("pid") != pid or _ts(e) <= since or len(args) < 3 or args[0] != "PUBLISH":
            continue
        if not args[1].endswith(PIDBOX):
            continue
        try:
            body = json.loads(base64.b64decode(json.loads(args[2])["body"]))
            methods[str(body["method"])] += 1
        except (ValueError, LookupError, TypeError):
            methods["(undecodable)"] += 1
    return methods


def shape(args: Sequence[str]) -> str:
    """A command with its first key, ids replaced by <id>: one row per kind in a census."""
    key = _UUID.sub("<id>", args[1]) if len(args) > 1 else ""
    if args[0] in ("EVALSHA", "EVAL"):
        key = " ".join(args[3:4])  # the script's first key says what it is about
    return escape(f"{args[0]} {key}".strip())


def census(events: Iterable[Event], pid: int | None, since: float, title: str) -> Table:
    """What one process sent to Redis since `since`: command and key kind -> count."""
    counts = Counter(
        shape(_args(e))
        for e in events
        if e.get("event") == "redis.command" and e.get("pid") == pid and _ts(e) > since
    )
    table = Table(title=title, title_justify="left")
    table.add_column("command and key", overflow="fold")
    table.add_column("count", justify="right")
    for what, n in counts.most_common():
        table.add_row(Text(what), str(n))  # Text: a key's '[' is not rich markup
    return table


def content_reads(events: Iterable[Event], pid: int | None, since: float) -> list[Event]:
    """Commands from `pid` that read a message's or a result's content."""
    return [
        e
        for e in events
        if e.get("pid") == pid
        and _ts(e) > since
        and _args(e)
        and str(_args(e)[0]).upper() in CONTENT_READS
        and str(_args(e)[1]) not in ("unacked_mutex",)  # kombu's Mutex reads its own token
    ]


def queue_counts(events: Sequence[Event], t0: float, t1: float) -> list[Event]:
    """The LLENs on `celery` and its priority lists seen between t0 and t1."""
    return [
        e
        for e in events
        if t0 <= _ts(e) <= t1 and _args(e)[:1] == ["LLEN"] and _args(e)[1] in QUEUE_LISTS
    ]


def one_shot(events: Sequence[Event], addrs: Collection[str], t0: float, t1: float) -> bool:
    """True when no command from these connections was seen outside [t0, t1]: each was opened
    for this one request and closed."""
    return all(t0 <= _ts(e) <= t1 for e in events if e.get("addr") in addrs)


def flower_pid(flower: Flower) -> int:
    if flower.proc is None:
        raise KitError("Flower is not started")
    return flower.proc.pid


def wait_broadcast(tl: Timeline, pid: int, method: str, since: float, timeout: float) -> Event:
    """The first pidbox PUBLISH of control command `method` by `pid` after `since`."""
    publish = command_is("PUBLISH", suffix=PIDBOX, since=since)
    return tl.wait_for(
        lambda e: publish(e) and e.get("pid") == pid and method in control_methods([e], pid),
        timeout=timeout,
        what=f"a {method} broadcast from pid {pid}",
    )


def timed_gets(base: str, paths: Sequence[str]) -> tuple[float, float, list[tuple[int, Any]]]:
    """GET each path in turn: (time before, time after, replies)."""
    t0 = time.time()
    replies = [http(base, path) for path in paths]
    return t0, time.time(), replies


@dataclass(frozen=True)
class Pages:
    """Flower's two queue pages, asked in turn, and the queue LLENs Redis saw meanwhile."""

    lengths: Any  # /api/queues/length's JSON
    counted: list[Event]  # the LLENs on celery and its priority lists, in the window
    own_connections: bool  # each connection was used in that window only


def queue_pages(base: str, tl: Timeline, r: redis.Redis) -> Pages:
    """GET /api/queues/length then /broker; the spy's view of what they cost Redis."""
    t0, t1, ((status, lengths), (page, _)) = timed_gets(base, ["api/queues/length", "broker"])
    if (status, page) != (200, 200) or not isinstance(lengths, dict):
        raise KitError(f"Flower's queue pages answered {status} and {page}: see its log")
    tl.settle()  # every command sent during the requests is on the timeline now
    counted = queue_counts(tl.events(), t0, t1)
    addrs = {str(e.get("addr")) for e in counted}
    return Pages(lengths, counted, len(addrs) == 2 and one_shot(tl.events(), addrs, t0, t1))


def reserved_ids(view: ins.UnackedView) -> set[str]:
    """The task ids of the messages an unacked view holds."""
    return {t for e in view.entries if (t := e.message.task_id)}


def wait_reserved(
    tl: Timeline, r: redis.Redis, task_ids: Sequence[str], running: int, timeout: float = 20.0
) -> ins.UnackedView:
    """Wait until `running` of the tasks have started (task.prerun) and all the others sit in
    `unacked`; the unacked view at that moment."""
    end = time.monotonic() + timeout
    while True:
        started = set(ran_by(tl.events(), task_ids))
        view = ins.unacked(r)
        if len(started) == running and reserved_ids(view) >= set(task_ids) - started:
            return view
        if time.monotonic() >= end:
            raise KitError(f"{running} running and the rest reserved: not seen in {timeout} s")
        time.sleep(0.05)


def wait_log(tl: Timeline, pid: int, text: str, timeout: float = 10.0) -> Event:
    """The first log line of `pid` containing `text`."""
    return tl.wait_for(
        lambda e: e.get("pid") == pid and text in str(e.get("message", "")),
        timeout=timeout,
        what=f"the log line {text!r} from pid {pid}",
    )


def wait_all(results: Iterable[Any], timeout: float = 30.0) -> list[Any]:
    """Every AsyncResult's value (result.get with a deadline each)."""
    return [result.get(timeout=timeout) for result in results]


def http(base: str, path: str, timeout: float = 10.0) -> tuple[int, Any]:
    """GET base/path: (status, JSON or text). HTTP errors come back as their status."""
    try:
        with urllib.request.urlopen(f"{base}/{path.lstrip('/')}", timeout=timeout) as reply:
            text = reply.read().decode("utf-8", "replace")
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError as exc:
        raise KitError(f"Flower at {base} did not answer /{path}: {exc}") from None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_task_state(base: str, task_id: str, state: str, timeout: float) -> dict[str, Any]:
    """Poll Flower's /api/task/info/<id> until the task is in `state` (KitError at timeout)."""
    end = time.monotonic() + timeout
    while True:
        status, info = http(base, f"api/task/info/{task_id}")
        if status == 200 and isinstance(info, dict) and info.get("state") == state:
            return info
        if time.monotonic() >= end:
            raise KitError(f"Flower did not show task {task_id} as {state} within {timeout} s")
        time.sleep(0.2)


def fields_table(info: Mapping[str, Any], keys: Sequence[str], title: str) -> Table:
    """Some fields of a JSON answer, one a row, in the order given."""
    table = Table(title=title, title_justify="left")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key in keys:
        table.add_row(key, Text(escape(info.get(key))))
    return table
