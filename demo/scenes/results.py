"""Helpers for the result and prefetch scenarios: a result key as stored, one row per task
from the trace hops, a queue watched over time, a fetch by task_id from a brand-new process.

Read-only on Redis, like demo.inspectors: nothing here writes to or deletes a key. Every
wait has a deadline and says what it waited for when it gives up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rich.table import Table

from demo import inspectors
from demo.errors import KitError
from demo.protocol.envelope import EnvelopeError, decode_result
from demo.trace.event import TraceEvent, args_of
from demo.trace.timeline import Timeline

RESULT_PREFIX = "celery-task-meta-"  # celery/backends/base.py KeyValueStoreBackend
POLL_S = 0.05
Event = TraceEvent


def result_key(task_id: str) -> str:
    return f"{RESULT_PREFIX}{task_id}"


def writes_of(events: Iterable[Event], task_id: str) -> list[Event]:
    """The SETEX commands that stored (or overwrote) the result of `task_id`."""
    key = result_key(task_id)
    return [e for e in events if args_of(e)[:2] == ["SETEX", key]]


def status_of(write: Event) -> str:
    """The status a result SETEX wrote, and the exception type for a failure."""
    meta = json.loads(args_of(write)[3])
    result = meta.get("result")
    kind = result.get("exc_type") if isinstance(result, dict) else None
    return f"{meta.get('status')} {kind}" if kind else str(meta.get("status"))


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class StoredKey:
    """A celery-task-meta-<id> key as Redis holds it now."""

    key: str
    exists: bool
    ttl_s: int | None  # seconds left; None when the key is missing or never expires
    meta: dict[str, Any] | None  # the decoded JSON; None when missing or undecodable
    error: str | None = None  # why the value could not be decoded


def read_result(r: redis.Redis, task_id: str) -> StoredKey:
    """GET and TTL of the task's result key, in one MULTI so that both describe one moment."""
    key = result_key(task_id)
    pipe = r.pipeline(transaction=True)
    pipe.get(key)
    pipe.ttl(key)
    raw, ttl = pipe.execute()
    if raw is None:
        return StoredKey(key, False, None, None)
    seconds = int(ttl) if int(ttl) >= 0 else None
    try:
        return StoredKey(key, True, seconds, decode_result(_text(raw)))
    except EnvelopeError as exc:
        return StoredKey(key, True, seconds, None, str(exc))


def wait_until_gone(r: redis.Redis, key: str, timeout: float, poll_s: float = 0.1) -> float:
    """Poll EXISTS until the key is gone; the epoch time it was first seen missing."""
    end = time.monotonic() + timeout
    while r.exists(key):
        if time.monotonic() >= end:
            raise KitError(f"{key} still exists after {timeout} s: is its TTL longer?")
        time.sleep(poll_s)
    return time.time()


def is_command(name: str, task_id: str | None = None) -> Callable[[Event], bool]:
    """A predicate for Timeline.wait_for: the spy saw Redis command `name` (for this task)."""
    return lambda e: (e.get("command") or [""])[0] == name and task_id in (None, e.get("task_id"))


def is_hop(name: str, task_id: str | None = None) -> Callable[[Event], bool]:
    """A predicate for Timeline.wait_for: trace hop `name` (for this task)."""
    return lambda e: e.get("event") == name and task_id in (None, e.get("task_id"))


@dataclass(frozen=True)
class TaskRow:
    """One task's life from the trace hops: who received it, when it started and ended."""

    task_id: str
    received: float | None  # task.received (MainProcess)
    worker_pid: int | None  # the MainProcess that received it
    started: float | None  # task.prerun (pool child)
    ended: float | None  # task.postrun (pool child)
    child_pid: int | None  # the pool child that ran it

    def overlaps(self, other: TaskRow) -> bool:
        """Both ran at the same moment for a while."""
        if None in (self.started, self.ended, other.started, other.ended):
            return False
        return max(self.started or 0, other.started or 0) < min(self.ended or 0, other.ended or 0)


