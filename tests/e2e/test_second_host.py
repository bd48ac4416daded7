"""A worker on a second host (a network namespace with its own hostname) records its own hops
and Redis commands: they reach the merged trace with that host's name and its own pids, and
the result's SETEX is credited to its pool child. No MONITOR, no psutil: only what the
processes recorded. Needs root (CI runs as root); skipped elsewhere with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo import names
from demo.stack import netns
from demo.stack.netns import SecondHost
from demo.stack.redis_server import RedisServer
from demo.stack.worker import Worker
from demo.trace import query as q
from demo.trace.timeline import Timeline

pytestmark = pytest.mark.skipif(
    netns.unavailable() is not None, reason=f"no second host: {netns.unavailable()}"
)
FAR = "xray-far"
CLIENT = "from envoi_mails import add; r = add.delay(2, 3); print(r.id, r.get(timeout=20))"


@pytest.fixture(scope="module")
def far() -> Iterator[SecondHost]:
    with SecondHost(FAR) as host:
        yield host


@pytest.fixture(scope="module")
def redis_url(far: SecondHost) -> Iterator[str]:
    server = RedisServer(bind=("127.0.0.1", far.host_ip)).start()
    yield f"redis://{far.host_ip}:{server.port}/0"
    server.stop()


@pytest.fixture(scope="module")
def worker(
    far: SecondHost, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    env = {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url}
    log = tmp_path_factory.mktemp("far") / "worker.log"
    started = Worker(env, log, name="far", extra=["-c", "1"], launcher=far.launcher, hostname=FAR)
    yield started.start()
    started.stop()


def _send_from_here(redis_url: str, folder: Path) -> tuple[str, int]:
    """add(2, 3) from a client process on the first host: (task id, the client's pid)."""
    env = {**os.environ, "CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url}
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT], env=env, cwd=folder, stdout=subprocess.PIPE, text=True
    )
    out, _ = client.communicate(timeout=60)
    task_id, value = out.split()
    assert value == "5"
    return task_id, client.pid


def test_the_second_host_records_its_own_commands_with_its_name_and_pids(
    far: SecondHost, redis_url: str, worker: Worker, tmp_path: Path
) -> None:
    with Timeline(redis_url, history=True) as timeline:  # from the worker's first BRPOP
        task_id, client_pid = _send_from_here(redis_url, tmp_path)
        (life,) = timeline.wait_lives([task_id], timeout=20, hops=[*q.LIFE])
        setex = timeline.wait_for(command="SETEX", task_id=task_id, timeout=10, what="SETEX")
        brpop = timeline.wait_for(command="BRPOP", task_id=task_id, timeout=10, what="BRPOP")
        events = timeline.events()
    far_events = q.select(events, host=FAR)
    assert far_events and {e["role"] for e in far_events} >= {names.WORKER_MAIN, names.POOL_CHILD}
    assert life.worker_pid == worker.pid and life.child_pid not in (None, worker.pid)
    # The result's SETEX: sent from the second host, by the pool child that ran the task.
    assert (setex["host"], setex["role"], setex["pid"]) == (FAR, names.POOL_CHILD, life.child_pid)
    assert setex.get("addr", "").startswith(f"{far.ip}:")
    # The message: taken off the queue by the far MainProcess, which reserves it too.
    assert (brpop["host"], brpop["pid"]) == (FAR, worker.pid)
    reserve = q.first(events, command="HSET", key=names.UNACKED, task_id=task_id)
    assert reserve is not None and (reserve["host"], reserve["pid"]) == (FAR, worker.pid)
    # And the client's LPUSH, from this host.
    push = q.first(events, command="LPUSH", task_id=task_id)
    assert push is not None and push["pid"] == client_pid and push["host"] != FAR
