"""How trace events travel in the stream `xray:trace`: as queued on the way in, flat on the way out.

A process's hot path appends to its emitter's buffer, and a flush sends the buffer as it is,
in ONE orjson call, with no Python step per event (measured: 0.3 µs an event, against 1 µs
when the flush rebuilt each event first, and about 2.5 µs in a busy worker, where the
flush thread's caches are cold). So the buffer holds what the stream holds, a flat list of:

- an identity, `{"role": …, "pid": …, "ppid": …, "host": …}`: the process that emitted the
  events after it (written again only when it changes: after a fork, or when a worker
  signal gives the process its role);
- a hop or a log line, `[ts, event, {fields}]`;
- a captured Redis command, `[ts, "redis.command", [args…], [db, server, addr], pipe]`: its
  arguments as redis-py got them (bytes become text here, numbers stay numbers; a score goes
  as the text redis-py sends, since JSON has no infinity: commands.py), and the
  connection's own list, the same object for every command sent on it.

`decode` gives back what the `--json-trace` contract promises: one flat object per event,
{"ts", "event", "role", "pid", "ppid", "host", ...fields}; a command's fields are `command`
(its arguments as strings), `pipe` (for a pipeline's commands), `db`, `server` and `addr`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

# What an emitter queues: an identity (a dict), or an event (a tuple, see the module's doc).
Item = Mapping[str, Any] | tuple[Any, ...]
# (identity, ts, event, fields): one event with its process, for those who build events
# one at a time (the spy, the tests); `items` turns them into what the stream holds.
Record = tuple[Mapping[str, Any], float, str, Mapping[str, Any]]
Event = dict[str, Any]

FIELD = "g"  # the stream entry's field holding a batch
BINARY = (bytes, bytearray, memoryview)  # a tuple: `bytes | …` would build a union per call


def _default(value: Any) -> str:
    """orjson's fallback: a command's bytes arguments as text, anything else as its str()."""
    if type(value) is bytes:  # the common case (Celery's result keys): one test, not three
        return value.decode("utf-8", "replace")
    if isinstance(value, BINARY):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def encode(items: Sequence[Item]) -> bytes:
    """One JSON array for a flush. Raises TypeError (orjson's JSONEncodeError) if a field
    cannot be written (a dict with non-str keys, an integer beyond 64 bits): see `encodable`."""
    return orjson.dumps(items, default=_default)


def encodable(items: Sequence[Item]) -> list[Item]:
    """The items, each tried alone (the slow path of a flush `encode` refused): a command
    whose arguments JSON cannot hold (an integer beyond 64 bits) goes with them as text;
    any other event `encode` refuses (a dict with non-str keys) is left out."""
    kept: list[Item] = []
    for item in items:
        try:
            orjson.dumps(item, default=_default)
        except TypeError:
            if type(item) is not tuple or len(item) != 5:
                continue
            item = (*item[:2], [_text(arg) for arg in item[2]], *item[3:])
        kept.append(item)
    return kept


def _text(arg: Any) -> str:
    if arg is None:  # JSON's null for an infinite float: commands.py writes scores as text
        return "inf or nan"
    return arg if type(arg) is str else _default(arg)


def events(items: Iterable[Item]) -> int:
    """How many events (not identities) the items hold."""
    return sum(1 for item in items if type(item) is tuple)


def slices(items: Sequence[Item], count: int) -> list[list[Item]]:
    """The items cut into `count` runs of about as many events, each starting with the
    identity in force where it starts: every slice can be read alone."""
    total = max(events(items), 1)
    step = -(-total // max(count, 1))
    out: list[list[Item]] = []
    identity: Item | None = None
    current: list[Item] = []
    held = 0
    for item in items:
        if type(item) is not tuple:
            identity = item
            current.append(item)
            continue
        if held == step:
            out.append(current)
            current, held = ([identity] if identity is not None else []), 0
        current.append(item)
        held += 1
    if held:
        out.append(current)
    return out


def items(records: Iterable[Record]) -> list[Item]:
    """Records as the stream holds them: an identity wherever it changes, then each event."""
    out: list[Item] = []
    current: Mapping[str, Any] | None = None
    for identity, ts, event, fields in records:
        if identity is not current and identity != current:
            current = identity
            out.append(identity)
        out.append((ts, event, fields))
    return out


def fields_of(event: Sequence[Any]) -> dict[str, Any]:
    """An event's fields, flat (without ts, event and the identity)."""
    if len(event) == 3:
        return dict(event[2])
    args, (db, server, addr), pipe = event[2:5]
    command = [_text(arg) for arg in args]
    # redis-py accepts "CONFIG GET" as one argument and splits it when it packs.
    if command and " " in command[0]:
        command[:1] = command[0].split()
    out: dict[str, Any] = {"command": command}
    if pipe is not None:
        out["pipe"] = pipe
    out.update(db=db, server=server, addr=addr)
    return out


def decode(fields: Mapping[Any, Any]) -> list[Event] | None:
    """The flat events of one stream entry; None if it holds nothing `encode` wrote.

    Field names as str (decode_responses=True) or bytes.
    """
    fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
    if fields.get(FIELD) is None:
        return None
    try:
        document = orjson.loads(fields[FIELD])
        if type(document) is not list:
            return None
        flat: list[Event] = []
        identity: dict[str, Any] | None = None
        for item in document:
            if type(item) is dict:
                identity = item
            elif identity is not None:  # an event before any identity has no process: left out
                flat.append({"ts": item[0], "event": item[1], **identity, **fields_of(item)})
        return flat
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
