"""demo.protocol.envelope's cheap readers (the spy's hot path) and decode_body, on a real
MONITOR capture of add(2, 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo import names
from demo.protocol.envelope import EnvelopeError, decode_body, envelope_ids, task_id_of_envelope
from demo.spy.monitor_line import MonitorLine, parse_monitor_line

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "monitor_one_task.txt"
TASK_ID = "d4181aaa-a2a2-41e8-9cb5-e0a6d54e4e89"
TAG = "fde24a15-33d9-4ef4-b8db-487c24d9e6b7"


def first(command: str, key: str) -> MonitorLine:
    parsed = (parse_monitor_line(x) for x in CAPTURE.read_text(encoding="utf-8").splitlines())
    return next(m for m in parsed if m and m.command == command and m.args[1] == key)


def test_a_published_message_names_its_task_and_its_delivery_tag() -> None:
    lpush = first("LPUSH", names.DEFAULT_QUEUE)
    assert envelope_ids(lpush.args[2]) == (TASK_ID, TAG)
    assert task_id_of_envelope(lpush.args[2]) == TASK_ID


def test_an_unacked_entry_is_read_through_its_message() -> None:
    hset = first("HSET", names.UNACKED)
    assert hset.args[2] == TAG
    assert envelope_ids(hset.args[3]) == (TASK_ID, TAG)


@pytest.mark.parametrize("raw", ["", "not json", "[]", "[1, 2]", "{}", '{"headers": {"id": 3}}'])
def test_what_is_not_a_message_has_no_ids_and_raises_nothing(raw: str) -> None:
    assert envelope_ids(raw) == (None, None)
    assert task_id_of_envelope(raw) is None


def test_decode_body_reads_a_control_command() -> None:
    broadcast = first("PUBLISH", names.pidbox_channel())
    body = decode_body(broadcast.args[2])
    assert isinstance(body, dict) and "method" in body


def test_decode_body_refuses_what_is_not_a_message() -> None:
    with pytest.raises(EnvelopeError):
        decode_body("[1, 2]")
