"""Hops from the task's own classes: its Request in the MainProcess, the Task in the child.

MainProcess: the message taken off the queue (built into a Request right before the
task_received signal, which would cost a Signal.send per task), the child's ACK, the ack
and the task events, which no signal shows. Celery's
strategy builds a Request subclass per task type that overrides `execute_using_pool` and
`on_success` (celery/worker/request.py, create_request_cls), so only the methods it
inherits can be hooked here: `on_accepted`, `acknowledge`, `send_event`.

Pool child: prerun, success and postrun come from the Task's handlers `before_start`,
`on_success` and `after_return`, which Celery's tracer (celery/app/trace.py) calls at the
same points as the task_prerun, task_success and task_postrun signals: a method call
costs well under a microsecond, a Signal.send with a receiver several, three times a
task, on the path `demo bench` measures. Celery calls no `after_return` for a retry: the
task_retry receiver (signals.py) then sends task.postrun itself.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.worker.request import Request

from envoi_mails.xray.trace import hop


class TracedRequest(Request):  # type: ignore[misc]  # celery is untyped
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The strategy builds the Request as soon as the message is off the queue, just
        # before it logs `Task … received` and sends task_received.
        super().__init__(*args, **kwargs)
        hop("task.received", task_id=self.id, task=self.name)

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

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        hop("task.prerun", task_id=task_id, task=self.name)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        hop("task.success", task_id=task_id, task=self.name)

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # The tracer calls this with the task's request pushed. The MainProcess calls it
        # too, with none, after a hard time limit killed the child (Request.on_failure in
        # celery/worker/request.py): not the end of a run, so no hop (task.failure says it).
        if self.request_stack.top is not None:
            hop("task.postrun", task_id=task_id, task=self.name, state=status)
