"""The spy's events, added to the trace stream in the app's own format (envoi_mails.xray.wire).

`python -m demo spy` records what it sees so that `python -m demo trace` shows the commands
next to the hops. It writes batches as the emitter does (wire.py), so the stream has one
format and one reader (`wire.decode`): the app knows nothing of the kit's events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis

from envoi_mails.xray import stream, wire

IDENTITY = ("role", "pid", "ppid", "host")  # the fields written once per run of a process
_HEAD = ("ts", "event")


def to_items(events: Iterable[Mapping[str, Any]]) -> list[wire.Item]:
    """Flat events as the emitter queues them: an identity wherever the process changes,
    then each event's (ts, event, fields); wire.decode gives each event back whole."""
    shared: dict[tuple[Any, ...], dict[str, Any]] = {}
    records: list[wire.Record] = []
    for event in events:
        who = tuple(event.get(name) for name in IDENTITY)
        identity = shared.setdefault(who, dict(zip(IDENTITY, who, strict=True)))
        fields = {k: v for k, v in event.items() if k not in IDENTITY and k not in _HEAD}
        records.append((identity, float(event["ts"]), str(event["event"]), fields))
    return wire.items(records)


def record_events(client: redis.Redis, events: Iterable[Mapping[str, Any]]) -> None:
    """Add the events to the trace stream, in entries as bounded as the emitter's
    (nothing for no events): a command's large arguments are cut there, not here."""
    items = to_items(events)
    if items:
        stream.append(client, stream.entries(items))
