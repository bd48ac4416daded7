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
