"""result.stored says a result was written: only when Celery really writes it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from demo.stack.stack import Stack
from envoi_mails.xray import emitter, wire
from envoi_mails.xray.backend import TracedRedisBackend
from envoi_mails.xray.stream import STREAM


@pytest.fixture
def backend(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TracedRedisBackend, emitter.Emitter]]:
    """The traced backend on the test Redis, its hops going to an emitter of its own."""
    from envoi_mails import app  # first: building the app configures the global emitter

    sink = emitter.Emitter(stack.broker_url)
    monkeypatch.setattr(emitter, "_emitter", sink)
    yield TracedRedisBackend(app=app, url=stack.broker_url), sink


def _stored(stack: Stack, sink: emitter.Emitter, task_id: str) -> list[dict[str, object]]:
    sink.flush()
    with redis.Redis.from_url(stack.broker_url) as client:
        newest = client.xrevrange(STREAM, count=50)
    events = [e for _, fields in reversed(newest) for e in wire.decode(fields) or []]
    return [e for e in events if e["event"] == "result.stored" and e.get("task_id") == task_id]


def test_a_result_celery_refuses_to_overwrite_is_no_result_stored_hop(
    stack: Stack, backend: tuple[TracedRedisBackend, emitter.Emitter]
) -> None:
    """Celery keeps a SUCCESS: a second store of the same task (a redelivered task that had
    finished) writes nothing, so the trace must not say it did."""
    results, sink = backend
    task_id = str(uuid.uuid4())
    results.store_result(task_id, 4, "SUCCESS")
    results.store_result(task_id, ValueError("rejoué"), "FAILURE")
    assert [e["status"] for e in _stored(stack, sink, task_id)] == ["SUCCESS"]
    assert results.get_state(task_id) == "SUCCESS"


def test_a_failure_is_stored_with_the_ttl_celery_gives_failures(
    stack: Stack, backend: tuple[TracedRedisBackend, emitter.Emitter]
) -> None:
    """result_failure_expires: a failure is kept for less time than a success."""
    results, sink = backend
    results.failure_expires = 600  # what result_failure_expires=600 sets
    task_id = str(uuid.uuid4())
    results.store_result(task_id, ValueError("échec"), "FAILURE")
    [stored] = _stored(stack, sink, task_id)
    with redis.Redis.from_url(stack.broker_url) as client:
        ttl = client.ttl(str(stored["key"]))
    assert stored["ttl"] == 600
    assert 0 < ttl <= 600
