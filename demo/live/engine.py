"""The follow loop: the trace stream, read as it grows, folded, handed to the screens.

`Engine.run` blocks on XREAD (demo.trace.timeline.Timeline.follow): nothing is polled while
nothing happens, and a batch is folded the moment it lands. Each batch goes to the
engine's LiveState (under `lock`, which the screens take to read it) and then to every
sink (the terminal's queue, the page's hub), with the id of the last stream entry it
holds: where a reader that comes back resumes.

Redis may go away (the user stops it, a container restarts): the engine says so once, as
a happening, retries every RETRY_S, and says when it reads again. `Engine.from_file`
folds a `--json-trace` file instead: the same picture, for a run that is over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from demo.errors import KitError
from demo.live import happenings as hap
from demo.live.background import Background
from demo.live.model import Changes
from demo.live.state import LiveState
from demo.trace.event import TraceEvent
from demo.trace.timeline import Timeline, read_jsonl

BLOCK_S = 0.25  # one XREAD BLOCK: short, so that a stop lands quickly
RETRY_S = 1.0  # between two tries while Redis is gone
KEEP = 0  # events the timeline itself holds: the engine folds them, the timeline need not


@dataclass(frozen=True)
class Batch:
    """What one read brought: the events, what they changed, and the last entry id read."""

    events: Sequence[TraceEvent]
    changes: Changes
    cursor: str
    read_at: float  # time.time() when it was read


Sink = Callable[[Batch], None]


class Engine(Background):
    thread_name = "xray-live"

    """One source of events (a Redis, or a file) and the live picture folded from it."""

    def __init__(
        self,
        redis_url: str | None,
        *,
        history: bool = True,
        events: Sequence[TraceEvent] = (),
    ) -> None:
        """Follow `redis_url`'s trace stream (from its oldest entry with `history`), or,
        without one, fold `events` once (a file's)."""
        self.redis_url = redis_url
        self.history = history
        self._events = events
        self.state = LiveState()
        self.lock = threading.Lock()
        self.cursor = "0-0"
        self.started_at = time.time()
        self._sinks: list[Sink] = []

    @classmethod
    def from_file(cls, path: str | Path) -> Engine:
        """A `--json-trace` file, folded once started: the picture at the end of that run."""
        return cls(None, events=read_jsonl(path))

    def subscribe(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def feed(self, events: Sequence[TraceEvent], cursor: str) -> Batch:
        """Fold `events`, then hand the batch to every sink."""
        with self.lock:
            changes = self.state.fold(events)
            self.cursor = cursor
        batch = Batch(events, changes, cursor, time.time())
        for sink in self._sinks:
            sink(batch)
        return batch

    def _say(self, kind: str, text: str) -> None:
        now = time.time()
        with self.lock:
            changes = self.state.note(now, kind, text)
        batch = Batch((), changes, self.cursor, now)
        for sink in self._sinks:
            sink(batch)

    def run(self, stop: threading.Event) -> None:
        """Follow the stream until `stop` is set; survive Redis going away and coming back."""
        if self.redis_url is None:
            self.feed(self._events, f"{len(self._events)}-0")
            return
        timeline: Timeline | None = None
        lost = False
        try:
            while not stop.is_set():
                try:
                    if timeline is None:
                        timeline = Timeline(self.redis_url, history=self.history, keep=KEEP)
                    events = timeline.follow(BLOCK_S)
                except KitError as exc:
                    if not lost:
                        lost = True
                        self._say(hap.TRACE_LOST, f"the X-ray cannot read Redis: {exc}")
                    stop.wait(RETRY_S)
                    continue
                if lost:
                    lost = False
                    self._say(hap.TRACE_BACK, f"the X-ray reads {self.redis_url} again")
                if events:
                    self.feed(events, timeline.cursor)
        finally:
            if timeline is not None:
                timeline.close()
