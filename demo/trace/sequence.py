"""The sequence model of one task's life, built from the merged trace.

`build_sequence` turns trace events (hops, logs and Redis commands) into participants (lanes)
and arrows; demo.render draws that model (terminal, Mermaid, HTML). Pure functions: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from demo import names
from demo.names import RESULT_PREFIX

# Pipelines are framed by MULTI/EXEC: the commands inside carry the meaning, the frame adds noise.
_FRAMING = frozenset({"MULTI", "EXEC"})
# Lanes are drawn left to right in the order a message travels: client, broker, worker, result.
_RANK = {"client": 0, "queue": 1, "main": 2, "child": 3, "other": 4, "result": 5}

# hop -> (source, destination, text); "self" is the emitting process, "child" the child_pid one.
_HOP_ARROWS: dict[str, tuple[str, str, str]] = {
    "task.published": ("self", "queue", "published (after_task_publish)"),
    "task.received": ("queue", "self", "BRPOP → received"),
    "task.accepted": ("child", "self", "ACK (child started job)"),
    "task.acked": ("self", "queue", "ack"),
    "result.stored": ("self", "result", "result stored"),
    "result.message": ("result", "self", "result message"),
}
# hop -> (commands, lane) that carry it. When such a command was seen it is the arrow, and the hop
# stays as a note on its process: both are kept, but the same message is not drawn twice.
_CARRIED_BY: dict[str, tuple[frozenset[str], str]] = {
    "task.published": (frozenset({"LPUSH", "RPUSH"}), "queue"),
    "task.acked": (frozenset({"ZREM", "HDEL"}), "queue"),
    "result.stored": (frozenset({"SETEX", "SET"}), "result"),
}
# Hops drawn as notes on the emitting process. Any other hop (task.success, task.failure,
# task.retry, task.postrun…) becomes a note too, named as in the trace.
_HOP_NOTES: dict[str, str] = {
    "result.subscribe": "subscribe to the result channel",
    "task.publishing": "publishing (before_task_publish)",
    "result.wait": "result.get() waits",
    "result.fetched": "result.get() returned",
    "task.prerun": "prerun: task body starts",
}
# Fields worth repeating in an arrow's detail note (the trace event itself has them all).
_DETAIL_FIELDS = ("child_pid", "key", "ttl", "status", "logger", "level")
_TIMING = re.compile(r"^(?P<text>.*?) ?(?P<timing>\+\d+(?:\.\d+)? ms)$", re.DOTALL)


@dataclass(frozen=True)
class Participant:
    """A lifeline. `key` is client, queue, main, child-<pid>, other-<role>-<pid> or result."""

    key: str
    label: str

    @property
    def kind(self) -> str:
        """The key without its pid suffix: client, queue, main, child, other or result."""
        return self.key.split("-", 1)[0]


@dataclass(frozen=True)
class Arrow:
    """A message from `src` to `dst` (participant keys); a note on `src` when they are equal.

    `label` is one short line (never a payload) ending with the time since the first event of the
    task, e.g. "LPUSH celery +0.4 ms". `note` is an optional longer detail for tooltips.
    """

    ts: float
    src: str
    dst: str
    label: str
    note: str = ""

    @property
    def is_note(self) -> bool:
        """True when this is a note on one process rather than a message between two."""
        return self.src == self.dst


@dataclass
class Sequence:
    """One task's diagram: lifelines in drawing order, arrows sorted by time."""

    task_id: str
    participants: list[Participant]
    arrows: list[Arrow]


def split_timing(label: str) -> tuple[str, str]:
    """Split an arrow label into its text and its trailing "+12.3 ms" ("" if it has none)."""
    match = _TIMING.match(label)
    return (match["text"], match["timing"]) if match else (label, "")


def one_line(value: object, limit: int = 80) -> str:
    # Keys hold kombu's \x06\x16 separators and logs may span lines: show them as redis-cli does.
    text = " ".join(str(value).split())
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_key(key: str) -> str:
    if key.startswith(RESULT_PREFIX) and len(key) > len(RESULT_PREFIX) + 8:
        return key[: len(RESULT_PREFIX) + 8] + "…"
    return one_line(key, 40)


def _command(event: Mapping[str, Any]) -> list[str]:
    command = event.get("command")
    return [str(part) for part in command] if isinstance(command, list | tuple) else []


def _command_lane(command: list[str]) -> str:
    return "result" if len(command) > 1 and command[1].startswith(RESULT_PREFIX) else "queue"


def _command_text(command: list[str]) -> tuple[str, str]:
    """Return (label text, detail) for a Redis command, with payloads reduced to their size."""
    name = command[0].upper()
    key = command[1] if len(command) > 1 else ""
    if name in ("EVAL", "EVALSHA"):  # argument 1 is the script: name its first key instead
        key = command[3] if len(command) > 3 and command[2] != "0" else ""
    text = f"{name} {_short_key(key)}".rstrip()
    if name in ("BRPOP", "BLPOP") and len(command) > 3:  # kombu also polls the priority lists
        text += f" (+{len(command) - 3} more)"
    args = [
        f"<{len(arg.encode())} bytes>" if len(arg) > 40 or arg[:1] in "{[" else one_line(arg)
        for arg in command[2:]
    ]
    return text, one_line(" ".join([name, *command[1:2], *args]), 160)


