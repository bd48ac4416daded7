"""The tutorial's mail task, plus small teaching tasks for the scenarios."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from envoi_mails import mailer
from envoi_mails.factory import MAIL_TASK, TICK_TASK
from envoi_mails.instance import app, settings

DEFAULT_SUBJECT = "Bonjour depuis Celery"
DEFAULT_BODY = "Ce mail a été envoyé par une tâche Celery."

RETRY_LOST_DELAY_S = 1  # slow_retried: its default_retry_delay (Celery's default is 180 s)

# A module global: each process that runs whoami counts in its own copy. Prefork children
# get one each at fork (copy-on-write), so two children never see each other's count.
_WHOAMI_RUNS = itertools.count(1)


@app.task(
    bind=True,
    name=MAIL_TASK,
    max_retries=settings.mail_max_retries,
    rate_limit=settings.mail_rate_limit,  # read by each worker's MainProcess: its own bucket
)
def envoi_mail(
    self: Task, destinataire: str, subject: str = DEFAULT_SUBJECT, body: str = DEFAULT_BODY
) -> dict[str, Any]:
    """Send one mail over SMTP; return who it went to, its Message-ID and the pid that sent it.

    An invalid address fails at once (no SMTP traffic, no retry). An unreachable or busy
    SMTP server is retried with exponential backoff, `mail_max_retries` times, then fails.
    """
    return _deliver(self, destinataire, subject, body)


@app.task(
    bind=True,
    name="envoi_mails.envoi_mail_late",
    max_retries=settings.mail_max_retries,
    acks_late=True,
    reject_on_worker_lost=True,
)
def envoi_mail_late(
    self: Task, destinataire: str, subject: str = DEFAULT_SUBJECT, body: str = DEFAULT_BODY
) -> dict[str, Any]:
    """`envoi_mail`, acked only when it ends, and put back in the queue if its child dies:
    at least once, where `envoi_mail` is at most once (`python -m demo soak` sends both)."""
    return _deliver(self, destinataire, subject, body)


def _deliver(self: Task, destinataire: str, subject: str, body: str) -> dict[str, Any]:
    recipient = mailer.validate_address(destinataire)
    # Retries of one task keep its id, so they keep this Message-ID too.
    message_id = f"<{self.request.id}@envoi-mails>"
    message = mailer.build_message(settings.mail_from, recipient, subject, body, message_id)
    server = mailer.SmtpServer(settings.smtp_host, settings.smtp_port, settings.smtp_timeout)
    try:
        mailer.send(message, server)
    except mailer.SmtpUnavailable as exc:
        tries = self.request.retries + 1
        if self.request.retries >= (self.max_retries or 0):
            raise mailer.SmtpUnavailable(
                f"{exc} (gave up after {tries} tries; "
                "start the SMTP server or set SMTP_HOST/SMTP_PORT)"
            ) from exc
        # Retry raises celery.exceptions.Retry: the worker re-publishes the message itself.
        raise self.retry(
            exc=exc, countdown=settings.mail_retry_delay(self.request.retries)
        ) from exc
    return {
        "destinataire": recipient,
        "message_id": message_id,
        "smtp": str(server),
        "pid": os.getpid(),
        "tries": self.request.retries + 1,
    }


@app.task(name="envoi_mails.add")
def add(a: float, b: float) -> float:
    return a + b


@app.task(name="envoi_mails.slow")
def slow(seconds: float) -> dict[str, float | int]:
    """Sleep, then say which process did it and when: the evidence for prefetch scenarios."""
    started = time.time()
    time.sleep(seconds)
    return {"pid": os.getpid(), "started": started, "ended": time.time()}


@app.task(name="envoi_mails.slow_late", acks_late=True, reject_on_worker_lost=True)
def slow_late(seconds: float) -> dict[str, float | int]:
    """`slow`, acked only when it ends; requeued if its child dies (at-least-once)."""
    started = time.time()
    time.sleep(seconds)
    return {"pid": os.getpid(), "started": started, "ended": time.time()}


@app.task(name="envoi_mails.slow_tidy")
def slow_tidy(seconds: float) -> dict[str, float | int | str | None]:
    """`slow`, but it catches a soft time limit: SoftTimeLimitExceeded is raised inside the
    body (the child's SIGUSR1 handler raises it), so the task can clean up and return."""
    started = time.time()
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded as exc:
        return {"pid": os.getpid(), "caught": type(exc).__name__, "after": time.time() - started}
    return {"pid": os.getpid(), "caught": None, "after": time.time() - started}


@app.task(
    name="envoi_mails.slow_retried",
    retry_on_worker_lost=True,
    default_retry_delay=RETRY_LOST_DELAY_S,
    max_retries=1,
)
def slow_retried(seconds: float) -> dict[str, float | int]:
    """`slow`, sent again as a retry by the MainProcess if its child dies (Celery 5.7)."""
    started = time.time()
    time.sleep(seconds)
    return {"pid": os.getpid(), "started": started, "ended": time.time()}


@app.task(name=TICK_TASK)
def tick() -> dict[str, float | int]:
    """The periodic task of `beat_schedule`: which process ran it, and when."""
    return {"pid": os.getpid(), "at": time.time()}


@app.task(name="envoi_mails.tsum")
def tsum(numbers: list[float]) -> float:
    """Sum a list: the body of a chord receives its header's results as one list."""
    return sum(numbers)


@app.task(name="envoi_mails.whoami")
def whoami() -> dict[str, int | str]:
    """Where this task ran: pid, parent pid, thread (the threads pool shares one pid), and
    `nth_here`: how many whoami calls this process has run, this one included."""
    thread = threading.current_thread()
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "thread": thread.name,
        "thread_id": threading.get_ident(),
        "nth_here": next(_WHOAMI_RUNS),
    }


@app.task(name="envoi_mails.get_inside")
def get_inside(a: float, b: float) -> float:
    """Wait for another task's result inside a task: Celery refuses (RuntimeError)."""
    result: float = add.delay(a, b).get(timeout=10)
    return result


class TeachingError(RuntimeError):
    """Raised on purpose by the teaching tasks."""


@app.task(name="envoi_mails.fail")
def fail(message: str = "échec voulu") -> None:
    raise TeachingError(message)


@app.task(bind=True, name="envoi_mails.flaky", max_retries=10)
def flaky(self: Task, failures: int, countdown: float = 0.2) -> dict[str, int]:
    """Fail the first `failures` times, retrying after `countdown` s; then succeed."""
    if self.request.retries < failures:
        raise self.retry(
            exc=TeachingError(f"try {self.request.retries + 1} fails on purpose"),
            countdown=countdown,
        )
    return {"tries": self.request.retries + 1, "pid": os.getpid()}
