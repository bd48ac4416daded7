"""demo.trace.capture: what the timeline adds to the commands processes recorded, and how
MONITOR's lines are reduced to what no process recorded (pure functions, made-up events)."""

from __future__ import annotations

from demo import names
from demo.trace.capture import SHIP_GRACE_S, Ingest, uncaptured
from demo.trace.event import TraceEvent

MAIN, TASK, TAG = 42, "9f0c8c4e-7a55-4d0c-8f2b-1f6f0b8e2a11", "5e3b1c2d-0000-4000-8000-00000000beef"


def command(ts: float, *args: str, pid: int | None = MAIN, addr: str = "127.0.0.1:1") -> TraceEvent:
    return {"ts": ts, "event": names.REDIS_COMMAND, "role": names.WORKER_MAIN, "pid": pid,
            "command": list(args), "addr": addr}  # fmt: skip


def reply(ts: float, queue: str) -> TraceEvent:
    return {"ts": ts, "event": names.REDIS_REPLY, "role": names.WORKER_MAIN, "pid": MAIN,
            "reply_to": "BRPOP", "key": queue, "task_id": TASK, "delivery_tag": TAG}  # fmt: skip


def test_brpop_takes_the_task_its_reply_delivered_on_its_own_queue() -> None:
    ingest = Ingest()
    tasks = command(1.0, "BRPOP", "celery", "celery\x06\x163", "1")
    pidbox = command(1.1, "BRPOP", "celery@vm.celery.pidbox", "1")  # another connection
    reserve = command(1.3, "ZADD", names.UNACKED_INDEX, "1.3", TAG)
    for event in (tasks, pidbox, reply(1.2, "celery"), reserve):
        ingest.add(event)
    assert tasks.get("task_id") == TASK and "task_id" not in pidbox
    assert reserve.get("task_id") == TASK, "the reservation names the message by its tag only"
    assert tasks.get("summary", "").startswith("wait for a message on queue 'celery'")


def test_a_reply_without_its_brpop_still_teaches_the_tag() -> None:
    ingest = Ingest()
    ack = command(2.0, "HDEL", names.UNACKED, TAG)
    ingest.add(reply(1.0, "celery"))  # the BRPOP was sent before this timeline started
    ingest.add(ack)
    assert ack.get("task_id") == TASK


def test_monitor_adds_only_what_no_process_recorded_once_it_is_old_enough() -> None:
    recorded = [command(1.0, "GET", "k", addr="127.0.0.1:5")]
    lua = command(1.6, "ZADD", "k.j", "1", "v", pid=None, addr="lua")
    lua["via"] = names.LUA
    seen = [
        command(1.0001, "GET", "k", pid=None, addr="127.0.0.1:5"),  # the same command
        command(1.5, "SET", "x", "1", pid=7, addr="127.0.0.1:9"),  # redis-cli, say
        command(9.0, "SET", "y", "1", pid=None, addr="127.0.0.1:9"),  # too recent to judge
        lua,
    ]
    extra = uncaptured(seen, recorded, now=9.0 + SHIP_GRACE_S / 2)
    assert [(e["command"][0], e["role"], e["pid"]) for e in extra] == [
        ("SET", names.UNKNOWN, None),
        ("ZADD", names.LUA, None),
    ]
    assert extra[0].get("seen_as") == "worker-main 7" and extra[0].get("addr") == "127.0.0.1:9"
