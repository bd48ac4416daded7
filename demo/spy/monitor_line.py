"""Parse the lines Redis MONITOR prints back into commands with their arguments."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from demo.names import MONITOR_LUA_ADDR


@dataclass(frozen=True)
class MonitorLine:
    """One command as MONITOR printed it, with arguments unescaped."""

    ts: float
    db: int
    addr: str  # "127.0.0.1:45254", "[::1]:5000", "lua" or "unix:/path"
    args: tuple[str, ...]

    @property
    def command(self) -> str:
        """The command name upper-cased (Lua scripts issue lower-case names)."""
        return self.args[0].upper()

    @property
    def from_lua(self) -> bool:
        """True when a Lua script (EVAL/EVALSHA) issued the command."""
        return self.addr == MONITOR_LUA_ADDR


# Stand-ins for the two escapes that involve a quote or a backslash, so that once they
# are swapped out every quote left in a line is a delimiter. MONITOR escapes all control
# bytes, so these never occur raw in a line.
_BACKSLASH, _QUOTE = "\x00", "\x01"


def _unescape(arg: str) -> str:
    r"""Undo Redis's sdscatrepr quoting of one argument (quotes stripped, stand-ins in).

    sdscatrepr writes \\ \" \n \r \t \a \b and \xHH: all of them Python bytes-literal
    escapes, so the C codec rebuilds the bytes. UTF-8 text is decoded as such and
    anything else falls back to one char per byte. ValueError on a bare quote or a
    dangling backslash: not one quoted argument.
    """
    if '"' in arg:
        raise ValueError("a bare quote inside an argument")
    if "\\" not in arg and _BACKSLASH not in arg and _QUOTE not in arg:
        return arg
    escaped = arg.replace(_QUOTE, '\\"').replace(_BACKSLASH, "\\\\")
    raw: bytes = codecs.escape_decode(escaped.encode("latin-1"))[0]
    try:
        return raw.decode("utf-8")
    except UnicodeError:
        return raw.decode("latin-1")


def parse_monitor_line(line: str) -> MonitorLine | None:
    """Parse one raw MONITOR line; None for "OK", blank lines and anything else.

    A line is `<ts> [<db> <addr>] "arg" "arg" …`. With `\\` and `\"` swapped for
    stand-ins (left to right, as escapes pair up), every quote left is a delimiter and
    `" "` separates two arguments: str methods in C instead of a tokenizer in Python,
    so the spy keeps up with a busy worker.
    """
    line = line.rstrip("\r\n")
    head, sep, rest = line.partition('] "')  # an IPv6 peer is "[::1]:5000]", no '] "'
    ts, space, where = head.partition(" [")
    db, space2, addr = where.partition(" ")
    if not (sep and space and space2 and addr and rest.endswith('"')):
        return None
    body = rest[:-1]
    if "\\" in body:
        if _BACKSLASH in body or _QUOTE in body:
            return None
        body = body.replace("\\\\", _BACKSLASH).replace('\\"', _QUOTE)
    try:
        args = tuple(_unescape(arg) for arg in body.split('" "'))
        return MonitorLine(float(ts), int(db), addr, args)
    except ValueError:
        return None
