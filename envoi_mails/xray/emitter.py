"""Ships trace events from any process to one capped Redis stream, off the hot path.

Why a Redis stream: every process of the app (client, worker MainProcess, pool children,
containers) already reaches this Redis, so the timeline needs no other server; XADD with
MAXLEN keeps it bounded. Why a buffer and a thread: a round-trip per event would slow the
worker measurably; `emit` only appends a tuple to a bounded deque and a daemon thread
sends what is queued every FLUSH_INTERVAL_S as ONE stream entry (wire.py): one XADD and
one JSON encoding per batch, not per event (an XADD per event cost about 19 µs of CPU per
event, 15-18 events per task, in the process that emitted them).

What the buffer holds is what the stream holds (wire.py): an identity, then that process's
events, each a tuple; a flush encodes the buffer as it is, in one call. A flush is nearly
always one stream entry, added in one round trip; stream.py keeps the stream bounded in
bytes.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import redis

from envoi_mails.xray import stream, wire

BUFFER_MAX = 20_000  # items per process, if Redis is gone: then new events are dropped
FLUSH_INTERVAL_S = (
    0.1  # batches; 0.2 s measured no cheaper (demo bench) and made scenario waits racier
)


CLIENT_NAME = "xray-trace"  # lets the spy leave the kit's own traffic out


class Emitter:
    def __init__(self, url: str) -> None:
        self._url = url
        self._buffer: deque[wire.Item] = deque()
        self._identity: Mapping[str, Any] | None = None  # the last identity queued
        self._sent: wire.Item | None = None  # the last identity a flush took
        self._lock = threading.Lock()
        self._redis: stream.Appender | None = None
        self._thread: threading.Thread | None = None
        # Clients inherited across fork(): kept, never closed here (see _after_fork_in_child).
        self._inherited: list[stream.Appender] = []
        self.dropped = 0
        os.register_at_fork(
            before=self._lock_for_fork,
            after_in_parent=self._unlock_after_fork,
            after_in_child=self._after_fork_in_child,
        )

    def emit(self, identity: Mapping[str, Any], event: tuple[Any, ...]) -> None:
        """Queue one event (a tuple, wire.py) of the process `identity` describes; never
        blocks on Redis. The identity is queued only when it is another object than the
        last one: a process's identity is one cached dict (process.identity)."""
        buffer = self._buffer
        if len(buffer) >= BUFFER_MAX:
            # Full (Redis gone or slow): the newest event is dropped, never an identity at
            # the head, which the events after it need.
            self.dropped += 1
            return
        if identity is not self._identity:
            # Queued before it is remembered: a thread that sees it remembered knows it is
            # already ahead of its own event (at worst it is queued twice, which is harmless).
            buffer.append(identity)
            self._identity = identity
        buffer.append(event)
        if self._thread is None:
            self._start()

    def flush(self) -> None:
        """Send what is queued now (called by the thread, and at exit)."""
        with self._lock:
            buffer = self._buffer
            batch: list[wire.Item] = [buffer.popleft() for _ in range(len(buffer))]
            if not batch:
                return
            if type(batch[0]) is tuple and self._sent is not None:
                # This batch goes on with the last one's process: the flush took the buffer
                # between an identity and its event.
                batch.insert(0, self._sent)
            # The identity in force at the batch's end: the next batch may start without it.
            self._sent = next((i for i in reversed(batch) if type(i) is not tuple), self._sent)
            try:
                try:
                    payloads = stream.entries(batch)
                except TypeError:  # a field orjson refuses (a non-str key): only that event
                    kept = wire.encodable(batch)  # is lost, not its whole batch
                    self.dropped += wire.events(batch) - wire.events(kept)
                    batch, payloads = kept, stream.entries(kept)
                self._client().append(payloads)
            # Tracing must never break the app, and this thread must outlive a bad batch:
            # Redis gone, or a URL redis-py cannot open (ValueError: a scheme kombu knows).
            except (redis.RedisError, OSError, TypeError, ValueError):
                self.dropped += wire.events(batch)

    def _client(self) -> stream.Appender:
        if self._redis is None:
            self._redis = stream.Appender(self._url, CLIENT_NAME)
        return self._redis

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xray-emitter", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            # A plain sleep: nothing wakes the thread early, and Event.wait's Python-level
            # condition cost about 60 µs of CPU more per wake in a busy worker (measured).
            time.sleep(FLUSH_INTERVAL_S)
            self.flush()

    # fork() copies memory, not threads. All Redis I/O happens under self._lock, so holding
    # it across fork() means no flush is half-way through a command on the connection. The
    # child keeps the parent's connection object but never uses or closes it: its cleanup
    # would touch a socket that belongs to the parent.
    def _lock_for_fork(self) -> None:
        self._lock.acquire()

    def _unlock_after_fork(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        if self._redis is not None:
            self._inherited.append(self._redis)
        self._buffer = deque()  # the parent ships what was queued
        self._identity = self._sent = None
        self._lock = threading.Lock()
        self._redis = None
        self._thread = None


_emitter: Emitter | None = None


def configure(url: str) -> Emitter:
    global _emitter
    _emitter = Emitter(url)
    return _emitter


def get() -> Emitter | None:
    return _emitter