def _first(events: Iterable[Event], name: str, task_id: str) -> Event | None:
    return next((e for e in events if e.get("event") == name and e.get("task_id") == task_id), None)


def task_rows(events: Sequence[Event], task_ids: Iterable[str]) -> list[TaskRow]:
    """A row per task id, in the order given; a hop not seen (yet) leaves its cells None."""
    rows = []
    for task_id in task_ids:
        got, pre, post = (
            _first(events, n, task_id) for n in ("task.received", "task.prerun", "task.postrun")
        )
        rows.append(
            TaskRow(
                task_id,
                float(got["ts"]) if got else None,
                got["pid"] if got else None,
                float(pre["ts"]) if pre else None,
                float(post["ts"]) if post else None,
                pre["pid"] if pre else None,
            )
        )
    return rows


def wait_rows(
    timeline: Timeline, task_ids: Sequence[str], timeout: float, what: str = "the tasks to end"
) -> list[TaskRow]:
    """Poll the timeline until every task has its hops: task.postrun, and task.received
    and task.prerun too (each process ships its own every 0.1 s: one may land late)."""
    end = time.monotonic() + timeout

    def whole(row: TaskRow) -> bool:
        return None not in (row.received, row.started, row.ended)

    while True:
        rows = task_rows(timeline.events(), task_ids)
        if all(whole(row) for row in rows):
            return rows
        if time.monotonic() >= end:
            missing = sum(not whole(row) for row in rows)
            raise KitError(f"{what}: {missing} of {len(rows)} not complete within {timeout} s")
        time.sleep(POLL_S)


def _at(ts: float | None, t0: float) -> str:
    return "—" if ts is None else f"+{ts - t0:6.2f} s"


