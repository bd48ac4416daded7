"""Receivers on Celery's signals: one trace hop each, in the process where it fires.

The hops on every task's path come from cheaper hooks at the same points instead, each
saving a Signal.send per task (measured by `demo bench`): publish.py for the client's
publishing/published, request.py for received, prerun, success and postrun.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import signals

from envoi_mails.xray import hops, logsetup, process
from envoi_mails.xray.trace import flush, hop


def _setup_logging(log_format: str) -> Callable[..., None]:
    """The setup_logging receiver, for the app's XRAY_LOG_FORMAT."""

    def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
        # Connecting this signal is what stops Celery from installing its own handlers.
        logsetup.configure(loglevel or "INFO", log_format)

    return _on_setup_logging


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


def _failure(sender: Any = None, task_id: str = "", exception: Any = None, **_: Any) -> None:
    hop("task.failure", task_id=task_id, task=sender.name, exception=repr(exception))


def _beat_init(**_: Any) -> None:
    # celery/beat.py Service.start: sent once, before the first tick, so before beat opens
    # its first connection to Redis (its producer connects at the first due entry).
    process.set_role(hops.BEAT)
    hop("beat.init")


def _retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    hop("task.retry", task_id=request.id, task=sender.name, reason=str(reason))
    # Celery calls no Task.after_return for RETRY (IGNORE_STATES): this try ends here.
    hop("task.postrun", task_id=request.id, task=sender.name, state="RETRY")


RECEIVERS = [
    (signals.worker_init, _worker_init),
    (signals.worker_ready, _worker_ready),
    (signals.worker_shutdown, _worker_shutdown),
    (signals.heartbeat_sent, _heartbeat),
    (signals.worker_process_init, _process_init),
    (signals.worker_process_shutdown, _process_shutdown),
    (signals.task_failure, _failure),
    (signals.task_retry, _retry),
    (signals.beat_init, _beat_init),
]


def connect(*, log_format: str) -> None:
    """Connect every receiver (setup_logging's renders logs in `log_format`)."""
    for signal, receiver in [(signals.setup_logging, _setup_logging(log_format)), *RECEIVERS]:
        signal.connect(receiver, weak=False, dispatch_uid=f"xray:{receiver.__name__}")
