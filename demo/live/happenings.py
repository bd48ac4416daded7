"""What happens to the processes, as the worker's own log lines and hops say it.

A pool child killed by a signal leaves no hop of its own: billiard's supervisor, in the
MainProcess, logs `Process 'ForkPoolWorker-1' pid:4242 exited with 'signal 9 (SIGKILL)'`
(billiard/pool.py, `Pool._join_exited_workers`). Losing Redis is Celery's consumer
warning `consumer: Connection to broker lost…` (celery/worker/consumer/consumer.py), and
the way back its `Connected to redis://…` (celery/worker/consumer/connection.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The happenings a screen shows, by kind.
CHILD_STARTED = "child.started"
CHILD_EXITED = "child.exited"
CHILD_REPLACED = "child.replaced"
WORKER_READY = "worker.ready"
WORKER_SHUTDOWN = "worker.shutdown"
BROKER_LOST = "broker.lost"
BROKER_BACK = "broker.back"
FLOWER_SEEN = "flower.seen"
CLIENT_SEEN = "client.seen"
TRACE_LOST = "trace.lost"  # the kit's own reader lost Redis
TRACE_BACK = "trace.back"

EXITED = re.compile(r"Process '(?P<name>[^']*)' pid:(?P<pid>\d+) exited with '(?P<status>[^']*)'")
LOST = "Connection to broker lost"
CONNECTED = "Connected to "


@dataclass(frozen=True)
class Happening:
    """One thing that happened to a process: `text` says it in a sentence."""

    ts: float
    kind: str
    pid: int | None
    text: str

    @property
    def alarming(self) -> bool:
        return self.kind in (CHILD_EXITED, BROKER_LOST, TRACE_LOST)


def child_exit(message: str) -> tuple[str, int, str] | None:
    """(process name, pid, status) from billiard's line about a child that exited."""
    found = EXITED.search(message)
    return (found["name"], int(found["pid"]), found["status"]) if found else None


def broker_lost(message: str) -> bool:
    return LOST in message


def broker_connected(message: str) -> bool:
    return message.startswith(CONNECTED)
