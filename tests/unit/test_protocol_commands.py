"""demo.protocol.commands, mostly on a real MONITOR capture of one add(2, 3): what each
command means in Celery's protocol, which task it serves, how it is shown in one line."""

from __future__ import annotations

import re

import pytest

from demo.protocol.commands import (
    RULES,
    describe,
    queue_of,
    short,
    task_id_of,
)
from demo.protocol.phrases_fr import FR
from demo.spy.monitor_line import MonitorLine
from monitor_capture import TAG, TASK_ID, first, read_capture


@pytest.fixture(scope="module")
def lines() -> list[MonitorLine]:
    return read_capture()


@pytest.mark.parametrize(
    "command", ["SUBSCRIBE", "LPUSH", "HSET", "GET", "SETEX", "PUBLISH", "UNSUBSCRIBE"]
)
def test_task_id_is_found_on_each_command_of_the_task_life(
    lines: list[MonitorLine], command: str
) -> None:
    key = {"LPUSH": "celery", "HSET": "unacked"}.get(command, f"celery-task-meta-{TASK_ID}")
    assert task_id_of(first(lines, command, key).args) == TASK_ID


def test_task_id_is_none_for_unrelated_commands(lines: list[MonitorLine]) -> None:
    assert task_id_of(first(lines, "BRPOP", "celery").args) is None
    assert task_id_of(first(lines, "PUBLISH", "/0.celery.pidbox").args) is None
    assert task_id_of(first(lines, "ZADD", "unacked_index").args) is None


def test_task_id_reads_group_and_chord_keys_without_suffix() -> None:
    assert task_id_of(["SETEX", "celery-taskset-meta-g1", "60", "{}"]) == "g1"
    assert task_id_of(["INCR", "celery-taskset-meta-g1.t"]) == "g1"
    assert task_id_of(["INCR", "chord-unlock-g2"]) == "g2"
    assert describe(["INCR", "celery-taskset-meta-g1.t"]) == "update chord state of group g1"
    assert describe(["GET", "celery-taskset-meta-g1"]) == "read result of group g1"
    assert describe(["TTL", "celery-taskset-meta-g1.j"]) == "read chord state of group g1"
    assert describe(["PUBLISH", "celery-taskset-meta-g1", "{}"]) == "announce result of group g1"


@pytest.mark.parametrize(
    "args",
    [[], ["LPUSH"], ["LPUSH", "q", "not json"], ["LPUSH", "q", "[]"], ["HSET", "unacked", "t"]],
)
def test_task_id_of_returns_none_on_odd_input(args: list[str]) -> None:
    assert task_id_of(args) is None


def test_queue_of_splits_priority_sub_queues(lines: list[MonitorLine]) -> None:
    keys = first(lines, "BRPOP", "celery").args[1:-1]
    assert [queue_of(k) for k in keys] == [
        ("celery", None),
        ("celery", 3),
        ("celery", 6),
        ("celery", 9),
    ]


def test_queue_of_leaves_binding_members_whole() -> None:
    assert queue_of("celery\x06\x16\x06\x16celery") == ("celery\x06\x16\x06\x16celery", None)


@pytest.mark.parametrize(
    ("command", "key", "phrase"),
    [
        ("LPUSH", "celery", "publish a task message to queue 'celery'"),
        (
            "BRPOP",
            "celery",
            "wait for a message on queue 'celery' (and its priority sub-queues 3, 6, 9)",
        ),
        ("ZADD", "unacked_index", f"reserve message {TAG} in unacked"),
        ("HSET", "unacked", f"reserve message {TAG} in unacked"),
        ("ZREM", "unacked_index", f"ack message {TAG}"),
        ("HDEL", "unacked", f"ack message {TAG}"),
        ("SETEX", None, f"store result of task {TASK_ID} (expires in 86400 s)"),
        ("PUBLISH", f"celery-task-meta-{TASK_ID}", f"announce result of task {TASK_ID}"),
        ("SUBSCRIBE", None, f"listen for result of task {TASK_ID}"),
        ("GET", f"celery-task-meta-{TASK_ID}", f"read result of task {TASK_ID}"),
        ("PUBLISH", "/0.celeryev/task.multi", "send batched task events"),
        ("PUBLISH", "/0.celeryev/worker.heartbeat", "send worker heartbeat"),
        ("PSUBSCRIBE", "/0.celery.pidbox", "listen for remote control commands"),
        ("PUBLISH", "/0.celery.pidbox", "broadcast a control command"),
        ("SADD", "_kombu.binding.celery", "bind queue to exchange 'celery'"),
        ("SET", "unacked_mutex", "restore unacked messages (visibility timeout check)"),
        ("EVALSHA", None, "restore unacked messages (visibility timeout check)"),
        ("MULTI", None, "begin transaction"),
        ("EXEC", None, "commit transaction"),
    ],
)
def test_describe_names_the_celery_step_of_captured_commands(
    lines: list[MonitorLine], command: str, key: str | None, phrase: str
) -> None:
    assert describe(first(lines, command, key).args) == phrase


