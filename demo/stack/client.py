"""The tutorial's client side: send a mail, fetch a result by task_id; errors in one line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from demo.errors import KitError
from demo.stack.redis_server import check_reachable


def _client_env(env: Mapping[str, str]) -> None:
    # envoi_mails reads its settings when first imported: point it at the stack first.
    check_reachable(env["CELERY_BROKER_URL"])
    os.environ.update(env)


def outcome(result: Any, timeout: float) -> dict[str, Any]:
    """Wait for `result`; its value on success, a one-line KitError otherwise."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        value = result.get(timeout=timeout, propagate=False)
    except CeleryTimeout:
        state = result.state
        release(result)
        raise KitError(
            f"task {result.id} not finished after {timeout:.0f} s (state "
            f"{state}): is a worker running? (python -m demo up)"
        ) from None
    if result.failed():
        raise KitError(f"task {result.id} failed: {type(value).__name__}: {value}")
    return {"task_id": result.id, "state": result.state, "result": value}


def release(result: Any) -> None:
    """Unsubscribe now, while the interpreter is whole: the backend holds pending results,
    and AsyncResult.__del__ would otherwise try it during shutdown and print a traceback."""
    result.backend.remove_pending_result(result)
    result.backend = None


def send_mail(env: Mapping[str, str], destinataire: str, timeout: float) -> dict[str, Any]:
    _client_env(env)
    from envoi_mails import envoi_mail

    try:
        result = envoi_mail.apply_async(args=[destinataire])
    except Exception as exc:  # kombu and redis raise many kinds; all mean the same here
        raise KitError(f"could not publish to {env['CELERY_BROKER_URL']}: {exc}") from None
    return outcome(result, timeout)


def fetch_result(env: Mapping[str, str], task_id: str, timeout: float) -> dict[str, Any]:
    _client_env(env)
    from envoi_mails import app

    return outcome(app.AsyncResult(task_id), timeout)
