"""Narration for the result and prefetch scenarios (03, 04): a result key as Redis holds it
now, a queue watched while tasks run, the moment a worker stops asking for messages (09 asks
it too, of a worker going offline), a fetch by task id from a brand-new process.

Read-only on Redis, like demo.inspectors: nothing here writes to or deletes a key. Questions
about the trace go to demo.trace.query; every wait goes through demo.trace.wait.wait_until,
which names what did not arrive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rich.table import Table

from demo import inspectors, names
from demo.errors import KitError
from demo.protocol.envelope import EnvelopeError, decode_result
from demo.trace import query
from demo.trace.event import at
from demo.trace.query import TaskLife
from demo.trace.timeline import Timeline
from demo.trace.wait import wait_until

EXISTS_POLL_S = 0.1  # how often `wait_until_gone` asks EXISTS
# kombu's BRPOP times out after 1 s and is sent again while the worker may take more
# messages: a longer silence means the worker stopped asking.
QUIET_S = 1.3
UNACKED_ROWS = 50  # at least this many `unacked` entries read per sample: others' may be there
EXIT_GRACE_S = 30  # beyond its own timeout, how long the fetching process may take to exit


@dataclass(frozen=True)
class StoredKey:
    """A celery-task-meta-<id> key as Redis holds it now."""

    key: str
    exists: bool
    ttl_s: int | None  # seconds left; None when the key is missing or never expires
    meta: dict[str, Any] | None  # the decoded JSON; None when missing or undecodable
    error: str | None = None  # why the value could not be decoded


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_result(r: redis.Redis, task_id: str) -> StoredKey:
    """GET and TTL of the task's result key, in one MULTI so that both describe one moment."""
    key = names.result_key(task_id)
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


def wait_until_gone(r: redis.Redis, key: str, *, timeout: float) -> float:
    """Ask EXISTS until the key is gone; the epoch time it was first seen missing."""
    return wait_until(
        lambda: None if r.exists(key) else time.time(),
        timeout=timeout,
        what=f"{key} expiring (is its TTL longer?)",
        poll_s=EXISTS_POLL_S,
    )


def wait_stops_asking(
    timeline: Timeline, pid: int, *, queue: str, quiet_s: float = QUIET_S, timeout: float
) -> float:
    """Wait until `pid` has sent no BRPOP on `queue` for `quiet_s`; the ts of its last one.

    For a worker that still consumes, that silence means its prefetch window is full (04);
    for one going offline, that it stopped consuming (09).
    """

    def quiet() -> float | None:
        timeline.settle()  # every BRPOP sent so far is on the timeline
        last = query.last(timeline.events(), command="BRPOP", key=queue, pid=pid)
        return last["ts"] if last is not None and time.time() - last["ts"] >= quiet_s else None

    what = f"pid {pid} to stop sending BRPOP {queue} (a full prefetch window, or stopping)"
    return wait_until(quiet, timeout=timeout, what=what, poll_s=EXISTS_POLL_S)


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
    *,
    done: Callable[[], bool],
    timeout: float,
) -> list[Sample]:
    """Sample LLEN queue and the watched ids in `unacked` until done()."""
    samples: list[Sample] = []
    limit = max(len(task_ids) * 4, UNACKED_ROWS)

    def sample() -> list[Sample] | None:
        view = inspectors.unacked(r, limit=limit)
        held = frozenset(t for e in view.entries if (t := e.message.task_id) and t in task_ids)
        samples.append(Sample(time.time(), int(r.llen(queue)), held))
        return samples if done() else None

    return wait_until(
        sample,
        timeout=timeout,
        what=f"the tasks on {queue!r} to end",
        progress=lambda: f"{len(samples)} samples",
    )


def _at(ts: float | None, t0: float) -> str:
    return "—" if ts is None else f"+{ts - t0:6.2f} s"


def samples_table(
    samples: Sequence[Sample],
    lives: Sequence[TaskLife],
    t0: float,
    *,
    queue: str = names.DEFAULT_QUEUE,
    title: str = "the queue and `unacked` while the tasks ran (each change)",
) -> Table:
    """time | in the list | reserved in unacked | running: one line per change of state."""
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("time", f"in list {queue!r}", "reserved in `unacked`", "running"):
        table.add_column(column, no_wrap=True)
    last: tuple[int, int, int] | None = None
    for sample in samples:
        running = sum(at(t["task.prerun"]) <= sample.at < at(t["task.postrun"]) for t in lives)
        state = (sample.queued, len(sample.reserved), running)
        if state != last:
            table.add_row(_at(sample.at, t0), *(str(n) for n in state))
            last = state
    return table


@dataclass(frozen=True)
class Fetched:
    """What `python -m demo result <task_id>` did, run as a separate process."""

    pid: int
    returncode: int
    output: dict[str, Any] | None  # its JSON answer, when it gave one
    stderr: str


def fetch_in_new_process(env: Mapping[str, str], task_id: str, *, timeout: float = 10.0) -> Fetched:
    """Run `python -m demo result TASK_ID` with only the stack's env and the task id.

    XRAY_STATE_DIR points at an empty temporary folder, so the command finds no saved
    `demo up` state and uses the environment it was given. The process records its own
    Redis commands, like any client of the app, and ships them as it exits.
    """
    start = [sys.executable, "-m", "demo"]
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
            out, err = proc.communicate(timeout=timeout + EXIT_GRACE_S)
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
