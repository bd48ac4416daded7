"""Helpers for scenario 10 (chain, group, chord): the task messages as published, and
the group and chord keys in the result backend.

Pure functions of trace events, read-only views of Redis, and waits on the timeline (each
with a deadline). Nothing here writes to or deletes a key: the scenario acts through
Celery's own API, and these helpers only say who did what, in which order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rich.table import Table

from demo import inspectors as ins
from demo.protocol.envelope import Envelope, EnvelopeError, decode_envelope
from demo.scenes.processes import wait_for_each
from demo.scenes.results import writes_of
from demo.trace.event import TraceEvent, args_of
from demo.trace.timeline import Timeline

Event = TraceEvent
GROUP_PREFIX = "celery-taskset-meta-"  # celery/backends/base.py KeyValueStoreBackend


# The commands that change the chord's bookkeeping (celery/backends/redis.py, the Lua
# scripts CHORD_PART_RETURN_LUA and CHORD_CLEANUP_LUA, and set_chord_size).
CHORD_WRITES = frozenset({"SET", "DEL", "ZADD", "SADD", "ZRANGE"})


def _short(value: object) -> str:
    return str(value)[:8] if value else "—"


@dataclass(frozen=True)
class Published:
    """One task message as an LPUSH carried it, and the process that sent it."""

    event: Event
    envelope: Envelope

    @property
    def ts(self) -> float:
        return float(self.event["ts"])

    @property
    def pid(self) -> int | None:
        pid = self.event.get("pid")
        return int(pid) if pid is not None else None

    @property
    def task_id(self) -> str | None:
        return self.envelope.task_id

    def header(self, name: str) -> Any:
        return self.envelope.headers.get(name)


def headers(messages: Iterable[Published], name: str) -> list[Any]:
    """One header of each message, in order (None where absent)."""
    return [m.header(name) for m in messages]


def _decoded(e: Event) -> Published | None:
    args = args_of(e)
    if e.get("event") != "redis.command" or len(args) < 3 or args[0].upper() != "LPUSH":
        return None
    try:
        return Published(e, decode_envelope(args[2]))
    except EnvelopeError:
        return None  # an LPUSH that is not a task message (a control reply)


def published(events: Iterable[Event], task_ids: Collection[str] | None = None) -> list[Published]:
    """The task messages the spy saw pushed (of `task_ids` when given), in ts order."""
    found = [p for e in events if (p := _decoded(e)) is not None]
    return [p for p in found if task_ids is None or p.task_id in task_ids]


def wait_published(tl: Timeline, task_id: str, timeout: float = 30.0) -> Published:
    """The LPUSH of task `task_id`, waiting for the spy to see it."""
    event = tl.wait_for(
        lambda e: e.get("task_id") == task_id and _decoded(e) is not None,
        timeout=timeout,
        what=f"the LPUSH of task {task_id}",
    )
    found = _decoded(event)
    assert found is not None  # the predicate decoded it already
    return found


def published_table(
    rows: Sequence[Published], labels: Mapping[str, str], t0: float, title: str
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
            f"{p.event.get('role')} {p.pid}",
            labels.get(p.task_id or "", p.envelope.task or "?"),
            _short(p.task_id),
            json.dumps(p.envelope.args)[:24],
            _short(p.header("root_id")),
            _short(p.header("parent_id")),
            where,
        )
    return table


def first_command(
    events: Iterable[Event], name: str, key: str, since: float = float("-inf")
) -> Event | None:
    """The first Redis command `name` on exactly `key` (lua ones included) after `since`."""
    for e in events:
        args = args_of(e)
        late = e.get("event") == "redis.command" and float(e["ts"]) > since
        if late and len(args) > 1 and args[0].upper() == name and args[1] == key:
            return e
    return None


def wait_command(
    tl: Timeline, name: str, key: str, count: int = 1, timeout: float = 20.0
) -> list[Event]:
    """The first `count` commands `name` on exactly `key`, waiting for each on the timeline."""
    return wait_for_each(tl, lambda e: args_of(e)[:2] == [name, key], count, timeout, name)


def sent(write: Event | None, pid: int, *args: str) -> bool:
    """`write` exists, was sent by `pid`, and its arguments after the key are `args`."""
    return write is not None and write.get("pid") == pid and args_of(write)[2:] == list(args)


def callbacks(messages: Iterable[Published]) -> set[str | None]:
    """The chord callback ids the messages carry in their body (None for a message without)."""
    return {
        (m.envelope.embed.get("chord") or {}).get("options", {}).get("task_id") for m in messages
    }


def group_key(group_id: str, suffix: str = "") -> str:
    return f"{GROUP_PREFIX}{group_id}{suffix}"


def group_keys(r: redis.Redis, group_id: str) -> dict[str, ins.KeyInfo]:
    """suffix ("" or ".j", ".s"…) -> the key's type, size and TTL, for one group's keys."""
    keys = ins.scan_keys(r, group_key(group_id) + "*", 50)[0]
    return {info.key.removeprefix(group_key(group_id)): info for info in ins.key_infos(r, keys)}


def chord_trail(events: Iterable[Event], group_id: str) -> list[Event]:
    """The writes to a chord's bookkeeping keys, whoever sent them (in Lua or not)."""
    prefix = group_key(group_id)
    trail = []
    for e in events:
        args = args_of(e)
        if e.get("event") != "redis.command" or len(args) < 2:
            continue
        if args[0].upper() in CHORD_WRITES and args[1].startswith(prefix):
            trail.append(e)
    return trail


def _arg(value: str, group_id: str, width: int = 28) -> str:
    """A command argument, the group's key shortened to its suffix, cut to `width`."""
    text = value.replace(group_key(group_id), "<gid>")
    return text if len(text) <= width else text[: width - 1] + "…"


def chord_table(events: Sequence[Event], group_id: str, t0: float, title: str) -> Table:
    """The chord's bookkeeping writes and the callback's LPUSH, by sender, in ts order."""
    table = Table(title=title, title_justify="left")
    for column in ("time", "sent by", "how", "command", "key", "arguments"):
        table.add_column(column, no_wrap=True)
    for e in sorted(events, key=lambda e: float(e["ts"])):
        args = args_of(e)
        rest = " ".join(_arg(a, group_id) for a in args[2:])
        table.add_row(
            f"+{float(e['ts']) - t0:.3f} s",
            f"{e.get('role')} {e.get('pid')}",
            "in Lua" if e.get("via") == "lua" else "",
            args[0].upper(),
            _arg(args[1], group_id, 14),
            rest if len(rest) <= 48 else rest[:47] + "…",
        )
    return table


def stored_at(events: Iterable[Event], task_id: str) -> float:
    """When the result of `task_id` was first written (its first SETEX); inf if never."""
    writes = writes_of(events, task_id)
    return float(writes[0]["ts"]) if writes else float("inf")
