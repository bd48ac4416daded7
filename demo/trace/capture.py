"""Redis commands as the processes recorded them, made readable, and MONITOR as a cross-check.

Each process of the app records its own commands (envoi_mails/xray/commands.py): who sent a
command is known at the source, on any host. What the sender could not cheaply know is
added here, when the timeline reads the stream: the task a command concerns (from its
arguments, from the delivery tag a reservation names, or, for BRPOP, from the message its
reply delivered) and a short phrase saying what it does for Celery.

MONITOR (demo.spy), when asked for, sees every command Redis ran. `uncaptured` keeps only
what no process recorded: redis-cli, another application, a process without the kit, a Lua
script's own commands. Those show as `unknown` (or `lua`) with their address: nothing hidden.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from demo import names
from demo.protocol.commands import describe
from demo.spy.attribution import DeliveryTags
from demo.trace.event import TraceEvent, args_of, command_name

REPLY = names.REDIS_REPLY


class Ingest:
    """Adds task ids and summaries to captured commands, in the order a process sent them."""

    def __init__(self) -> None:
        self._tags = DeliveryTags()
        # (pid, queue) -> that process's last BRPOP on the queue, until its reply. Keyed by
        # queue too: a worker BRPOPs its task queues and its pidbox on separate connections.
        self._waiting: dict[tuple[int, str], TraceEvent] = {}

    def add(self, event: TraceEvent) -> None:
        """Complete `event` in place (a captured command or a reply); others pass untouched."""
        if event["event"] == names.REDIS_COMMAND:
            args = args_of(event)
            if "task_id" not in event:
                task_id = self._tags.task_id(args)
                if task_id:
                    event["task_id"] = task_id
            if "summary" not in event:
                event["summary"] = describe(args)
            if command_name(event) == "BRPOP" and event["pid"] is not None:
                for key in args[1:-1]:  # the last argument is the timeout
                    queue = key.rsplit(names.PRIORITY_SEP, 1)[0]
                    self._waiting[(event["pid"], queue)] = event
        elif event["event"] == REPLY and event.get("reply_to") == "BRPOP":
            # A process's events reach the stream in the order it recorded them: its BRPOP
            # is in before the reply that ends it.
            brpop = self._waiting.pop((event["pid"] or -1, str(event.get("key", ""))), None)
            task_id = event.get("task_id")
            if task_id:
                # Even when the BRPOP itself was sent before this timeline started reading:
                # the reservation that follows names the message by this tag only.
                self._tags.learn(str(event.get("delivery_tag") or ""), task_id)
                if brpop is not None:
                    brpop["task_id"] = task_id


# A process ships what it recorded every 0.1 s (the emitter's flush), MONITOR at once: a
# command MONITOR saw is only called uncaptured once its sender had time to ship it.
SHIP_GRACE_S = 2.0


def _key(event: TraceEvent) -> tuple[str, tuple[str, ...]]:
    return (event.get("addr", ""), tuple(args_of(event)))


def uncaptured(
    spied: Iterable[TraceEvent], captured: Iterable[TraceEvent], *, now: float
) -> list[TraceEvent]:
    """MONITOR's events that no process recorded, labelled `unknown` (or `lua`), pid None.

    A command MONITOR saw matches a recorded one when both name the same client address
    (MONITOR's `addr` is the sender's end of the socket, which the sender records too) and
    the same arguments; each recorded command matches one MONITOR line at most. A line
    younger than SHIP_GRACE_S is held back: its sender may not have shipped it yet. What
    the spy guessed about the sender stays in `seen_as`.
    """
    left = Counter(_key(e) for e in captured if e["event"] == names.REDIS_COMMAND)
    extra: list[TraceEvent] = []
    for event in spied:
        key = _key(event)
        if left[key] > 0:
            left[key] -= 1
            continue
        if event["ts"] > now - SHIP_GRACE_S:
            continue
        role = names.LUA if event.get("via") == names.LUA else names.UNKNOWN
        guess = f"{event['role']} {event['pid']}" if event["pid"] is not None else event["role"]
        extra.append({**event, "role": role, "pid": None, "ppid": None, "seen_as": guess})
    return extra
