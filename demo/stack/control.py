"""A small Celery app for the kit's own control traffic (ping, inspect), one per broker."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from celery import Celery

from demo.errors import KitError


class _PinnedBroker(Celery):  # type: ignore[misc]  # celery is untyped
    """Always talks to the broker it was built for.

    Celery's Settings.broker_url prefers the CELERY_BROKER_URL environment variable over
    any configured value (celery/app/utils.py), so a kit process whose environment names
    another Redis would ping the wrong one. Every connection goes through these two.
    """

    def __init__(self, broker_url: str) -> None:
        super().__init__("xray-control", broker=broker_url, set_as_current=False)
        self._pinned = broker_url

    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Any:
        return super().connection_for_write(url or self._pinned, **kwargs)

    def connection_for_read(self, url: str | None = None, **kwargs: Any) -> Any:
        return super().connection_for_read(url or self._pinned, **kwargs)


@lru_cache(maxsize=8)
def _app_for(broker_url: str) -> Celery:
    # Not envoi_mails.app: the kit's pings must not show up as traced client hops.
    app = _PinnedBroker(broker_url)
    app.conf.update(
        accept_content=["json"],
        broker_connection_timeout=2.0,
        broker_connection_retry_on_startup=False,
        # A kombu consumer sweeps unacked_index on its first empty poll (QoS.restore_visible)
        # under the unacked_mutex lock. The kit's readiness ping would take that lock just as
        # a starting worker wants it, and the worker would skip its own sweep. So the kit's
        # control traffic sweeps and locks keys of its own, never the learner's messages.
        broker_transport_options={
            "unacked_key": "xray-control.unacked",
            "unacked_index_key": "xray-control.unacked_index",
            "unacked_mutex_key": "xray-control.unacked_mutex",
        },
    )
    return app


def control_app(env: Mapping[str, str]) -> Celery:
    return _app_for(env["CELERY_BROKER_URL"])


def inspect_stats(env: Mapping[str, str], nodename: str, *, timeout: float) -> dict[str, Any]:
    """What `celery inspect stats -d NODENAME` says about one worker (prefetch_count, pool, …)."""
    replies = control_app(env).control.inspect([nodename], timeout=timeout).stats() or {}
    if nodename not in replies:
        raise KitError(f"worker {nodename} did not answer `inspect stats` within {timeout:g} s")
    stats: dict[str, Any] = replies[nodename]
    return stats


def inspect_all(
    env: Mapping[str, str], method: str, *, workers: int, timeout: float
) -> dict[str, Any]:
    """`celery inspect METHOD` broadcast to every worker: nodename -> reply. Done once
    `workers` replies came in (without a limit a broadcast waits out its timeout: it
    cannot know how many will answer)."""
    inspector = control_app(env).control.inspect(limit=workers, timeout=timeout)
    replies: dict[str, Any] = getattr(inspector, method)() or {}
    return replies
