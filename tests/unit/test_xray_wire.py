"""The trace stream's wire format: compact batches in, the flat `--json-trace` events out."""

from __future__ import annotations

import orjson

from envoi_mails.xray import wire

CHILD = {"role": "pool-child", "pid": 4103, "ppid": 4100, "host": "h"}
MAIN = {"role": "worker-main", "pid": 4100, "ppid": 1, "host": "h"}


def test_a_batch_decodes_to_flat_events_in_order_with_their_own_identity() -> None:
    batch: list[wire.Record] = [
        (MAIN, 1.0, "task.received", {"task_id": "t1"}),
        (CHILD, 2.0, "task.prerun", {"task_id": "t1", "task": "add"}),
        (CHILD, 3.0, "task.postrun", {"task_id": "t1", "state": "SUCCESS"}),
        (MAIN, 4.0, "task.acked", {}),
    ]
    events = wire.decode({wire.FIELD: wire.encode(batch)})
    assert events == [
        {"ts": 1.0, "event": "task.received", **MAIN, "task_id": "t1"},
        {"ts": 2.0, "event": "task.prerun", **CHILD, "task_id": "t1", "task": "add"},
        {"ts": 3.0, "event": "task.postrun", **CHILD, "task_id": "t1", "state": "SUCCESS"},
        {"ts": 4.0, "event": "task.acked", **MAIN},
    ]
    # The key order of the --json-trace contract: ts, event, then who, then the fields.
    assert events is not None and list(events[1])[:6] == ["ts", "event", *CHILD]


def test_identity_is_written_once_per_run_of_events_that_share_it() -> None:
    batch: list[wire.Record] = [(CHILD, float(n), "log", {"n": n}) for n in range(50)]
    document = orjson.loads(wire.encode(batch))
    assert len(document[wire.FIELD]) == 1
    assert document[wire.FIELD][0][0] == CHILD


def test_a_field_json_cannot_encode_is_written_as_its_str() -> None:
    events = wire.decode({wire.FIELD: wire.encode([(MAIN, 1.0, "x", {"e": ValueError("boom")})])})
    assert events is not None and events[0]["e"] == "boom"


def test_bytes_field_names_are_read_too() -> None:
    raw = wire.encode([(MAIN, 1.0, "x", {})])
    assert wire.decode({wire.FIELD.encode(): raw}) == [{"ts": 1.0, "event": "x", **MAIN}]


def test_what_it_cannot_read_is_none_not_an_exception() -> None:
    assert wire.decode({}) is None
    assert wire.decode({wire.FIELD: b"not json"}) is None
    assert wire.decode({wire.FIELD: b'{"g": [[1, 2]]}'}) is None
    assert wire.decode({"e": orjson.dumps({"ts": 2.0, "event": "x"})}) is None, "one format"


class _Sent:
    """What commands.Command gives the encoder: its own fields, and its connection's."""

    def __init__(self, args: list[str], connection: dict[str, object]) -> None:
        self.args, self.shared = args, connection

    def own(self) -> dict[str, object]:
        return {"command": self.args}

    def fields(self) -> dict[str, object]:
        return {**self.own(), **self.shared}


def test_fields_events_share_are_written_once_and_read_back_into_each_event() -> None:
    one = {"db": 0, "server": "127.0.0.1:6379", "addr": "127.0.0.1:50001"}
    other = {"db": 1, "server": "127.0.0.1:6379", "addr": "127.0.0.1:50002"}
    batch: list[wire.Record] = [
        (MAIN, 1.0, "redis.command", _Sent(["BRPOP", "celery", "1"], one)),
        (MAIN, 2.0, "task.received", {"task_id": "t1"}),
        (MAIN, 3.0, "redis.command", _Sent(["HSET", "unacked", "tag", "{}"], one)),
        (MAIN, 4.0, "redis.command", _Sent(["PUBLISH", "c", "m"], other)),
    ]
    raw = wire.encode(batch)
    assert raw.count(b"50001") == 1 and raw.count(b"50002") == 1
    assert wire.decode({wire.FIELD: raw}) == [
        {"ts": 1.0, "event": "redis.command", **MAIN, "command": ["BRPOP", "celery", "1"], **one},
        {"ts": 2.0, "event": "task.received", **MAIN, "task_id": "t1"},
        {
            "ts": 3.0,
            "event": "redis.command",
            **MAIN,
            "command": ["HSET", "unacked", "tag", "{}"],
            **one,
        },
        {"ts": 4.0, "event": "redis.command", **MAIN, "command": ["PUBLISH", "c", "m"], **other},
    ]
