"""Narration for scenario 12: Celery's event stream as the spy saw it, and Flower's side of it.

Task events travel as PUBLISHes on `/<db>.celeryev/task.multi` (a list of events a message,
celery/events/dispatcher.py EventDispatcher.flush); worker events on
`/<db>.celeryev/worker.<type>`; control commands on `/<db>.celery.pidbox`. The decoding is
demo.trace.messages'; this module waits for them (each wait with a deadline, KitError naming
what did not come), summarises which Redis commands a process sent, and asks Flower's HTTP API
(open on 127.0.0.1, FLOWER_UNAUTHENTICATED_API set by demo.stack.flower).
Read-only: nothing here writes to Redis.
"""

from __future__ import annotations

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
from demo import names
from demo.errors import KitError
from demo.render.inspect import escape
from demo.stack.flower import Flower
from demo.stack.stack import Stack
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, args_of, key_of, who
from demo.trace.timeline import Timeline
from demo.trace.wait import wait_until

# `celery` and its priority lists (kombu's PRIORITY_STEPS; step 0 is the queue itself).
QUEUE_LISTS = tuple(
    f"{names.DEFAULT_QUEUE}{names.PRIORITY_SEP}{step}" if step else names.DEFAULT_QUEUE
    for step in ins.PRIORITY_STEPS
)
QUEUE_PAGES = ("api/queues/length", "broker")  # Flower's two pages that count messages
# Commands that would read a message's or a result's content (not just count or index it).
CONTENT_READS = ("HGET", "HGETALL", "HMGET", "HSCAN", "HVALS", "LRANGE", "LINDEX", "GET", "MGET")
SCRIPTS = ("EVALSHA", "EVAL")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HTTP_S = 10.0  # how long one request to Flower may take
FLOWER_POLL_S = 0.2  # between two questions to Flower's API
MS = 1000  # milliseconds a second
ID_CHARS = 8  # an id is shown by its first characters


