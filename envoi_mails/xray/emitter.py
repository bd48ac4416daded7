"""Ships trace events from any process to one capped Redis stream, off the hot path.

Why a Redis stream: every process of the app (client, worker MainProcess, pool children,
containers) already reaches this Redis, so the timeline needs no other server; XADD with
MAXLEN keeps it bounded. Why a buffer and a thread: a round-trip per event would slow the
worker measurably; `emit` only appends a tuple to a bounded deque and a daemon thread
sends what is queued every FLUSH_INTERVAL_S as ONE stream entry (wire.py): one XADD and
one JSON encoding per batch, not per event (an XADD per event cost about 19 µs of CPU per
event, 15-18 events per task, in the process that emitted them).

Bounded in bytes, not only in entries: an entry holds at most ENTRY_MAX_BYTES (a larger
batch goes as several entries; an event that alone is larger has its long strings cut),
and the stream at most STREAM_MAXLEN entries. So the trace never takes more than
STREAM_MAX_MB of a Redis's memory (measured by tests/test_bounded_input.py): 4 000-byte
entries fit jemalloc's 4 KiB size class, where 4 096 would take 5 KiB each.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from envoi_mails.xray import wire

STREAM = "xray:trace"
STREAM_MAXLEN = 10_000  # entries, each (part of) one flush's batch of events
ENTRY_MAX_BYTES = 4_000  # an entry's JSON, at most
STREAM_MAX_MB = 48  # what 10 000 full entries take in Redis: 42 MB measured, and a margin
FILL = 0.8  # of an entry, aimed at when a batch is sliced: events differ in size
VALUE_MAX_CHARS = 500  # a string longer than this is cut, in an event too large alone
BUFFER_MAX = 20_000  # per process, if Redis is gone: oldest events are dropped
FLUSH_INTERVAL_S = (
    0.1  # batches; 0.2 s measured no cheaper (demo bench) and made scenario waits racier
)


CLIENT_NAME = "xray-trace"  # lets the spy leave the kit's own traffic out


class Emitter:
    def __init__(self, url: str) -> None:
        self._url = url
        self._buffer: deque[wire.Record] = deque(maxlen=BUFFER_MAX)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._thread: threading.Thread | None = None
        # Clients inherited across fork(): kept, never closed here (see _after_fork_in_child).
        self._inherited: list[redis.Redis] = []
        self.dropped = 0
        os.register_at_fork(
            before=self._lock_for_fork,
            after_in_parent=self._unlock_after_fork,
            after_in_child=self._after_fork_in_child,
        )

    def emit(self, record: wire.Record) -> None:
        """Queue one event, (identity, ts, event, fields); never blocks on Redis."""
        self._buffer.append(record)
        if self._thread is None:
            self._start()

    def flush(self) -> None:
        """Send what is queued now (called by the thread, and at exit)."""
        with self._lock:
            batch: list[wire.Record] = []
            while self._buffer:
                batch.append(self._buffer.popleft())
            if not batch:
                return
            try:
                append(self._client(), entries(batch))
            # Tracing must never break the app, and this thread must outlive a bad batch:
            # Redis gone, or a field orjson refuses (TypeError: a non-str key, a huge int).
            except (redis.RedisError, TypeError, ValueError):
                self.dropped += len(batch)

    def _client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self._url, socket_connect_timeout=1, socket_timeout=2, client_name=CLIENT_NAME
            )
        return self._redis

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xray-emitter", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self.flush()

    # fork() copies memory, not threads. All Redis I/O happens under self._lock, so holding
    # it across fork() means no flush is half-way through redis-py (whose pool lock would
    # be copied held). The child keeps the parent's client object but never uses or
    # closes it: its cleanup would take locks and touch sockets that belong to the parent.
    def _lock_for_fork(self) -> None:
        self._lock.acquire()

    def _unlock_after_fork(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        if self._redis is not None:
            self._inherited.append(self._redis)
        self._buffer = deque(maxlen=BUFFER_MAX)  # the parent ships what was queued
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._redis = None
        self._thread = None


def append(client: redis.Redis, payloads: Sequence[bytes]) -> None:
    """XADD each entry to the trace stream, trimmed to about STREAM_MAXLEN entries."""
    if len(payloads) == 1:  # the usual case: one round trip, no pipeline to build
        client.xadd(STREAM, {wire.FIELD: payloads[0]}, maxlen=STREAM_MAXLEN, approximate=True)
        return
    pipe = client.pipeline(transaction=False)
    for payload in payloads:
        pipe.xadd(STREAM, {wire.FIELD: payload}, maxlen=STREAM_MAXLEN, approximate=True)
    pipe.execute()


def entries(batch: Sequence[wire.Record]) -> list[bytes]:
    """The batch as stream entries of at most ENTRY_MAX_BYTES each, in order.

    One encoding when it fits (nearly always). Else slices, as many as would each fill
    about FILL of an entry, each encoded again (a slice that still does not fit is sliced
    again): about two encodings of the batch. An event that does not fit alone has its long
    strings cut (`fit`).
    """
    payload = wire.encode(batch)
    if len(payload) <= ENTRY_MAX_BYTES:
        return [payload]
    if len(batch) == 1:
        return [wire.encode([fit(batch[0])])]
    slices = max(2, math.ceil(len(payload) / (ENTRY_MAX_BYTES * FILL)))
    step = math.ceil(len(batch) / slices)
    return [entry for i in range(0, len(batch), step) for entry in entries(batch[i : i + step])]


def fit(record: wire.Record) -> wire.Record:
    """The event with every string over VALUE_MAX_CHARS cut, saying how long it was; if
    that is still too large, its fields give way to one saying how large they were."""
    identity, ts, event, fields = record
    raw: Any = fields
    if callable(getattr(raw, "fields", None)):  # built at encoding time (a captured command)
        raw = raw.fields()
    cut = {key: _cut(value) for key, value in raw.items()}
    if len(wire.encode([(identity, ts, event, cut)])) <= ENTRY_MAX_BYTES:
        return identity, ts, event, cut
    size = len(wire.encode([record]))
    return identity, ts, event, {"cut": f"{size} bytes of fields, over {ENTRY_MAX_BYTES}"}


def _cut(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str) and len(value) > VALUE_MAX_CHARS:
        return f"{value[:VALUE_MAX_CHARS]}… [cut: {len(value)} chars]"
    if depth > 2:  # deeper structures are not events' business: the size check decides
        return value
    if isinstance(value, Mapping):
        return {key: _cut(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut(item, depth + 1) for item in value]
    return value


_emitter: Emitter | None = None


def configure(url: str) -> Emitter:
    global _emitter
    _emitter = Emitter(url)
    return _emitter


def get() -> Emitter | None:
    return _emitter
