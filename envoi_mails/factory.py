"""The tutorial's Celery app: built from Settings, JSON only, with bounded waits on Redis."""

from __future__ import annotations

from celery import Celery

from envoi_mails.settings import Settings

# A client facing an unreachable Redis must fail within seconds, not retry for minutes.
_CONNECT_TIMEOUT_S = 2.0
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
MAIL_TASK = "envoi_mails.envoi_mail"
TICK_TASK = "envoi_mails.tick"  # the periodic task `celery beat` sends (beat_schedule)


def transport_options(settings: Settings) -> dict[str, float]:
    """kombu's Redis transport options: a bounded connect, and the visibility timeout and
    sweep interval when the environment sets them (kombu/transport/redis.py, Channel)."""
    options = {"socket_connect_timeout": _CONNECT_TIMEOUT_S}
    if settings.visibility_timeout is not None:
        options["visibility_timeout"] = settings.visibility_timeout
    if settings.unacked_restore_interval is not None:
        # Every tick sweeps: kombu otherwise scans on one call in `unacked_restore_throttle`.
        options["unacked_restore_interval"] = settings.unacked_restore_interval
        options["unacked_restore_throttle"] = 1
    return options


def create_app(settings: Settings) -> Celery:
    """Build the app. Importing `envoi_mails` does this once, from the environment."""
    backend = settings.result_backend
    if settings.xray_trace and backend.startswith(("redis://", "rediss://")):
        # Same Redis backend, plus a hook that records who stores and who reads each result.
        backend = f"envoi_mails.xray.backend:TracedRedisBackend+{backend}"
    app = Celery(
        "envoi_mails",
        broker=settings.broker_url,
        backend=backend,
        task_cls="envoi_mails.xray.request:TracedTask" if settings.xray_trace else None,
        amqp="envoi_mails.xray.publish:TracedAMQP" if settings.xray_trace else None,
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_timeout=_CONNECT_TIMEOUT_S,
        broker_transport_options=transport_options(settings),
        task_publish_retry_policy=_PUBLISH_RETRY,
        redis_socket_connect_timeout=_CONNECT_TIMEOUT_S,
        result_backend_transport_options={"retry_policy": {"max_retries": 2}},
        result_expires=int(settings.result_expires),
        # The worker keeps trying at start-up, as in the tutorial: Redis may come up later.
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.default_queue,
        task_routes={MAIL_TASK: {"queue": settings.mail_queue}} if settings.mail_queue else {},
        task_track_started=settings.track_started,
        beat_schedule={"tick": {"task": TICK_TASK, "schedule": settings.beat_every}},
    )
    if backend != settings.result_backend:
        # Celery's Settings.result_backend prefers the CELERY_RESULT_BACKEND environment
        # variable over `backend=`; backend_cls is read before either (Celery._get_backend).
        app.backend_cls = backend
    return app
