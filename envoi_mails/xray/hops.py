"""The catalogue of trace hops: every event name the kit emits, where it fires, and why there.

One place to read what a trace line means. Each hop is emitted in the process where the
thing really happens (see docs/architecture.md for the Celery source behind each one).

Every trace event is a flat JSON object with at least:
  ts (epoch seconds, float), event (a name below), role, pid, ppid, host,
and, when known, task_id and task (the task's name).
"""

from __future__ import annotations

from typing import Final

# Roles: which kind of process emitted an event.
CLIENT: Final = "client"
WORKER_MAIN: Final = "worker-main"
POOL_CHILD: Final = "pool-child"
FLOWER: Final = "flower"
BEAT: Final = "beat"  # `celery beat`: the scheduler process, once beat_init fired
SPY: Final = "spy"

ROLES: Final = (CLIENT, WORKER_MAIN, POOL_CHILD, FLOWER, BEAT, SPY)

# hop name -> (role that emits it, what it means)
HOPS: Final[dict[str, tuple[str, str]]] = {
    # client
    "result.subscribe": (
        CLIENT,
        "the result backend subscribes to celery-task-meta-<id> (before publish)",
    ),
    "task.publishing": (
        CLIENT,
        "the message is built, about to LPUSH (send_task_message, where before_task_publish fires)",
    ),
    "task.published": (
        CLIENT,
        "the message is in the broker (send_task_message, where after_task_publish fires)",
    ),
    "result.wait": (CLIENT, "result.get() starts waiting on the pub/sub channel"),
    "result.message": (CLIENT, "the result arrived on the pub/sub channel (or by GET)"),
    "result.fetched": (CLIENT, "result.get() returned"),
    # worker MainProcess
    "worker.init": (WORKER_MAIN, "worker_init: the MainProcess starts, before forking the pool"),
    "worker.ready": (WORKER_MAIN, "worker_ready: pool forked, consuming"),
    "worker.heartbeat": (
        WORKER_MAIN,
        "heartbeat_sent: a worker-heartbeat event went out (with or without -E)",
    ),
    "worker.process_init": (
        WORKER_MAIN,
        "worker_process_init fired in the MainProcess itself (--pool solo: no child exists)",
    ),
    "worker.shutdown": (WORKER_MAIN, "worker_shutdown: the MainProcess stops"),
    "task.received": (
        WORKER_MAIN,
        "the MainProcess took the message off the queue (its Request, just before task_received)",
    ),
    "task.accepted": (WORKER_MAIN, "a pool child sent ACK for the job (child_pid says which)"),
    "task.acked": (WORKER_MAIN, "the MainProcess acknowledged the message (ZREM/HDEL unacked)"),
    "task.event": (
        WORKER_MAIN,
        "the MainProcess sent a task event (task-started, …): with -E, or once Flower enabled them",
    ),
    # pool child
    "child.init": (POOL_CHILD, "worker_process_init: a freshly forked pool child"),
    "child.shutdown": (POOL_CHILD, "worker_process_shutdown: a pool child exits"),
    "task.prerun": (
        POOL_CHILD,
        "the child is about to run the task body (Task.before_start, just after task_prerun)",
    ),
    "result.stored": (POOL_CHILD, "the child wrote celery-task-meta-<id> (SETEX + PUBLISH)"),
    "task.success": (
        POOL_CHILD,
        "the task returned, its result is stored (Task.on_success, just before task_success)",
    ),
    "task.failure": (POOL_CHILD, "task_failure: the task raised"),
    "task.retry": (POOL_CHILD, "task_retry: the task asked to be retried"),
    "task.postrun": (
        POOL_CHILD,
        "the child is done with this try (Task.after_return; for a retry, after task_retry)",
    ),
    # celery beat
    "beat.init": (BEAT, "beat_init: `celery beat` starts its scheduler loop (it only publishes)"),
    # any process
    "log": ("*", "a log record from Celery or kombu (logger, level, message)"),
    # any process of the app (commands.py), and MONITOR for what no process recorded
    "redis.command": (
        "*",
        "a Redis command, recorded by the process that sent it (MONITOR adds the rest as unknown)",
    ),
    "redis.reply": ("*", "what a command returned, where it names a task (BRPOP's message)"),
}
