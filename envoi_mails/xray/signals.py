"""Receivers on Celery's signals: one trace hop each, in the process where it fires."""

from __future__ import annotations

from typing import Any

import structlog
from celery import signals

from envoi_mails.xray import hops, logsetup, process
from envoi_mails.xray.trace import flush, hop


def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    # Connecting this signal is what stops Celery from installing its own handlers.
    from envoi_mails.instance import settings

    logsetup.configure(loglevel or "INFO", settings.log_format)


def _before_publish(sender: str, headers: dict[str, Any], routing_key: str, **_: Any) -> None:
    hop("task.publishing", task_id=headers.get("id"), task=sender, routing_key=routing_key)


def _after_publish(sender: str, headers: dict[str, Any], routing_key: str, **_: Any) -> None:
    hop("task.published", task_id=headers.get("id"), task=sender, routing_key=routing_key)


def _worker_init(sender: Any = None, **_: Any) -> None:
    process.set_role(hops.WORKER_MAIN)
    hop("worker.init", concurrency=getattr(sender, "concurrency", None))


def _worker_ready(sender: Any = None, **_: Any) -> None:
    try:
        children = list(sender.pool.info.get("processes", []))
    except AttributeError:
        children = []
    hop("worker.ready", hostname=getattr(sender, "hostname", None), children=children)


def _worker_shutdown(**_: Any) -> None:
    hop("worker.shutdown")
    flush()


def _heartbeat(**_: Any) -> None:
    hop("worker.heartbeat")


def _task_received(request: Any = None, **_: Any) -> None:
    hop("task.received", task_id=request.id, task=request.name)


def _process_init(**_: Any) -> None:
    if process.is_worker_main():
        # --pool solo sends worker_process_init in the MainProcess itself: there is no child.
        hop("worker.process_init")
        return
    process.set_role(hops.POOL_CHILD)
    hop("child.init")


def _process_shutdown(**_: Any) -> None:
    hop("child.shutdown")
    flush()  # a pool child ends with os._exit: atexit handlers do not run


def _prerun(task_id: str, task: Any, **_: Any) -> None:
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task.name)
    hop("task.prerun", task_id=task_id, task=task.name)


def _success(sender: Any = None, **_: Any) -> None:
    hop("task.success", task_id=sender.request.id, task=sender.name)


def _failure(sender: Any = None, task_id: str = "", exception: Any = None, **_: Any) -> None:
    hop("task.failure", task_id=task_id, task=sender.name, exception=repr(exception))


def _retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    hop("task.retry", task_id=request.id, task=sender.name, reason=str(reason))


def _postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    hop("task.postrun", task_id=task_id, task=task.name, state=state)
    structlog.contextvars.clear_contextvars()


RECEIVERS = [
    (signals.setup_logging, _on_setup_logging),
    (signals.before_task_publish, _before_publish),
    (signals.after_task_publish, _after_publish),
    (signals.worker_init, _worker_init),
    (signals.worker_ready, _worker_ready),
    (signals.worker_shutdown, _worker_shutdown),
    (signals.heartbeat_sent, _heartbeat),
    (signals.task_received, _task_received),
    (signals.worker_process_init, _process_init),
    (signals.worker_process_shutdown, _process_shutdown),
    (signals.task_prerun, _prerun),
    (signals.task_success, _success),
    (signals.task_failure, _failure),
    (signals.task_retry, _retry),
    (signals.task_postrun, _postrun),
]


def connect() -> None:
    for signal, receiver in RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"xray:{receiver.__name__}")
