"""How trace events travel in the stream `xray:trace`: compact on the way in, flat on the way out.

A process's hot path only appends a tuple (identity, ts, event, fields) to its buffer; the
identity dict (role, pid, ppid, host) is the process's one cached object, shared by every
tuple. A flush encodes the batch ONCE, with each identity written once per run of events
that share it:

    {"g": [[{"role": "pool-child", "pid": 4103, ...}, [[ts, "task.prerun", {...}], ...]], ...]}

so neither a dict per event nor the four identity fields per event is built or encoded.
`decode` gives back what the `--json-trace` contract promises: one flat object per event,
{"ts", "event", "role", "pid", "ppid", "host", ...fields}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson


class Deferred(Protocol):
    """Fields built only when the batch is encoded (a captured Redis command's arguments)."""

    def fields(self) -> dict[str, Any]: ...


# (identity, ts, event name, fields): what Emitter.emit queues.
Record = tuple[Mapping[str, Any], float, str, Mapping[str, Any] | Deferred]
Event = dict[str, Any]

FIELD = "g"  # the stream entry's field for a batch of grouped events


def encode(batch: Sequence[Record]) -> bytes:
    """One JSON document for a flush: runs of events grouped under their identity."""
    groups: list[tuple[Mapping[str, Any], list[tuple[float, str, Mapping[str, Any] | Deferred]]]]
    groups = []
    current: Mapping[str, Any] | None = None
    events: list[tuple[float, str, Mapping[str, Any] | Deferred]] = []
    for identity, ts, event, fields in batch:
        if identity is not current:  # the same object, not merely equal: a cheap test
            current, events = identity, []
            groups.append((identity, events))
        events.append((ts, event, fields))
    # A captured Redis command turns its arguments into text only now (commands.Command):
    # any other object the caller left (an exception, a UUID) goes as its str().
    return orjson.dumps({FIELD: groups}, default=_default)


def _default(value: Any) -> Any:
    fields = getattr(value, "fields", None)
    return fields() if callable(fields) else str(value)


def decode(fields: Mapping[Any, Any]) -> list[Event] | None:
    """The flat events of one stream entry; None if it holds nothing `encode` wrote.

    Field names as str (decode_responses=True) or bytes.
    """
    fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
    if fields.get(FIELD) is None:
        return None
    try:
        document = orjson.loads(fields[FIELD])
        return [
            {"ts": ts, "event": event, **identity, **extra}
            for identity, events in document[FIELD]
            for ts, event, extra in events
        ]
    except (ValueError, TypeError, KeyError):
        return None
