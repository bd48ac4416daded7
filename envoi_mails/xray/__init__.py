"""The instrumentation every process of the app loads: trace hops, structlog, the emitter.

`install()` runs once when `envoi_mails` is imported with XRAY_TRACE on (the default).
With XRAY_TRACE=0 it is never called and the app is plain Celery.
"""

from __future__ import annotations

from celery import Celery

from envoi_mails.settings import Settings
from envoi_mails.xray import commands, emitter, signals


def install(app: Celery, settings: Settings) -> None:
    emitter.configure(settings.broker_url)
    signals.connect(log_format=settings.log_format)
    if settings.xray_commands:
        commands.install()
