"""Issue 15, cases 8 and 9: an address has the length limits of a mail system and fails at once;
a large value is cut in error messages and in the trace; the trace stream is bounded in
bytes, and takes no more of a Redis than the number the README states. On real processes:
the test session's worker and Redis, or a private redis-server for the stream's bound."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from kit_launch import ROOT

from demo.stack.redis_server import RedisServer
from demo.stack.stack import Stack
from demo.stack.worker import Worker
from demo.trace.timeline import Timeline
from envoi_mails.xray import emitter, wire

pytestmark = pytest.mark.e2e

AT_ONCE_S = 5.0  # no SMTP traffic, no retry: the worker's round trip only
HUGE = 2_000_000  # characters: an address no mail system takes (the was 10 MB)
SMALL_KEY = 10_000  # bytes: a FAILURE's result key with its traceback, and a margin
ME = {"role": "test", "pid": 1, "ppid": 0, "host": "h"}
FIELD = wire.FIELD.encode()
NODE_SLACK = 100  # MAXLEN ~ trims whole stream nodes: up to one node's entries more


def _fails_at_once(address: str) -> tuple[BaseException, str]:
    """The task's error, and its id, asserting it came without SMTP retries."""
    from envoi_mails import envoi_mail

    began = time.monotonic()
    result = envoi_mail.apply_async(args=[address])
    error = result.get(timeout=30, propagate=False)
    assert time.monotonic() - began < AT_ONCE_S
    assert result.state == "FAILURE" and type(error).__name__ == "InvalidAddress", error
    return error, result.id


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("a" * 64 + "@" + "d" * 186 + ".example", "is 259 characters long: an e-mail address "),
        ("a" * 65 + "@example.com", "the part before @ is 65 characters long, at most 64"),
    ],
    ids=["path over 254", "local part over 64"],
)
def test_an_address_over_the_rfc_5321_limits_fails_at_once(
    address: str, said: str, worker: Worker
) -> None:
    error, _ = _fails_at_once(address)
    assert said in str(error) and "(RFC 5321)" in str(error)


def test_a_huge_address_leaves_no_huge_trace_result_or_log(stack: Stack, worker: Worker) -> None:
    redis_client = redis.Redis.from_url(stack.broker_url)  # bytes: entries measured in bytes
    log_before = worker.log.stat().st_size
    since = _stream(redis_client)[-1][0] if _stream(redis_client) else b"0"
    error, task_id = _fails_at_once("x" * HUGE + "@example.com")
    assert len(str(error)) < 300 and f"is {HUGE + 12} characters long" in str(error)
    assert redis_client.strlen(f"celery-task-meta-{task_id}") < SMALL_KEY
    # The worker's last hop of the task (its child's postrun) is in the stream: wait for it,
    # rather than for a guess at how long the emitters take to ship.
    with Timeline(stack.broker_url, history=True) as timeline:
        timeline.wait_for(event="task.postrun", task_id=task_id, timeout=10, what="its postrun")
    entries = _stream(redis_client, after=since)
    assert entries, "the worker traced the task"
    assert max(len(fields[FIELD]) for _, fields in entries) <= emitter.ENTRY_MAX_BYTES
    assert worker.log.stat().st_size - log_before < SMALL_KEY
    redis_client.close()


@pytest.fixture
def private_redis() -> Iterator[tuple[str, redis.Redis]]:
    """A redis-server of the test's own (filling a stream must not trim the session's), its
    URL and a client that reads bytes."""
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    try:
        yield server.url, client
    finally:
        client.close()
        server.stop()


def _stream(client: redis.Redis, after: bytes = b"") -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The trace stream's entries (after the one `after` names), read as bytes."""
    start = b"(" + after if after else b"-"
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(emitter.STREAM, min=start)  # type: ignore[assignment]
    return entries


def _sizes(client: redis.Redis) -> list[int]:
    return [len(fields[FIELD]) for _, fields in _stream(client)]


def test_a_batch_larger_than_an_entry_is_split_and_every_event_arrives_whole(
    private_redis: tuple[str, redis.Redis],
) -> None:
    url, client = private_redis
    sink = emitter.Emitter(url)
    for index in range(200):
        sink.emit((ME, time.time(), "test.small", {"index": index}))
    sink.flush()
    events = [e for _, fields in _stream(client) for e in wire.decode(fields) or []]
    assert [e["index"] for e in events] == list(range(200)) and sink.dropped == 0
    sizes = _sizes(client)
    assert len(sizes) > 1 and max(sizes) <= emitter.ENTRY_MAX_BYTES


def test_the_trace_stream_takes_no_more_redis_memory_than_stated(
    private_redis: tuple[str, redis.Redis],
) -> None:
    """More than the stream keeps, in events that each nearly fill an entry: the worst case."""
    url, client = private_redis
    sink = emitter.Emitter(url)
    nearly_full = "y" * (emitter.ENTRY_MAX_BYTES - 200)
    per_flush = 3
    for _ in range(emitter.STREAM_MAXLEN * 7 // 5 // per_flush):
        for _ in range(per_flush):
            sink.emit((ME, time.time(), "test.big", {"value": nearly_full}))
        sink.flush()
    sizes = _sizes(client)
    assert len(sizes) <= emitter.STREAM_MAXLEN + NODE_SLACK
    assert max(sizes) <= emitter.ENTRY_MAX_BYTES
    used = int(client.memory_usage(emitter.STREAM, samples=0) or 0)
    assert 0 < used <= emitter.STREAM_MAX_MB * 2**20, f"{used / 2**20:.1f} MB"
    readme = (ROOT / "README.md").read_text()
    assert f"**at most {emitter.STREAM_MAX_MB} MB**" in readme, "the figure the README states"
