"""The one merged timeline: trace hops from every process, plus what the spy saw.

Every process of the app XADDs its hops to the capped stream `xray:trace`; the spy knows
the Redis commands and which pid sent them. Merged and sorted by ts they tell one story.
This is also the `--json-trace PATH` contract: one JSON object a line, ordered by ts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from demo.errors import KitError
from demo.spy import Spy
from envoi_mails.xray import wire

STREAM = "xray:trace"  # envoi_mails.xray.emitter.STREAM
STREAM_MAXLEN = 20_000  # the stream's cap, in entries (envoi_mails.xray.emitter.STREAM_MAXLEN)
EVENTS_MAX = 200_000  # events kept in memory: a long run must not grow without limit
CLIENT_NAME = "xray-timeline"  # named xray*, so the spy leaves its XRANGE polling out
PAGE = 1000
POLL_S = 0.05
# The spy only knows pids; these roles are guesses the trace may correct.
_GUESSED_ROLES = ("unknown", "client")

Event = dict[str, Any]


MARKER_PREFIX = "xray-barrier-"


def _is_marker(event: Event) -> bool:
    command: list[str] = event.get("command") or []
    return len(command) == 2 and str(command[1]).startswith(MARKER_PREFIX)


def _ts(event: Event) -> float:
    try:
        return float(event.get("ts") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _entries(reply: Any) -> list[tuple[str, list[Event] | None]]:
    """[(entry id, its events)] from an XRANGE/XREVRANGE reply; None for an entry that
    envoi_mails.xray.wire cannot read."""
    return [(str(entry_id), wire.decode(fields or {})) for entry_id, fields in reply or []]


class Timeline:
    """Trace events from construction on, merged with a spy's events, sorted by ts."""

    def __init__(self, redis_url: str, spy: Spy | None = None, *, history: bool = False) -> None:
        """From now on; with `history`, from the oldest event the capped stream still holds."""
        self._redis = redis.Redis.from_url(
            redis_url, decode_responses=True, client_name=CLIENT_NAME, socket_timeout=5
        )
        self._spy = spy
        self._marker_pool = redis.ConnectionPool.from_url(redis_url)
        # Bounded like the stream itself: older events are gone from Redis anyway.
        self._trace: deque[Event] = deque(maxlen=EVENTS_MAX)
        self._roles: dict[int, str] = {}
        self.undecodable = 0
        try:
            last = self._redis.xrevrange(STREAM, "+", "-", count=1)
        except redis.RedisError as exc:
            raise KitError(f"cannot read the trace stream {STREAM} at {redis_url}: {exc}") from None
        # Only the newest entry's id is needed here, not its events.
        self._cursor = str(last[0][0]) if last and not history else "0-0"

    def events(self) -> list[Event]:
        """Every event since construction (trace and spy), ordered by ts.

        A spy event whose role is only a guess ("unknown", "client") takes the role its
        pid declared in its own trace events: the process knows what it is.
        """
        self._pull()
        spied = [
            self._relabel(event)
            for event in (self._spy.events() if self._spy else [])
            if not _is_marker(event)
        ]
        return sorted([*self._trace, *spied], key=_ts)

    def settle(self, timeout: float = 5.0) -> None:
        """Return once the spy has shown every command sent before this call.

        MONITOR reports commands in the order Redis ran them: once the spy shows a marker
        read sent now, it has shown all that came before. A check that something did NOT
        happen, or a trace written to a file, is only complete after this. The marker goes
        on an unnamed connection (the spy hides the kit's named ones) and is then hidden.
        """
        if self._spy is None:
            return
        marker = f"{MARKER_PREFIX}{uuid.uuid4()}"
        with redis.Redis(connection_pool=self._marker_pool) as client:
            client.exists(marker)
        end = time.monotonic() + timeout
        while not any(marker in e.get("command", ()) for e in self._spy.events()):
            if time.monotonic() > end:
                raise KitError(f"the spy did not catch up within {timeout} s")
            time.sleep(POLL_S)

    def for_task(self, task_id: str) -> list[Event]:
        """The events that carry this task id, ordered by ts."""
        return [event for event in self.events() if event.get("task_id") == task_id]

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float, what: str) -> Event:
        """The first event (by ts) matching predicate; polls every 50 ms up to timeout.

        Raises KitError(f"{what}: not seen within {timeout} s") at the deadline.
        """
        end = time.monotonic() + timeout
        while True:
            found = next((event for event in self.events() if predicate(event)), None)
            if found is not None:
                return found
            if time.monotonic() >= end:
                raise KitError(f"{what}: not seen within {timeout} s")
            time.sleep(POLL_S)

    def write_jsonl(self, path: str | Path, extra: Iterable[Event] = ()) -> int:
        """Write the timeline (plus `extra` events) to path, one JSON object a line, ordered
        by ts; return the count."""
        events = sorted([*self.events(), *extra], key=_ts)
        with Path(path).open("w", encoding="utf-8") as out:
            for event in events:
                out.write(json.dumps(event, default=str, ensure_ascii=False) + "\n")
        return len(events)

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

    def _pull(self) -> None:
        """Read what was added to the stream since the cursor, a page at a time."""
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
                for event in events:
                    self._add_event(event)
            if len(entries) < PAGE:
                return

    def _add_event(self, event: Any) -> None:
        if not isinstance(event, dict):
            self.undecodable += 1
            return
        self._trace.append(event)
        pid, role = event.get("pid"), event.get("role")
        # A process may speak as "client" before a worker signal names it: keep the
        # most specific role it ever declared.
        if (
            isinstance(pid, int)
            and isinstance(role, str)
            and (role not in _GUESSED_ROLES or pid not in self._roles)
        ):
            self._roles[pid] = role

    def _relabel(self, event: Event) -> Event:
        declared = self._roles.get(event.get("pid") or -1)
        if declared and event.get("role") in _GUESSED_ROLES and declared != event["role"]:
            return {**event, "role": declared}
        return event
