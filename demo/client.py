"""A small Celery app for the kit's own control traffic (ping, inspect), one per broker."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from celery import Celery


@lru_cache(maxsize=8)
def _app_for(broker_url: str) -> Celery:
    # Not envoi_mails.app: the kit's pings must not show up as traced client hops.
    app = Celery("xray-control", broker=broker_url, set_as_current=False)
    app.conf.update(
        accept_content=["json"],
        broker_connection_timeout=2.0,
        broker_connection_retry_on_startup=False,
    )
    return app


def control_app(env: Mapping[str, str]) -> Celery:
    return _app_for(env["CELERY_BROKER_URL"])
