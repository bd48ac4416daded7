"""The tutorial's client side: send a mail, fetch a result by task_id; errors in one line.

Each failure says what really happened, as far as Redis can tell: a task still retrying is
not "is a worker running?", an id that is no task id does not wait out a timeout, and an id
Redis knows nothing of is told apart from a task waiting in the queue or held by a worker.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import redis

from demo import names
from demo.errors import KitError
from demo.protocol.envelope import task_id_of_envelope
from demo.stack.redis_server import check_reachable
from demo.stack.state import Target
from envoi_mails.settings import Settings

SEND_MARGIN_S = 10.0  # beyond the mail task's retry schedule: the worker's own latency
QUEUE_SCAN = 10_000  # messages of a queue looked through for a task id, at most
MESSAGE_CHARS = 300  # an error's message quoted in a line, at most
EXAMPLE_ID = "6f12f488-6806-4009-aa49-2ace1dc2803a"  # what a Celery task id looks like


def send_timeout(settings: Settings) -> float:
    """How long `demo send` waits by default: the mail task's whole retry schedule (every
    try may wait SMTP_TIMEOUT, every retry its backoff), and a margin."""
    return settings.mail_retry_schedule_s() + SEND_MARGIN_S


def _client_env(target: Target) -> None:
    # envoi_mails reads its settings when first imported: point it at the stack first.
    check_reachable(target.broker_url, advice=target.if_unreachable)
    os.environ.update(target.env)


def outcome(result: Any, timeout: float, target: Target) -> dict[str, Any]:
    """Wait for `result`; its value on success, a one-line KitError otherwise."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        value = result.get(timeout=timeout, propagate=False)
    except CeleryTimeout:
        state, info = result.state, result.info
        release(result)
        raise KitError(_unfinished(result.id, state, info, timeout, target)) from None
    if isinstance(value, BaseException):  # FAILURE, REVOKED: never JSON, always one line
        verb = "was revoked" if result.state == "REVOKED" else "failed"
        raise KitError(f"task {result.id} {verb}: {_said(value)}")
    return {"task_id": result.id, "state": result.state, "result": value}


def _unfinished(task_id: str, state: str, info: Any, waited: float, target: Target) -> str:
    head = f"task {task_id} not finished after {waited:.0f} s (state {state})"
    if state == "RETRY":
        schedule = Settings.from_env().mail_retry_schedule_s()
        return (
            f"{head}: it is retrying after {_said(info)}. The mail task's retry schedule "
            f"runs up to {schedule:.0f} s: `python -m demo result {task_id}` fetches it later"
        )
    if state != "PENDING":
        return f"{head}: a worker runs it; `python -m demo result {task_id}` fetches it later"
    return f"{head}: {_whereabouts(task_id, target)}"


def _whereabouts(task_id: str, target: Target) -> str:
    """Where Redis holds a task that has no result yet, if anywhere."""
    with redis.Redis.from_url(target.broker_url, decode_responses=True) as r:
        queued = r.lrange(names.DEFAULT_QUEUE, -QUEUE_SCAN, -1)
        if any(task_id_of_envelope(raw) == task_id for raw in queued):
            return (
                f"it waits in the queue '{names.DEFAULT_QUEUE}': no worker has taken it. "
                "Is a worker running? (python -m demo up)"
            )
        if any(task_id_of_envelope(raw) == task_id for raw in r.hvals(names.UNACKED)):
            return "a worker holds it (running, or waiting for its countdown): wait longer"
    return (
        f"Redis {target.broker_url} has no result for it, and no queued or reserved message: "
        "no such task was sent here, or its result expired (CELERY_RESULT_EXPIRES)"
    )


def _said(value: Any) -> str:
    """An exception (or any value) as one short line: its type and message, cut."""
    text = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "…"


def release(result: Any) -> None:
    """Unsubscribe now, while the interpreter is whole: the backend holds pending results,
    and AsyncResult.__del__ would otherwise try it during shutdown and print a traceback."""
    result.backend.remove_pending_result(result)
    result.backend = None


def send_mail(target: Target, destinataire: str, timeout: float) -> dict[str, Any]:
    _client_env(target)
    from envoi_mails import envoi_mail

    try:
        result = envoi_mail.apply_async(args=[destinataire])
    except Exception as exc:  # kombu and redis raise many kinds; all mean the same here
        raise KitError(f"could not publish to {target.broker_url}: {exc}") from None
    return outcome(result, timeout, target)


def fetch_result(target: Target, task_id: str, timeout: float) -> dict[str, Any]:
    _client_env(target)
    from envoi_mails import app

    if not _is_uuid(task_id) and not app.backend.client.exists(names.result_key(task_id)):
        raise KitError(
            f"{_said(task_id)!r} is not a task id: Celery's are UUIDs such as {EXAMPLE_ID}, "
            f"and Redis {target.broker_url} has no result under it"
        )
    return outcome(app.AsyncResult(task_id), timeout, target)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
