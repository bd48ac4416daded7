"""The Redis result backend, plus hops for who stores a result and who receives it."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery import states
from celery._state import task_join_will_block
from celery.backends.redis import RedisBackend, ResultConsumer

from envoi_mails.xray.trace import hop


class TracedResultConsumer(ResultConsumer):  # type: ignore[misc]  # celery is untyped
    def on_state_change(self, meta: dict[str, Any], message: Any) -> None:
        if meta.get("task_id"):
            hop("result.message", task_id=meta["task_id"], status=meta.get("status"))
        super().on_state_change(meta, message)


class TracedRedisBackend(RedisBackend):  # type: ignore[misc]  # celery is untyped
    ResultConsumer = TracedResultConsumer

    @cached_property
    def _prefix(self) -> str:
        return str(self.task_keyprefix.decode())

    def _key(self, task_id: str) -> str:
        """get_key_for_task(task_id), as text, without its bytes round trip per task."""
        return f"{self._prefix}{task_id}"

    def on_task_call(self, producer: Any, task_id: str) -> None:
        super().on_task_call(producer, task_id)
        # Same condition as RedisBackend.on_task_call: inside a pool child no SUBSCRIBE
        # happens (get() would block the worker), so there is no hop either.
        if not task_join_will_block():
            hop("result.subscribe", task_id=task_id, key=self._key(task_id))

    def _set_with_state(self, key: Any, value: Any, state: str) -> Any:
        # The write itself, not _store_result: Celery's _store_result first GETs the key
        # and writes nothing when it already says SUCCESS (a redelivered task that had
        # finished; celery/backends/base.py). A FAILURE is kept for failure_expires.
        written = super()._set_with_state(key, value, state)
        text = key.decode() if isinstance(key, bytes) else str(key)
        if text.startswith(self._prefix):  # not a group's result
            ttl = self.failure_expires if state == states.FAILURE else self.expires
            task_id = text[len(self._prefix) :]
            hop("result.stored", task_id=task_id, key=text, ttl=ttl, status=state)
        return written

    def wait_for_pending(self, result: Any, **kwargs: Any) -> Any:
        hop("result.wait", task_id=result.id)
        value = super().wait_for_pending(result, **kwargs)
        hop("result.fetched", task_id=result.id, status=result.state)
        return value
