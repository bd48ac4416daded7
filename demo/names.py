"""Every name the kit shares with Celery, kombu and the app: streams, keys, channels, roles.

Nothing else in `demo/` spells one of these strings. The app owns the names it writes (the
trace stream, the roles its processes declare); this module re-exports them so the kit has a
single place to look. Where a name comes from Celery or kombu, the comment says where.
"""

from __future__ import annotations

from typing import Final

from envoi_mails.xray.emitter import CLIENT_NAME as EMITTER_CLIENT_NAME
from envoi_mails.xray.hops import BEAT, CLIENT, FLOWER, POOL_CHILD, ROLES, SPY, WORKER_MAIN
from envoi_mails.xray.stream import OFFSET_KEY as TRACE_OFFSET_KEY
from envoi_mails.xray.stream import STREAM as TRACE_STREAM
from envoi_mails.xray.stream import STREAM_MAXLEN as TRACE_STREAM_MAXLEN

__all__ = [
    "BEAT",
    "CLIENT",
    "EMITTER_CLIENT_NAME",
    "FLOWER",
    "POOL_CHILD",
    "ROLES",
    "SPY",
    "TRACE_OFFSET_KEY",
    "TRACE_STREAM",
    "TRACE_STREAM_MAXLEN",
    "WORKER_MAIN",
]

# Roles the kit gives what no process declared itself.
UNKNOWN: Final = "unknown"  # a command no process recorded and MONITOR could not place
LUA: Final = "lua"  # a command a Lua script ran inside Redis
SCENARIO: Final = "scenario"  # a scenario's own checked expectations, written to the trace
KIT: Final = "kit"  # a connection of the kit itself (named KIT_PREFIX…): the spy leaves it out

# Redis's MONITOR shows "lua" instead of a client address for a script's commands.
MONITOR_LUA_ADDR: Final = "lua"

# The kit's own Redis connections are named `xray…` (CLIENT SETNAME): the spy leaves them out.
KIT_PREFIX: Final = "xray"
SPY_CLIENT_NAME: Final = f"{KIT_PREFIX}-spy"  # the spy's connections: xray-spy, xray-spy-…

# Trace event names that are not hops of a task's life.
REDIS_COMMAND: Final = "redis.command"
REDIS_REPLY: Final = "redis.reply"  # what a command returned, where it names a task (BRPOP)
LOG: Final = "log"
EXPECTATION: Final = "scenario.expectation"  # one checked claim of a scenario (role SCENARIO)

# celery/backends/base.py KeyValueStoreBackend: task_keyprefix, group_keyprefix.
RESULT_PREFIX: Final = "celery-task-meta-"
GROUP_PREFIX: Final = "celery-taskset-meta-"
CHORD_UNLOCK_PREFIX: Final = "chord-unlock-"  # older backends count a chord's parts here

# kombu/transport/redis.py: the default queue, the reservation keys, the binding keys.
DEFAULT_QUEUE: Final = "celery"
UNACKED: Final = "unacked"
UNACKED_INDEX: Final = "unacked_index"
UNACKED_MUTEX: Final = "unacked_mutex"
BINDING_PREFIX: Final = "_kombu.binding."
BINDING_PERMANENT_PREFIX: Final = "_kombu.binding_permanent."
BINDING_DEADLINES: Final = "_kombu.binding_deadlines"  # a zset: exchange -> bindings' deadline
# `_q_for_pri`: priority sub-queues are queue + SEP + n; binding members use the same separator.
PRIORITY_SEP: Final = "\x06\x16"

# Pub/sub channels are `/<db>.<exchange>/<routing key>` (kombu's fanout prefix, keyprefix_fanout).
EVENTS_INFIX: Final = ".celeryev/"  # celery/events: the `celeryev` exchange
TASK_MULTI_SUFFIX: Final = ".celeryev/task.multi"  # task events, batched (EventDispatcher groups)
HEARTBEAT_SUFFIX: Final = ".celeryev/worker.heartbeat"
ONLINE_SUFFIX: Final = ".celeryev/worker.online"
OFFLINE_SUFFIX: Final = ".celeryev/worker.offline"
PIDBOX_SUFFIX: Final = ".celery.pidbox"  # celery/app/control.py: the `celery.pidbox` exchange
REPLY_SUFFIX: Final = ".reply.celery.pidbox"  # `<oid>.reply.celery.pidbox`: replies, LPUSHed


def result_key(task_id: str) -> str:
    """The key (and pub/sub channel) a task's result is stored under."""
    return f"{RESULT_PREFIX}{task_id}"


def group_key(group_id: str, suffix: str = "") -> str:
    """A group's result key; chords add `.j`, `.t` … (celery/backends/redis.py)."""
    return f"{GROUP_PREFIX}{group_id}{suffix}"


def pidbox_channel(db: int = 0) -> str:
    """The channel broadcast control commands are published on."""
    return f"/{db}{PIDBOX_SUFFIX}"
