"""The Redis result backend, plus hops for who stores a result and who receives it."""

from __future__ import annotations

from functools import cached_property
from typing import Any

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

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        stored = super()._store_result(
            task_id, result, state, traceback=traceback, request=request, **kwargs
        )
        key = self._key(task_id)
        hop("result.stored", task_id=task_id, key=key, ttl=self.expires, status=state)
        return stored

    def wait_for_pending(self, result: Any, **kwargs: Any) -> Any:
        hop("result.wait", task_id=result.id)
        value = super().wait_for_pending(result, **kwargs)
        hop("result.fetched", task_id=result.id, status=result.state)
        return value
