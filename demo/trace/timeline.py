"""The one merged timeline: trace hops from every process, plus what the spy saw.

Every process of the app XADDs its hops to the capped stream `xray:trace`; the spy knows
the Redis commands and which pid sent them. Merged and sorted by ts they tell one story.
This is also the `--json-trace PATH` contract: one JSON object a line, ordered by ts
(`write_jsonl`, read back by `read_jsonl`). Questions about the events go to
demo.trace.query; waiting for them goes through `wait_for` / `wait_until` here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from demo import names
from demo.errors import KitError
from demo.protocol.commands import describe, is_chatter
from demo.spy.monitor import Spy
from demo.trace import capture, query
from demo.trace.event import TraceEvent, args_of, normalise
from demo.trace.query import Predicate, TaskLife
from demo.trace.wait import wait_until
from envoi_mails.xray import wire

STREAM = names.TRACE_STREAM
STREAM_MAXLEN = names.TRACE_STREAM_MAXLEN
EVENTS_MAX = 200_000  # events kept in memory: a long run must not grow without limit
CLIENT_NAME = f"{names.KIT_PREFIX}-timeline"  # the spy leaves the kit's XRANGE polling out
PAGE = 1000
# The spy only knows pids; these roles are guesses the trace may correct.
_GUESSED_ROLES = (names.UNKNOWN, names.CLIENT)
# What a task's life needs before a scene reads it: each process ships its own hops every
# 0.1 s, so the MainProcess's task.received may land after the child's task.postrun.
WHOLE_LIFE = ("task.received", "task.prerun", "task.postrun")

Event = dict[str, Any]


MARKER_PREFIX = f"{names.KIT_PREFIX}-barrier-"
SHIP_MARGIN_S = 0.1  # an emitter's XADD itself, after its flush interval
LOOKBACK_MS = 1000  # "from now" includes the entries of the last second (see __init__)


def is_marker(event: TraceEvent) -> bool:
    command = args_of(event)
    return len(command) == 2 and command[1].startswith(MARKER_PREFIX)


def _ts(event: TraceEvent) -> float:
    return event["ts"]


def write_jsonl(path: str | Path, events: Iterable[Any]) -> int:
    """Write events to path, one JSON object a line, ordered by ts; return the count."""
    ordered = sorted(events, key=lambda e: float(e["ts"]))
    with Path(path).open("w", encoding="utf-8") as out:
        for event in ordered:
            out.write(json.dumps(event, default=str, ensure_ascii=False) + "\n")
    return len(ordered)


def read_jsonl(path: str | Path) -> list[TraceEvent]:
    """A trace written by `write_jsonl` (or `--json-trace`), as TraceEvents in ts order."""
    found = []
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            event = normalise(json.loads(line)) if line.strip() else None
            if event is not None:
                found.append(event)
    return sorted(found, key=_ts)


def _entries(reply: Any) -> list[tuple[str, list[Event] | None]]:
    """[(entry id, its events)] from an XRANGE/XREVRANGE reply; None for an entry that
    envoi_mails.xray.wire cannot read."""
    return [(str(entry_id), wire.decode(fields or {})) for entry_id, fields in reply or []]


class Timeline:
    """Trace events from construction on, merged with a spy's events, sorted by ts."""

    def __init__(
        self,
        redis_url: str,
        spy: Spy | None = None,
        *,
        history: bool = False,
        keep: int = EVENTS_MAX,
    ) -> None:
        """From now on; with `history`, from the oldest event the capped stream still holds.

        `keep` bounds the events held for `events()`: a follower that only reads what
        `follow` hands it keeps few."""
        self._redis = redis.Redis.from_url(
            redis_url, decode_responses=True, client_name=CLIENT_NAME, socket_timeout=5
        )
        self._spy = spy
        self._marker_pool = redis.ConnectionPool.from_url(redis_url)
        # Bounded like the stream itself: older events are gone from Redis anyway.
        self._trace: deque[TraceEvent] = deque(maxlen=keep)
        self._roles: dict[int, str] = {}
        self._ingest = capture.Ingest()
        self._captured = False  # whether any process recorded its own commands
        self._first_sent: dict[int, TraceEvent] = {}  # pid -> its first command, chatter too
        self.undecodable = 0
        try:
            last = self._redis.xrevrange(STREAM, "+", "-", count=1)
        except redis.RedisError as exc:
            raise KitError(f"cannot read the trace stream {STREAM} at {redis_url}: {exc}") from None
        # Only the newest entry's id is needed here, not its events. "From now" starts a
        # little before it (in Redis's own clock: an entry id is its XADD's millisecond):
        # a process ships what it recorded up to a flush interval late, so a command sent
        # just before this timeline started may be in an entry XADDed just before it too.
        self._cursor = "0-0"
        if last and not history:
            last_ms = int(str(last[0][0]).split("-")[0])
            self._cursor = f"{max(last_ms - LOOKBACK_MS, 0)}-0"

    def events(self) -> list[TraceEvent]:
        """Every event since construction, ordered by ts: what the processes recorded (hops,
        logs, their Redis commands) and, with a spy, what MONITOR saw that none recorded.

        With no process recording its commands (XRAY_COMMANDS=0), MONITOR is the only
        source of commands: its events keep the spy's attribution, and a role that is only
        a guess ("unknown", "client") takes the role its pid declared in its own hops.
        """
        self._pull()
        spied = []
        for raw in self._spy.events() if self._spy else []:
            event = normalise(raw)
            if event is not None and not is_marker(event):
                spied.append(self._relabel(event))
        if spied and self._captured:
            spied = capture.uncaptured(spied, self._trace, now=time.time())
        return sorted([*self._trace, *spied], key=_ts)

    def settle(self, timeout: float = 5.0) -> None:
        """Return once every command sent before this call is on the timeline.

        Each process ships what it recorded every FLUSH_INTERVAL_S: after two intervals
        (and a margin for the XADD itself), all that was sent before is in the stream. With
        a spy, MONITOR reports commands in the order Redis ran them: once it shows a marker
        read sent now, it has shown all that came before. A check that something did NOT
        happen, or a trace written to a file, is only complete after this.
        """
        from envoi_mails.xray import emitter, trace

        trace.flush()
        shipped = time.time() + 2 * emitter.FLUSH_INTERVAL_S + SHIP_MARGIN_S
        wait_until(
            lambda: time.time() >= shipped,
            timeout=timeout,
            what="the processes shipping what they recorded",
            poll_s=0.02,
        )
        if self._spy is None:
            return
        # The marker goes on an unnamed connection (the spy hides the kit's named ones)
        # and is then hidden, from the spy's events and from this process's own capture.
        marker = f"{MARKER_PREFIX}{uuid.uuid4()}"
        with redis.Redis(connection_pool=self._marker_pool) as client:
            client.exists(marker)
        spy = self._spy
        wait_until(
            lambda: any(marker in e.get("command", ()) for e in spy.events()),
            timeout=timeout,
            what="the spy catching up with Redis",
        )

    def first_sent(self, pid: int) -> TraceEvent | None:
        """The first command `pid` recorded since this timeline started, connection chatter
        (HELLO, CLIENT SETNAME…) included: the moment that process first talked to Redis."""
        self._pull()
        first = self._first_sent.get(pid)
        return {**first, "summary": describe(args_of(first))} if first is not None else None

    def for_task(self, task_id: str) -> list[TraceEvent]:
        """The events that carry this task id, ordered by ts."""
        return [event for event in self.events() if event.get("task_id") == task_id]

    def select(self, **criteria: Any) -> list[TraceEvent]:
        """The events so far matching demo.trace.query.where(**criteria)."""
        return query.select(self.events(), **criteria)

    def first(self, **criteria: Any) -> TraceEvent | None:
        """The first event so far matching demo.trace.query.where(**criteria), or None."""
        return query.first(self.events(), **criteria)

    def wait_until(
        self,
        predicate: Predicate | None = None,
        *,
        count: int = 1,
        timeout: float,
        what: str,
        **criteria: Any,
    ) -> list[TraceEvent]:
        """The first `count` events (by ts) matching `predicate` and `criteria` (see
        demo.trace.query.where), once all of them are on the timeline.

        All at once, not one at a time: several processes ship their events on their own
        0.1 s ticks, so a later event may land first. KitError at the deadline, saying how
        many of `count` were seen. With `count=0`, [] at once.
        """
        if count <= 0:
            return []
        by_criteria = query.where(**criteria)
        seen: list[TraceEvent] = []

        def enough() -> list[TraceEvent] | None:
            nonlocal seen
            seen = [
                e for e in self.events() if by_criteria(e) and (predicate is None or predicate(e))
            ]
            return seen[:count] if len(seen) >= count else None

        return wait_until(
            enough, timeout=timeout, what=what, progress=lambda: f"{len(seen)} of {count} seen"
        )

    def wait_for(
        self, predicate: Predicate | None = None, *, timeout: float, what: str, **criteria: Any
    ) -> TraceEvent:
        """The first event (by ts) matching `predicate` and `criteria`, once it is on the
        timeline; KitError("<what>: not seen within <timeout> s") at the deadline."""
        return self.wait_until(predicate, timeout=timeout, what=what, **criteria)[0]

    def wait_lives(
        self,
        task_ids: Iterable[str],
        *,
        timeout: float,
        what: str = "the tasks to end",
        hops: Iterable[str] = WHOLE_LIFE,
    ) -> list[TaskLife]:
        """Each task's life (demo.trace.query.life), once every one has all of `hops`."""
        ids, needed = list(task_ids), tuple(hops)
        found: list[TaskLife] = []

        def whole() -> list[TaskLife] | None:
            nonlocal found
            found = query.lives(self.events(), ids)
            return found if all(life.has(*needed) for life in found) else None

        def progress() -> str:
            return f"{sum(not life.has(*needed) for life in found)} of {len(ids)} not complete"

        return wait_until(whole, timeout=timeout, what=what, progress=progress)

    def write_jsonl(self, path: str | Path, extra: Iterable[Any] = ()) -> int:
        """Write the timeline (plus `extra` events) to path (see `write_jsonl`)."""
        return write_jsonl(path, [*self.events(), *extra])

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> Timeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def cursor(self) -> str:
        """The id of the last stream entry read ("0-0" before any): where a reader resumes."""
        return self._cursor

    def follow(self, block_s: float) -> list[TraceEvent]:
        """The events that reached the stream since the last call, in the order they came,
        waiting up to `block_s` for the first (XREAD BLOCK: no polling while it is quiet)."""
        try:
            self._redis.xread({STREAM: self._cursor}, count=1, block=max(int(block_s * 1000), 1))
        except redis.RedisError as exc:
            raise KitError(f"cannot read the trace stream {STREAM}: {exc}") from None
        return self._pull()

    def _pull(self) -> list[TraceEvent]:
        """Read what was added to the stream since the cursor, a page at a time."""
        added: list[TraceEvent] = []
        while True:
            try:
                page = self._redis.xrange(STREAM, f"({self._cursor}", "+", count=PAGE)
            except redis.RedisError as exc:
                raise KitError(f"cannot read the trace stream {STREAM}: {exc}") from None
            entries = _entries(page)
            for entry_id, events in entries:
                self._cursor = entry_id
                if events is None:
                    self.undecodable += 1
                    continue
                for raw in events:
                    event = self._add_event(raw)
                    if event is not None:
                        added.append(event)
            if len(entries) < PAGE:
                return added

    def _add_event(self, raw: Any) -> TraceEvent | None:
        event = normalise(raw) if isinstance(raw, dict) else None
        if event is None:
            self.undecodable += 1
            return None
        if is_marker(event):
            return None
        if event["event"] == names.REDIS_COMMAND and event["pid"] is not None:
            self._first_sent.setdefault(event["pid"], event)
        if event["event"] == names.REDIS_COMMAND and is_chatter(args_of(event)):
            # Recorded and kept in the stream, left out of the timeline as MONITOR's
            # reader leaves it out (demo.protocol.commands.CHATTER).
            self._captured = True
            return None
        self._ingest.add(event)
        self._captured = self._captured or event["event"] == names.REDIS_COMMAND
        self._trace.append(event)
        pid, role = event["pid"], event["role"]
        # A process may speak as "client" before a worker signal names it: keep the
        # most specific role it ever declared.
        if pid is not None and (role not in _GUESSED_ROLES or pid not in self._roles):
            self._roles[pid] = role
        return event

    def _relabel(self, event: TraceEvent) -> TraceEvent:
        declared = self._roles.get(event["pid"] or -1)
        if declared and event["role"] in _GUESSED_ROLES and declared != event["role"]:
            return {**event, "role": declared}
        return event
