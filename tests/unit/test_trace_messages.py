"""demo.trace.messages on the recorded trace of scenario 02 (one mail, one add): the task
messages pushed, the control commands broadcast, the Celery events published."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo import names
from demo.protocol.envelope import EnvelopeError, decode_control
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, args_of
from demo.trace.timeline import read_jsonl

TRACE = Path(__file__).resolve().parents[1] / "fixtures" / "trace_send_one_mail.jsonl"
MAIL = "ab28f8df-c94b-4fcd-a034-427fbbae1376"
ADD = "aa1fffed-46c3-457a-9e34-2846383f60a1"
CLIENT, MAIN = 7532, 7542
LIFE = ["task-received", "task-started", "task-succeeded"]


@pytest.fixture(scope="module")
def events() -> list[TraceEvent]:
    return read_jsonl(TRACE)


def test_pushes_decode_the_task_messages_and_skip_control_replies(
    events: list[TraceEvent],
) -> None:
    found = msg.pushes(events)
    assert [(p.task_id, p.pid) for p in found] == [(MAIL, CLIENT), (ADD, CLIENT)]
    assert found[0].envelope.task == "envoi_mails.envoi_mail" and found[0].eta is None
    assert found[1].header("root_id") == ADD and found[1].header("parent_id") is None
    assert [(p.retries, p.redelivered) for p in found] == [(0, False), (0, False)]
    assert [p.task_id for p in msg.pushes(events, {ADD})] == [ADD]
    reply = q.first(events, command="LPUSH", key_suffix=names.REPLY_SUFFIX)
    assert reply is not None and not msg.is_task_push(reply)
    with pytest.raises(EnvelopeError):
        msg.pushed(reply)


def test_control_commands_name_the_method_and_the_sender(events: list[TraceEvent]) -> None:
    commands = msg.control_commands(events)
    assert {(c.method, c.pid) for c in commands} == {("ping", CLIENT), ("hello", MAIN)}
    (hello,) = msg.control_commands(events, "hello")
    assert hello.arguments["from_node"] == "celery@vm" and hello.ts > commands[0].ts
    assert msg.control_commands(events, "ping", pid=MAIN) == []
    assert len(msg.control_commands(events, "ping", since=hello.ts)) == 2


def test_a_control_command_names_the_list_its_replies_are_pushed_onto(
    events: list[TraceEvent],
) -> None:
    *_, answered = msg.control_commands(events, "ping")
    assert answered.reply_list is not None and answered.reply_list.endswith(names.REPLY_SUFFIX)
    (reply,) = q.select(events, command="LPUSH", key=answered.reply_list)
    assert reply["pid"] == MAIN
    assert msg.ControlCommand(answered.event, {"method": "ping"}).reply_list is None


def test_event_batches_carry_each_task_s_celery_events(events: list[TraceEvent]) -> None:
    batches = msg.event_batches(events)
    assert len(batches) == 6 and {b.pid for b in batches} == {MAIN}
    assert {b.channel for b in batches} == {"/0" + names.TASK_MULTI_SUFFIX}
    mail = msg.event_batches(events, task_ids={MAIL})
    assert [ev["type"] for ev in msg.task_events(mail, MAIL)] == LIFE
    assert msg.task_events(mail, ADD) == []
    (online,) = msg.event_batches(events, names.EVENTS_INFIX + "worker.online")
    assert online.first["type"] == "worker-online" and online.first["pid"] == MAIN


def test_decode_control_refuses_a_message_that_is_not_a_command(
    events: list[TraceEvent],
) -> None:
    publish = q.first(events, command="PUBLISH", key_suffix=names.TASK_MULTI_SUFFIX)
    assert publish is not None
    with pytest.raises(EnvelopeError, match="control command"):
        decode_control(args_of(publish)[2])
    assert msg.control_command(publish).method == "(undecodable)"
