"""The trace emitter drops a batch it cannot send, counts it, and goes on shipping."""

from __future__ import annotations

import time
import uuid

import redis

from demo.stack.stack import Stack
from envoi_mails.xray import wire
from envoi_mails.xray.emitter import CLIENT_NAME, Emitter
from envoi_mails.xray.stream import STREAM


def test_a_batch_json_cannot_encode_is_dropped_and_the_next_one_still_goes(stack: Stack) -> None:
    emitter = Emitter(stack.broker_url)
    marker = str(uuid.uuid4())
    me = {"role": "test", "pid": 1, "ppid": 0, "host": "h"}
    emitter.emit(me, (time.time(), "test.bad", {"by_pid": {4103: "a non-str key"}}))
    emitter.flush()  # orjson refuses int keys: must not raise out of the flush thread
    assert emitter.dropped == 1

    emitter.emit(me, (time.time(), "test.good", {"marker": marker}))
    emitter.flush()
    with redis.Redis.from_url(stack.broker_url) as client:
        newest = client.xrevrange(STREAM, count=20)
    events = [e for _, fields in newest for e in wire.decode(fields) or []]
    assert [e["event"] for e in events if e.get("marker") == marker] == ["test.good"]
    assert emitter.dropped == 1


def test_a_connection_the_server_closed_while_idle_is_reopened_before_the_next_batch(
    stack: Stack,
) -> None:
    """Redis closes idle clients (its `timeout`), or restarts: the next flush must not send
    its batch down the dead socket."""
    emitter = Emitter(stack.broker_url)
    me = {"role": "test", "pid": 1, "ppid": 0, "host": "h"}
    marker = str(uuid.uuid4())
    emitter.emit(me, (time.time(), "test.before", {"marker": marker}))
    emitter.flush()
    with redis.Redis.from_url(stack.broker_url) as client:
        mine = [c for c in client.client_list() if c.get("name") == CLIENT_NAME]
        for connection in mine:
            client.client_kill_filter(_id=connection["id"])
        emitter.emit(me, (time.time(), "test.after", {"marker": marker}))
        emitter.flush()
        newest = client.xrevrange(STREAM, count=50)
    events = [e for _, fields in newest for e in wire.decode(fields) or []]
    assert mine, "the emitter's connection was there to close"
    assert {e["event"] for e in events if e.get("marker") == marker} == {
        "test.before",
        "test.after",
    }
    assert emitter.dropped == 0
