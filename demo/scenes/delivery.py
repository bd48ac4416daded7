"""Narration for scenarios 13 to 15 (redelivery, rate limits, prefetch): reservations.

A message a worker took is reserved in `unacked` (kombu's `QoS.append`: `ZADD unacked_index
<time> <tag>`, `HSET unacked <tag> <message>`) until the ack drops it (`ZREM`, `HDEL`), a
requeue or a sweep puts it back (`LPUSH`/`RPUSH`), or nobody does anything. Pure questions
about the trace, plus the one act no Celery API does: killing a whole worker as the OOM
killer or a lost machine would.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
from rich.table import Table

from demo import names
from demo.errors import KitError
from demo.scenes import timing as tm
from demo.stack.worker import Worker
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, args_of, command_name, who
from demo.trace.timeline import Timeline


def kill_worker(worker: Worker, *, deadline_s: float = 10.0) -> float:
    """SIGKILL a worker the scenario started, MainProcess and pool children at once (its
    process group: the kit starts each worker in a session of its own); when it was sent."""
    if worker.proc is None or os.getpgid(worker.pid) != worker.pid:
        raise KitError(f"worker {worker.name} does not lead its own process group: not killing")
    family = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children()]
    sent = time.time()
    os.killpg(worker.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(family, timeout=deadline_s)
    worker.proc.wait(timeout=deadline_s)
    if alive:
        raise KitError(f"still alive {deadline_s} s after SIGKILL: {[p.pid for p in alive]}")
    return sent


@dataclass(frozen=True)
class Reservation:
    """One delivery of a message to a worker: reserved when, by whom, and when released."""

    task_id: str
    reserved: TraceEvent  # the ZADD unacked_index <time> <tag>
    released: TraceEvent | None  # the ZREM of that tag after it: ack, requeue or sweep

    @property
    def score(self) -> float:
        """When the reservation was made, as kombu scored it: the sweeps compare this."""
        return float(args_of(self.reserved)[2])

    @property
    def tag(self) -> str:
        return args_of(self.reserved)[3]


def reservations(events: Sequence[TraceEvent], **criteria: Any) -> list[Reservation]:
    """Every reservation (ZADD unacked_index, matching `criteria`, e.g. pid=), in order, each
    with the first ZREM of its tag that followed it."""
    zrems = q.select(events, command="ZREM", key=names.UNACKED_INDEX)
    found = []
    for e in q.select(events, command="ZADD", key=names.UNACKED_INDEX, **criteria):
        tag = args_of(e)[3:4]
        later = (x for x in zrems if args_of(x)[2:3] == tag and x["ts"] >= e["ts"])
        found.append(Reservation(e.get("task_id", ""), e, next(later, None)))
    return found


def wait_reserved(
    tl: Timeline, pid: int, *, count: int, since: float = 0.0, timeout: float
) -> list[Reservation]:
    """The first `count` reservations process `pid` made after `since`, once all of them are
    on the timeline."""
    tl.wait_until(
        command="ZADD",
        key=names.UNACKED_INDEX,
        pid=pid,
        since=since,
        count=count,
        timeout=timeout,
        what=f"{count} reservations by pid {pid}",
    )
    return reservations(tl.events(), pid=pid, since=since)[:count]


def most_held(found: Iterable[Reservation]) -> int:
    """The most reservations held at one moment (a worker's prefetch window, filled)."""
    moves = sorted(
        [(r.reserved["ts"], 1) for r in found]
        + [(r.released["ts"], -1) for r in found if r.released is not None]
    )
    held = most = 0
    for _, step in moves:
        held += step
        most = max(most, held)
    return most


def restores(events: Iterable[TraceEvent], queue: str, **criteria: Any) -> list[msg.Pushed]:
    """Messages put back at the head of `queue` (RPUSH: the next BRPOP takes them first), as
    kombu's sweep (`QoS.restore_visible`) and its restore at shutdown do."""
    pushed = msg.pushes(events, key=queue, **criteria)
    return [p for p in pushed if command_name(p.event) == "RPUSH"]


def last_sweep(events: Iterable[TraceEvent], pid: int, *, before: float) -> tm.Scan | None:
    """The last sweep of `unacked_index` (QoS.restore_visible's ZRANGE … BYSCORE) that process
    `pid` sent before `before`: the one that found what was put back then."""
    found = [
        x for x in tm.restore_scans(events) if x.event["pid"] == pid and x.event["ts"] <= before
    ]
    return found[-1] if found else None


def reservations_table(found: Sequence[Reservation], t0: float, title: str) -> Table:
    """task | reserved by | reserved | released: seconds after t0."""
    table = Table(title=title, title_justify="left")
    for column in ("task", "reserved by", "reserved", "released by", "released"):
        table.add_column(column, no_wrap=True)
    for r in found:
        gone = r.released
        table.add_row(
            r.task_id[:8],
            who(r.reserved),
            f"+{r.reserved['ts'] - t0:5.2f} s",
            who(gone) if gone else "—",
            f"+{gone['ts'] - t0:5.2f} s" if gone else "still reserved",
        )
    return table
