"""A small Celery app for the kit's own control traffic (ping, inspect), one per broker."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from celery import Celery

from demo import names
from demo.errors import KitError

CONTROL_NAME = f"{names.KIT_PREFIX}-control"  # the app's main name, and its own unacked keys


class _PinnedBroker(Celery):  # type: ignore[misc]  # celery is untyped
    """Always talks to the broker it was built for.

    Celery's Settings.broker_url prefers the CELERY_BROKER_URL environment variable over
    any configured value (celery/app/utils.py), so a kit process whose environment names
    another Redis would ping the wrong one. Every connection goes through these two.
    """

    def __init__(self, broker_url: str) -> None:
        super().__init__(CONTROL_NAME, broker=broker_url, set_as_current=False)
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
            "unacked_key": f"{CONTROL_NAME}.{names.UNACKED}",
            "unacked_index_key": f"{CONTROL_NAME}.{names.UNACKED_INDEX}",
            "unacked_mutex_key": f"{CONTROL_NAME}.{names.UNACKED_MUTEX}",
        },
    )
    return app


def control_app(env: Mapping[str, str]) -> Celery:
    return _app_for(env["CELERY_BROKER_URL"])


# One function per question the kit asks a worker over the control channel (pidbox).


def _ask_one(env: Mapping[str, str], nodename: str, method: str, timeout: float) -> Any:
    """NODENAME's reply to `celery inspect METHOD`; KitError if none came within `timeout`."""
    inspector = control_app(env).control.inspect([nodename], timeout=timeout)
    replies = getattr(inspector, method)() or {}
    if nodename not in replies:
        raise KitError(f"worker {nodename} did not answer `inspect {method}` within {timeout} s")
    return replies[nodename]


def inspect_stats(env: Mapping[str, str], nodename: str, *, timeout: float) -> dict[str, Any]:
    """What `celery inspect stats` says about one worker (pool, prefetch_count, …)."""
    stats: dict[str, Any] = _ask_one(env, nodename, "stats", timeout)
    return stats


def inspect_scheduled(
    env: Mapping[str, str], nodename: str, *, timeout: float
) -> list[dict[str, Any]]:
    """The ETA/countdown requests `celery inspect scheduled` says one worker holds."""
    scheduled: list[dict[str, Any]] = _ask_one(env, nodename, "scheduled", timeout)
    return scheduled


def inspect_revoked(env: Mapping[str, str], nodename: str, *, timeout: float) -> list[str]:
    """The task ids `celery inspect revoked` says one worker keeps as revoked."""
    revoked: list[str] = _ask_one(env, nodename, "revoked", timeout)
    return revoked


def inspect_all(
    env: Mapping[str, str], method: str, *, workers: int, timeout: float
) -> dict[str, Any]:
    """`celery inspect METHOD` broadcast to every worker: nodename -> reply. Done once
    `workers` replies came in (without a limit a broadcast waits out its timeout: it
    cannot know how many will answer)."""
    inspector = control_app(env).control.inspect(limit=workers, timeout=timeout)
    replies: dict[str, Any] = getattr(inspector, method)() or {}
    return replies


def pings(env: Mapping[str, str], nodename: str, *, timeout: float) -> bool:
    """True if NODENAME answers `celery inspect ping` within `timeout`."""
    replies = control_app(env).control.ping(destination=[nodename], timeout=timeout)
    return any(nodename in reply for reply in replies or [])


def add_consumer(env: Mapping[str, str], nodename: str, queue: str, *, timeout: float) -> None:
    """`celery control add_consumer QUEUE -d NODENAME`: the worker starts consuming QUEUE."""
    replies = control_app(env).control.add_consumer(
        queue, destination=[nodename], reply=True, timeout=timeout
    )
    if not any(nodename in reply for reply in replies or []):
        raise KitError(f"worker {nodename} did not confirm add_consumer {queue} in {timeout:g} s")
