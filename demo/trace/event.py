"""The one trace event: what every process records, what `--json-trace` writes, what queries read.

A trace event is a flat JSON object. Every event has `ts`, `event`, `role`, `pid`, `ppid` and
`host`; the other fields depend on the event (see envoi_mails/xray/hops.py for the catalogue of
hops). `TraceEvent` names them all once, as structlog's `EventDict` does, so that code reads
`e["ts"]` as a float and `e["command"]` as a list of strings without casting.

`normalise` is the one door into the model: the timeline, the spy and the JSONL reader pass
every raw dict through it, so the types below hold for everything a query sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from typing_extensions import NotRequired

from demo import names
from demo.protocol import commands


class TraceEvent(TypedDict):
    """One event of the merged trace (the `--json-trace` contract)."""

    ts: float  # epoch seconds
    event: str  # a hop name, "log" or "redis.command"
    role: str  # client, worker-main, pool-child, flower, unknown, …
    pid: int | None  # None only for a command MONITOR could not place
    ppid: NotRequired[int | None]
    host: NotRequired[str | None]
    task_id: NotRequired[str]
    task: NotRequired[str]  # the task's name
    # redis.command
    command: NotRequired[list[str]]  # the command name, then its arguments
    summary: NotRequired[str]  # what it does for Celery, in a few words
    addr: NotRequired[str]  # the sender's address as Redis saw it
    db: NotRequired[int]
    via: NotRequired[str]  # "lua" when a script ran it
    server: NotRequired[str]  # the Redis it went to, as the sender knew it (captured)
    pipe: NotRequired[int]  # the pipeline (MULTI … EXEC included) it was sent in (captured)
    seen_as: NotRequired[str]  # MONITOR only: who the spy guessed sent it
    # redis.reply
    reply_to: NotRequired[str]  # the command whose reply this is (BRPOP)
    delivery_tag: NotRequired[str]
    # log
    message: NotRequired[str]
    logger: NotRequired[str]
    level: NotRequired[str]
    process_name: NotRequired[str]  # MainProcess, ForkPoolWorker-3, …
    # hops (see envoi_mails/xray/hops.py)
    child_pid: NotRequired[int]  # task.accepted: the child that sent ACK
    late: NotRequired[bool]  # task.acked: acks_late
    state: NotRequired[str]  # task.postrun
    status: NotRequired[str]  # result.stored, result.message, result.fetched
    key: NotRequired[str]
    ttl: NotRequired[int | None]
    type: NotRequired[str]  # task.event: task-started, …
    routing_key: NotRequired[str]
    exception: NotRequired[str]
    reason: NotRequired[str]
    hostname: NotRequired[str]
    concurrency: NotRequired[int | None]
    children: NotRequired[list[int]]
    # scenario.expectation
    step: NotRequired[str]
    claim: NotRequired[str]
    held: NotRequired[bool]
    detail: NotRequired[str]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def normalise(raw: Mapping[str, Any]) -> TraceEvent | None:
    """A TraceEvent from a decoded JSON object; None when it lacks `ts` or `event`.

    `ts` becomes a float and `pid`/`ppid` ints (or None), so no reader casts again.
    """
    try:
        ts = float(raw["ts"])
        name = str(raw["event"])
    except (KeyError, TypeError, ValueError):
        return None
    event: dict[str, Any] = dict(raw)
    event["ts"], event["event"] = ts, name
    event["role"] = str(raw.get("role") or names.UNKNOWN)
    event["pid"] = _int(raw.get("pid"))
    if "ppid" in raw:
        event["ppid"] = _int(raw.get("ppid"))
    if "command" in raw:
        event["command"] = [str(arg) for arg in raw.get("command") or ()]
    return event  # type: ignore[return-value]  # checked above, field by field


def args_of(e: TraceEvent | None) -> list[str]:
    """A Redis command's name and arguments ([] for a hop, a log line or None)."""
    return e.get("command", []) if e is not None else []


def command_name(e: TraceEvent) -> str:
    """The Redis command's name, upper-cased ("" for anything else)."""
    args = e.get("command")
    return args[0].upper() if args else ""


def key_of(e: TraceEvent) -> str:
    """The key (or channel) a Redis command acts on ("" if none): its first argument, and
    for a script (EVAL, EVALSHA) the first of the KEYS it declares, which it works on."""
    return commands.key_of(e.get("command", []))


def is_command(e: TraceEvent) -> bool:
    return e["event"] == names.REDIS_COMMAND


def is_hop(e: TraceEvent) -> bool:
    """A step some process recorded: neither a Redis command (nor its reply) nor a log line."""
    return e["event"] not in (names.REDIS_COMMAND, names.REDIS_REPLY, names.LOG)


def at(e: TraceEvent | None) -> float:
    """An event's ts; +inf for an event that never happened, so order checks stay simple."""
    return e["ts"] if e is not None else float("inf")


def pid_of(e: TraceEvent | None) -> int | None:
    return e["pid"] if e is not None else None


def who(e: TraceEvent) -> str:
    """ "role pid", as tables and messages show a sender."""
    return f"{e['role']} {e['pid'] if e['pid'] is not None else '?'}"
