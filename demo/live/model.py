"""The live picture's pieces: a process, a task, what one batch of events changed.

demo.live.state keeps them, demo.live.fold changes them, event by event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from demo import names
from demo.live.happenings import Happening
from demo.trace.event import TraceEvent

TASKS_MAX = 500
TASK_EVENTS_MAX = 400
PROCS_MAX = 60
HAPPENINGS_MAX = 200
QUEUES_MAX = 20
# A replacement child is forked right after billiard reaped the dead one: its child.init
# comes within this of the death (both are stamped on the same host's clock).
REPLACE_WINDOW_S = 10.0
SLACK_S = 0.5
# How far each state is along a task's life: a state only moves forward.
RANK = {"SENT": 0, "RECEIVED": 1, "STARTED": 2, "RETRY": 3}
RANK |= dict.fromkeys(("SUCCESS", "FAILURE", "REVOKED"), 4)
READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
GUESSED = (names.CLIENT, names.UNKNOWN)  # roles a process may later correct


@dataclass
class Proc:
    """One process, as its own events describe it."""

    pid: int
    role: str
    host: str
    ppid: int | None
    born: float
    last_seen: float
    name: str = ""  # MainProcess, ForkPoolWorker-2 … from its log lines
    hostname: str = ""  # a worker's node name (celery@host)
    left: float | None = None
    exit_status: str = ""
    replaces: int | None = None
    replaced_by: int | None = None
    busy: str | None = None  # the task it runs now
    tasks_run: int = 0
    published: int = 0
    lost_broker: bool = False


@dataclass
class TaskRow:
    """One task, as far as its events went."""

    task_id: str
    first: float
    name: str = ""
    state: str = "SENT"
    last: float = 0.0
    client: int | None = None
    worker: int | None = None
    child: int | None = None
    writer: tuple[str, int | None] | None = None  # who SETEXed its result: (role, pid)
    ttl: int | None = None
    done: float | None = None
    events: deque[TraceEvent] = field(default_factory=lambda: deque(maxlen=TASK_EVENTS_MAX))

    def advance(self, state: str, ts: float) -> None:
        if RANK.get(state, 0) >= RANK.get(self.state, 0):
            self.state = state
        if state in READY and self.done is None:
            self.done = ts


@dataclass
class Changes:
    """What one batch changed: the screens redraw only that."""

    tasks: set[str] = field(default_factory=set)
    procs: bool = False
    happenings: list[Happening] = field(default_factory=list)
    logs: list[TraceEvent] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    newest: float = 0.0  # the ts of the newest event in the batch
