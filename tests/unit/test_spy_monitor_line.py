"""demo.spy.monitor_line: MONITOR's output read back into commands and arguments, on a real
capture of one add(2, 3) and on every byte Redis may quote."""

from __future__ import annotations

import random

import pytest

from demo.spy.monitor_line import MonitorLine, parse_monitor_line
from monitor_capture import CAPTURE, first, read_capture


@pytest.fixture(scope="module")
def lines() -> list[MonitorLine]:
    return read_capture()


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
