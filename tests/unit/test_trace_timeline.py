"""Timeline's waits on a recorded trace (scenario 02's): no Redis, the events are all there."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import pytest

from demo.errors import KitError
from demo.trace import capture
from demo.trace.event import TraceEvent
from demo.trace.timeline import Timeline, read_jsonl

TRACE = Path(__file__).resolve().parents[1] / "fixtures" / "trace_send_one_mail.jsonl"
CHILDREN = 2  # the recorded worker ran `-c 2`
NO_WAIT_S = 0.05  # a wait that must not poll for long


class RecordedTimeline(Timeline):
    """A Timeline whose events are a recorded trace: the waits' logic without a server."""

    def __init__(self, events: list[TraceEvent]) -> None:  # no Redis: nothing to read
        self._recorded = events

    def events(self) -> list[TraceEvent]:
        return self._recorded


@pytest.fixture(scope="module")
def timeline() -> RecordedTimeline:
    return RecordedTimeline(read_jsonl(TRACE))


def test_wait_until_count_0_returns_nothing_at_once(timeline: RecordedTimeline) -> None:
    assert timeline.wait_until(event="child.init", count=0, timeout=0, what="none") == []
    assert timeline.wait_until(event="no.such.hop", count=0, timeout=0, what="none") == []


def test_wait_until_returns_the_first_count_events_by_ts(timeline: RecordedTimeline) -> None:
    inits = timeline.wait_until(
        event="child.init", count=CHILDREN, timeout=NO_WAIT_S, what="child.init"
    )
    assert inits == timeline.select(event="child.init")[:CHILDREN]
    assert [e["ts"] for e in inits] == sorted(e["ts"] for e in inits)


def test_wait_until_names_what_did_not_arrive_and_how_many_came(
    timeline: RecordedTimeline,
) -> None:
    with pytest.raises(KitError, match=r"the pool: not seen within .* \(2 of 3 seen\)"):
        timeline.wait_until(event="child.init", count=3, timeout=NO_WAIT_S, what="the pool")


class FedTimeline(Timeline):
    """A Timeline fed raw events as if it had read them from the stream: no Redis."""

    def __init__(self, raw: list[dict[str, Any]]) -> None:  # the state __init__ would set up
        self._spy, self._trace, self._roles = None, deque(), {}
        self._ingest, self._captured, self._first_sent = capture.Ingest(), False, {}
        self.undecodable, self._raw = 0, raw

    def _pull(self) -> list[TraceEvent]:
        added = [e for e in map(self._add_event, self._raw) if e is not None]
        self._raw = []
        return added


def _command(pid: int, ts: float, *args: str) -> dict[str, Any]:
    return {"ts": ts, "event": "redis.command", "role": "worker-main", "pid": pid, "command": args}


def test_first_sent_includes_the_handshake_the_events_leave_out() -> None:
    fed = FedTimeline(
        [
            _command(1, 1.0, "HELLO", "3"),
            _command(1, 1.1, "CLIENT", "SETNAME", "worker-main-1@host"),
            _command(1, 2.0, "BRPOP", "celery", "1"),
            _command(2, 3.0, "GET", "celery-task-meta-x"),
        ]
    )
    opened = fed.first_sent(1)
    assert opened is not None and opened["command"] == ["HELLO", "3"]
    assert opened["summary"] == "open the connection (protocol RESP3)"
    assert [e["command"][0] for e in fed.events()] == ["BRPOP", "GET"]
    got = fed.first_sent(2)
    assert got is not None and got["command"] == ["GET", "celery-task-meta-x"]
    assert fed.first_sent(3) is None
