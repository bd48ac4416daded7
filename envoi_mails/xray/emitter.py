"""Ships trace events from any process to one capped Redis stream, off the hot path.

Why a Redis stream: every process of the app (client, worker MainProcess, pool children,
containers) already reaches this Redis, so the timeline needs no other server; XADD with
MAXLEN keeps it bounded. Why a buffer and a thread: a round-trip per event would slow the
worker measurably; `emit` only appends a tuple to a bounded deque and a daemon thread
sends what is queued every FLUSH_INTERVAL_S as ONE stream entry (wire.py): one XADD and
one JSON encoding per batch, not per event (an XADD per event cost about 19 µs of CPU per
event, 15-18 events per task, in the process that emitted them).

A flush is nearly always one stream entry, added in one round trip; stream.py keeps the
stream bounded in bytes.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import deque

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
                stream.append(self._client(), stream.entries(batch))
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


_emitter: Emitter | None = None


def configure(url: str) -> Emitter:
    global _emitter
    _emitter = Emitter(url)
    return _emitter


def get() -> Emitter | None:
    return _emitter
