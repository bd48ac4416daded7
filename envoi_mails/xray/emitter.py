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

BUFFER_MAX = 20_000  # per process, if Redis is gone: oldest events are dropped
FLUSH_INTERVAL_S = (
    0.1  # batches; 0.2 s measured no cheaper (demo bench) and made scenario waits racier
)


CLIENT_NAME = "xray-trace"  # lets the spy leave the kit's own traffic out


class Emitter:
    def __init__(self, url: str) -> None:
        self._url = url
        self._buffer: deque[wire.Item] = deque(maxlen=BUFFER_MAX)
        self._identity: Mapping[str, Any] | None = None  # the last identity queued
        self._sent: Mapping[str, Any] | None = None  # the identity a flush ended with
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
        if identity is not self._identity:
            self._identity = identity
            self._buffer.append(identity)
        self._buffer.append(event)
        if self._thread is None:
            self._start()

    def flush(self) -> None:
        """Send what is queued now (called by the thread, and at exit)."""
        with self._lock:
            batch: list[wire.Item] = []
            while self._buffer:
                batch.append(self._buffer.popleft())
            if not batch:
                return
            if type(batch[0]) is tuple and self._sent is not None:
                # This batch goes on with the last one's process: the flush took the buffer
                # between an identity and its event, or a full buffer dropped the identity.
                batch.insert(0, self._sent)
            # Read after emptying the buffer: the last identity queued is then this batch's
            # last one, or a newer one whose own entry starts the next batch.
            self._sent = self._identity
            try:
                payloads = stream.entries(batch)
            except TypeError:  # a field orjson refuses (a non-str key, a huge int): only
                kept = wire.encodable(batch)  # that event is lost, not its whole batch
                self.dropped += wire.events(batch) - wire.events(kept)
                batch = kept
                payloads = stream.entries(batch)
            try:
                self._client().append(payloads)
            # Tracing must never break the app, and this thread must outlive a bad batch.
            except redis.RedisError:
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
