"""The live picture, folded from trace events as they come (demo.live.fold says how).

Like Celery's `celery/events/state.py` over its event stream, `LiveState.fold` takes each
batch of trace events and keeps what the screens draw (demo.live.model): every process
seen, the recent tasks with their events, the happenings. Everything is bounded, however
long it runs: TASKS_MAX tasks, TASK_EVENTS_MAX events each, PROCS_MAX processes (the gone
ones and the clients go first), HAPPENINGS_MAX happenings.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from demo import names
from demo.live import happenings as hap
from demo.live.fold import HANDLERS
from demo.live.happenings import Happening
from demo.live.model import (
    GUESSED,
    HAPPENINGS_MAX,
    PROCS_MAX,
    TASKS_MAX,
    Changes,
    Proc,
    TaskRow,
)
from demo.trace.event import TraceEvent, args_of, command_name


class LiveState:
    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self.tasks: OrderedDict[str, TaskRow] = OrderedDict()
        self.happenings: deque[Happening] = deque(maxlen=HAPPENINGS_MAX)
        self.queues: dict[str, None] = {names.DEFAULT_QUEUE: None}  # routing keys seen
        self.events_folded = 0
        self.tasks_seen = 0
        self._brpops: dict[int, deque[TraceEvent]] = {}

    def fold(self, events: Iterable[TraceEvent]) -> Changes:
        changes = Changes()
        for e in events:
            self._fold(e, changes)
        if len(self.procs) > PROCS_MAX:
            self._prune()
        return changes

    def recent(self, count: int) -> list[TaskRow]:
        """The newest `count` tasks, newest first."""
        rows = reversed(self.tasks.values())
        return [row for _, row in zip(range(count), rows, strict=False)]

    def by_role(self, role: str) -> list[Proc]:
        return sorted((p for p in self.procs.values() if p.role == role), key=lambda p: p.born)

    def children_of(self, pid: int) -> list[Proc]:
        return [p for p in self.by_role(names.POOL_CHILD) if p.ppid == pid]

    # -- folding --------------------------------------------------------------------------

    def _fold(self, e: TraceEvent, changes: Changes) -> None:
        self.events_folded += 1
        changes.newest = max(changes.newest, e["ts"])
        proc = self._proc(e, changes) if e["pid"] is not None else None
        task_id = e.get("task_id")
        row = self._task(task_id, e, changes) if task_id else None
        handle = HANDLERS.get(e["event"])
        if handle is not None and proc is not None:
            handle(self, e, proc, row, changes)
        elif e["event"] == names.REDIS_COMMAND and proc is not None:
            self._command(e, proc, row)
        if row is not None and row.done is not None and row.done == e["ts"]:
            changes.done.append(row.task_id)

    def _proc(self, e: TraceEvent, changes: Changes) -> Proc:
        pid, role, ts = e["pid"] or 0, e["role"], e["ts"]
        proc = self.procs.get(pid)
        if proc is None:
            proc = Proc(pid, role, e.get("host") or "", e.get("ppid"), ts, ts)
            self.procs[pid] = proc
            changes.procs = True
            if role == names.FLOWER:
                self.say(changes, ts, hap.FLOWER_SEEN, pid, f"Flower pid {pid} is watching")
        elif role != proc.role and role not in GUESSED:
            proc.role, proc.ppid = role, e.get("ppid", proc.ppid)
            changes.procs = True
        proc.last_seen = max(proc.last_seen, ts)
        return proc

    def _task(self, task_id: str, e: TraceEvent, changes: Changes) -> TaskRow:
        row = self.tasks.get(task_id)
        if row is None:
            row = self.tasks[task_id] = TaskRow(task_id, e["ts"])
            self.tasks_seen += 1
            if len(self.tasks) > TASKS_MAX:
                self.tasks.popitem(last=False)
        row.name = row.name or e.get("task", "")
        row.last = max(row.last, e["ts"])
        row.events.append(e)
        changes.tasks.add(task_id)
        return row

    def _command(self, e: TraceEvent, proc: Proc, row: TaskRow | None) -> None:
        name = command_name(e)
        if name == "BRPOP":
            self._brpops.setdefault(proc.pid, deque(maxlen=4)).append(e)
        elif (
            name == "SETEX"
            and row is not None
            and args_of(e)[1:2] == [names.result_key(row.task_id)]
        ):
            args = args_of(e)
            row.writer = (proc.role, proc.pid)
            row.ttl = int(args[2]) if len(args) > 2 and args[2].isdigit() else None

    def note(self, ts: float, kind: str, text: str) -> Changes:
        """A happening no trace event carries (the kit's own reader losing Redis)."""
        changes = Changes(newest=ts)
        self.say(changes, ts, kind, None, text)
        return changes

    def say(self, changes: Changes, ts: float, kind: str, pid: int | None, text: str) -> None:
        said = Happening(ts, kind, pid, text)
        self.happenings.append(said)
        changes.happenings.append(said)
        changes.procs = True

    def _prune(self) -> None:
        """Drop the processes least worth showing: gone ones and clients, oldest first."""
        spare = [p for p in self.procs.values() if p.left is not None or p.role in GUESSED]
        spare.sort(key=lambda p: p.last_seen)
        for proc in spare[: len(self.procs) - PROCS_MAX * 3 // 4]:
            del self.procs[proc.pid]
