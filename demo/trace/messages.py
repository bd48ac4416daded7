"""What the messages on the wire say, decoded from the trace's Redis commands.

The spy sees each LPUSH, RPUSH and PUBLISH with its value; this module reads that value the
way the receiver would (through demo.protocol.envelope, JSON only): the task message a push
carried (`pushes`), the control command broadcast on the pidbox (`control_commands`), the
Celery events published on `/<db>.celeryev/…` (`event_batches`). Selection goes through
demo.trace.query.where, so every function takes its criteria (`pid=`, `since=` …). Pure
functions of events, like demo.trace.query.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from demo import names
from demo.protocol.envelope import (
    Envelope,
    EnvelopeError,
    decode_control,
    decode_envelope,
    decode_event_body,
)
from demo.trace.event import TraceEvent, args_of, command_name, key_of
from demo.trace.query import select


@dataclass(frozen=True)
class Sent:
    """What one Redis command carried, and the command itself: who sent it, and when."""

    event: TraceEvent  # the LPUSH, RPUSH or PUBLISH, with the process that sent it

    @property
    def ts(self) -> float:
        return self.event["ts"]

    @property
    def pid(self) -> int | None:
        return self.event["pid"]


PUSHES = ("LPUSH", "RPUSH")


@dataclass(frozen=True)
class Pushed(Sent):
    """A task message pushed onto a list (a publish, a retry, a requeue), decoded."""

    envelope: Envelope

    @property
    def task_id(self) -> str | None:
        return self.envelope.task_id

    def header(self, name: str) -> Any:
        """One header of the message (None where absent): root_id, parent_id, group, eta…"""
        return self.envelope.headers.get(name)

    @property
    def eta(self) -> float | None:
        """The `eta` header as epoch seconds; None when the message may run at once."""
        raw = self.header("eta")
        return datetime.fromisoformat(raw).timestamp() if isinstance(raw, str) else None

    @property
    def retries(self) -> int:
        """The `retries` header: 0 for the first message, n for the n-th retry's."""
        return int(self.header("retries") or 0)

    @property
    def redelivered(self) -> bool:
        """The `redelivered` header: kombu put the message back after a lost delivery."""
        return bool(self.header("redelivered"))


def pushed(e: TraceEvent) -> Pushed:
    """The task message an LPUSH or RPUSH carried; EnvelopeError when it carries none (a
    control reply, a value the spy cut short, or not a push at all)."""
    args = args_of(e)
    if command_name(e) not in PUSHES or len(args) < 3:
        raise EnvelopeError(f"{command_name(e) or e['event']} does not push a message")
    return Pushed(e, decode_envelope(args[2]))


def is_task_push(e: TraceEvent) -> bool:
    """A predicate: an LPUSH or RPUSH of a task message."""
    try:
        pushed(e)
    except EnvelopeError:
        return False
    return True


def pushes(
    events: Iterable[TraceEvent], task_ids: Collection[str] | None = None, **criteria: Any
) -> list[Pushed]:
    """The task messages pushed (of `task_ids` when given; matching `where(**criteria)`),
    decoded, in the order given."""
    found = [pushed(e) for e in select(events, command=PUSHES, **criteria) if is_task_push(e)]
    return [p for p in found if task_ids is None or p.task_id in task_ids]


@dataclass(frozen=True)
class ControlCommand(Sent):
    """A control command broadcast on the pidbox: PUBLISH /<db>.celery.pidbox."""

    body: dict[str, Any]  # method, arguments, destination, reply_to; {} when undecodable

    @property
    def method(self) -> str:
        return str(self.body.get("method", "(undecodable)"))

    @property
    def arguments(self) -> dict[str, Any]:
        arguments = self.body.get("arguments")
        return arguments if isinstance(arguments, dict) else {}

    @property
    def reply_list(self) -> str | None:
        """The list each worker LPUSHes its reply onto (`<oid>.reply.celery.pidbox`, read
        by the sender's BRPOP); None for a command that wants no reply."""
        reply_to = self.body.get("reply_to")
        key = reply_to.get("routing_key") if isinstance(reply_to, dict) else None
        return f"{key}{names.REPLY_SUFFIX}" if key else None


def control_command(e: TraceEvent) -> ControlCommand:
    """The control command a pidbox PUBLISH carried (an empty body if it cannot be read)."""
    try:
        body = decode_control(args_of(e)[2])
    except (EnvelopeError, IndexError):
        body = {}
    return ControlCommand(e, body)


def control_commands(
    events: Iterable[TraceEvent], method: str | None = None, **criteria: Any
) -> list[ControlCommand]:
    """The control commands broadcast on the pidbox (of `method` when given; their PUBLISH
    matching `where(**criteria)`), decoded, in the order given."""
    publishes = select(events, command="PUBLISH", key_suffix=names.PIDBOX_SUFFIX, **criteria)
    found = [control_command(e) for e in publishes]
    return [c for c in found if method is None or c.method == method]


@dataclass(frozen=True)
class EventBatch(Sent):
    """One PUBLISH on a Celery events channel and the events its body carries (task events
    come batched on `task.multi`; worker events one a message)."""

    events: tuple[dict[str, Any], ...]  # () when the spy cut the body or it is not an event

    @property
    def channel(self) -> str:
        return key_of(self.event)

    @property
    def first(self) -> dict[str, Any]:
        """The first event of the body ({} if none): all a worker event message holds."""
        return self.events[0] if self.events else {}

    def of(self, task_id: str) -> list[dict[str, Any]]:
        """The events of one task (their `uuid` field), in order."""
        return [ev for ev in self.events if ev.get("uuid") == task_id]


def event_batch(e: TraceEvent) -> EventBatch:
    """The Celery events an events-channel PUBLISH carried (none if it cannot be read)."""
    try:
        body = tuple(decode_event_body(args_of(e)[2]))
    except (EnvelopeError, IndexError):
        body = ()
    return EventBatch(e, body)


def event_batches(
    events: Iterable[TraceEvent],
    channel_suffix: str = names.TASK_MULTI_SUFFIX,
    task_ids: Collection[str] | None = None,
    **criteria: Any,
) -> list[EventBatch]:
    """The PUBLISHes on the events channel ending with `channel_suffix` (matching
    `where(**criteria)`; carrying an event of `task_ids` when given), decoded, in order."""
    publishes = select(events, command="PUBLISH", key_suffix=channel_suffix, **criteria)
    found = [event_batch(e) for e in publishes]
    return [b for b in found if task_ids is None or any(b.of(t) for t in task_ids)]


def task_events(batches: Iterable[EventBatch], task_id: str) -> list[dict[str, Any]]:
    """One task's Celery events (task-received, task-started…), in the order published."""
    return [ev for batch in batches for ev in batch.of(task_id)]
