"""The MainProcess side of a task that no signal shows: the child's ACK, the ack, events.

Celery's strategy builds a Request subclass per task type that overrides
`execute_using_pool` and `on_success` (celery/worker/request.py, create_request_cls), so
only the methods it inherits can be hooked here: `on_accepted`, `acknowledge`, `send_event`.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.worker.request import Request

from envoi_mails.xray.trace import hop


class TracedRequest(Request):  # type: ignore[misc]  # celery is untyped
    def on_accepted(self, pid: int, time_accepted: float) -> None:
        # The child wrote ACK on its pipe when it started the job: now the parent knows who.
        hop("task.accepted", task_id=self.id, task=self.name, child_pid=pid)
        super().on_accepted(pid, time_accepted)

    def acknowledge(self) -> None:
        first = not self.acknowledged
        super().acknowledge()
        if first:
            hop("task.acked", task_id=self.id, task=self.name, late=bool(self.task.acks_late))

    def send_event(self, type: str, **fields: Any) -> None:
        super().send_event(type, **fields)
        eventer = self._eventer
        # EventDispatcher.send drops a task event unless the "task" group is on (-E, or
        # Flower's enable_events): only an event that really goes out is a hop.
        if (
            eventer
            and eventer.enabled
            and self.task.send_events
            and (not eventer.groups or "task" in eventer.groups)
        ):
            hop("task.event", task_id=self.id, task=self.name, type=type)


class TracedTask(Task):  # type: ignore[misc]  # celery is untyped
    Request = "envoi_mails.xray.request:TracedRequest"
