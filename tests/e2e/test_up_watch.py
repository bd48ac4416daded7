"""Issue 15, cases 2 and 3: `demo up` notices, within seconds and in its own terminal, that
its Redis or its worker is gone, says how, what the worker does meanwhile, and exits
non-zero when the stack failed. Real processes: the parts are killed as a user would."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
from kit_launch import DEMO_UP, Launched, kit_env, launch

from demo.stack.procs import free_port
from demo.stack.redis_server import RedisServer

pytestmark = pytest.mark.e2e

START_DEADLINE_S = 90.0
NOTICE_S = 5.0  # "within a few seconds": a poll, a PING timeout, the worker's own words
RECONNECT_S = 15.0  # the worker retries after 2 s, then 4, 6 …
UP = [*DEMO_UP, "--no-flower"]


def _started(kit: Launched) -> None:
    kit.wait_for("demo send", START_DEADLINE_S)


def _kill(kit: Launched, marker: str) -> psutil.Process:
    process = kit.wait_for_process(marker, deadline_s=5)
    process.send_signal(signal.SIGKILL)
    return process


def _stopped(kit: Launched) -> tuple[int, list[str]]:
    try:
        code = kit.finish()
        return code, kit.left_behind()
    finally:
        kit.kill()


def test_a_killed_redis_is_reported_at_once_and_the_stack_stops_with_exit_1(
    tmp_path: Path,
) -> None:
    kit = launch(UP, kit_env(tmp_path))
    try:
        _started(kit)
        redis_pid = _kill(kit, "redis-server").pid
        killed = time.monotonic()
        kit.wait_for("Redis is gone", NOTICE_S)
        noticed = time.monotonic() - killed
        kit.wait_for("the worker:", NOTICE_S)
    finally:
        code, left = _stopped(kit)
    assert noticed < NOTICE_S
    assert f"redis-server (pid {redis_pid}) was killed by signal 9 (SIGKILL)" in kit.output
    worker_says = next(line for line in kit.lines if "the worker:" in line)
    assert "connect" in worker_says.lower(), worker_says  # the worker's own retry line
    assert "error: the stack's Redis was killed by signal 9 (SIGKILL)" in kit.output, str(kit)
    assert code == 1 and left == [], str(kit)


def test_a_redis_the_kit_did_not_start_is_waited_for_and_its_return_reported(
    tmp_path: Path,
) -> None:
    port = free_port()
    theirs = RedisServer(port=port).start()
    kit = launch(UP, kit_env(tmp_path, CELERY_BROKER_URL=theirs.url))
    back: RedisServer | None = None
    try:
        _started(kit)
        theirs.stop()
        kit.wait_for(f"Redis at {theirs.url} does not answer PING", NOTICE_S)
        kit.wait_for("Waiting up to", NOTICE_S)
        back = RedisServer(port=port).start()
        kit.wait_for("answers again", NOTICE_S)
        kit.wait_for("the worker: Connected to", RECONNECT_S)  # its next retry
        kit.ctrl_c()
    finally:
        code, left = _stopped(kit)
        theirs.stop()
        if back is not None:
            back.stop()
    assert code == 0 and left == [], str(kit)


def test_a_killed_worker_is_named_with_its_signal_in_one_line(tmp_path: Path) -> None:
    kit = launch(UP, kit_env(tmp_path))
    try:
        _started(kit)
        worker_pid = _kill(kit, "envoi_mails worker").pid
        kit.wait_for("error:", NOTICE_S + 15)  # the rest of the stack stops first
    finally:
        code, left = _stopped(kit)
    errors = [line for line in kit.lines if line.startswith("error:")]
    assert errors == [
        f"error: the worker (MainProcess pid {worker_pid}) was killed by signal 9 (SIGKILL): "
        f"its log is {next(tmp_path.glob('run-*'))}/worker-celery.log\n"
    ], str(kit)
    assert code == 1 and left == [], str(kit)
