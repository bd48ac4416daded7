"""Read-only views of what kombu and Celery keep in Redis, and of the worker's processes.

Promises: nothing here writes to or deletes from Redis; keys are found with SCAN (KEYS
blocks the server); every output is bounded by a parameter; a value that cannot be decoded
is shown with the reason, never unpickled (demo.envelope decodes JSON only). Works with
clients made with or without decode_responses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, cast

import psutil
import redis

from demo.envelope import EnvelopeError, decode_envelope, decode_result, decode_unacked, summarise
from demo.errors import KitError
from demo.redis_protocol import PRIORITY_SEP

# kombu's defaults (kombu/transport/redis.py): PRIORITY_STEPS and visibility_timeout.
PRIORITY_STEPS = (0, 3, 6, 9)
VISIBILITY_TIMEOUT_S = 3600.0
SCAN_COUNT = 500  # keys per SCAN call: few round trips, each one short for the server
_SIZE = {"string": "strlen", "list": "llen", "hash": "hlen", "set": "scard", "zset": "zcard"}
_SIZE["stream"] = "xlen"


def _str(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first(limit: int) -> tuple[int, int]:
    """Range of the first `limit` elements; (0, -1) would mean all, so 0 gives (1, 0)."""
    return (0, limit - 1) if limit > 0 else (1, 0)


def _scored(pairs: object) -> list[tuple[str, float]]:
    """ZRANGE … WITHSCORES as (member, score) pairs."""
    return [(_str(m), float(s)) for m, s in cast("list[tuple[object, float]]", pairs)]


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
    r: redis.Redis, names: Iterable[str] = ("celery",), peek: int = 5
) -> tuple[QueueView, ...]:
    """Each queue and its priority lists (LLEN, LRANGE), next message to be taken first."""
    return tuple(queue_view(r, name, peek) for name in names)


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
    pipe.hlen("unacked")
    pipe.zrange("unacked_index", *_first(limit), withscores=True)
    total, scored = pipe.execute()
    index = _scored(scored)
    values = r.hmget("unacked", [tag for tag, _ in index]) if index else []
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


def scan_keys(r: redis.Redis, match: str, limit: int) -> tuple[list[str], bool]:
    """Up to `limit` key names matching, sorted, and whether more exist."""
    found: set[str] = set()  # SCAN may return a key twice while the table is rehashed
    for key in r.scan_iter(match=match, count=SCAN_COUNT):
        if len(found) >= limit and _str(key) not in found:
            return sorted(found), True
        found.add(_str(key))
    return sorted(found), False


def _binding_sets(r: redis.Redis, prefix: str, limit: int) -> tuple[Binding, ...]:
    return tuple(
        split_binding(key.removeprefix(prefix), member)
        for key in scan_keys(r, prefix + "*", limit)[0]
        for member in sorted(map(_str, islice(r.sscan_iter(key, count=SCAN_COUNT), limit)))
    )


def bindings(r: redis.Redis, limit: int = 200, now: float | None = None) -> BindingsView:
    """The binding tables (up to `limit` exchanges, `limit` members each) and deadlines."""
    now = time.time() if now is None else now
    scores = _scored(r.zrange("_kombu.binding_deadlines", *_first(limit), withscores=True))
    return BindingsView(
        _binding_sets(r, "_kombu.binding.", limit),
        _binding_sets(r, "_kombu.binding_permanent.", limit),
        tuple(BindingDeadline(ex, ms / 1000, ms / 1000 - now) for ex, ms in scores),
    )


@dataclass(frozen=True)
class StoredResult:
    task_id: str
    ttl_s: int | None  # seconds left; None when the key never expires
    status: str | None
    result: object
    date_done: str | None
    worker: str | None  # only with result_extended
    error: str | None = None  # why the value could not be decoded


@dataclass(frozen=True)
class KeyInfo:
    """A key shown by type and size only."""

    key: str
    type: str
    size: int | None  # STRLEN, LLEN, HLEN, SCARD, ZCARD or XLEN, by type
    ttl_s: int | None


@dataclass(frozen=True)
class ResultsView:
    results: tuple[StoredResult, ...]  # latest date_done first
    groups: tuple[KeyInfo, ...]  # celery-taskset-meta-<gid>[.j .t .s .d .c], chord-unlock-*
    truncated: bool  # SCAN found more result keys than `limit`


def _ttl(seconds: object) -> int | None:
    value = int(cast("int", seconds))
    return value if value >= 0 else None  # -1: the key never expires


def key_infos(r: redis.Redis, keys: Sequence[str]) -> tuple[KeyInfo, ...]:
    """Type, size and TTL of each key: TYPE and TTL, then one size command by type."""
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.ttl(key)
    answers = pipe.execute()
    kinds, ttls = [_str(kind) for kind in answers[0::2]], answers[1::2]
    sized = [(key, kind) for key, kind in zip(keys, kinds, strict=True) if kind in _SIZE]
    for key, kind in sized:
        getattr(pipe, _SIZE[kind])(key)
    sizes = dict(zip([key for key, _ in sized], pipe.execute(), strict=True))
    return tuple(
        KeyInfo(key, kind, sizes.get(key), _ttl(ttl))
        for key, kind, ttl in zip(keys, kinds, ttls, strict=True)
    )


def _stored(task_id: str, raw: object, ttl: object) -> StoredResult:
    try:
        meta = decode_result(_str(raw))
    except EnvelopeError as exc:
        return StoredResult(task_id, _ttl(ttl), None, None, None, None, str(exc))
    status, done, worker = meta["status"], meta.get("date_done"), meta.get("worker")
    return StoredResult(task_id, _ttl(ttl), str(status), meta.get("result"), done, worker)


def results(r: redis.Redis, limit: int = 50, task_ids: Sequence[str] = ()) -> ResultsView:
    """Stored results: those of `task_ids` when given, else up to `limit` keys SCAN finds
    (SCAN chooses which when there are more); plus up to `limit` group and chord keys."""
    if task_ids:
        keys, truncated = [f"celery-task-meta-{tid}" for tid in task_ids][:limit], False
    else:
        keys, truncated = scan_keys(r, "celery-task-meta-*", limit)
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.ttl(key)
    answers = pipe.execute()
    found = [
        _stored(key.removeprefix("celery-task-meta-"), raw, ttl)
        for key, raw, ttl in zip(keys, answers[0::2], answers[1::2], strict=True)
        if raw is not None  # expired since SCAN, or no result for that id
    ]
    found.sort(key=lambda res: res.date_done or "", reverse=True)
    groups = (
        scan_keys(r, "celery-taskset-meta-*", limit)[0] + scan_keys(r, "chord-unlock-*", limit)[0]
    )
    return ResultsView(tuple(found), key_infos(r, groups[:limit]), truncated)


def kit_keys(r: redis.Redis, limit: int = 50) -> tuple[KeyInfo, ...]:
    """What celery-xray itself created (`xray:*`), by type, size and TTL."""
    return key_infos(r, scan_keys(r, "xray:*", limit)[0])


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    create_time: float  # epoch s


@dataclass(frozen=True)
class PoolView:
    main: ProcessInfo  # the worker's MainProcess
    children: tuple[ProcessInfo, ...]  # its direct children, the pool, by pid

    @property
    def child_pids(self) -> list[int]:
        return [child.pid for child in self.children]


def _process_info(proc: psutil.Process) -> ProcessInfo:
    with proc.oneshot():  # one read of /proc for all the fields
        cmdline, created = tuple(proc.cmdline()), proc.create_time()
        return ProcessInfo(proc.pid, proc.ppid(), proc.name(), cmdline, created)


def pool_processes(worker_pid: int) -> PoolView:
    """The MainProcess and its direct children as the OS sees them (psutil, no Redis)."""
    try:
        main = psutil.Process(worker_pid)
        children = sorted(main.children(), key=lambda proc: proc.pid)
        return PoolView(_process_info(main), tuple(_process_info(c) for c in children))
    except psutil.NoSuchProcess:
        raise KitError(f"no process with pid {worker_pid}: is the worker running?") from None


def stats_pool_pids(env: Mapping[str, str], nodename: str, timeout: float = 2.0) -> list[int]:
    """The pool pids the worker itself reports (`inspect stats`), in its order.

    Not a Redis read: the command is PUBLISHed and the reply comes back on a list Celery
    creates (`<oid>.reply.celery.pidbox`), which is why `snapshot` leaves it out.
    """
    from demo.client import control_app  # imports celery: only when asked

    replies = control_app(env).control.inspect([nodename], timeout=timeout).stats() or {}
    if nodename not in replies:
        raise KitError(f"worker {nodename} did not answer `inspect stats` within {timeout} s")
    return [int(pid) for pid in replies[nodename]["pool"]["processes"]]


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    dbsize: int
    queues: tuple[QueueView, ...]
    unacked: UnackedView
    bindings: BindingsView
    results: ResultsView
    kit_keys: tuple[KeyInfo, ...]
    pool: PoolView | None  # when a worker pid was given


def snapshot(
    r: redis.Redis,
    names: Iterable[str] = ("celery",),
    peek: int = 5,
    limit: int = 50,
    worker_pid: int | None = None,
    backend: redis.Redis | None = None,
) -> Snapshot:
    """Every read-only view at once; results from `backend` when the result backend is
    another Redis. Not stats_pool_pids, which sends a control command."""
    now = time.time()
    pool = pool_processes(worker_pid) if worker_pid is not None else None
    size = int(r.dbsize())
    return Snapshot(
        now,
        size,
        queues(r, names, peek),
        unacked(r, limit),
        bindings(r, now=now),
        results(backend or r, limit),
        kit_keys(r, limit),
        pool,
    )
