"""Unit tests of demo.protocol.envelope, on the payloads of a real MONITOR capture of add(2, 3)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from demo.protocol.envelope import (
    EnvelopeError,
    decode_envelope,
    decode_event_body,
    decode_result,
    decode_unacked,
    summarise,
)
from demo.spy.monitor_line import MonitorLine
from monitor_capture import TASK_ID, read_capture


def captured(command: str, key: str) -> list[MonitorLine]:
    """Captured lines with this command and first argument, in order."""
    return [m for m in read_capture() if m.command == command and m.args[1] == key]


def message(body: Any, content_type: str = "application/json", **props: Any) -> str:
    """A kombu-style envelope around a JSON body, base64-encoded as on Redis."""
    encoded = base64.b64encode(json.dumps(body).encode()).decode()
    properties = {"body_encoding": "base64", **props}
    return json.dumps(
        {
            "body": encoded,
            "content-encoding": "utf-8",
            "content-type": content_type,
            "headers": {"id": "t1", "task": "m.f"},
            "properties": properties,
        }
    )


def test_published_message_decodes_to_task_name_args_and_id() -> None:
    env = decode_envelope(captured("LPUSH", "celery")[0].args[2])
    assert env.task == "gapp.add"
    assert env.args == [2, 3]
    assert env.kwargs == {}
    assert env.task_id == TASK_ID
    assert env.embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    assert env.content_type == "application/json"
    assert env.body_encoding == "base64"
    assert env.properties["correlation_id"] == TASK_ID


def test_unacked_value_decodes_to_envelope_exchange_and_routing_key() -> None:
    env, exchange, routing_key = decode_unacked(captured("HSET", "unacked")[0].args[3])
    assert env.task_id == TASK_ID
    assert env.args == [2, 3]
    assert (exchange, routing_key) == ("", "celery")


def test_stored_result_decodes_to_success_and_value() -> None:
    meta = decode_result(captured("SETEX", f"celery-task-meta-{TASK_ID}")[0].args[3])
    assert meta["status"] == "SUCCESS"
    assert meta["result"] == 5
    assert meta["task_id"] == TASK_ID


def test_summarise_flattens_the_captured_message() -> None:
    row = summarise(decode_envelope(captured("LPUSH", "celery")[0].args[2]))
    assert row == {
        "task": "gapp.add",
        "id": TASK_ID,
        "args": [2, 3],
        "kwargs": {},
        "retries": 0,
        "eta": None,
        "root_id": TASK_ID,
        "parent_id": None,
        "origin": "gen5671@vm",
        "priority": 0,
        "routing_key": "celery",
    }


def test_task_multi_events_decode_to_received_started_succeeded() -> None:
    batches = [decode_event_body(m.args[2]) for m in captured("PUBLISH", "/0.celeryev/task.multi")]
    types = [event["type"] for batch in batches for event in batch]
    assert types == ["task-received", "task-started", "task-succeeded"]
    assert batches[0][0]["uuid"] == TASK_ID


def test_single_worker_event_is_returned_as_a_one_item_list() -> None:
    events = decode_event_body(captured("PUBLISH", "/0.celeryev/worker.heartbeat")[0].args[2])
    assert [e["type"] for e in events] == ["worker-heartbeat"]


def test_pickle_content_type_is_refused_with_a_pickle_message() -> None:
    with pytest.raises(EnvelopeError, match="pickle"):
        decode_envelope(message([[], {}, {}], content_type="application/x-python-serialize"))


def test_other_content_types_are_refused() -> None:
    with pytest.raises(EnvelopeError, match="only JSON"):
        decode_envelope(message([[], {}, {}], content_type="application/x-yaml"))


def test_unknown_body_encoding_is_refused() -> None:
    raw = json.loads(message([[], {}, {}]))
    raw["properties"]["body_encoding"] = "rot13"
    with pytest.raises(EnvelopeError, match="body_encoding"):
        decode_envelope(json.dumps(raw))


def test_plain_body_without_body_encoding_is_accepted() -> None:
    raw = {"body": json.dumps([[1], {"k": 2}, {}]), "content-type": "application/json"}
    env = decode_envelope(json.dumps(raw))
    assert (env.args, env.kwargs, env.body_encoding) == ([1], {"k": 2}, "")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (message({"task": "protocol 1"}), "protocol 2"),
        (message([1, {}, {}]), "list of args"),
        (
            json.dumps(
                {
                    "body": "%%%",
                    "content-type": "application/json",
                    "properties": {"body_encoding": "base64"},
                }
            ),
            "base64",
        ),
    ],
)
def test_decode_envelope_rejects_malformed_messages(raw: str, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        decode_envelope(raw)


def test_envelope_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_envelope("{")


@pytest.mark.parametrize("raw", ["[]", "[1, 2, 3]", '[{"body": 1}, "", "q"]', "nope"])
def test_decode_unacked_rejects_malformed_entries(raw: str) -> None:
    with pytest.raises(EnvelopeError):
        decode_unacked(raw)


@pytest.mark.parametrize("raw", ["nope", "5", '{"result": 5}'])
def test_decode_result_rejects_non_results(raw: str) -> None:
    with pytest.raises(EnvelopeError):
        decode_result(raw)


def test_decode_event_body_rejects_lists_of_non_objects() -> None:
    with pytest.raises(EnvelopeError, match="event"):
        decode_event_body(message([1, 2]))
