"""Logging configured once: structlog renders Celery's and kombu's stdlib records too.

One list of processors feeds both structlog loggers and `ProcessorFormatter`'s
foreign_pre_chain, so `Task … received` (MainProcess) and `Task … succeeded in` (pool
child) carry the same fields as the kit's own events: role, pid, ppid, host, task_id.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from envoi_mails.xray import process
from envoi_mails.xray.trace import hop

EventDict = MutableMapping[str, Any]


def add_process(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in process.identity().items():
        event_dict.setdefault(key, value)
    return event_dict


class TaskFieldsFilter(logging.Filter):
    """Celery logs its task lines with a dict of args (name, id): keep them as attributes.

    A filter, because ProcessorFormatter empties `record.args` before its chain runs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict):
            if "id" in args:
                record.task_id = args["id"]
            if "name" in args:
                record.task = args["name"]
        return True


def add_task_from_record(_: Any, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    for field in ("task_id", "task"):
        value = getattr(record, field, None)
        if value is not None:
            event_dict.setdefault(field, value)
    return event_dict


def tee_celery_records(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Copy Celery's own INFO+ lines into the trace: which process printed what."""
    record = event_dict.get("_record")
    if (
        isinstance(record, logging.LogRecord)
        and record.levelno >= logging.INFO
        and record.name.startswith(("celery", "kombu"))
    ):
        fields = {"task_id": event_dict["task_id"]} if "task_id" in event_dict else {}
        hop(
            "log",
            logger=record.name,
            level=record.levelname.lower(),
            message=str(event_dict.get("event", "")),
            process_name=record.processName,
            **fields,
        )
    return event_dict


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_process,
]


def _renderer(log_format: str) -> Any:
    console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    if console:
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer()


def configure(level: int | str = logging.INFO, log_format: str = "auto") -> None:
    """Configure structlog and the stdlib root logger; safe to call again after fork."""
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*SHARED_PROCESSORS, add_task_from_record, tee_celery_records],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(log_format),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(TaskFieldsFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
