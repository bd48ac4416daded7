"""Unit tests of demo.protocol.commands, mostly on a real MONITOR capture of one add(2, 3)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

# The repo has no pytest `pythonpath` setting yet; make `demo` importable from any cwd.
from demo.protocol.commands import (
    describe,
    queue_of,
    short,
    task_id_of,
)
from demo.spy.monitor_line import MonitorLine, parse_monitor_line

ROOT = Path(__file__).resolve().parents[1]

CAPTURE = ROOT / "tests" / "fixtures" / "monitor_one_task.txt"
TASK_ID = "d4181aaa-a2a2-41e8-9cb5-e0a6d54e4e89"
TAG = "fde24a15-33d9-4ef4-b8db-487c24d9e6b7"


@pytest.fixture(scope="module")
def lines() -> list[MonitorLine]:
    """Every command line of the capture, parsed."""
    raw = CAPTURE.read_text(encoding="utf-8").splitlines()
    parsed = [parse_monitor_line(line) for line in raw]
    return [m for m in parsed if m is not None]


def first(lines: list[MonitorLine], command: str, key: str | None = None) -> MonitorLine:
    """The first captured line with this command (and first argument, if given)."""
    for m in lines:
        if m.command == command and (key is None or m.args[1] == key):
            return m
    raise AssertionError(f"no {command} {key} in capture")


def test_every_capture_line_but_the_ok_banner_parses() -> None:
    raw = CAPTURE.read_text(encoding="utf-8").splitlines()
    failed = [line for line in raw if parse_monitor_line(line) is None]
    assert failed == ["OK"]


def test_capture_timestamps_db_and_addresses_are_read(lines: list[MonitorLine]) -> None:
    ping = lines[0]
    assert ping.ts == pytest.approx(1795479833.806039)
    assert ping.db == 0
    assert ping.addr == "127.0.0.1:49858"
    assert ping.args == ("PING",)


def test_lua_lines_are_flagged_and_their_lowercase_command_upper_cased(
    lines: list[MonitorLine],
) -> None:
    lua = [m for m in lines if m.from_lua]
    assert lua, "the capture has [0 lua] lines"
    assert all(m.addr == "lua" for m in lua)
    get = next(m for m in lua if m.args[0] == "get")
    assert get.command == "GET"
    assert not lines[0].from_lua


def test_priority_queue_escapes_become_control_characters(lines: list[MonitorLine]) -> None:
    brpop = first(lines, "BRPOP", "celery")
    assert brpop.args[1:] == (
        "celery",
        "celery\x06\x163",
        "celery\x06\x166",
        "celery\x06\x169",
        "1",
    )


def test_escaped_quotes_in_payload_are_unescaped(lines: list[MonitorLine]) -> None:
    lpush = first(lines, "LPUSH", "celery")
    assert lpush.args[2].startswith('{"body": "W1sy')
    assert '\\"' not in lpush.args[2]


def test_newlines_in_lua_script_are_unescaped(lines: list[MonitorLine]) -> None:
    script = first(lines, "SCRIPT")
    assert script.args[2].startswith("\n        local token")


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


def test_describe_does_not_raise_when_a_template_lacks_arguments() -> None:
    assert describe(["ZADD", "unacked_index"]) == 'ZADD "unacked_index"'


@pytest.mark.parametrize(
    "args",
    [["EVALSHA", "sha", "\u00b2", "k"], ["BRPOP"], ["LLEN", "q\x06\x16\u00b2"], ["SETEX"], [""]],
)
def test_describe_and_task_id_of_never_raise_on_odd_arguments(args: list[str]) -> None:
    assert isinstance(describe(args), str)
    assert task_id_of(args) is None


def test_parse_handles_ipv6_and_unix_socket_addresses() -> None:
    v6 = parse_monitor_line('1.5 [3 [::1]:5000] "GET" "k"')
    unix = parse_monitor_line('2.0 [0 unix:/run/redis.sock] "PING"')
    assert v6 == MonitorLine(1.5, 3, "[::1]:5000", ("GET", "k"))
    assert unix is not None and unix.addr == "unix:/run/redis.sock"


def test_parse_unescapes_every_redis_escape() -> None:
    m = parse_monitor_line(r'1.0 [0 lua] "SET" "a\"b\\c\n\r\t\a\b\x00\xff\x7f"')
    assert m is not None
    assert m.args[1] == 'a"b\\c\n\r\t\a\b\x00\xff\x7f'


def test_parse_decodes_escaped_utf8_bytes_as_text() -> None:
    m = parse_monitor_line(r'1.0 [0 127.0.0.1:1] "SET" "caf\xc3\xa9"')
    assert m is not None and m.args[1] == "café"


def test_parse_keeps_empty_arguments() -> None:
    m = parse_monitor_line('1.0 [0 127.0.0.1:1] "SET" "" "x"')
    assert m is not None and m.args == ("SET", "", "x")


def _sdscatrepr(data: bytes) -> str:
    """Redis's own quoting of one argument in a MONITOR line (sds.c sdscatrepr)."""
    named = {
        0x5C: "\\\\",
        0x22: '\\"',
        0x0A: "\\n",
        0x0D: "\\r",
        0x09: "\\t",
        0x07: "\\a",
        0x08: "\\b",
    }
    out = [named.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in data]
    return '"' + "".join(out) + '"'


def test_parse_round_trips_any_bytes_quoted_as_redis_quotes_them() -> None:
    # Arguments full of the characters that matter: quotes, backslashes, spaces (so `" "`
    # and `\\" "` occur inside arguments), escapes' letters, control and high bytes.
    rng = random.Random(20261124)
    alphabet = b'" \\xnrtab0{}:,' + bytes([0, 7, 8, 9, 10, 13, 0x7F, 0xC3, 0xA9, 0xFF])
    for _ in range(2000):
        args = [
            bytes(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(rng.randint(1, 5))
        ]
        line = "1.5 [0 127.0.0.1:6000] " + " ".join(_sdscatrepr(a) for a in args)
        parsed = parse_monitor_line(line)
        assert parsed is not None, line
        for got, sent in zip(parsed.args, args, strict=True):
            try:
                want = sent.decode("utf-8")
            except UnicodeError:
                want = sent.decode("latin-1")
            assert got == want, line


@pytest.mark.parametrize(
    "line",
    [
        "OK",
        "",
        "garbage",
        "1.0 [0 127.0.0.1:1] PING",
        '1.0 [0 127.0.0.1:1] "unterminated',
        '1.0 [0 127.0.0.1:1] "a""b"',
        r'1.0 [0 127.0.0.1:1] "a\\"b"',
        r'1.0 [0 127.0.0.1:1] "GET" "cut\"',
        'x.y [0 127.0.0.1:1] "PING"',
    ],
)
def test_parse_returns_none_for_non_command_lines(line: str) -> None:
    assert parse_monitor_line(line) is None


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
