"""The trace stream's wire format: what the emitter queues goes as it is, flat events come out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from envoi_mails.xray import stream, wire

CHILD = {"role": "pool-child", "pid": 4103, "ppid": 4100, "host": "h"}
MAIN = {"role": "worker-main", "pid": 4100, "ppid": 1, "host": "h"}


def _decode(items: list[wire.Item]) -> list[dict[str, Any]] | None:
    return wire.decode({wire.FIELD: wire.encode(items)})


def test_a_batch_decodes_to_flat_events_in_order_with_their_own_identity() -> None:
    items: list[wire.Item] = [
        MAIN,
        (1.0, "task.received", {"task_id": "t1"}),
        CHILD,
        (2.0, "task.prerun", {"task_id": "t1", "task": "add"}),
        (3.0, "task.postrun", {"task_id": "t1", "state": "SUCCESS"}),
        MAIN,
        (4.0, "task.acked", {}),
    ]
    events = _decode(items)
    assert events == [
        {"ts": 1.0, "event": "task.received", **MAIN, "task_id": "t1"},
        {"ts": 2.0, "event": "task.prerun", **CHILD, "task_id": "t1", "task": "add"},
        {"ts": 3.0, "event": "task.postrun", **CHILD, "task_id": "t1", "state": "SUCCESS"},
        {"ts": 4.0, "event": "task.acked", **MAIN},
    ]
    # The key order of the --json-trace contract: ts, event, then who, then the fields.
    assert events is not None and list(events[1])[:6] == ["ts", "event", *CHILD]


def test_records_become_items_with_an_identity_only_where_the_process_changes() -> None:
    records: list[wire.Record] = [(CHILD, float(n), "log", {"n": n}) for n in range(3)]
    records.append((dict(MAIN), 9.0, "x", {}))
    records.append((dict(MAIN), 10.0, "y", {}))  # equal, not the same object: one run still
    items = wire.items(records)
    logs = [(0.0, "log", {"n": 0}), (1.0, "log", {"n": 1}), (2.0, "log", {"n": 2})]
    assert items == [CHILD, *logs, MAIN, (9.0, "x", {}), (10.0, "y", {})]


def test_a_captured_command_reads_back_as_text_with_its_connection() -> None:
    conn = [0, "127.0.0.1:6379", "127.0.0.1:50001"]
    key = b"celery-task-meta-t1"
    items: list[wire.Item] = [
        MAIN,
        (1.0, "redis.command", ("SETEX", key, 86400, '{"status": "SUCCESS"}'), conn, None),
        (2.0, "redis.command", ("ZADD", "unacked_index", 1733.5, "tag"), conn, 7),
        (3.0, "redis.command", ("CONFIG GET", "maxmemory"), conn, None),
    ]
    events = _decode(items)
    where = {"db": 0, "server": "127.0.0.1:6379", "addr": "127.0.0.1:50001"}
    assert events == [
        {
            "ts": 1.0,
            "event": "redis.command",
            **MAIN,
            "command": ["SETEX", "celery-task-meta-t1", "86400", '{"status": "SUCCESS"}'],
            **where,
        },
        {
            "ts": 2.0,
            "event": "redis.command",
            **MAIN,
            "command": ["ZADD", "unacked_index", "1733.5", "tag"],
            "pipe": 7,
            **where,
        },
        # redis-py splits a command name given as one argument when it packs: so does decode.
        {
            "ts": 3.0,
            "event": "redis.command",
            **MAIN,
            "command": ["CONFIG", "GET", "maxmemory"],
            **where,
        },
    ]


def test_a_field_json_cannot_encode_is_written_as_its_str() -> None:
    events = _decode([MAIN, (1.0, "x", {"e": ValueError("boom"), "b": b"caf\xc3\xa9"})])
    assert events is not None and events[0]["e"] == "boom" and events[0]["b"] == "café"


def test_an_event_json_refuses_is_left_out_and_the_others_kept() -> None:
    bad = (1.0, "bad", {"by_pid": {4103: "a non-str key"}})
    items: list[wire.Item] = [MAIN, bad, (2.0, "ok", {})]
    with pytest.raises(TypeError):
        wire.encode(items)
    kept = wire.encodable(items)
    assert kept == [MAIN, (2.0, "ok", {})] and wire.events(items) - wire.events(kept) == 1


def test_slices_each_start_with_the_identity_in_force_and_keep_every_event() -> None:
    items: list[wire.Item] = [MAIN, *[(float(n), "a", {}) for n in range(5)]]
    items += [CHILD, *[(float(n), "b", {}) for n in range(5, 9)]]
    parts = wire.slices(items, 3)
    assert len(parts) == 3
    assert all(type(part[0]) is dict for part in parts)
    flat = [e for part in parts for e in _decode(part) or []]
    assert flat == _decode(items)


def test_an_event_too_large_alone_is_cut_to_fit_an_entry() -> None:
    huge = "y" * (stream.ENTRY_MAX_BYTES + 10)
    command = (1.0, "redis.command", ("SET", "k", huge), [0, "s", "a"], None)
    (payload,) = stream.entries([MAIN, command])
    assert len(payload) <= stream.ENTRY_MAX_BYTES
    (event,) = wire.decode({wire.FIELD: payload}) or []
    assert event["command"][:2] == ["SET", "k"] and "[cut:" in event["command"][2]


def test_an_event_before_any_identity_is_left_out_and_the_rest_read() -> None:
    raw = b'[[1.0, "orphan", {}], ' + orjson.dumps(MAIN) + b', [2.0, "x", {}]]'
    assert wire.decode({wire.FIELD: raw}) == [{"ts": 2.0, "event": "x", **MAIN}]


def test_a_command_json_cannot_hold_goes_as_text_rather_than_being_lost() -> None:
    conn = [0, "s", "a"]
    huge = (1.0, "redis.command", ("SET", "k", 2**70), conn, None)
    items: list[wire.Item] = [MAIN, huge]
    with pytest.raises(TypeError):
        wire.encode(items)
    events = _decode(wire.encodable(items))
    assert events is not None and events[0]["command"] == ["SET", "k", str(2**70)]


def test_a_float_reads_back_as_redis_py_spells_it() -> None:
    command = (1.0, "redis.command", ("SET", "k", 1e-05, 0.1), [0, "s", "a"], None)
    (event,) = _decode([MAIN, command]) or []
    assert event["command"] == ["SET", "k", repr(1e-05), repr(0.1)]


def test_bytes_field_names_are_read_too() -> None:
    raw = wire.encode([MAIN, (1.0, "x", {})])
    assert wire.decode({wire.FIELD.encode(): raw}) == [{"ts": 1.0, "event": "x", **MAIN}]


def test_what_it_cannot_read_is_none_not_an_exception() -> None:
    assert wire.decode({}) is None
    assert wire.decode({wire.FIELD: b"not json"}) is None
    assert wire.decode({wire.FIELD: b'{"g": []}'}) is None, "the older, grouped format"
    assert wire.decode({"e": orjson.dumps({"ts": 2.0, "event": "x"})}) is None, "one format"
