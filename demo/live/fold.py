"""How each trace event changes the live picture: one handler per hop, and the rules for
what happens to the processes.

Events may arrive out of order across processes (each ships its own every 0.1 s): a
task's state only moves forward (TaskRow.advance), and a replacement child is matched
whichever of the death and the birth comes first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from demo import names
from demo.live import happenings as hap
from demo.live.model import QUEUES_MAX, REPLACE_WINDOW_S, SLACK_S, Changes, Proc, TaskRow
from demo.trace.event import TraceEvent

if TYPE_CHECKING:
    from demo.live.state import LiveState


def replaced(s: LiveState, changes: Changes, dead: Proc, new: Proc) -> None:
    dead.replaced_by, new.replaces = new.pid, dead.pid
    text = f"pool child {new.pid} replaces {dead.pid}" + (f" ({dead.name})" if dead.name else "")
    s.say(changes, max(dead.left or 0.0, new.born), hap.CHILD_REPLACED, new.pid, text)


def match_replacement(s: LiveState, changes: Changes, proc: Proc) -> None:
    siblings = [p for p in s.children_of(proc.ppid or -1) if p.pid != proc.pid]
    if proc.left is not None:  # a child died: the sibling forked just after replaces it
        born = [
            p
            for p in siblings
            if p.replaces is None and proc.left - SLACK_S <= p.born <= proc.left + REPLACE_WINDOW_S
        ]
        if born and proc.replaced_by is None:
            replaced(s, changes, proc, born[0])
        return
    dead = [
        p
        for p in siblings
        if p.left is not None
        and p.replaced_by is None
        and proc.born - REPLACE_WINDOW_S <= p.left <= proc.born + SLACK_S
    ]
    if dead and proc.replaces is None:
        replaced(s, changes, min(dead, key=lambda p: p.left or 0.0), proc)


def gone(s: LiveState, changes: Changes, child: Proc, ts: float, status: str) -> None:
    if child.left is None:
        child.left, child.exit_status, child.busy = ts, status, None
        label = f" ({child.name})" if child.name else ""
        text = f"pool child {child.pid}{label} exited: {status}"
        s.say(changes, ts, hap.CHILD_EXITED, child.pid, text)
        match_replacement(s, changes, child)


Handler = Callable[["LiveState", TraceEvent, Proc, "TaskRow | None", Changes], None]


def _worker_init(s: LiveState, e: TraceEvent, proc: Proc, _: TaskRow | None, c: Changes) -> None:
    proc.born, proc.left = e["ts"], None
    c.procs = True


def _worker_ready(s: LiveState, e: TraceEvent, proc: Proc, _: TaskRow | None, c: Changes) -> None:
    proc.hostname = e.get("hostname") or proc.hostname
    for pid in e.get("children") or []:
        if pid not in s.procs:
            s.procs[pid] = Proc(pid, names.POOL_CHILD, proc.host, proc.pid, e["ts"], e["ts"])
    kids = ", ".join(str(p.pid) for p in s.children_of(proc.pid) if p.left is None)
    text = f"worker {proc.hostname or proc.pid} ready: MainProcess {proc.pid}, pool {kids}"
    s.say(c, e["ts"], hap.WORKER_READY, proc.pid, text)


def _worker_down(s: LiveState, e: TraceEvent, proc: Proc, _: TaskRow | None, c: Changes) -> None:
    proc.left, proc.exit_status = e["ts"], "worker_shutdown"
    s.say(c, e["ts"], hap.WORKER_SHUTDOWN, proc.pid, f"worker MainProcess {proc.pid} stops")


def _child_init(s: LiveState, e: TraceEvent, proc: Proc, _: TaskRow | None, c: Changes) -> None:
    proc.born = e["ts"]
    s.say(c, e["ts"], hap.CHILD_STARTED, proc.pid, f"pool child {proc.pid} started")
    match_replacement(s, c, proc)


def _child_down(s: LiveState, e: TraceEvent, proc: Proc, _: TaskRow | None, c: Changes) -> None:
    gone(s, c, proc, e["ts"], "worker_process_shutdown (a clean exit)")


def _log(s: LiveState, e: TraceEvent, proc: Proc, _: TaskRow | None, c: Changes) -> None:
    c.logs.append(e)
    if e.get("process_name") and not proc.name:
        proc.name, c.procs = str(e.get("process_name")), True
    message = e.get("message", "")
    exited = hap.child_exit(message)
    if exited is not None:
        name, pid, status = exited
        child = s.procs.get(pid) or Proc(pid, names.POOL_CHILD, proc.host, proc.pid, 0.0, 0.0)
        s.procs[pid], child.name = child, child.name or name
        gone(s, c, child, e["ts"], status)
    elif hap.broker_lost(message):
        proc.lost_broker = True
        s.say(c, e["ts"], hap.BROKER_LOST, proc.pid, f"worker {proc.pid} lost Redis")
    elif hap.broker_connected(message) and proc.lost_broker:
        proc.lost_broker = False
        text = f"worker {proc.pid} reconnected: {message}"
        s.say(c, e["ts"], hap.BROKER_BACK, proc.pid, text)


def _published(s: LiveState, e: TraceEvent, proc: Proc, row: TaskRow | None, c: Changes) -> None:
    proc.published += 1
    queue = e.get("routing_key")
    if queue and len(s.queues) < QUEUES_MAX:
        s.queues[queue] = None
    if row is not None:
        row.client = proc.pid
    if proc.published == 1:
        host = f" on {proc.host}" if proc.host else ""
        s.say(c, e["ts"], hap.CLIENT_SEEN, proc.pid, f"client {proc.pid}{host} sends tasks")


def _received(s: LiveState, e: TraceEvent, proc: Proc, row: TaskRow | None, c: Changes) -> None:
    if row is not None:
        row.worker = proc.pid
        row.advance("RECEIVED", e["ts"])


def _accepted(s: LiveState, e: TraceEvent, proc: Proc, row: TaskRow | None, c: Changes) -> None:
    if row is not None and e.get("child_pid"):
        row.child = row.child or e.get("child_pid")


def _prerun(s: LiveState, e: TraceEvent, proc: Proc, row: TaskRow | None, c: Changes) -> None:
    proc.busy, c.procs = e.get("task_id"), True
    if row is not None:
        row.child = proc.pid
        row.advance("STARTED", e["ts"])


def _postrun(s: LiveState, e: TraceEvent, proc: Proc, row: TaskRow | None, c: Changes) -> None:
    if proc.busy == e.get("task_id"):
        proc.busy = None
    proc.tasks_run, c.procs = proc.tasks_run + 1, True
    if row is not None and e.get("state"):
        row.advance(str(e.get("state")), e["ts"])


def _stored(s: LiveState, e: TraceEvent, proc: Proc, row: TaskRow | None, c: Changes) -> None:
    if row is not None:
        row.writer = row.writer or (proc.role, proc.pid)
        row.advance(str(e.get("status") or "SUCCESS"), e["ts"])


def _state(state: str) -> Handler:
    def handle(s: LiveState, e: TraceEvent, proc: Proc, row: TaskRow | None, c: Changes) -> None:
        if row is not None:
            row.advance(state, e["ts"])

    return handle


def _reply(s: LiveState, e: TraceEvent, proc: Proc, row: TaskRow | None, c: Changes) -> None:
    # The timeline ties a BRPOP to its task when the reply comes (demo.trace.capture):
    # the BRPOP, folded earlier without a task, joins that task's events now.
    if row is None or e.get("reply_to") != "BRPOP":
        return
    for brpop in s._brpops.get(proc.pid, ()):
        if brpop.get("task_id") == row.task_id and brpop not in row.events:
            row.events.append(brpop)


HANDLERS: dict[str, Handler] = {
    "worker.init": _worker_init,
    "worker.ready": _worker_ready,
    "worker.shutdown": _worker_down,
    "child.init": _child_init,
    "child.shutdown": _child_down,
    names.LOG: _log,
    "task.published": _published,
    "task.received": _received,
    "task.accepted": _accepted,
    "task.prerun": _prerun,
    "task.postrun": _postrun,
    "result.stored": _stored,
    "task.failure": _state("FAILURE"),
    "task.retry": _state("RETRY"),
    names.REDIS_REPLY: _reply,
}
