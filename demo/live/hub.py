"""What the page's Server-Sent Events carry, for one source (a Redis, or a trace file).

The page is rendered on the server: each SSE message (`event: tick`) holds the panels that
changed, as HTML, the feed's new rows, the ids of the tasks touched (the page reloads the
diagram of the selected one when it is among them) and the end time of the tasks done.
Its `id:` is the id of the last stream entry folded in: a browser that reconnects sends it
back (Last-Event-ID) and gets the panels as they are now plus the feed rows it missed.

Ticks are coalesced: at 200 tasks/s a message goes out every TICK_S at most, however many
events came, and the feed sends FEED_PER_TICK rows at most: what a browser holds stays
bounded (demo.render.live_page trims the feed to FEED_MAX rows, the tables are fixed size).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import redis

from demo import inspectors, names
from demo.live.engine import Batch, Engine
from demo.render import live_html
from demo.render.live_text import namer
from demo.render.sequence_html import esc

TICK_S = 0.1
FEED_MAX = 200  # rows kept here for a browser that reconnects, and in the page
FEED_PER_TICK = 80
TASKS_SHOWN = 30
RESULTS_SHOWN = 12
UNACKED_SHOWN = 10
DONE_PER_TICK = 400
CLIENT_NAME = f"{names.KIT_PREFIX}-live"  # the kit's own: no process records its commands


def entry_key(entry_id: str | None) -> tuple[int, int]:
    """A stream entry id as a sortable pair ("1700000000000-3" -> (1700000000000, 3))."""
    ms, _, seq = (entry_id or "0-0").partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


@dataclass
class Message:
    entry_id: str
    data: dict[str, Any]

    def sse(self) -> str:
        return f"id: {self.entry_id}\nevent: tick\ndata: {json.dumps(self.data)}\n\n"


@dataclass
class _Pending:
    tasks: set[str] = field(default_factory=set)
    procs: bool = False
    rows: int = 0  # feed rows added since the last tick
    done: list[tuple[str, float]] = field(default_factory=list)
    newest: float = 0.0


class Hub:
    def __init__(self, engine: Engine, flower: str | None = None) -> None:
        self.engine, self.flower = engine, flower
        self._lock = threading.Lock()
        # (entry id, seq, row): the page skips a row whose seq it already has
        self._feed: deque[tuple[str, int, str]] = deque(maxlen=FEED_MAX)
        self._seq = 0
        self._pending = _Pending(procs=True)
        self._redis_html = ""
        self._redis_dirty = False
        self._redis: redis.Redis | None = None
        engine.subscribe(self.sink)

    def sink(self, batch: Batch) -> None:
        """The engine's sink (its thread): note what changed; render the feed's rows."""
        changes = batch.changes
        rows = live_html.feed_rows(changes.happenings, changes.logs)
        with self._lock:
            for row in rows:
                self._seq += 1
                self._feed.append((batch.cursor, self._seq, row))
            pending = self._pending
            pending.rows += len(rows)
            pending.tasks |= changes.tasks
            pending.procs = pending.procs or changes.procs or bool(changes.done)
            pending.newest = max(pending.newest, changes.newest)
        if changes.done:
            with self.engine.lock:
                tasks = self.engine.state.tasks
                done = [(tid, tasks[tid].done or 0.0) for tid in changes.done if tid in tasks]
            with self._lock:
                self._pending.done = (self._pending.done + done)[-DONE_PER_TICK:]

    def drain(self) -> None:
        """Forget what changed: nobody is watching (a browser that comes gets a snapshot)."""
        with self._lock:
            self._pending = _Pending()

    def tick(self) -> Message | None:
        """What changed since the last tick, or None."""
        with self._lock:
            pending, self._pending = self._pending, _Pending()
            redis_html = self._redis_html if self._redis_dirty else None
            self._redis_dirty = False
            fresh = min(pending.rows, FEED_PER_TICK, len(self._feed))
            rows = [[seq, row] for _, seq, row in list(self._feed)[len(self._feed) - fresh :]]
            skipped = max(pending.rows - FEED_PER_TICK, 0)
        if not (pending.tasks or pending.procs or rows or redis_html is not None):
            return None
        panels = self._panels(tasks=bool(pending.tasks), procs=pending.procs)
        if redis_html is not None:
            panels["redis"] = redis_html
        data: dict[str, Any] = {
            "panels": panels,
            "feed": rows,
            "skipped": skipped,
            "touched": sorted(pending.tasks),
            "done": pending.done,
            "newest": pending.newest,
        }
        return Message(self.engine.cursor, data)

    def snapshot(self, last_id: str | None) -> Message:
        """Every panel as it is now, and the feed rows after `last_id` (the last FEED_MAX)."""
        after = entry_key(last_id) if last_id else (-1, -1)
        with self._lock:
            rows = [[seq, row] for entry, seq, row in self._feed if entry_key(entry) > after]
            redis_html = self._redis_html
        panels = self._panels(tasks=True, procs=True)
        if self.engine.redis_url is None:
            redis_html = '<p class="empty">a trace file: no live Redis to read</p>'
        panels["redis"] = redis_html or '<p class="empty">reading Redis …</p>'
        data = {"panels": panels, "feed": rows, "reset": last_id is None, "touched": []}
        return Message(self.engine.cursor, data)

    def _panels(self, *, tasks: bool, procs: bool) -> dict[str, str]:
        engine, panels = self.engine, {}
        with engine.lock:
            state = engine.state
            name = namer(state.procs)
            if procs:
                panels["procs"] = live_html.process_tree(state, self.flower)
            if tasks or procs:
                panels["tasks"] = live_html.recent_tasks(
                    state.recent(TASKS_SHOWN), self.flower, name
                )
            panels["status"] = (
                f"{state.tasks_seen} tasks · {state.events_folded} events · entry {engine.cursor}"
            )
        return panels

    def task(self, task_id: str, width: float | None) -> str:
        """One task's detail and diagram, as it is now."""
        with self.engine.lock:
            row = self.engine.state.tasks.get(task_id)
            events = list(row.events) if row is not None else []
            name = namer(dict(self.engine.state.procs))
        return live_html.task_detail(row, events, task_id, self.flower, name, width)

    def poll_redis(self) -> None:
        """Read the Redis state (blocking: run it off the page's loop)."""
        if self.engine.redis_url is None:
            return
        with self.engine.lock:
            state = self.engine.state
            queue_names = list(state.queues)
            rows = state.recent(RESULTS_SHOWN)
            name = namer(dict(state.procs))
            writers = {r.task_id: name(r.writer[1], r.writer[0]) for r in rows if r.writer}
        try:
            if self._redis is None:
                self._redis = redis.Redis.from_url(
                    self.engine.redis_url, client_name=CLIENT_NAME, socket_timeout=2
                )
            r = self._redis
            ids = [row.task_id for row in rows]
            stored = (
                inspectors.results(r, RESULTS_SHOWN, ids, groups=False)
                if ids
                else inspectors.ResultsView((), (), False)
            )
            html = live_html.redis_state(
                inspectors.queues(r, queue_names, peek=0),
                inspectors.unacked(r, UNACKED_SHOWN),
                stored,
                writers,
            )
        except redis.RedisError as exc:
            html = f'<p class="alarm">Redis cannot be read: {esc(exc)}</p>'
        with self._lock:
            if html != self._redis_html:
                self._redis_html, self._redis_dirty = html, True

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
