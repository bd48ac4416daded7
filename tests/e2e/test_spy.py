"""The spy and the timeline on a real worker: who really sent each command of one task."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.spy.monitor import Spy
from demo.stack.stack import Stack
from demo.stack.worker import Worker
from demo.trace.event import TraceEvent
from demo.trace.timeline import Timeline

Event = TraceEvent


@dataclass
class Capture:
    task_id: str
    events: list[Event]
    timeline: Timeline


def _is(event: Event, command: str, key: str | None = None) -> bool:
    """A spied command named `command` (on `key`, when given)."""
    if event.get("event") != "redis.command":
        return False
    args = event["command"]
    return bool(args[0].upper() == command and (key is None or args[1:2] == [key]))


def _only(events: list[Event], command: str, key: str) -> Event:
    found = [event for event in events if _is(event, command, key)]
    assert len(found) == 1, f"expected one {command} {key}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def capture(stack: Stack, worker: Worker) -> Iterator[Capture]:
    """One envoi_mail, from apply_async to .get(), with a spy and a timeline watching."""
    from envoi_mails import envoi_mail

    with Spy(stack.broker_url) as spy, Timeline(stack.broker_url, spy) as timeline:
        # The idle worker re-sends BRPOP every second: once one is seen, the capture
        # holds the BRPOP that the LPUSH will answer.
        timeline.wait_for(lambda e: _is(e, "BRPOP", "celery"), timeout=10, what="a BRPOP on celery")
        result = envoi_mail.apply_async(args=["destinataire@example.com"])
        result.get(timeout=30)
        meta = f"celery-task-meta-{result.id}"
        timeline.wait_for(lambda e: _is(e, "SETEX", meta), timeout=10, what=f"SETEX {meta}")
        # Each process ships its hops every 0.1 s: the MainProcess's task.received may
        # land after the child's result.stored. Wait for both before anyone reads.
        for hop in ("task.received", "result.stored"):
            timeline.wait_for(event=hop, task_id=result.id, timeout=10, what=f"the {hop} hop")
        timeline.settle()  # every process (this one too) has shipped what it recorded
        yield Capture(result.id, timeline.events(), timeline)


def test_the_client_process_pushes_the_task_message(capture: Capture) -> None:
    pushes = [e for e in capture.events if _is(e, "LPUSH", "celery")]
    mine = [e for e in pushes if e.get("task_id") == capture.task_id]
    assert len(mine) == 1
    assert (mine[0]["role"], mine[0]["pid"]) == ("client", os.getpid())


def test_the_worker_main_process_pops_the_queue(capture: Capture, worker: Worker) -> None:
    push = _only(capture.events, "LPUSH", "celery")
    pops = [e for e in capture.events if _is(e, "BRPOP", "celery")]
    assert pops and {e["role"] for e in pops} == {"worker-main"}
    taker = [e for e in pops if e["ts"] < push["ts"]][-1]  # MONITOR logs BRPOP when sent
    assert taker["pid"] == worker.pid


def test_the_worker_main_process_acks_before_the_result_is_stored(
    capture: Capture, worker: Worker
) -> None:
    setex = _only(capture.events, "SETEX", f"celery-task-meta-{capture.task_id}")
    zrem = _only(capture.events, "ZREM", "unacked_index")
    hdel = _only(capture.events, "HDEL", "unacked")
    for ack in (zrem, hdel):
        assert ack["task_id"] == capture.task_id, "mapped from the delivery tag"
        assert (ack["role"], ack["pid"]) == ("worker-main", worker.pid)
        assert ack["ts"] < setex["ts"]


def test_a_pool_child_writes_the_result(capture: Capture, worker: Worker) -> None:
    setex = _only(capture.events, "SETEX", f"celery-task-meta-{capture.task_id}")
    assert setex["command"][2] == "86400"
    assert setex["pid"] in worker.children()
    assert (setex["role"], setex["ppid"]) == ("pool-child", worker.pid)


def test_the_client_subscribes_to_the_result_before_it_publishes(capture: Capture) -> None:
    push = _only(capture.events, "LPUSH", "celery")
    subscribe = _only(capture.events, "SUBSCRIBE", f"celery-task-meta-{capture.task_id}")
    assert (subscribe["role"], subscribe["pid"]) == ("client", os.getpid())
    assert subscribe["ts"] < push["ts"]


def test_json_trace_holds_hops_and_commands_ordered_by_time(
    capture: Capture, tmp_path: Path
) -> None:
    path = tmp_path / "trace.jsonl"
    count = capture.timeline.write_jsonl(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert count == len(lines) > 0
    for line in lines:
        assert {"ts", "event", "role", "pid", "ppid", "host"} <= line.keys(), line
    stamps = [line["ts"] for line in lines]
    assert stamps == sorted(stamps)
    mine = {line["event"] for line in lines if line.get("task_id") == capture.task_id}
    assert {"task.received", "result.stored", "redis.command"} <= mine


def test_the_kits_own_trace_batches_reach_the_stream_but_not_the_spy(
    capture: Capture, stack: Stack
) -> None:
    import redis

    hops = [e for e in capture.events if e["event"] == "result.stored"]
    with redis.Redis.from_url(stack.broker_url) as client:
        batches = client.xlen("xray:trace")
    assert hops and batches > 0, "the hops came through XADD xray:trace"
    assert not [e for e in capture.events if _is(e, "XADD")], "the spy shows no XADD of its own"
