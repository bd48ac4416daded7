"""The read-only inspectors on a real Redis and real worker processes (kombu 5.7)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from demo import inspectors as ins
from demo.cli.inspect import inspect_command
from demo.protocol.commands import PRIORITY_SEP
from demo.stack.stack import Stack
from demo.stack.worker import Worker
from demo.trace.wait import wait_until


@pytest.fixture
def own_queue(redis_client: redis.Redis) -> Iterator[str]:
    """A queue name no worker consumes; its lists and binding tables are deleted after."""
    name = f"inspect-only-{uuid.uuid4().hex[:8]}"
    yield name
    lists = [name, *(f"{name}{PRIORITY_SEP}{step}" for step in ins.PRIORITY_STEPS[1:])]
    redis_client.delete(*lists, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


def test_queues_show_waiting_messages_in_the_order_a_real_worker_takes_them(
    stack: Stack, redis_client: redis.Redis, own_queue: str
) -> None:
    from envoi_mails import add

    first = add.apply_async((1, 2), queue=own_queue)
    late = add.apply_async((3, 4), queue=own_queue, priority=6)
    second = add.apply_async((5, 6), queue=own_queue)
    rounded = add.apply_async((7, 8), queue=own_queue, priority=1)

    (view,) = ins.queues(redis_client, [own_queue], peek=5)

    # Celery stamps priority 0 by default; kombu rounds 1 down to step 0 (the plain list)
    # and sends 6 to the \x06\x166 list, with no transport option needed.
    assert [(s.key, s.priority, s.length) for s in view.sub_queues] == [
        (own_queue, 0, 3),
        (f"{own_queue}\x06\x163", 3, 0),
        (f"{own_queue}\x06\x166", 6, 1),
        (f"{own_queue}\x06\x169", 9, 0),
    ]
    taken = view.take_order()
    expected = [first, second, rounded, late]  # BRPOP names the plain list first
    assert [m.task_id for m in taken] == [r.id for r in expected]
    assert [m.summary["args"] for m in taken] == [[1, 2], [5, 6], [7, 8], [3, 4]]
    assert [m.summary["priority"] for m in taken] == [0, 0, 1, 6]
    assert {m.summary["task"] for m in taken} == {"envoi_mails.add"}

    # The proof: one pool child, no prefetch beyond one, runs them in the order it took them.
    worker = stack.start_worker(
        f"inspect-{own_queue[-8:]}", ["-Q", own_queue, "-c", "1", "--prefetch-multiplier=1"]
    )
    try:
        assert [r.get(timeout=30) for r in expected] == [3, 11, 15, 7]
    finally:
        worker.stop()
    done = ins.results(redis_client, task_ids=[r.id for r in expected]).results
    ran = [res.task_id for res in sorted(done, key=lambda res: res.date_done or "")]
    assert ran == [r.id for r in expected]
    assert ins.queues(redis_client, [own_queue])[0].length == 0


def test_queues_report_a_pickled_message_as_undecodable_without_unpickling(
    redis_client: redis.Redis, own_queue: str
) -> None:
    pickled = {
        "body": "gASVAAAAAAAAAAA=",
        "content-type": "application/x-python-serialize",
        "headers": {},
        "properties": {"body_encoding": "base64"},
    }
    redis_client.lpush(own_queue, json.dumps(pickled))

    (view,) = ins.queues(redis_client, [own_queue])

    (message,) = view.sub_queues[0].next_messages
    assert message.summary == {} and message.task_id is None
    assert message.error is not None and "refuses to unpickle" in message.error


def test_unacked_holds_prefetched_messages_until_a_pool_child_starts_them(
    worker: Worker, redis_client: redis.Redis
) -> None:
    from envoi_mails import app, slow

    sent = [slow.apply_async((1.5,)) for _ in range(6)]  # 2 children: 4 must wait
    ids = {r.id for r in sent}

    def ours() -> list[ins.Reserved]:
        return [e for e in ins.unacked(redis_client).entries if e.message.task_id in ids]

    def ours_running() -> set[str]:
        replies = app.control.inspect([worker.nodename], timeout=5).active() or {}
        return {t["id"] for t in replies.get(worker.nodename, [])} & ids

    # Early ack: the MainProcess acks a message (removes it from unacked) in the same
    # callback that makes it active, so once a child runs one of ours it is out of unacked
    # for good, while the others still sit there, reserved by the MainProcess. (The
    # worker fetches one message at a time, so "fewer than six in unacked" alone would
    # not prove that any has started.)
    running = wait_until(ours_running, timeout=15, what="a pool child running one of our tasks")
    reserved = wait_until(ours, timeout=5, what="others of our tasks reserved in unacked")
    now = time.time()
    assert not running & {e.message.task_id for e in reserved}
    for entry in reserved:
        assert entry.message.summary["task"] == "envoi_mails.slow"
        assert entry.message.summary["args"] == [1.5]
        assert (entry.exchange, entry.routing_key) == ("", "celery")
        assert now - 30 < entry.reserved_at <= now and entry.age_s >= 0
        assert entry.visible_again_at == entry.reserved_at + ins.VISIBILITY_TIMEOUT_S
        assert not redis_client.exists(f"celery-task-meta-{entry.message.task_id}")

    assert all(r.get(timeout=30)["pid"] in worker.children() for r in sent)
    wait_until(lambda: not ours(), timeout=5, what="unacked emptied of our tasks")


def test_results_show_a_finished_task_as_success_with_a_ttl_of_about_one_day(
    worker: Worker, redis_client: redis.Redis
) -> None:
    from envoi_mails import add, app

    sent = add.delay(2, 40)
    assert sent.get(timeout=10) == 42

    (stored,) = ins.results(redis_client, task_ids=[sent.id, str(uuid.uuid4())]).results
    assert (stored.task_id, stored.status, stored.result) == (sent.id, "SUCCESS", 42)
    assert stored.ttl_s is not None and 86400 - 60 < stored.ttl_s <= 86400
    assert stored.date_done and stored.error is None
    # Without result_extended the result does not even name the worker.
    assert (stored.worker is not None) == bool(app.conf.result_extended)
    scanned = ins.results(redis_client, limit=100_000)
    assert sent.id in {res.task_id for res in scanned.results} and not scanned.truncated


def test_bindings_show_the_celery_queue_bound_and_pinned_and_deadlines_ahead(
    worker: Worker, redis_client: redis.Redis
) -> None:
    view = ins.bindings(redis_client)

    celery = ins.Binding(exchange="celery", routing_key="celery", pattern="", queue="celery")
    assert celery in view.bindings
    assert celery in view.permanent
    assert redis_client.type("_kombu.binding_permanent.celery") == "set"
    # The worker's expiring queues (events, control) get deadlines instead of a pin.
    deadlines = {d.exchange: d for d in view.deadlines}
    assert "celery.pidbox" in deadlines
    assert all(d.seconds_left > 0 and d.deadline > time.time() for d in deadlines.values())


def test_pool_children_agree_between_psutil_the_fixture_and_inspect_stats(
    stack: Stack, worker: Worker
) -> None:
    pool = ins.pool_processes(worker.pid)

    assert pool.main.pid == worker.pid and "worker" in pool.main.cmdline
    assert {child.ppid for child in pool.children} == {worker.pid}
    assert all(child.create_time >= pool.main.create_time for child in pool.children)
    stats = sorted(ins.stats_pool_pids(stack.env, worker.nodename))
    assert pool.child_pids == worker.children() == stats
    assert len(stats) == 2


def _monitored_until(monitor: Any, sentinel: str) -> list[tuple[str, str]]:
    """(client address, command line) of every command MONITOR saw, up to ECHO sentinel."""
    seen: list[tuple[str, str]] = []
    for entry in monitor.listen():
        if entry["command"] == f"ECHO {sentinel}":
            return seen
        seen.append((f"{entry['client_address']}:{entry['client_port']}", entry["command"]))
    return seen


def test_inspectors_leave_the_keyspace_as_it_was_and_send_only_read_commands(
    stack: Stack, worker: Worker, redis_client: redis.Redis
) -> None:
    wait_until(
        lambda: ins.unacked(redis_client).total == 0 and ins.queues(redis_client)[0].length == 0,
        timeout=30,
        what="a quiet celery queue",
    )
    before = (redis_client.dbsize(), sorted(redis_client.scan_iter(count=500)))
    # Pipelines take their own pooled connections: the name finds them all afterwards.
    name, sentinel = f"inspect-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    reader = redis.Redis.from_url(stack.broker_url, decode_responses=True, client_name=name)
    with redis_client.monitor() as monitor:  # type: ignore[no-untyped-call]  # redis-py
        ins.snapshot(reader, ["celery"], peek=5, limit=50, worker_pid=worker.pid)
        ins.queues(reader, ["celery", "nothing-here"], peek=0)
        ins.unacked(reader, limit=0)
        ins.bindings(reader)
        ins.results(reader, limit=5)
        ins.kit_keys(reader)
        reader.echo(sentinel)
        seen = _monitored_until(monitor, sentinel)
    ours = {c["addr"] for c in redis_client.client_list() if c["name"] == name}
    reader.close()
    commands = {line.split(" ", 1)[0].upper() for addr, line in seen if addr in ours}

    after = (redis_client.dbsize(), sorted(redis_client.scan_iter(count=500)))
    assert after == before
    assert {"SCAN", "SSCAN", "LRANGE", "ZRANGE", "HLEN", "TYPE", "TTL", "XLEN"} <= commands
    assert "KEYS" not in commands
    # Redis's own flags say which commands write: no list of ours to keep up to date.
    info = redis_client.execute_command("COMMAND", "INFO", *commands)  # type: ignore[no-untyped-call]
    writes = {cmd for cmd, spec in info.items() if "write" in spec["flags"]}
    assert not writes, f"inspectors sent write commands: {writes}"


def test_inspect_command_prints_the_snapshot_or_one_line_error(stack: Stack, tmp_path: Any) -> None:
    runner = CliRunner()
    shown = runner.invoke(inspect_command, ["--peek", "2"])
    assert shown.exit_code == 0, shown.output
    assert "Queues" in shown.stdout and "unacked:" in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 120

    env = {"CELERY_BROKER_URL": None, "XRAY_STATE_DIR": str(tmp_path)}
    failed = runner.invoke(inspect_command, [], env=env)
    assert failed.exit_code == 1
    assert failed.stderr.startswith("error: no stack is running") and failed.stderr.count("\n") == 1
