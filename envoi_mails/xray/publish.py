"""The client's publish hops, from the one function every task message goes through.

Celery builds `app.amqp.send_task_message` once (celery/app/amqp.py, AMQP._create_task_sender)
and every apply_async, send_task, retry and canvas step calls it; before_task_publish and
after_task_publish fire inside it, around `producer.publish`. Wrapping it gives the same two
moments without a Signal.send each: measured by `demo bench`, two receivers there cost the
client more than all its other hops together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.app.amqp import AMQP

from envoi_mails.xray.trace import hop


class TracedAMQP(AMQP):  # type: ignore[misc]  # celery is untyped
    def _create_task_sender(self) -> Callable[..., Any]:
        send = super()._create_task_sender()
        default_queue = self.default_queue.name

        def send_task_message(
            producer: Any,
            name: str,
            message: Any,
            exchange: Any = None,
            routing_key: str | None = None,
            queue: Any = None,
            **kwargs: Any,
        ) -> Any:
            task_id = message.headers.get("id")
            # What Celery's direct routing resolves to: the key, else the queue's name.
            key = routing_key or (queue if isinstance(queue, str) else getattr(queue, "name", None))
            key = key or default_queue
            hop("task.publishing", task_id=task_id, task=name, routing_key=key)
            sent = send(
                producer,
                name,
                message,
                exchange=exchange,
                routing_key=routing_key,
                queue=queue,
                **kwargs,
            )
            hop("task.published", task_id=task_id, task=name, routing_key=key)
            return sent

        return send_task_message
