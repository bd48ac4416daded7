"""Issue 15, cases 8 and 9: an address has the length limits of a mail system and fails at once;
a large value is cut in error messages and in the trace; the trace stream is bounded in
bytes, and takes no more of a Redis than the number the README states. On real processes:
the test session's worker and Redis, or a private redis-server for the stream's bound."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from kit_launch import ROOT

from demo.stack.redis_server import RedisServer
from demo.stack.stack import Stack
from demo.stack.worker import Worker
from demo.trace.timeline import Timeline
from envoi_mails.xray import commands, emitter, stream, wire

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
    # Every process's flushes meanwhile, not only this task's events: still far below the
    # 2 MB the address weighs in each of the client's LPUSH and the worker's HSET.
    assert sum(len(fields[FIELD]) for _, fields in entries) < HUGE // 10
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
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream.STREAM, min=start)  # type: ignore[assignment]
    return entries


def _sizes(client: redis.Redis) -> list[int]:
    return [len(fields[FIELD]) for _, fields in _stream(client)]


def test_a_batch_larger_than_an_entry_is_split_and_every_event_arrives_whole(
    private_redis: tuple[str, redis.Redis],
) -> None:
    url, client = private_redis
    sink = emitter.Emitter(url)
    value = "z" * (stream.ENTRY_MAX_BYTES // 8)
    for index in range(20):
        sink.emit(ME, (time.time(), "test.large", {"index": index, "value": value}))
    sink.flush()
    events = [e for _, fields in _stream(client) for e in wire.decode(fields) or []]
    assert [e["index"] for e in events] == list(range(20)) and sink.dropped == 0
    assert {e["value"] for e in events} == {value}, "split between events, never inside one"
    sizes = _sizes(client)
    assert len(sizes) > 1 and max(sizes) <= stream.ENTRY_MAX_BYTES


class _Held(emitter.Emitter):
    """The real emitter, flushed by the test: no thread of its own left behind."""

    def _start(self) -> None:
        self._thread = threading.current_thread()


def test_a_captured_commands_large_value_is_cut_and_the_rest_reads_back_whole(
    private_redis: tuple[str, redis.Redis],
) -> None:
    """A command is queued with its arguments as redis-py got them; only a long one has its
    large values cut, on the caller's path, before it is queued."""
    url, client = private_redis
    commands.install()  # idempotent: the session's app has usually installed it already
    saved, sink = emitter.get(), _Held(url)
    emitter._emitter = sink
    big = "v" * (commands.ARG_CAP * 4)
    try:
        with redis.Redis.from_url(url) as app:
            app.set(b"key-as-bytes", big)
            app.set("small", "caf\u00e9", ex=60)
            app.zrangebyscore("scores", float("-inf"), float("inf"))
        sink.flush()
    finally:
        emitter._emitter = saved
    events = [e for _, fields in _stream(client) for e in wire.decode(fields) or []]
    sent = [e["command"] for e in events if e["event"] == "redis.command"]
    sets = [command for command in sent if command[0] == "SET"]
    assert sets == [
        ["SET", "key-as-bytes", "v" * commands.ARG_CAP],
        ["SET", "small", "caf\u00e9", "EX", "60"],
    ]
    assert client.strlen("key-as-bytes") == len(big), "Redis itself got the whole value"
    ranges = [command for command in sent if command[0] == "ZRANGEBYSCORE"]
    assert ranges == [["ZRANGEBYSCORE", "scores", "-inf", "inf"]], "JSON has no infinity"


def test_a_busy_flush_is_one_entry(private_redis: tuple[str, redis.Redis]) -> None:
    """What the byte bound is for: a busy process's 0.1 s of events, one XADD (not dozens)."""
    url, client = private_redis
    sink = emitter.Emitter(url)
    envelope = "e" * 1200  # an LPUSH's message, as captured
    for index in range(300):
        sink.emit(ME, (time.time(), "test.busy", {"index": index, "command": ["LPUSH", envelope]}))
    sink.flush()
    assert len(_sizes(client)) == 1 and sink.dropped == 0


def _fill(client: redis.Redis, entry_bytes: int, total: int) -> None:
    """Append entries of `entry_bytes` until `total` bytes went in, many per round trip."""
    payload = wire.encode([ME, (1.0, "test.big", {"value": "y" * (entry_bytes - 80)})])
    per_call = max(1, 4 * 2**20 // len(payload))
    for _ in range(0, total, per_call * len(payload)):
        stream.append(client, [payload] * per_call)


@pytest.mark.parametrize(
    "entry_bytes",
    [4_100, stream.ENTRY_MAX_BYTES],
    ids=["just over a stream node", "the largest entry"],
)
def test_the_trace_stream_takes_no_more_redis_memory_than_stated(
    private_redis: tuple[str, redis.Redis], entry_bytes: int
) -> None:
    """More than the stream keeps (1.5 times), in entries of one size. 4 100 bytes is the worst
    case measured (1.38 times the payload): each entry needs a stream node of its own."""
    _, client = private_redis
    _fill(client, entry_bytes, stream.MAX_BYTES * 3 // 2)
    kept = sum(_sizes(client))
    assert stream.MAX_BYTES - entry_bytes <= kept <= stream.MAX_BYTES + entry_bytes
    used = int(client.memory_usage(stream.STREAM, samples=0) or 0)
    assert 0 < used <= stream.STREAM_MAX_MB * 2**20, f"{used / 2**20:.1f} MB"
    readme = (ROOT / "README.md").read_text()
    assert f"**at most {stream.STREAM_MAX_MB} MB**" in readme, "the figure the README states"


def test_small_entries_are_capped_by_count(private_redis: tuple[str, redis.Redis]) -> None:
    """Tiny entries cost more than their payload in Redis: their number is capped too."""
    _, client = private_redis
    payload = wire.encode([ME, (1.0, "t", {})])
    for _ in range(stream.STREAM_MAXLEN * 6 // 5 // 10_000):
        stream.append(client, [payload] * 10_000)
    assert stream.STREAM_MAXLEN <= client.xlen(stream.STREAM) <= stream.STREAM_MAXLEN + NODE_SLACK


def test_a_lost_offset_key_does_not_stop_the_stream(private_redis: tuple[str, redis.Redis]) -> None:
    """Someone deletes the offset key by hand: the next entry goes on after the newest one."""
    _, client = private_redis
    payload = wire.encode([ME, (1.0, "test.small", {"index": 1})])
    stream.append(client, [payload, payload])
    client.delete(stream.OFFSET_KEY)
    stream.append(client, [payload])
    ids = [entry_id for entry_id, _ in _stream(client)]
    assert len(ids) == 3 and ids == sorted(ids, key=lambda i: int(i.split(b"-")[0]))
