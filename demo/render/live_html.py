"""The live page's panels, as HTML fragments rendered on the server.

Each panel is a function of the live picture (demo.live.model): the processes, the recent
tasks, the Redis state, one task's diagram (demo.render.sequence_html), the rows of the
feed. Every piece of text that comes from the trace is escaped. `data-*` attributes carry
what a test or a script needs (pids, roles, task ids) without parsing the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from demo import names
from demo.inspectors import QueueView, ResultsView, UnackedView
from demo.live.happenings import Happening
from demo.live.model import Proc, TaskRow
from demo.live.state import LiveState
from demo.render.live_text import Namer, clock
from demo.render.sequence_html import esc, render_svg
from demo.trace.event import TraceEvent
from demo.trace.sequence import build_sequence

GONE_SHOWN = 6  # exited children shown per worker, newest first
CLIENTS_SHOWN = 8
ROLE_CLASS = {
    names.CLIENT: "client",
    names.WORKER_MAIN: "main",
    names.POOL_CHILD: "child",
    names.FLOWER: "flower",
}


def _flower_link(flower: str | None, path: str, text: str) -> str:
    if not flower:
        return ""
    return f'<a class="flower" href="{esc(flower.rstrip("/") + path)}" target="_blank">{text}</a>'


def _short(task_id: str) -> str:
    return task_id[:8]


def _child(proc: Proc) -> str:
    label = esc(proc.name or "pool child")
    if proc.left is not None:
        after = f" → replaced by <b>{proc.replaced_by}</b>" if proc.replaced_by else ""
        return (
            f'<li class="proc child gone" data-pid="{proc.pid}" data-state="gone" '
            f'data-replaced-by="{proc.replaced_by or ""}">{label} <s>{proc.pid}</s> '
            f"exited at {clock(proc.left)}: {esc(proc.exit_status)}{after} · "
            f"{proc.tasks_run} tasks</li>"
        )
    state = "busy" if proc.busy else "idle"
    doing = f"runs <code>{_short(proc.busy)}</code>" if proc.busy else "idle"
    replaces = f" · replaces <s>{proc.replaces}</s>" if proc.replaces else ""
    return (
        f'<li class="proc child {state}" data-pid="{proc.pid}" data-state="{state}" '
        f'data-replaces="{proc.replaces or ""}">{label} <b>{proc.pid}</b> '
        f'<span class="badge {state}">{doing}</span> · {proc.tasks_run} tasks{replaces}</li>'
    )


def _worker(state: LiveState, main: Proc) -> str:
    kids = state.children_of(main.pid)
    alive = [_child(p) for p in kids if p.left is None]
    gone = [_child(p) for p in sorted(kids, key=lambda p: p.left or 0.0) if p.left is not None]
    status = f" · stopped: {esc(main.exit_status)}" if main.left else ""
    lost = ' <span class="badge alarm">lost Redis</span>' if main.lost_broker else ""
    return (
        f'<li class="proc main" data-pid="{main.pid}" data-role="{esc(main.role)}">'
        f"worker <b>{esc(main.hostname or '?')}</b> · MainProcess <b>{main.pid}</b> "
        f"on {esc(main.host)}{status}{lost}"
        f"<ul>{''.join(alive)}{''.join(gone[-GONE_SHOWN:][::-1])}</ul></li>"
    )


def process_tree(state: LiveState, flower: str | None) -> str:
    """Workers with their pool children (busy or idle, tasks run, exits and replacements),
    then Flower and the clients seen."""
    parts = [_worker(state, main) for main in state.by_role(names.WORKER_MAIN)]
    if not parts:
        parts.append('<li class="empty">no worker seen yet</li>')
    for proc in state.by_role(names.FLOWER):
        link = _flower_link(flower, "/", "open ↗")
        parts.append(
            f'<li class="proc flower" data-pid="{proc.pid}">Flower <b>{proc.pid}</b> '
            f"on {esc(proc.host)} {link}</li>"
        )
    clients = sorted(state.by_role(names.CLIENT), key=lambda p: p.last_seen)[-CLIENTS_SHOWN:]
    for proc in reversed(clients):
        parts.append(
            f'<li class="proc client" data-pid="{proc.pid}">client <b>{proc.pid}</b> '
            f"on {esc(proc.host)} · {proc.published} tasks sent · last seen "
            f"{clock(proc.last_seen)}</li>"
        )
    return f'<ul class="tree">{"".join(parts)}</ul>'


def recent_tasks(rows: Sequence[TaskRow], flower: str | None, name: Namer) -> str:
    """The newest tasks, one row each: select one to see its diagram."""
    body = []
    for row in rows:
        took = f"{(row.done - row.first) * 1000:.1f}" if row.done is not None else ""
        child = name(row.child, names.POOL_CHILD) if row.child else ""
        writer = name(row.writer[1], row.writer[0]) if row.writer else ""
        body.append(
            f'<tr data-task="{esc(row.task_id)}" data-child="{row.child or ""}" '
            f'class="task s-{esc(row.state)}"><td>{clock(row.first)}</td>'
            f"<td>{esc(row.name.rsplit('.', 1)[-1])}</td><td><code>{_short(row.task_id)}</code>"
            f'</td><td class="state">{esc(row.state)}</td><td>{esc(child)}</td>'
            f"<td>{esc(writer)}</td><td>{took}</td>"
            f"<td>{_flower_link(flower, f'/task/{row.task_id}', '↗')}</td></tr>"
        )
    if not body:
        body.append('<tr><td colspan="8" class="empty">no task yet: send one</td></tr>')
    head = "<th>first seen</th><th>task</th><th>id</th><th>state</th><th>ran in</th>"
    head += "<th>result by</th><th>ms</th><th>Flower</th>"
    return (
        f'<table class="tasks"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def redis_state(
    queues: Sequence[QueueView],
    unacked: UnackedView,
    results: ResultsView,
    writers: dict[str, str],
) -> str:
    """Queue lengths, reserved (`unacked`) messages, and the recent tasks' result keys with
    their TTL and the process that wrote each (from its SETEX in the trace)."""
    rows = "".join(
        f'<tr data-queue="{esc(q.name)}"><td>{esc(q.name)}</td><td>{q.length}</td></tr>'
        for q in queues
    )
    reserved = "".join(
        f"<li><code>{esc(r.delivery_tag[:8])}</code> {esc(r.message.summary.get('task', '?'))} "
        f"· {r.age_s:.1f} s</li>"
        for r in unacked.entries
    )
    stored = "".join(
        f'<tr data-result="{esc(res.task_id)}"><td><code>{_short(res.task_id)}</code></td>'
        f"<td>{esc(res.status or '?')}</td>"
        f"<td>{'none' if res.ttl_s is None else res.ttl_s}</td>"
        f"<td>{esc(writers.get(res.task_id, '?'))}</td></tr>"
        for res in results.results
    )
    return (
        f'<table class="kv"><tr><th>queue</th><th>length</th></tr>{rows}</table>'
        f"<p><b>{names.UNACKED}</b>: {unacked.total} reserved</p>"
        f'<ul class="reserved">{reserved}</ul>'
        f"<p><b>results</b> of the newest tasks (<code>{names.RESULT_PREFIX}…</code>)</p>"
        '<table class="kv"><tr><th>task</th><th>status</th><th>TTL s</th>'
        f"<th>written by</th></tr>{stored}</table>"
    )


def log_row(e: TraceEvent) -> str:
    role = ROLE_CLASS.get(e["role"], "other")
    who = f"{e.get('process_name') or e['role']} {e['pid'] or '?'}"
    level = esc(e.get("level", "info"))
    return (
        f'<li class="log {role} l-{level}" data-task="{esc(e.get("task_id", ""))}">'
        f"<time>{clock(e['ts'])}</time> <b>{esc(who)}</b> {esc(e.get('message', ''))}</li>"
    )


def happening_row(h: Happening) -> str:
    kind = "alarm" if h.alarming else "note"
    return (
        f'<li class="happening {kind}" data-kind="{esc(h.kind)}" data-pid="{h.pid or ""}">'
        f"<time>{clock(h.ts)}</time> {'⚠' if h.alarming else '•'} {esc(h.text)}</li>"
    )


def feed_rows(happenings: Iterable[Happening], logs: Iterable[TraceEvent]) -> list[str]:
    """The feed's new rows, oldest first: happenings and log lines, by time."""
    timed = [(h.ts, happening_row(h)) for h in happenings]
    timed += [(e["ts"], log_row(e)) for e in logs]
    return [row for _, row in sorted(timed, key=lambda pair: pair[0])]


def task_detail(
    row: TaskRow | None,
    events: Sequence[TraceEvent],
    task_id: str,
    flower: str | None,
    name: Namer,
    width: float | None,
) -> str:
    """One task: what it is, who ran it and wrote its result, and its sequence diagram."""
    if row is None:
        return f'<p class="empty">no event of task <code>{esc(task_id)}</code> here</p>'
    seq = build_sequence(events, task_id)
    who = f" · ran in <b>{esc(name(row.child, names.POOL_CHILD))}</b>" if row.child else ""
    wrote = f" · result written by {esc(name(row.writer[1], row.writer[0]))}" if row.writer else ""
    link = _flower_link(flower, f"/task/{task_id}", "in Flower ↗")
    return (
        f'<div class="detail" data-task="{esc(task_id)}" data-state="{esc(row.state)}" '
        f'data-child="{row.child or ""}"><h3>{esc(row.name or "task")} <code>{esc(task_id)}</code> '
        f'<span class="state s-{esc(row.state)}">{esc(row.state)}</span>{who}{wrote} {link}</h3>'
        f"{render_svg(seq, width)}</div>"
    )
