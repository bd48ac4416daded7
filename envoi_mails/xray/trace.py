"""`hop()`: record one step of a task's life, from the process where it happens."""

from __future__ import annotations

import time
from typing import Any

from envoi_mails.xray import emitter, process


def hop(event: str, **fields: Any) -> None:
    """Queue a trace event (see hops.py for the names); a no-op when tracing is off.

    On every task's path, several times: it only builds a tuple. The identity is the
    process's cached dict, queued once, not per event; wire.py flattens it when the trace
    is read.
    """
    sink = emitter.get()
    if sink is None:
        return
    sink.emit(process.identity(), (time.time(), event, fields))


def flush() -> None:
    sink = emitter.get()
    if sink is not None:
        sink.flush()
