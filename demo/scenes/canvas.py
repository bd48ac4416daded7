"""Narration for scenario 10 (chain, group, chord): the task messages as pushed, and the
group and chord keys in the result backend.

Built on demo.trace.query and demo.trace.messages, plus read-only views of Redis. Nothing here
writes to or deletes a key: the scenario acts through Celery's own API, and these helpers only
say who did what, in which order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from rich.table import Table

from demo import inspectors as ins
from demo import names
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, args_of, command_name, who

# The commands that change the chord's bookkeeping (celery/backends/redis.py, the Lua
# scripts CHORD_PART_RETURN_LUA and CHORD_CLEANUP_LUA, and set_chord_size).
CHORD_WRITES = ("SET", "DEL", "ZADD", "SADD", "ZRANGE")
GROUP_KEYS_MAX = 50  # a group has at most .j .d .s .t .c and its own key
ID_CHARS = 8  # an id is shown by its first characters
ARGS_WIDTH, KEY_WIDTH, ARG_WIDTH, REST_WIDTH = 24, 14, 28, 48  # table cells, in characters


def _short(value: object) -> str:
    return str(value)[:ID_CHARS] if value else "—"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def headers(messages: Iterable[msg.Pushed], name: str) -> list[Any]:
    """One header of each message, in order (None where absent)."""
    return [m.header(name) for m in messages]


def published_table(
    rows: Sequence[msg.Pushed], labels: Mapping[str, str], t0: float, title: str
) -> Table:
    """Who pushed each message, and the headers that link canvas steps together."""
    table = Table(title=title, title_justify="left")
    columns = ("time", "sent by", "task", "id", "args", "root_id", "parent_id", "group [index]")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for p in rows:
        group = p.header("group")
        where = f"{_short(group)} [{p.header('group_index')}]" if group else "—"
        table.add_row(
            f"+{p.ts - t0:.3f} s",
            who(p.event),
            labels.get(p.task_id or "", p.envelope.task or "?"),
            _short(p.task_id),
            json.dumps(p.envelope.args)[:ARGS_WIDTH],
            _short(p.header("root_id")),
            _short(p.header("parent_id")),
            where,
        )
    return table


def sent(write: TraceEvent | None, pid: int, *args: str) -> bool:
    """`write` exists, was sent by `pid`, and its arguments after the key are `args`."""
    return write is not None and write["pid"] == pid and args_of(write)[2:] == list(args)


def callbacks(messages: Iterable[msg.Pushed]) -> set[str | None]:
    """The chord callback ids the messages carry in their body (None for a message without)."""
    return {
        (m.envelope.embed.get("chord") or {}).get("options", {}).get("task_id") for m in messages
    }


def chord_header(events: Iterable[TraceEvent]) -> list[msg.Pushed]:
    """The header messages of the chord on the timeline (those whose body carries a chord
    callback), in header order (group_index)."""
    header = [m for m in msg.pushes(events) if m.envelope.embed.get("chord")]
    return sorted(header, key=lambda m: int(m.header("group_index") or 0))


def group_keys(r: redis.Redis, group_id: str) -> dict[str, ins.KeyInfo]:
    """suffix ("" or ".j", ".s"…) -> the key's type, size and TTL, for one group's keys."""
    prefix = names.group_key(group_id)
    keys = ins.scan_keys(r, prefix + "*", GROUP_KEYS_MAX)[0]
    return {info.key.removeprefix(prefix): info for info in ins.key_infos(r, keys)}


def chord_trail(events: Iterable[TraceEvent], group_id: str) -> list[TraceEvent]:
    """The writes to a chord's bookkeeping keys, whoever sent them (in Lua or not)."""
    return q.select(events, command=CHORD_WRITES, key_prefix=names.group_key(group_id))


def _arg(value: str, group_id: str, width: int = ARG_WIDTH) -> str:
    """A command argument, the group's key shortened to its suffix, cut to `width`."""
    return _cut(value.replace(names.group_key(group_id), "<gid>"), width)


def chord_table(events: Sequence[TraceEvent], group_id: str, title: str) -> Table:
    """The chord's bookkeeping writes and the callback's LPUSH, by sender, in ts order,
    timed from the first of them."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "sent by", "how", "command", "key", "arguments"):
        table.add_column(column, no_wrap=True)
    ordered = sorted(events, key=lambda e: e["ts"])
    for e in ordered:
        args = args_of(e)
        rest = " ".join(_arg(a, group_id) for a in args[2:])
        table.add_row(
            f"+{e['ts'] - ordered[0]['ts']:.3f} s",
            who(e),
            "in Lua" if e.get("via") == names.LUA else "",
            command_name(e),
            _arg(args[1], group_id, KEY_WIDTH),
            _cut(rest, REST_WIDTH),
        )
    return table
