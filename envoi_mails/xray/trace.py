"""`hop()`: record one step of a task's life, from the process where it happens."""

from __future__ import annotations

import time
from typing import Any

from envoi_mails.xray import emitter, process


def hop(event: str, **fields: Any) -> None:
    """Append a trace event (see hops.py for the names); a no-op when tracing is off."""
    sink = emitter.get()
    if sink is None:
        return
    record: dict[str, Any] = {"ts": time.time(), "event": event}
    record.update(process.identity())
    record.update(fields)
    sink.emit(record)


def flush() -> None:
    sink = emitter.get()
    if sink is not None:
        sink.flush()
