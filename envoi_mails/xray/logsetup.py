"""Logging configured once: structlog renders Celery's and kombu's stdlib records too.

One list of processors feeds both structlog loggers and `ProcessorFormatter`'s
foreign_pre_chain, so `Task … received` (MainProcess) and `Task … succeeded in` (pool
child) carry the same fields as the kit's own events: role, pid, ppid, host, task_id.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from celery._state import get_current_task

from envoi_mails.xray import process
from envoi_mails.xray.trace import hop

EventDict = MutableMapping[str, Any]


def add_process(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in process.identity().items():
        event_dict.setdefault(key, value)
    return event_dict


def task_fields(record: logging.LogRecord) -> tuple[Any, Any]:
    """(task_id, task name) of Celery's task lines, logged with a dict of args (id, name)."""
    args = record.args
    if isinstance(args, dict):
        return args.get("id"), args.get("name")
    return None, None


class TaskFieldsFilter(logging.Filter):
    """Keeps task_fields() as record attributes for the console chain: ProcessorFormatter
    empties `record.args` before its processors run."""

    def filter(self, record: logging.LogRecord) -> bool:
        task_id, name = task_fields(record)
        if task_id is not None:
            record.task_id = task_id
        if name is not None:
            record.task = name
        return True


def add_current_task(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """task_id and task of the task this pool child is running, as Celery's TaskFormatter
    finds them: a line logged from inside a task says which task it belongs to."""
    task = get_current_task()
    if task is not None and task.request.id is not None:
        event_dict.setdefault("task_id", task.request.id)
        event_dict.setdefault("task", task.name)
    return event_dict


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
    if isinstance(record, logging.LogRecord):
        _tee(record, event_dict)
    return event_dict


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_process,
]


def _console(log_format: str) -> bool:
    return log_format == "console" or (log_format == "auto" and sys.stderr.isatty())


class FlatJsonFormatter(logging.Formatter):
    """The JSON line ProcessorFormatter + JSONRenderer write, for stdlib records, in one step.

    Same keys (event, logger, level, timestamp, role, pid, ppid, host, task_id, task),
    same tee into the trace. ProcessorFormatter copies each record and runs nine
    processors: about 35 µs a line more than Celery's own formatter, against about 13 µs
    here, on the two lines every task logs at INFO.
    """

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "event": record.getMessage(),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": _iso_utc(record.created),
            **process.identity(),
        }
        task_id, name = task_fields(record)
        if task_id is not None:  # Celery's own task lines
            event["task_id"] = task_id
            if name is not None:
                event["task"] = name
        else:
            add_current_task(None, "", event)
        _tee(record, event)
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(event, default=repr).decode()


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def _iso_utc(created: float) -> str:
    # strftime once per second, not per line: a busy worker logs hundreds a second.
    global _second
    seconds = int(created)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{_second[1]}.{int((created - seconds) * 1_000_000):06d}Z"


# billiard logs as "multiprocessing" (billiard/util.py LOGGER_NAME), e.g. the supervisor's
# `Process 'ForkPoolWorker-1' pid:4242 exited with 'signal 9 (SIGKILL)'`.
BILLIARD_LOGGER = "multiprocessing"
TEED = ("celery", "kombu", BILLIARD_LOGGER)


def _tee(record: logging.LogRecord, event: EventDict) -> None:
    """The one rule for every formatter: Celery's, kombu's and billiard's INFO+ lines become
    "log" hops."""
    if record.levelno < logging.INFO or not record.name.startswith(TEED):
        return
    fields = {
        "logger": record.name,
        "level": record.levelname.lower(),
        "message": str(event.get("event", "")),
        "process_name": record.processName,
    }
    if "task_id" in event:
        fields["task_id"] = event["task_id"]
    hop("log", **fields)


class BilliardTee(logging.Filter):
    """billiard's logger does not propagate to the root's handler: its warnings and errors (a
    pool child that exited, and how) reach the trace through this filter, and stderr as
    before (logging's last resort handler prints them as they are: the worker's log keeps
    them). Its INFO lines, which no handler prints, stay out of the trace too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            _tee(record, {"event": record.getMessage(), **process.identity()})
        return True


def _renderer(log_format: str) -> Any:
    console = _console(log_format)
    if console:
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer()


def configure(level: int | str = logging.INFO, log_format: str = "auto") -> None:
    """Configure structlog and the stdlib root logger; safe to call again after fork."""
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            add_current_task,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter: logging.Formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *SHARED_PROCESSORS,
            add_task_from_record,
            add_current_task,
            tee_celery_records,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(log_format),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    if _console(log_format):
        handler.addFilter(TaskFieldsFilter())
    else:
        # Celery's two lines per task, JSON, without structlog's per-record chain.
        formatter = FlatJsonFormatter()
    handler.setFormatter(formatter)
    billiard = logging.getLogger(BILLIARD_LOGGER)
    if not any(isinstance(f, BilliardTee) for f in billiard.filters):
        billiard.addFilter(BilliardTee())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
