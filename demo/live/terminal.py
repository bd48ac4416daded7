"""The live terminal of `demo up`: what happens, printed as it happens, never falling behind.

It prints, in the order they come: the worker's own log lines (`Task … received` from the
MainProcess, `… succeeded in …` from a ForkPoolWorker child, each with its pid, as the
tutorial promises), one summary line per finished task (each process's part: its hops
and Redis commands, coloured by process), and what happens to the processes (a child
exits and why, a child replaced, the worker losing Redis and reconnecting).

Keeping up: the engine hands batches over a queue and never waits for the terminal. At
most `lines_per_s` lines a second are printed; past that, and whenever batches pile up
(the terminal is slower than the events), lines are counted instead, and one tally line
per second says how many tasks finished, by which child, and what was not shown.
Modes: ALL; QUIET (what happens to the processes, warnings and errors only); LOGS (the
worker's log lines only).
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections import Counter, deque

from rich.console import Console
from rich.text import Text

from demo import names
from demo.live.background import Background
from demo.live.engine import Batch, Engine
from demo.render import live_text

ALL, QUIET, LOGS = "all", "quiet", "logs"
LINES_PER_S = 40  # more than a reader can follow; past it, a tally per window
WINDOW_S = 1.0
# A task's summary waits this long after its end: every process ships its events every
# 0.1 s, so the client's and the MainProcess's last ones are in by then.
GRACE_S = 0.3
# Lines are held this long and printed in time order: each process ships its own events
# every 0.1 s, so a child's `succeeded` may land before its MainProcess's `received`.
REORDER_S = 0.25
BACKLOG = 20  # batches waiting: the terminal is behind, count instead of print
TICK_S = 0.05
LOUD = frozenset({"warning", "error", "critical"})
LATENCIES_MAX = 100_000
LOG_LINES = "log lines"


class TerminalFeed(Background):
    thread_name = "xray-terminal"

    def __init__(
        self,
        engine: Engine,
        console: Console,
        *,
        mode: str = ALL,
        since: float | None = None,
        lines_per_s: int = LINES_PER_S,
    ) -> None:
        self.engine, self.console, self.mode = engine, console, mode
        self.since = time.time() - 1.0 if since is None else since  # history stays quiet
        self.lines_per_s = lines_per_s
        self.latencies: deque[float] = deque(maxlen=LATENCIES_MAX)  # screen - event, s
        self._batches: queue.SimpleQueue[Batch] = queue.SimpleQueue()
        self._due: dict[str, float] = {}  # task id -> when its summary is printed
        self._held: list[tuple[float, int, Text, str]] = []  # heap: (ts, n, line, what)
        self._n = 0
        self._window_start: float | None = None  # set by the first turn
        self._printed = 0
        self._hidden: Counter[str] = Counter()
        self._states: Counter[str] = Counter()
        self._done_by: Counter[tuple[int | None, str]] = Counter()

    def __call__(self, batch: Batch) -> None:
        """The engine's sink: never blocks."""
        self._batches.put(batch)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                batch: Batch | None = self._batches.get(timeout=TICK_S)
            except queue.Empty:
                batch = None
            self.pump(time.time(), batch)

    def pump(self, now: float, batch: Batch | None = None) -> None:
        """One turn: take in `batch`, then print what is due at `now`."""
        if batch is not None:
            self._show(batch, now, behind=self._batches.qsize() > BACKLOG)
        self._release(now)
        self._summaries(now)
        self._end_window(now)
        self.console.file.flush()

    # -- what to print --------------------------------------------------------------------

    def _print(self, line: Text, what: str, *, behind: bool = False) -> bool:
        if behind or self._printed >= self.lines_per_s:
            self._hidden[what] += 1
            return False
        self._printed += 1
        self.console.print(line, soft_wrap=True, highlight=False)
        return True

    def _hold(self, ts: float, line: Text, what: str) -> None:
        self._n += 1
        heapq.heappush(self._held, (ts, self._n, line, what))

    def _release(self, now: float) -> None:
        """Print the held lines that are old enough, oldest first."""
        while self._held and self._held[0][0] <= now - REORDER_S:
            ts, _, line, what = heapq.heappop(self._held)
            if self._print(line, what) and what == LOG_LINES:
                self.latencies.append(time.time() - ts)

    def _show(self, batch: Batch, now: float, *, behind: bool) -> None:
        changes = batch.changes
        if self.mode != LOGS:
            for said in changes.happenings:
                if said.ts >= self.since:
                    self._hold(said.ts, live_text.happening_line(said), "happenings")
        for e in changes.logs:
            loud = str(e.get("level")) in LOUD
            if e["ts"] < self.since or (self.mode == QUIET and not loud):
                continue
            if behind and not loud:
                self._hidden[LOG_LINES] += 1
            else:
                self._hold(e["ts"], live_text.log_line(e), LOG_LINES)
        if not changes.done:
            return
        with self.engine.lock:
            rows = [self.engine.state.tasks.get(task_id) for task_id in changes.done]
        for row in rows:
            if row is None or (row.done or 0.0) < self.since:
                continue
            self._states[row.state] += 1
            self._done_by[(row.child, names.POOL_CHILD)] += 1
            if self.mode == ALL:
                self._due[row.task_id] = now + GRACE_S

    def _summaries(self, now: float) -> None:
        due = [task_id for task_id, at in self._due.items() if at <= now]
        for task_id in due:
            del self._due[task_id]
            with self.engine.lock:
                row = self.engine.state.tasks.get(task_id)
                events = list(row.events) if row is not None else []
                name = live_text.namer(dict(self.engine.state.procs))
            if row is not None:
                self._print(live_text.task_line(row, events, name), "task summaries")

    def _end_window(self, now: float) -> None:
        if self._window_start is None:
            self._window_start = now
        elapsed = now - self._window_start
        if elapsed < WINDOW_S:
            return
        if self._hidden and self._states:
            with self.engine.lock:
                name = live_text.namer(dict(self.engine.state.procs))
            line = live_text.tally_line(
                now, elapsed, self._done_by, self._states, self._hidden, name
            )
            self.console.print(line, soft_wrap=True, highlight=False)
        elif self._hidden:
            left_out = ", ".join(f"{n} {what}" for what, n in self._hidden.items())
            self.console.print(Text(f"… not shown: {left_out}", "dim"), soft_wrap=True)
        self._window_start = now
        self._printed = 0
        self._hidden.clear()
        self._states.clear()
        self._done_by.clear()