def rows_table(
    rows: Sequence[TaskRow],
    t0: float,
    labels: Mapping[str, str] | None = None,
    title: str = "each task's life, seconds after the first publish",
) -> Table:
    """task | received by | received | started | ended | ran in (child pid)."""
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("task", "received by", "received", "started", "ended", "ran in"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        label = (labels or {}).get(row.task_id, row.task_id[:8])
        table.add_row(
            label,
            f"MainProcess {row.worker_pid}" if row.worker_pid else "—",
            _at(row.received, t0),
            _at(row.started, t0),
            _at(row.ended, t0),
            f"child {row.child_pid}" if row.child_pid else "—",
        )
    return table


@dataclass(frozen=True)
class Sample:
    """What a queue and `unacked` held at one moment."""

    at: float  # epoch s
    queued: int  # LLEN of the queue
    reserved: frozenset[str]  # the watched task ids found in `unacked`


def watch(
    r: redis.Redis,
    queue: str,
    task_ids: Collection[str],
    done: Callable[[], bool],
    timeout: float,
    every_s: float = POLL_S,
) -> list[Sample]:
    """Sample LLEN queue and the watched ids in `unacked` until done() (KitError at timeout)."""
    end, samples = time.monotonic() + timeout, []
    while True:
        view = inspectors.unacked(r, limit=max(len(task_ids) * 4, 50))
        held = frozenset(t for e in view.entries if (t := e.message.task_id) and t in task_ids)
        samples.append(Sample(time.time(), int(r.llen(queue)), held))
        if done():
            return samples
        if time.monotonic() >= end:
            raise KitError(f"watching {queue!r}: the tasks were not done within {timeout} s")
        time.sleep(every_s)


def samples_table(
    samples: Sequence[Sample],
    rows: Sequence[TaskRow],
    t0: float,
    queue: str = "celery",
    title: str = "the queue and `unacked` while the tasks ran (each change)",
) -> Table:
    """time | in the list | reserved in unacked | running: one line per change of state."""
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("time", f"in list {queue!r}", "reserved in `unacked`", "running"):
        table.add_column(column, no_wrap=True)
    last: tuple[int, int, int] | None = None
    for sample in samples:
        running = sum(
            1 for row in rows if row.started and row.started <= sample.at < (row.ended or 1e18)
        )
        state = (sample.queued, len(sample.reserved), running)
        if state != last:
            table.add_row(_at(sample.at, t0), *(str(n) for n in state))
            last = state
    return table


def wait_quiet(
    timeline: Timeline,
    r: redis.Redis,
    pid: int,
    queue: str,
    quiet_s: float = 1.3,
    timeout: float = 15.0,
) -> float:
    """Wait until `pid` has not sent BRPOP on `queue` for quiet_s; the ts of its last one.

    kombu's BRPOP times out after 1 s and is sent again while the worker may take more
    messages: a longer silence means the worker stopped asking (its prefetch window is full).
    """
    end = time.monotonic() + timeout
    while True:
        timeline.settle()  # the spy has shown every BRPOP sent so far
        last = max(
            (
                float(e["ts"])
                for e in timeline.events()
                if e.get("pid") == pid and list(e.get("command") or [])[:2] == ["BRPOP", queue]
            ),
            default=0.0,
        )
        if time.time() - last >= quiet_s:
            return last
        if time.monotonic() >= end:
            raise KitError(f"pid {pid} still sends BRPOP {queue} after {timeout} s: not full?")
        time.sleep(0.1)


def worker_stats(env: Mapping[str, str], nodename: str, timeout: float = 2.0) -> dict[str, Any]:
    """What `celery inspect stats` says about one worker (prefetch_count, pool, …)."""
    from demo.stack.control import control_app  # imports celery: only when asked

    replies = control_app(env).control.inspect([nodename], timeout=timeout).stats() or {}
    if nodename not in replies:
        raise KitError(f"worker {nodename} did not answer `inspect stats` within {timeout} s")
    stats: dict[str, Any] = replies[nodename]
    return stats


def add_consumer(env: Mapping[str, str], nodename: str, queue: str, timeout: float = 2.0) -> None:
    """`celery control add_consumer QUEUE -d NODENAME`: the worker starts consuming QUEUE."""
    from demo.stack.control import control_app

    replies = control_app(env).control.add_consumer(
        queue, destination=[nodename], reply=True, timeout=timeout
    )
    if not any(nodename in reply for reply in replies or []):
        raise KitError(f"worker {nodename} did not confirm add_consumer {queue} in {timeout} s")


@dataclass(frozen=True)
class Fetched:
    """What `python -m demo result <task_id>` did, run as a separate process."""

    pid: int
    returncode: int
    output: dict[str, Any] | None  # its JSON answer, when it gave one
    stderr: str


# `python -m demo …`, then a pause before the interpreter exits (argv[1]: seconds). The
# spy learns which pid owns a connection by asking the OS, which knows only live sockets:
# a process that exits right after its last command would be shown as "unknown".
_LINGER = (
    "import atexit, sys, time; atexit.register(time.sleep, float(sys.argv.pop(1))); "
    "from demo.cli import main; main(prog_name='python -m demo')"
)


def fetch_in_new_process(
    env: Mapping[str, str], task_id: str, timeout: float = 10.0, linger_s: float = 0.0
) -> Fetched:
    """Run `python -m demo result TASK_ID` with only the stack's env and the task id.

    XRAY_STATE_DIR points at an empty temporary folder, so the command finds no saved
    `demo up` state and uses the environment it was given. With `linger_s`, the process
    stays alive that long after it answered, so that the spy can still name its pid.
    """
    start = [sys.executable, "-m", "demo"]
    if linger_s > 0:
        start = [sys.executable, "-c", _LINGER, str(linger_s)]
    with tempfile.TemporaryDirectory(prefix="xray-fetch-") as state_dir:
        proc = subprocess.Popen(
            [*start, "result", task_id, "--timeout", str(timeout)],
            env={**os.environ, **env, "XRAY_STATE_DIR": state_dir},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout + linger_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise KitError(f"`python -m demo result {task_id}` did not end in time") from None
    try:
        answer = json.loads(out) if out.strip() else None
    except ValueError:
        answer = None
    output = answer if isinstance(answer, dict) else None
    return Fetched(proc.pid, proc.returncode, output, err.strip())
