"""How trace events travel in the stream `xray:trace`: compact on the way in, flat on the way out.

A process's hot path only appends a tuple (identity, ts, event, fields) to its buffer; the
identity dict (role, pid, ppid, host) is the process's one cached object, shared by every
tuple. A flush encodes the batch ONCE, with each identity written once per run of events
that share it:

    {"g": [[{"role": "pool-child", "pid": 4103, ...}, [[ts, "task.prerun", {...}], ...]], ...]}

so neither a dict per event nor the four identity fields per event is built or encoded.
Likewise, fields many events share (a connection's db, server and address, on each of its
commands) are written once per entry, in "s", and an event names them by index:
[ts, "redis.command", {"command": [...]}, 0]. `decode` gives back what the `--json-trace`
contract promises: one flat object per event, {"ts", "event", "role", "pid", "ppid", "host",
...fields}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson


class Deferred(Protocol):
    """Fields built only when the batch is encoded (a captured Redis command's arguments):
    its own, and `shared`, one object that other events hold too (written once per entry)."""

    @property
    def shared(self) -> Mapping[str, Any]: ...

    def own(self) -> dict[str, Any]: ...

    def fields(self) -> dict[str, Any]: ...  # own and shared together


# (identity, ts, event name, fields): what Emitter.emit queues.
Record = tuple[Mapping[str, Any], float, str, Mapping[str, Any] | Deferred]
Event = dict[str, Any]

FIELD = "g"  # the stream entry's field for a batch of grouped events
SHARED = "s"  # in an entry's document: the fields that events name by index


def encode(batch: Sequence[Record]) -> bytes:
    """One JSON document for a flush: runs of events grouped under their identity."""
    groups: list[tuple[Mapping[str, Any], list[tuple[Any, ...]]]] = []
    shared: list[Mapping[str, Any]] = []
    index: dict[int, int] = {}  # id() of a shared object -> its place in `shared`
    current: Mapping[str, Any] | None = None
    events: list[tuple[Any, ...]] = []
    for identity, ts, event, fields in batch:
        if identity is not current:  # the same object, not merely equal: a cheap test
            current, events = identity, []
            groups.append((identity, events))
        common = getattr(fields, "shared", None) if type(fields) is not dict else None
        if common is None:
            events.append((ts, event, fields))
            continue
        # A captured Redis command turns its arguments into text only now (commands.Command).
        at = index.get(id(common))  # the batch holds `common`: its id() is not reused meanwhile
        if at is None:
            at = index[id(common)] = len(shared)
            shared.append(common)
        events.append((ts, event, fields.own(), at))  # type: ignore[union-attr]
    document: dict[str, Any] = {FIELD: groups}
    if shared:
        document[SHARED] = shared
    # Any other object a caller left in a field (an exception, a UUID) goes as its str().
    return orjson.dumps(document, default=str)


def decode(fields: Mapping[Any, Any]) -> list[Event] | None:
    """The flat events of one stream entry; None if it holds nothing `encode` wrote.

    Field names as str (decode_responses=True) or bytes.
    """
    fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
    if fields.get(FIELD) is None:
        return None
    try:
        document = orjson.loads(fields[FIELD])
        shared = document.get(SHARED, ())
        flat: list[Event] = []
        for identity, events in document[FIELD]:
            for ts, event, extra, *common in events:
                out = {"ts": ts, "event": event, **identity, **extra}
                if common:
                    out.update(shared[common[0]])
                flat.append(out)
        return flat
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
