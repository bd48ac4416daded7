"""Every environment variable the app reads, in one typed object with named defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_BROKER_URL = "redis://localhost:6379/0"  # the tutorial's Redis
DEFAULT_SMTP_HOST = "localhost"
DEFAULT_SMTP_PORT = 1025  # the port of the tutorial's local SMTP sink (and of mailpit)
DEFAULT_MAIL_FROM = "envoi-mails@example.com"
DEFAULT_QUEUE = "celery"  # Celery's task_default_queue
DEFAULT_BEAT_EVERY = 60.0  # seconds between two runs of the teaching periodic task
# Celery's rate strings (celery/utils/time.py `rate`): a number, optionally per s, m or h.
_RATE = re.compile(r"\d+(\.\d+)?(/[smh])?")


class SettingsError(ValueError):
    """An environment variable holds a value the app cannot use."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a yes/no value: use 1 or 0")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r} must not be negative")
    return value


def _optional(env: Mapping[str, str], name: str) -> float | None:
    """A positive number of seconds, or None when the variable is unset (the library's own)."""
    if not env.get(name):
        return None
    value = _number(env, name, 0.0)
    if value <= 0:
        raise SettingsError(f"{name}={env[name]!r} must be more than 0 seconds")
    return value


def _rate(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not _RATE.fullmatch(raw):
        raise SettingsError(f"{name}={raw!r} is not a rate: use N/s, N/m or N/h")
    return raw


@dataclass(frozen=True)
class Settings:
    """What the app is configured with. Build it with :meth:`from_env`."""

    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str = DEFAULT_BROKER_URL
    smtp_host: str = DEFAULT_SMTP_HOST
    smtp_port: int = DEFAULT_SMTP_PORT
    smtp_timeout: float = 5.0
    mail_from: str = DEFAULT_MAIL_FROM
    # Seconds a result key lives in Redis (Celery's result_expires; its default is one day).
    result_expires: float = 86400.0
    # A refused or unreachable SMTP server is retried: backoff * 2**n seconds, capped.
    mail_max_retries: int = 5
    mail_retry_backoff: float = 2.0
    mail_retry_backoff_max: float = 60.0
    # kombu's Redis transport: how old a reservation in `unacked` may get before a sweep
    # puts it back on its queue (None: kombu's 3600 s), and how often a worker sweeps
    # (None: kombu's, about every 100 s). A short pair shows a redelivery within seconds.
    visibility_timeout: float | None = None
    unacked_restore_interval: float | None = None
    # Celery's rate_limit on the mail task ("2/s", "30/m"); None: no limit.
    mail_rate_limit: str | None = None
    # task_routes: the queue the mail task is sent to; None: the default queue.
    mail_queue: str | None = None
    default_queue: str = DEFAULT_QUEUE  # task_default_queue: where every other task goes
    track_started: bool = False  # task_track_started: the child stores STARTED before the body
    beat_every: float = DEFAULT_BEAT_EVERY  # beat_schedule: how often beat sends `tick`
    # XRAY_TRACE=0: no instrumentation at all, the app is plain Celery (for the benchmark).
    xray_trace: bool = True
    # XRAY_COMMANDS=0: hops and logs only; no process records its own Redis commands.
    xray_commands: bool = True
    # auto: coloured console lines on a terminal, JSON lines otherwise.
    log_format: str = "auto"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        broker = env.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL
        port = _number(env, "SMTP_PORT", float(DEFAULT_SMTP_PORT))
        if not port.is_integer() or not 0 < port < 65536:
            raise SettingsError(f"SMTP_PORT={env.get('SMTP_PORT')!r} is not a TCP port")
        log_format = (env.get("XRAY_LOG_FORMAT") or "auto").lower()
        if log_format not in {"auto", "console", "json"}:
            raise SettingsError(f"XRAY_LOG_FORMAT={log_format!r}: use auto, console or json")
        return cls(
            broker_url=broker,
            result_backend=env.get("CELERY_RESULT_BACKEND") or broker,
            smtp_host=env.get("SMTP_HOST") or DEFAULT_SMTP_HOST,
            smtp_port=int(port),
            smtp_timeout=_number(env, "SMTP_TIMEOUT", 5.0),
            mail_from=env.get("MAIL_FROM") or DEFAULT_MAIL_FROM,
            result_expires=_number(env, "CELERY_RESULT_EXPIRES", 86400.0),
            visibility_timeout=_optional(env, "CELERY_VISIBILITY_TIMEOUT"),
            unacked_restore_interval=_optional(env, "CELERY_UNACKED_RESTORE_INTERVAL"),
            mail_rate_limit=_rate(env, "MAIL_RATE_LIMIT"),
            mail_queue=env.get("MAIL_QUEUE") or None,
            default_queue=env.get("CELERY_DEFAULT_QUEUE") or DEFAULT_QUEUE,
            track_started=_flag(env, "CELERY_TRACK_STARTED", False),
            beat_every=_number(env, "BEAT_EVERY", DEFAULT_BEAT_EVERY),
            mail_max_retries=int(_number(env, "MAIL_MAX_RETRIES", 5.0)),
            mail_retry_backoff=_number(env, "MAIL_RETRY_BACKOFF", 2.0),
            mail_retry_backoff_max=_number(env, "MAIL_RETRY_BACKOFF_MAX", 60.0),
            xray_trace=_flag(env, "XRAY_TRACE", True),
            xray_commands=_flag(env, "XRAY_COMMANDS", True),
            log_format=log_format,
        )

    def mail_retry_delay(self, retries: int) -> float:
        """Seconds to wait before the next SMTP try, after `retries` failed ones."""
        return float(min(self.mail_retry_backoff * 2**retries, self.mail_retry_backoff_max))

    def mail_retry_schedule_s(self) -> float:
        """The longest a mail task takes to its final answer when SMTP stays down: each
        retry waits its backoff first, and every try may wait smtp_timeout (62 + 30 s with
        the defaults)."""
        backoffs = sum(self.mail_retry_delay(n) for n in range(self.mail_max_retries))
        return backoffs + (self.mail_max_retries + 1) * self.smtp_timeout
