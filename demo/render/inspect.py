"""Rich tables for demo.inspectors: what `python -m demo inspect` and the scenarios show.

Renderers are pure (dataclass in, rich renderable out) and fit 120 columns: long values are
cut with "…", control characters such as kombu's \\x06\\x16 separator are shown escaped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from demo import inspectors as ins
from demo import names


def escape(value: object) -> str:
    """str(value) with non-printable characters as \\xNN, as redis-cli prints them."""
    text = str(value)
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def cut(value: object, width: int) -> str:
    """One escaped line for value (JSON unless a str), at most `width` chars; … marks a cut."""
    text = "—" if value is None else value if isinstance(value, str) else json.dumps(value)
    text = escape(text)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def clock(epoch: float) -> str:
    """Local wall-clock time with milliseconds, as the worker's log lines show it."""
    return time.strftime("%H:%M:%S", time.localtime(epoch)) + f".{int(epoch % 1 * 1000):03d}"


def _table(title: str, columns: str) -> Table:
    """columns: "name:max width|…"; the widths of a table add up to at most 120 columns."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns.split("|"):
        name, width = column.rsplit(":", 1)
        table.add_column(name, max_width=int(width), overflow="ellipsis", no_wrap=True)
    return table


def _row(table: Table, *cells: object) -> None:
    # Text, not str: a "[" in a task argument must not be read as rich markup.
    table.add_row(*(Text(cut(cell, 300)) for cell in cells))


def _task(message: ins.Message) -> tuple[object, object, object]:
    """(task name, short id, args and kwargs) for a message, or its decoding error."""
    if message.error:
        return "undecodable", None, message.error
    s = message.summary
    call = cut(s.get("args"), 60) + (f" {cut(s['kwargs'], 60)}" if s.get("kwargs") else "")
    return s.get("task"), (message.task_id or "—")[:8], call


def render_queues(views: Sequence[ins.QueueView]) -> Table:
    """One row per list (the plain one and the priority sub-queues), then one per message."""
    columns = "list:26|step:4|len:5|#:2|task:24|id:8|args:26|priority:8"
    table = _table("Queues (next message to be taken first)", columns)
    for view in views:
        for sub in view.sub_queues:
            _row(table, sub.key, sub.priority, sub.length, "", "", "", "", "")
            for n, message in enumerate(sub.next_messages, 1):
                prio = message.summary.get("priority")
                _row(table, "", "", "", n, *_task(message), prio)
    return table


def render_unacked(view: ins.UnackedView) -> Table:
    """Reserved, not yet acked messages, oldest first."""
    title = f"unacked: {view.total} reserved (oldest {len(view.entries)} shown)"
    columns = (
        "tag:8|reserved:12|age s:6|visible in:10|task:22|id:8|args:18|exchange:8|routing key:11"
    )
    table = _table(title, columns)
    for e in view.entries:
        visible_in = f"{e.visible_again_at - e.reserved_at - e.age_s:.0f} s"
        _row(
            table,
            e.delivery_tag[:8],
            clock(e.reserved_at),
            f"{e.age_s:.1f}",
            visible_in,
            *_task(e.message),
            e.exchange or "(default)",
            e.routing_key,
        )
    return table


def render_bindings(view: ins.BindingsView) -> Group:
    """The binding tables, then the deadlines of the expiring ones."""
    columns = "table:9|exchange:24|routing key:24|pattern:8|queue:44"
    table = _table("Bindings (_kombu.binding*)", columns)
    for kind, rows in (("binding", view.bindings), ("permanent", view.permanent)):
        for b in rows:
            _row(table, kind, b.exchange, b.routing_key, b.pattern, b.queue)
    deadlines = _table(names.BINDING_DEADLINES, "exchange:40|deadline:12|seconds left:12")
    for d in view.deadlines:
        _row(deadlines, d.exchange, clock(d.deadline), f"{d.seconds_left:.0f}")
    return Group(table, deadlines)


def _ttl(seconds: int | None) -> str:
    return "none" if seconds is None else str(seconds)


def render_results(view: ins.ResultsView) -> Group:
    """Stored results, latest first, then group and chord keys."""
    more = " (more exist: SCAN picked these)" if view.truncated else ""
    columns = "task id:36|status:8|ttl s:6|date_done (UTC):23|worker:16|result:20"
    table = _table(f"Results ({names.RESULT_PREFIX}*){more}", columns)
    for res in view.results:
        _row(
            table,
            res.task_id,
            res.status or "?",
            _ttl(res.ttl_s),
            res.date_done,
            res.worker,
            res.error or res.result,
        )
    return Group(table, render_keys("Groups and chords", view.groups))


def render_keys(title: str, keys: Sequence[ins.KeyInfo]) -> Table:
    """Keys by name, type, size and TTL (the kit's own, chord bookkeeping)."""
    table = _table(title, "key:70|type:7|size:8|ttl s:7")
    for key in keys:
        _row(table, key.key, key.type, key.size, _ttl(key.ttl_s))
    return table


def _command(cmdline: Sequence[str]) -> str:
    """The command line without the interpreter's folder: the options are what matter."""
    return " ".join([os.path.basename(cmdline[0]), *cmdline[1:]]) if cmdline else "—"


def render_pool(pool: ins.PoolView) -> Table:
    """The MainProcess and its pool children, as the OS sees them."""
    columns = "role:11|pid:7|ppid:7|name:10|started:12|command line:60"
    table = _table("Worker processes (psutil)", columns)
    for role, proc in [("MainProcess", pool.main)] + [("pool child", c) for c in pool.children]:
        started = clock(proc.create_time)
        _row(table, role, proc.pid, proc.ppid, proc.name, started, _command(proc.cmdline))
    return table


def render_snapshot(snap: ins.Snapshot) -> Group:
    """Everything, in the order a message lives: queued, reserved, result stored."""
    head = Text(f"Redis snapshot at {clock(snap.taken_at)}: {snap.dbsize} keys", style="bold")
    parts: list[RenderableType] = [
        head,
        render_queues(snap.queues),
        render_unacked(snap.unacked),
        render_results(snap.results),
        render_bindings(snap.bindings),
        render_keys(f"The kit's own keys ({names.KIT_PREFIX}:*)", snap.kit_keys),
    ]
    if snap.pool is not None:
        parts.append(render_pool(snap.pool))
    return Group(*parts)
