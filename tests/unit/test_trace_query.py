"""demo.trace.query and demo.trace.event on a recorded trace: scenario 02, one mail and one add.

The fixture is what `python scenarios/02_send_one_mail.py --json-trace` wrote: real processes,
a real Redis. These tests check that the one query layer reads it the way the scenario did.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from demo import names
from demo.errors import KitError
from demo.trace import query as q
from demo.trace.event import TraceEvent, args_of, at, normalise
from demo.trace.timeline import read_jsonl
from demo.trace.wait import wait_until

TRACE = Path(__file__).resolve().parents[1] / "fixtures" / "trace_send_one_mail.jsonl"
MAIL = "ab28f8df-c94b-4fcd-a034-427fbbae1376"
ADD = "aa1fffed-46c3-457a-9e34-2846383f60a1"
CLIENT, MAIN, CHILD = 7532, 7542, 7547


@pytest.fixture(scope="module")
def events() -> list[TraceEvent]:
    return read_jsonl(TRACE)


def test_reading_a_trace_gives_typed_events_in_time_order(events: list[TraceEvent]) -> None:
    assert len(events) == 340
    assert all(isinstance(e["ts"], float) for e in events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert all(isinstance(e["pid"], int) for e in events if e["role"] != names.UNKNOWN)


def test_normalise_refuses_an_object_without_ts_or_event() -> None:
    assert normalise({"event": "x"}) is None
    assert normalise({"ts": "soon", "event": "x"}) is None
    good = normalise({"ts": "1.5", "event": "x", "pid": "12", "command": ["GET", 1]})
    assert good is not None and good["ts"] == 1.5 and good["pid"] == 12
    assert good["command"] == ["GET", "1"] and good["role"] == names.UNKNOWN


def test_where_combines_command_key_and_sender(events: list[TraceEvent]) -> None:
    push = q.first(events, command="LPUSH", task_id=MAIL)
    assert push is not None and push["pid"] == CLIENT and args_of(push)[1] == names.DEFAULT_QUEUE
    reserve = q.select(events, command="HSET", key=names.UNACKED, task_id=MAIL)
    assert [e["pid"] for e in reserve] == [MAIN]
    assert q.select(events, command="SETEX", key_prefix=names.RESULT_PREFIX, pid=MAIN) == []
    assert q.first(events, command=("LPUSH", "RPUSH"), role=names.POOL_CHILD) is None


def test_where_bounds_time_and_matches_extra_fields(events: list[TraceEvent]) -> None:
    received = q.first(events, event="task.received", task_id=ADD)
    assert received is not None
    later = q.select(events, event="task.received", since=received["ts"])
    assert later == []
    assert q.first(events, event="task.postrun", task_id=ADD, state="SUCCESS") is not None
    assert q.first(events, event="task.postrun", task_id=ADD, state="FAILURE") is None


def test_log_lines_by_text(events: list[TraceEvent]) -> None:
    received = q.select(events, event=names.LOG, containing="received", task_id=MAIL)
    succeeded = q.select(events, event=names.LOG, containing=" succeeded in ", task_id=MAIL)
    assert [e["pid"] for e in received] == [MAIN]
    assert [e["pid"] for e in succeeded] == [CHILD]
    assert succeeded[0].get("process_name", "").startswith("ForkPoolWorker")


def test_a_task_life_follows_the_hops_in_order(events: list[TraceEvent]) -> None:
    life = q.life(events, ADD)
    assert life.has(*q.LIFE)
    assert [life.at(hop) for hop in q.LIFE] == sorted(life.at(hop) or 0 for hop in q.LIFE)
    assert (life.worker_pid, life.child_pid) == (MAIN, CHILD)
    assert q.life(events, "no-such-task").has("task.received") is False


def test_result_writes_decode_what_the_child_stored(events: list[TraceEvent]) -> None:
    (write,) = q.result_writes(events, ADD)
    assert write.pid == CHILD and write.ttl == 86400
    assert write.status == "SUCCESS" and write.meta is not None and write.meta["result"] == 5
    assert str(write) == "SUCCESS" and write.exc_type is None


def test_returned_is_the_value_the_success_write_stored(events: list[TraceEvent]) -> None:
    assert q.returned(events, ADD) == 5
    assert q.returned(events, "no-such-task") is None


def test_children_and_who_ran_what(events: list[TraceEvent]) -> None:
    kids = q.children(events, MAIN)
    assert [kid.pid for kid in kids] == [7545, CHILD]
    assert kids[1].tasks == (MAIL, ADD) and kids[1].name == "ForkPoolWorker-2"
    assert q.ran_by(events) == {MAIL: CHILD, ADD: CHILD}
    assert q.roles(events)[MAIN] == names.WORKER_MAIN


def test_held_counts_received_tasks_not_yet_started_or_finished(
    events: list[TraceEvent],
) -> None:
    mail, add = (q.life(events, tid) for tid in (MAIL, ADD))
    received, prerun = mail.at("task.received") or 0, mail.at("task.prerun") or 0
    assert q.held(events, MAIN, received - 1e-6) == 0
    assert q.held(events, MAIN, received) == 1  # received: held, waiting for a child
    assert q.held(events, MAIN, received, "task.prerun") == 1
    assert q.held(events, MAIN, prerun, "task.prerun") == 0  # started, still held
    assert q.held(events, MAIN, prerun) == 1
    assert q.held(events, MAIN, add.at("task.postrun") or 0) == 0
    assert q.held(events, CHILD, events[-1]["ts"]) == 0  # a child receives nothing


def test_at_puts_a_missing_event_after_everything() -> None:
    assert at(None) == float("inf")


def test_wait_until_returns_the_answer_or_names_what_never_came() -> None:
    answers = iter([None, None, "here"])
    assert wait_until(lambda: next(answers), timeout=5, what="x", poll_s=0.001) == "here"
    with pytest.raises(KitError, match=r"the thing: not seen within 0.05 s \(0 of 1\)"):
        wait_until(lambda: None, timeout=0.05, what="the thing", progress=lambda: "0 of 1")


def test_task_logs_find_the_id_in_the_fields_or_in_the_text(events: list[TraceEvent]) -> None:
    assert [e["pid"] for e in q.task_logs(events, MAIL)] == [MAIN, CHILD]
    text_only = normalise({"ts": 1.0, "event": names.LOG, "message": f"Discarding add[{ADD}]"})
    assert text_only is not None and q.task_logs([text_only], ADD) == [text_only]
    assert q.task_logs([text_only], MAIL) == []


def test_per_second_counts_intervals_over_the_span() -> None:
    ticks = [normalise({"ts": t, "event": "x"}) for t in (10.0, 10.5, 11.0, 12.0)]
    found = [e for e in ticks if e is not None]
    assert q.per_second(found) == 1.5  # three intervals in two seconds
    assert q.per_second(found[:1]) == 0.0
    assert q.per_second([found[0], found[0]]) == 0.0
