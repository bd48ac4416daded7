"""Read-only views of what kombu and Celery keep in Redis, and of the worker's processes.

Promises: nothing here writes to or deletes from Redis; keys are found with SCAN (KEYS
blocks the server); every output is bounded by a parameter; a value that cannot be decoded
is shown with the reason, never unpickled (demo.protocol.envelope decodes JSON only). Works with
clients made with or without decode_responses.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from demo import names
from demo.inspectors._redis import PRIORITY_STEPS, SCAN_COUNT, VISIBILITY_TIMEOUT_S, scan_keys
from demo.inspectors.broker import (
    Binding,
    BindingDeadline,
    BindingsView,
    Message,
    QueueView,
    Reserved,
    SubQueue,
    UnackedView,
    bindings,
    queue_view,
    queues,
    split_binding,
    unacked,
)
from demo.inspectors.keys import KeyInfo, ResultsView, StoredResult, key_infos, kit_keys, results
from demo.inspectors.pool import PoolView, pool_processes, stats_pool_pids
from demo.stack.procs import ProcessInfo

__all__ = [
    "PRIORITY_STEPS",
    "SCAN_COUNT",
    "VISIBILITY_TIMEOUT_S",
    "Binding",
    "BindingDeadline",
    "BindingsView",
    "KeyInfo",
    "Message",
    "PoolView",
    "ProcessInfo",
    "QueueView",
    "Reserved",
    "ResultsView",
    "Snapshot",
    "StoredResult",
    "SubQueue",
    "UnackedView",
    "bindings",
    "key_infos",
    "kit_keys",
    "pool_processes",
    "queue_view",
    "queues",
    "results",
    "scan_keys",
    "snapshot",
    "split_binding",
    "stats_pool_pids",
    "unacked",
]


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
    queue_names: Iterable[str] = (names.DEFAULT_QUEUE,),
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
        queues(r, queue_names, peek),
        unacked(r, limit),
        bindings(r, now=now),
        results(backend or r, limit),
        kit_keys(r, limit),
        pool,
    )
