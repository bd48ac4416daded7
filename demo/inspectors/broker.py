"""The broker's side: queues (with their priority sub-lists), unacked reservations and
kombu's bindings, each message decoded for display."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import redis

from demo import names
from demo.inspectors._redis import (
    PRIORITY_STEPS,
    SCAN_COUNT,
    VISIBILITY_TIMEOUT_S,
    _first,
    _scored,
    _str,
    scan_keys,
)
from demo.names import PRIORITY_SEP
from demo.protocol.envelope import EnvelopeError, decode_envelope, decode_unacked, summarise


@dataclass(frozen=True)
class Message:
    """A stored task message: summarise(decode_envelope(…)), or why it was not decoded."""

    summary: dict[str, object]  # {} when undecodable
    error: str | None = None

    @property
    def task_id(self) -> str | None:
        value = self.summary.get("id")
        return value if isinstance(value, str) else None


def _message(raw: object, decode: Callable[[str], Any] = decode_envelope) -> tuple[Message, Any]:
    """(Message, the decoder's whole result or None when it failed)."""
    try:
        decoded = decode(_str(raw))
    except EnvelopeError as exc:
        return Message({}, str(exc)), None
    envelope = decoded[0] if isinstance(decoded, tuple) else decoded
    return Message(summarise(envelope)), decoded


@dataclass(frozen=True)
class SubQueue:
    key: str  # the Redis list: the queue's name, or name + PRIORITY_SEP + step
    priority: int  # the step this list holds, 0 for the plain list
    length: int
    next_messages: tuple[Message, ...]  # at most `peek`, the one taken next first


@dataclass(frozen=True)
class QueueView:
    name: str
    sub_queues: tuple[SubQueue, ...]  # in the order a worker's BRPOP names them

    @property
    def length(self) -> int:
        return sum(sub.length for sub in self.sub_queues)

    def take_order(self) -> tuple[Message, ...]:
        """Peeked messages in the order a worker takes them. Stops after the first list that
        holds more than was peeked: its unseen messages are taken before the next list's."""
        taken: list[Message] = []
        for sub in self.sub_queues:
            taken.extend(sub.next_messages)
            if sub.length > len(sub.next_messages):
                break
        return tuple(taken)


def queue_view(
    r: redis.Redis, name: str, peek: int = 5, steps: Sequence[int] = PRIORITY_STEPS
) -> QueueView:
    """One queue's lists, read in one MULTI so that lengths and messages agree."""
    keys = [(f"{name}{PRIORITY_SEP}{step}" if step else name, step) for step in sorted(steps)]
    # LRANGE -0 -1 would be the whole list: an empty range (1, 0) when nothing is peeked.
    first, last = (-peek, -1) if peek > 0 else (1, 0)
    pipe = r.pipeline(transaction=True)
    for key, _ in keys:
        pipe.llen(key)
        pipe.lrange(key, first, last)
    answers = pipe.execute()
    subs = (
        # kombu LPUSHes and BRPOPs: the next message taken is the list's last element.
        SubQueue(key, step, int(length), tuple(_message(m)[0] for m in reversed(raw)))
        for (key, step), length, raw in zip(keys, answers[0::2], answers[1::2], strict=True)
    )
    return QueueView(name, tuple(subs))


def queues(
    r: redis.Redis, queue_names: Iterable[str] = (names.DEFAULT_QUEUE,), peek: int = 5
) -> tuple[QueueView, ...]:
    """Each queue and its priority lists (LLEN, LRANGE), next message to be taken first."""
    return tuple(queue_view(r, name, peek) for name in queue_names)


@dataclass(frozen=True)
class Reserved:
    """An `unacked` entry: a message a worker took and has not acked yet."""

    delivery_tag: str
    reserved_at: float  # its unacked_index score: epoch s
    age_s: float  # negative only if the worker's clock is ahead of ours
    visible_again_at: float  # when restore_visible would requeue it, if still unacked
    message: Message
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class UnackedView:
    total: int  # HLEN unacked
    entries: tuple[Reserved, ...]  # oldest first, at most `limit`


def unacked(
    r: redis.Redis,
    limit: int = 50,
    now: float | None = None,
    visibility_s: float = VISIBILITY_TIMEOUT_S,
) -> UnackedView:
    """The oldest `limit` reservations: unacked_index (ZRANGE) joined with unacked (HMGET).

    A tag acked between the two reads is left out rather than shown half.
    """
    pipe = r.pipeline(transaction=True)  # the count and the index from one moment
    pipe.hlen(names.UNACKED)
    pipe.zrange(names.UNACKED_INDEX, *_first(limit), withscores=True)
    total, scored = pipe.execute()
    index = _scored(scored)
    values = r.hmget(names.UNACKED, [tag for tag, _ in index]) if index else []
    # After the reads, so an entry reserved meanwhile does not get a negative age.
    now = time.time() if now is None else now
    entries = []
    for (tag, at), raw in zip(index, values, strict=True):
        if raw is not None:
            message, decoded = _message(raw, decode_unacked)
            exchange, routing_key = (decoded[1], decoded[2]) if decoded else ("?", "?")
            entries.append(
                Reserved(tag, at, now - at, at + visibility_s, message, exchange, routing_key)
            )
    return UnackedView(int(total), tuple(entries))


@dataclass(frozen=True)
class Binding:
    exchange: str
    routing_key: str
    pattern: str
    queue: str


@dataclass(frozen=True)
class BindingDeadline:
    exchange: str
    deadline: float  # epoch s (stored in ms): past it, a sweep may drop the exchange's table
    seconds_left: float


@dataclass(frozen=True)
class BindingsView:
    bindings: tuple[Binding, ...]  # _kombu.binding.<exchange>
    permanent: tuple[Binding, ...]  # _kombu.binding_permanent.<exchange> (kombu 5.7)
    deadlines: tuple[BindingDeadline, ...]  # _kombu.binding_deadlines (kombu 5.7)


def split_binding(exchange: str, member: str) -> Binding:
    """kombu joins routing key, pattern and queue with PRIORITY_SEP (`_queue_bind`)."""
    parts = [*member.split(PRIORITY_SEP, 2), "", ""]
    return Binding(exchange, parts[0], parts[1], parts[2])


def _binding_sets(r: redis.Redis, prefix: str, limit: int) -> tuple[Binding, ...]:
    return tuple(
        split_binding(key.removeprefix(prefix), member)
        for key in scan_keys(r, prefix + "*", limit)[0]
        for member in sorted(map(_str, islice(r.sscan_iter(key, count=SCAN_COUNT), limit)))
    )


def bindings(r: redis.Redis, limit: int = 200, now: float | None = None) -> BindingsView:
    """The binding tables (up to `limit` exchanges, `limit` members each) and deadlines."""
    now = time.time() if now is None else now
    scores = _scored(r.zrange(names.BINDING_DEADLINES, *_first(limit), withscores=True))
    return BindingsView(
        _binding_sets(r, names.BINDING_PREFIX, limit),
        _binding_sets(r, names.BINDING_PERMANENT_PREFIX, limit),
        tuple(BindingDeadline(ex, ms / 1000, ms / 1000 - now) for ex, ms in scores),
    )