def test_describe_recognises_control_replies_and_falls_back_to_command_and_key() -> None:
    assert describe(["LPUSH", "abc.reply.celery.pidbox", "{}"]) == "reply to a control command"
    assert describe(["TIME"]) == "TIME"
    assert describe(["DEL", "q\x06\x163"]) == 'DEL "q\\x06\\x163"'
    assert describe([]) == ""


def test_describe_lists_every_queue_a_worker_waits_on() -> None:
    args = ["BRPOP", "a", "a\x06\x163", "b", "b\x06\x163", "1"]
    assert (
        describe(args) == "wait for a message on queues 'a', 'b' (and their priority sub-queues 3)"
    )


def test_every_phrase_has_its_french_and_the_catalogue_nothing_more() -> None:
    english = {rule.phrase for rule in RULES if isinstance(rule.phrase, str)}
    assert sorted(english - FR.keys()) == [], "phrases without French in phrases_fr.FR"
    assert sorted(FR.keys() - english) == [], "French of phrases no rule has any more"
    for en, fr in FR.items():  # the same fields, or .format would drop or miss one
        assert sorted(re.findall(r"{[^}]*}", fr)) == sorted(re.findall(r"{[^}]*}", en)), en


def test_describe_in_french_fills_the_same_fields() -> None:
    setex = ["SETEX", "celery-task-meta-t1", "86400", "{}"]
    assert describe(setex, "fr") == "stocke le résultat de la tâche t1 (expire dans 86400 s)"
    brpop = ["BRPOP", "celery", "celery\x06\x163", "1"]
    assert describe(brpop, "fr") == (
        "attend un message sur la file 'celery' (et ses sous-files de priorité 3)"
    )
    args = ["BRPOP", "a", "a\x06\x163", "b", "b\x06\x163", "1"]
    assert describe(args, "fr").startswith("attend un message sur les files 'a', 'b' (et leurs")
    assert describe(["TIME"], "fr") == "TIME"  # no rule: the command itself, in any language


def test_describe_does_not_raise_when_a_template_lacks_arguments() -> None:
    assert describe(["ZADD", "unacked_index"]) == 'ZADD "unacked_index"'


@pytest.mark.parametrize(
    "args",
    [["EVALSHA", "sha", "\u00b2", "k"], ["BRPOP"], ["LLEN", "q\x06\x16\u00b2"], ["SETEX"], [""]],
)
def test_describe_and_task_id_of_never_raise_on_odd_arguments(args: list[str]) -> None:
    assert isinstance(describe(args), str)
    assert task_id_of(args) is None


def test_short_quotes_arguments_and_shows_control_chars_as_hex() -> None:
    assert short(["LLEN", "celery\x06\x163"]) == '"LLEN" "celery\\x06\\x163"'


def test_short_cuts_long_payloads_and_reports_their_size(lines: list[MonitorLine]) -> None:
    lpush = first(lines, "LPUSH", "celery")
    text = short(lpush.args, width=120)
    assert len(text) <= 120
    assert "\n" not in text
    assert f"…({len(lpush.args[2])} bytes)" in text
    assert text.startswith('"LPUSH" "celery" "{\\"body\\"')


def test_short_keeps_result_keys_whole_at_default_width(lines: list[MonitorLine]) -> None:
    assert f'"celery-task-meta-{TASK_ID}"' in short(first(lines, "SETEX").args)


@pytest.mark.parametrize("width", [20, 40, 80])
def test_short_never_exceeds_width(lines: list[MonitorLine], width: int) -> None:
    assert all(len(short(m.args, width)) <= width for m in lines)
