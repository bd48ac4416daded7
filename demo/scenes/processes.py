"""The worker's processes over time, read from the trace.

Which pool child ran which task (its `task.prerun` hop), when each child was forked
(`child.init`, the worker_process_init signal) and when it left (`child.shutdown`), and how
regular a periodic command is (the MainProcess's BRPOP loop, its heartbeat PUBLISH).
Pure functions of trace events and rich tables of them, plus waits on the timeline (each
with a deadline).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from demo.errors import KitError
from demo.trace.event import TraceEvent
from demo.trace.timeline import Timeline

Event = TraceEvent
BAR = 40  # characters of a lifeline


def ran_by(events: Iterable[Event], task_ids: Collection[str] | None = None) -> dict[str, int]:
    """task id -> pid of the process whose `task.prerun` hop names it (first one wins)."""
    found: dict[str, int] = {}
    for e in events:
        tid = e.get("task_id")
        wanted = task_ids is None or tid in task_ids
        if e.get("event") == "task.prerun" and isinstance(tid, str) and tid not in found and wanted:
            found[tid] = e["pid"] or 0
    return found


def child_hops(events: Iterable[Event], worker_pid: int, event: str = "child.init") -> list[Event]:
    """The `event` hops sent by children of `worker_pid` (their ppid), in trace order."""
    return [e for e in events if e.get("event") == event and e.get("ppid") == worker_pid]


@dataclass(frozen=True)
class ChildLife:
    """One pool child as the trace saw it."""

    pid: int
    name: str  # ForkPoolWorker-N from its log lines; "" if it logged nothing
    forked: float | None  # ts of its child.init hop
    exited: float | None  # ts of its child.shutdown hop
    tasks: tuple[str, ...]  # the task ids it ran, in order


def lives(events: Sequence[Event], worker_pid: int) -> list[ChildLife]:
    """Every child of `worker_pid` the trace knows, by fork time (unknown first)."""
    born = {(e["pid"] or 0): float(e["ts"]) for e in child_hops(events, worker_pid)}
    gone = {
        (e["pid"] or 0): float(e["ts"]) for e in child_hops(events, worker_pid, "child.shutdown")
    }
    ran: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    for e in events:
        if e.get("ppid") != worker_pid:
            continue
        pid = e["pid"] or 0
        if e.get("event") == "task.prerun":
            ran.setdefault(pid, []).append(str(e.get("task_id")))
        if e.get("event") == "log" and e.get("process_name"):
            names.setdefault(pid, str(e["process_name"]))
    pids = born.keys() | gone.keys() | ran.keys()
    found = [
        ChildLife(pid, names.get(pid, ""), born.get(pid), gone.get(pid), tuple(ran.get(pid, [])))
        for pid in pids
    ]
    return sorted(found, key=lambda c: (c.forked or 0.0, c.pid))


def _bar(life: ChildLife, t0: float, t1: float) -> str:
    step = max(t1 - t0, 1e-6) / BAR
    cells = []
    for i in range(BAR):
        t = t0 + (i + 0.5) * step
        alive = (life.forked is None or life.forked <= t) and (
            life.exited is None or t < life.exited
        )
        cells.append("━" if alive else "·")
    return "".join(cells)


def lives_table(
    children: Sequence[ChildLife],
    t0: float,
    t1: float,
    alive: Collection[int],
    title: str = "the pool's children over time",
) -> Table:
    """One row per child: when it was forked and left (ms from t0), its tasks, a lifeline."""
    table = Table(title=title, title_justify="left")
    for column in ("pid", "name", "forked", "exited", "tasks", "OS now"):
        table.add_column(column, no_wrap=True)
    table.add_column(f"lifeline: {0:.1f} s … {t1 - t0:.1f} s", no_wrap=True)

    def ms(ts: float | None) -> str:
        return "before" if ts is None else f"{(ts - t0) * 1000:+.0f} ms"

    for c in children:
        state = "alive" if c.pid in alive else "gone"
        cells = (str(c.pid), c.name or "—", ms(c.forked), "—" if c.exited is None else ms(c.exited))
        table.add_row(*cells, str(len(c.tasks)), state, Text(_bar(c, t0, t1)))
    return table


def tasks_table(
    task_ids: Sequence[str],
    events: Sequence[Event],
    reported: Mapping[str, int],
    title: str = "task → the process that ran it",
) -> Table:
    """One row per task: the pid of its task.prerun hop, that child's name and how many
    tasks it had run by then, and the pid the task itself returned."""
    pids = ran_by(events, task_ids)
    names = {
        (e["pid"] or 0): str(e["process_name"])
        for e in events
        if e.get("event") == "log" and e.get("process_name")
    }
    table = Table(title=title, title_justify="left")
    for column in ("#", "task id", "task.prerun pid", "name", "its n-th task", "task returned"):
        table.add_column(column, no_wrap=True)
    seen: dict[int, int] = {}
    for i, tid in enumerate(task_ids, 1):
        pid = pids.get(tid, -1)
        seen[pid] = seen.get(pid, 0) + 1
        row = (str(pid), names.get(pid, "—"), str(seen[pid])) if pid > 0 else ("—",) * 3
        table.add_row(str(i), tid[:8] + "…", *row, str(reported.get(tid, "—")))
    return table


def published(events: Iterable[Event], channel_suffix: str, pid: int | None = None) -> list[Event]:
    """The PUBLISH commands the spy saw on a channel ending with `channel_suffix`."""
    return [
        e
        for e in events
        if e.get("event") == "redis.command"
        and len(e.get("command") or ()) > 2
        and str(e["command"][0]).upper() == "PUBLISH"
        and str(e["command"][1]).endswith(channel_suffix)
        and (pid is None or e.get("pid") == pid)
    ]


def event_body(publish: Event) -> dict[str, Any]:
    """The Celery event a kombu fanout PUBLISH carries (JSON envelope, base64 JSON body)."""
    envelope = json.loads(publish["command"][2])
    body = json.loads(base64.b64decode(envelope["body"]))
    if not isinstance(body, dict):
        raise KitError(f"not a Celery event: {body!r}")
    return body


def gaps(events: Sequence[Event]) -> list[float]:
    """Seconds between consecutive events."""
    stamps = [float(e["ts"]) for e in events]
    return [b - a for a, b in itertools.pairwise(stamps)]


def wait_for_each(
    tl: Timeline, predicate: Callable[[Event], bool], count: int, timeout: float, what: str
) -> list[Event]:
    """The first `count` events matching, in ts order, once `count` of them are on the
    timeline. Not one at a time: several processes ship their hops on their own 0.1 s
    ticks, so a later event may land first."""
    end = time.monotonic() + timeout
    while True:
        found: list[Event] = sorted(
            (e for e in tl.events() if predicate(e)), key=lambda e: float(e["ts"])
        )
        if len(found) >= count:
            return found[:count]
        if time.monotonic() >= end:
            raise KitError(f"{what}: {len(found)} of {count} seen within {timeout} s")
        time.sleep(0.05)


def is_command(e: Event, name: str, key: str | None = None) -> bool:
    """A Redis command `name` seen by the spy, on `key` (its first argument) when given."""
    args: Sequence[str] = e.get("command") or ()
    return (
        e.get("event") == "redis.command"
        and bool(args)
        and str(args[0]).upper() == name
        and (key is None or (len(args) > 1 and args[1] == key))
    )


def command_is(
    name: str, key: str | None = None, suffix: str = "", since: float = float("-inf")
) -> Callable[[Event], bool]:
    """A predicate: the Redis command `name`, on `key` or on a key ending with `suffix`,
    seen after `since` (epoch s)."""

    def match(e: Event) -> bool:
        args: Sequence[str] = e.get("command") or ()
        late = float(e.get("ts") or 0.0) > since
        return is_command(e, name, key) and len(args) > 1 and str(args[1]).endswith(suffix) and late

    return match


def hop_is(
    event: str, pid: int | None = None, ppid: int | None = None, since: float = float("-inf")
) -> Callable[[Event], bool]:
    """A predicate: the trace hop `event`, sent by `pid` or by a child of `ppid`, after `since`."""
    return lambda e: (
        e.get("event") == event
        and (pid is None or e.get("pid") == pid)
        and (ppid is None or e.get("ppid") == ppid)
        and float(e.get("ts") or 0.0) > since
    )


def wait_hop(tl: Timeline, event: str, pid: int, timeout: float = 10.0) -> Event:
    """The first `event` hop sent by `pid`, waiting for it on the timeline."""
    return tl.wait_for(hop_is(event, pid), timeout=timeout, what=f"the {event} hop of pid {pid}")


def binding_writes(events: Iterable[Event], pid: int) -> list[Event]:
    """The SADD and ZADD commands `pid` sent to kombu's `_kombu.binding*` keys."""
    return [
        e
        for e in events
        if (is_command(e, "SADD") or is_command(e, "ZADD"))
        and len(e["command"]) > 1
        and str(e["command"][1]).startswith("_kombu.binding")
        and e.get("pid") == pid
    ]


def pids_table(views: Mapping[str, Iterable[int]], title: str) -> Table:
    """One row per source of truth: who says it, and the pids it names (sorted)."""
    table = Table(title=title, title_justify="left")
    table.add_column("who says")
    table.add_column("pids")
    for who, pids in views.items():
        table.add_row(who, ", ".join(map(str, sorted(pids))))
    return table


def wait_ran(tl: Timeline, task_ids: Sequence[str], timeout: float = 30.0) -> dict[str, int]:
    """task id -> pid that ran it, once every task's `task.prerun` hop is on the timeline."""
    end = time.monotonic() + timeout
    for tid in task_ids:

        def prerun(e: Event, tid: str = tid) -> bool:
            return e.get("event") == "task.prerun" and e.get("task_id") == tid

        left = max(end - time.monotonic(), 0.0)
        tl.wait_for(prerun, timeout=left, what=f"the task.prerun hop of task {tid}")
    return ran_by(tl.events(), task_ids)