def _dropped(event: Mapping[str, Any]) -> bool:
    """True for Redis commands that say nothing about the task: the spy's own, MULTI/EXEC;
    and for a command's reply, which its command's arrow already stands for."""
    if event.get("event") == names.REDIS_REPLY:
        return True
    if event.get("event") != names.REDIS_COMMAND:
        return False
    command = _command(event)
    return event.get("role") == names.SPY or not command or command[0].upper() in _FRAMING


def _participant_key(event: Mapping[str, Any]) -> str:
    role, pid = str(event.get("role", names.UNKNOWN)), event.get("pid", 0)
    if role == names.CLIENT:
        return "client"
    if role == names.WORKER_MAIN:
        return "main"
    if role == names.POOL_CHILD:
        return f"child-{pid}"
    return f"other-{role}-{pid}"


def _arrow_for(event: Mapping[str, Any], seen: set[tuple[str, str]]) -> tuple[str, str, str, str]:
    """Map one kept event to (src, dst, text, detail)."""
    me, name = _participant_key(event), str(event.get("event", ""))
    if name == names.REDIS_COMMAND:
        command = _command(event)
        text, detail = _command_text(command)
        if event.get("summary"):
            text += f" — {one_line(event['summary'], 60)}"
        return me, _command_lane(command), text, detail
    detail = " ".join([name, *(f"{f}={event[f]}" for f in _DETAIL_FIELDS if f in event)])
    if name == names.LOG:
        return me, me, f"log: {one_line(event.get('message', ''), 60)}", detail
    if name not in _HOP_ARROWS:
        return me, me, _HOP_NOTES.get(name, name), detail
    src, dst, text = _HOP_ARROWS[name]
    if name == "result.stored" and "status" in event:
        text += f" ({one_line(event['status'], 20)})"
    commands, lane = _CARRIED_BY.get(name, (frozenset(), ""))
    if any((c, lane) in seen for c in commands):
        return me, me, text, detail
    child = f"child-{event['child_pid']}" if event.get("child_pid") else me
    ends = [child if end == "child" else me if end == "self" else end for end in (src, dst)]
    return ends[0], ends[1], text, detail


def _labels(kept: list[Mapping[str, Any]], task_id: str) -> dict[str, str]:
    """Human labels for every lane the events can touch, with pids taken from the events."""
    labels: dict[str, str] = {
        "queue": f"Redis: queue '{names.DEFAULT_QUEUE}'",
        "result": f"Redis: {_short_key(names.result_key(task_id))}",
    }
    parents: dict[int, int] = {}
    for event in kept:
        key, pid, ppid = _participant_key(event), event.get("pid", 0), event.get("ppid", 0)
        command = _command(event)
        if len(command) > 1 and command[0].upper() in ("LPUSH", "RPUSH"):
            labels["queue"] = f"Redis: queue '{one_line(command[1], 30)}'"
        if key == "client":
            labels.setdefault("client", f"Client pid {pid}")
        elif key == "main":
            labels.setdefault("main", f"Worker MainProcess pid {pid}")
        elif key.startswith("child-"):
            parents.setdefault(int(pid or 0), int(ppid or 0))
        elif key.startswith("other-"):
            role = one_line(event.get("role", names.UNKNOWN), 20)
            labels.setdefault(key, f"{role} pid {pid}" if pid else f"{role} process (pid unknown)")
    # The MainProcess names the child that took the job before that child says anything.
    for event in kept:
        if event.get("event") == "task.accepted" and event.get("child_pid"):
            parents.setdefault(int(event["child_pid"]), int(event.get("pid", 0)))
    for pid, ppid in parents.items():
        labels[f"child-{pid}"] = f"Pool child pid {pid} (ForkPoolWorker, parent {ppid})"
    if "main" not in labels and parents:  # no MainProcess event: its pid is the children's parent
        labels["main"] = f"Worker MainProcess pid {next(iter(parents.values()))}"
    return labels


def build_sequence(events: Iterable[Mapping[str, Any]], task_id: str) -> Sequence:
    """Build the diagram of `task_id` from trace events in any order.

    Keeps the events (hops, logs, Redis commands) whose task_id matches, except MULTI/EXEC and the
    spy's own commands; each kept event becomes exactly one arrow or note, sorted by `ts`, so the
    first arrow is at "+0.0 ms". Participants are those the arrows touch, in the order client,
    queue, main, pool children, other processes, result.
    """
    kept = sorted(
        (e for e in events if e.get("task_id") == task_id and not _dropped(e)),
        key=lambda e: float(e["ts"]),
    )
    if not kept:
        return Sequence(task_id, [], [])
    seen = {
        (_command(e)[0].upper(), _command_lane(_command(e)))
        for e in kept
        if e.get("event") == names.REDIS_COMMAND
    }
    t0 = float(kept[0]["ts"])
    arrows: list[Arrow] = []
    order: dict[str, None] = {}  # lanes in order of first use
    for event in kept:
        src, dst, text, detail = _arrow_for(event, seen)
        ms = (float(event["ts"]) - t0) * 1000
        arrows.append(Arrow(float(event["ts"]), src, dst, f"{text} +{ms:.1f} ms", detail))
        order.setdefault(src)
        order.setdefault(dst)
    labels = _labels(kept, task_id)
    keys = sorted(order, key=lambda k: _RANK[k.split("-", 1)[0]])  # stable: first seen first
    return Sequence(task_id, [Participant(k, labels.get(k, k)) for k in keys], arrows)