def batches_table(found: Sequence[msg.EventBatch], labels: Mapping[str, str], title: str) -> Table:
    """time | sent by | n | the events inside (type, task label, the event's own pid field)."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "PUBLISH sent by", "n", "events in the body: type task (pid field)"):
        table.add_column(column, overflow="fold")
    for b in found:
        inside = ", ".join(
            f"{ev.get('type')} {labels.get(str(ev.get('uuid')), '')} ({ev.get('pid')})".replace(
                "  ", " "
            )
            for ev in b.events
        )
        since = (b.ts - found[0].ts) * MS
        table.add_row(f"+{since:7.1f} ms", who(b.event), str(len(b.events)), inside)
    return table


def wait_task_events(
    tl: Timeline, task_ids: Collection[str], *, each: int, timeout: float
) -> list[msg.EventBatch]:
    """The task.multi PUBLISHes of these tasks, once they carry `each` events per task.
    task-succeeded leaves the MainProcess after the child's READY, so the client may hold
    a result before the event that reports it is published."""
    sent: list[msg.EventBatch] = []

    def complete() -> list[msg.EventBatch] | None:
        nonlocal sent
        tl.settle()
        sent = msg.event_batches(tl.events(), task_ids=task_ids)
        whole = all(len(msg.task_events(sent, t)) >= each for t in task_ids)
        return sent if whole else None

    def progress() -> str:
        short = sum(len(msg.task_events(sent, t)) < each for t in task_ids)
        return f"{short} of {len(task_ids)} tasks with fewer events"

    what = f"{each} task events for each of {len(task_ids)} tasks"
    return wait_until(complete, timeout=timeout, what=what, progress=progress)


def _beat_of(freq: float | None) -> q.Predicate:
    """A worker-heartbeat PUBLISH, of this `freq` when given."""
    beat = q.where(command="PUBLISH", key_suffix=names.HEARTBEAT_SUFFIX)
    return lambda e: beat(e) and freq in (None, msg.event_batch(e).first.get("freq"))


def wait_heartbeats(
    tl: Timeline,
    pid: int,
    *,
    count: int,
    timeout: float,
    since: float = float("-inf"),
    freq: float | None = None,
) -> list[TraceEvent]:
    """The first `count` worker-heartbeat PUBLISHes of `pid` after `since` (of this `freq`:
    the Heart's own say 2.0, one asked for by a `heartbeat` control command says 5)."""
    return tl.wait_until(
        _beat_of(freq),
        pid=pid,
        since=since,
        count=count,
        timeout=timeout,
        what=f"a heartbeat from pid {pid}",
    )


def wait_answers(
    tl: Timeline, pids: Collection[int], *, freq: float, since: float, timeout: float
) -> dict[int, TraceEvent]:
    """pid -> its first worker-heartbeat of `freq` after `since`: the answer to a `heartbeat`
    control command (celery/worker/control.py heartbeat), once every one of `pids` answered."""
    found: dict[int, TraceEvent] = {}
    beat = _beat_of(freq)

    def answered() -> dict[int, TraceEvent] | None:
        found.clear()
        for e in q.select(tl.events(), since=since):
            pid = e["pid"]
            if pid is not None and pid in pids and pid not in found and beat(e):
                found[pid] = e
        return dict(found) if len(found) == len(pids) else None

    def progress() -> str:
        return f"{len(found)} of {len(pids)} answered"

    what = f"a freq-{freq:g} heartbeat from each of pids {sorted(pids)}"
    return wait_until(answered, timeout=timeout, what=what, progress=progress)


def wait_broadcast(tl: Timeline, pid: int, method: str, *, timeout: float) -> TraceEvent:
    """The first pidbox PUBLISH of control command `method` by `pid`."""
    return tl.wait_for(
        lambda e: msg.control_command(e).method == method,
        command="PUBLISH",
        key_suffix=names.PIDBOX_SUFFIX,
        pid=pid,
        timeout=timeout,
        what=f"a {method} broadcast from pid {pid}",
    )


def control_methods(events: Iterable[TraceEvent], pid: int) -> Counter[str]:
    """method -> how many times `pid` broadcast it on the pidbox (inspect, enable_events …)."""
    return Counter(c.method for c in msg.control_commands(events, pid=pid))


def shape(args: Sequence[str]) -> str:
    """A command with its first key, ids replaced by <id>: one row per kind in a census."""
    key = _UUID.sub("<id>", args[1]) if len(args) > 1 else ""
    if args[0] in SCRIPTS:
        key = " ".join(args[3:4])  # the script's first key says what it is about
    return escape(f"{args[0]} {key}".strip())


def census(events: Iterable[TraceEvent], pid: int, title: str) -> Table:
    """What one process sent to Redis: command and key kind -> count."""
    counts = Counter(
        shape(args_of(e)) for e in q.select(events, event=names.REDIS_COMMAND, pid=pid)
    )
    table = Table(title=title, title_justify="left")
    table.add_column("command and key", overflow="fold")
    table.add_column("count", justify="right")
    for what, n in counts.most_common():
        table.add_row(Text(what), str(n))  # Text: a key's '[' is not rich markup
    return table


def content_reads(events: Iterable[TraceEvent], pid: int) -> list[TraceEvent]:
    """Commands from `pid` that read a message's or a result's content."""
    reads = q.select(events, command=CONTENT_READS, pid=pid)
    return [e for e in reads if key_of(e) != names.UNACKED_MUTEX]  # kombu's Mutex reads its token


@dataclass(frozen=True)
class Pages:
    """Flower's two queue pages, asked in turn, and the queue LLENs Redis saw meanwhile."""

    lengths: Any  # /api/queues/length's JSON
    counted: list[TraceEvent]  # the LLENs on celery and its priority lists, in the window
    own_connections: bool  # each connection was used in that window only


def queue_pages(base: str, tl: Timeline) -> Pages:
    """GET each of QUEUE_PAGES in turn; the spy's view of what they cost Redis."""
    t0 = time.time()
    (status, lengths), (page, _) = (http(base, path) for path in QUEUE_PAGES)
    t1 = time.time()
    if (status, page) != (200, 200) or not isinstance(lengths, dict):
        raise KitError(f"Flower's queue pages answered {status} and {page}: see its log")
    tl.settle()  # every command sent during the requests is on the timeline now
    events = tl.events()
    llens = q.select(events, command="LLEN", since=t0, until=t1)
    counted = [e for e in llens if key_of(e) in QUEUE_LISTS]
    addrs = {e.get("addr") for e in counted}
    # One connection a page, opened for that request and closed: nothing else on it.
    alone = all(t0 < e["ts"] <= t1 for e in events if e.get("addr") in addrs)
    return Pages(lengths, counted, len(addrs) == len(QUEUE_PAGES) and alone)


def reserved_ids(view: ins.UnackedView) -> set[str]:
    """The task ids of the messages an unacked view holds."""
    return {t for e in view.entries if (t := e.message.task_id)}


def wait_reserved(
    tl: Timeline, r: redis.Redis, task_ids: Sequence[str], *, running: int, timeout: float
) -> ins.UnackedView:
    """Wait until `running` of the tasks have started (task.prerun) and all the others sit in
    `unacked`; the unacked view at that moment."""

    def held() -> ins.UnackedView | None:
        started = set(q.ran_by(tl.events(), task_ids))
        view = ins.unacked(r)
        whole = len(started) == running and reserved_ids(view) >= set(task_ids) - started
        return view if whole else None

    what = f"{running} tasks running and the rest reserved"
    return wait_until(held, timeout=timeout, what=what)


def wait_all(results: Iterable[Any], *, timeout: float) -> list[Any]:
    """Every AsyncResult's value (result.get with a deadline each)."""
    return [result.get(timeout=timeout) for result in results]


def running_flower(stack: Stack) -> tuple[Flower, int]:
    """The stack's Flower and its pid; KitError if it was not started."""
    if stack.flower is None or stack.flower.proc is None:
        raise KitError("Flower is not started")
    return stack.flower, stack.flower.proc.pid


def http(base: str, path: str, timeout: float = HTTP_S) -> tuple[int, Any]:
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


def wait_task_state(base: str, task_id: str, state: str, *, timeout: float) -> dict[str, Any]:
    """Poll Flower's /api/task/info/<id> until the task is in `state` (KitError at timeout)."""

    def shown() -> dict[str, Any] | None:
        status, info = http(base, f"api/task/info/{task_id}")
        ok = status == 200 and isinstance(info, dict) and info.get("state") == state
        return info if ok else None

    what = f"Flower showing task {task_id} as {state}"
    return wait_until(shown, timeout=timeout, what=what, poll_s=FLOWER_POLL_S)


def fields_table(info: Mapping[str, Any], keys: Sequence[str], title: str) -> Table:
    """Some fields of a JSON answer, one a row, in the order given."""
    table = Table(title=title, title_justify="left")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key in keys:
        table.add_row(key, Text(escape(info.get(key))))
    return table
