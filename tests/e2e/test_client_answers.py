"""Issue 15, case 7: `demo result`, `demo send` and `demo bench` say what really happened, in
one line, on real processes: the test session's stack and worker, or a stack of the test's
own where the story needs one (no worker at all, an SMTP server that is down)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit_launch import ROOT, kit_env, launch

from demo.config import KitConfig
from demo.stack import state
from demo.stack.procs import free_port
from demo.stack.stack import Stack
from demo.stack.worker import Worker

pytestmark = pytest.mark.e2e

AT_ONCE_S = 5.0  # a process start, an import of Celery and one Redis round trip
SLOW_RETRY = {"MAIL_RETRY_BACKOFF": "20", "MAIL_RETRY_BACKOFF_MAX": "60", "MAIL_MAX_RETRIES": "3"}


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", *args],
        env=env if env is not None else dict(os.environ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def error_of(run: subprocess.CompletedProcess[str]) -> str:
    """The one `error: …` line a failing command ends with (no traceback before it)."""
    assert run.returncode == 1, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if not line.startswith("using Redis ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A private Redis, no SMTP server at all (SMTP_HOST names a closed port), no worker
    yet; and the environment of a user who points the kit at it."""
    closed = str(free_port())
    env = kit_env(tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=closed)
    with Stack(KitConfig.from_env(env)) as started:
        yield started, {**env, **SLOW_RETRY, "CELERY_BROKER_URL": started.broker_url}


def test_result_of_an_id_that_is_no_task_id_answers_at_once(worker: Worker) -> None:
    began = time.monotonic()
    line = error_of(demo("result", "not-a-task-id"))
    assert time.monotonic() - began < AT_ONCE_S
    assert "'not-a-task-id' is not a task id: Celery's are UUIDs" in line
    assert "worker" not in line


def test_result_of_an_unknown_uuid_says_redis_has_nothing_for_it(worker: Worker) -> None:
    line = error_of(demo("result", str(uuid.uuid4()), "--timeout", "1"))
    assert "has no result for it, and no queued or reserved message" in line
    assert "is a worker running" not in line


def test_a_task_nobody_takes_is_said_to_wait_in_the_queue(
    own_stack: tuple[Stack, dict[str, str]],
) -> None:
    _, env = own_stack
    line = error_of(demo("send", "destinataire@example.com", "--timeout", "1", env=env))
    assert "(state PENDING): it waits in the queue 'celery': no worker has taken it" in line


def test_a_revoked_task_is_one_line_not_a_traceback(worker: Worker) -> None:
    from envoi_mails import add, app

    task = add.apply_async((1, 2), countdown=1)
    app.control.revoke(task.id)
    assert task.get(timeout=15, propagate=False) is not None  # REVOKED, stored by the worker
    line = error_of(demo("result", task.id))
    assert line.startswith(f"error: task {task.id} was revoked: TaskRevokedError")


def test_a_mail_still_retrying_is_said_to_be_retrying(
    own_stack: tuple[Stack, dict[str, str]],
) -> None:
    stack, env = own_stack
    stack.start_worker("retrying", env=SLOW_RETRY)
    line = error_of(demo("send", "destinataire@example.com", "--timeout", "3", env=env))
    assert "(state RETRY): it is retrying after SmtpUnavailable: SMTP server" in line
    assert "retry schedule runs up to 140 s" in line  # 20 + 40 + 60, and 4 tries × 5 s
    assert "is a worker running" not in line


def test_an_unreachable_redis_of_the_running_stack_is_not_the_users_variable(
    tmp_path: Path,
) -> None:
    gone = f"redis://127.0.0.1:{free_port()}/0"
    state.save(tmp_path, {"pid": os.getpid(), "env": {"CELERY_BROKER_URL": gone}})
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    line = error_of(
        demo("send", "destinataire@example.com", env={**env, "XRAY_STATE_DIR": str(tmp_path)})
    )
    assert f"Redis at {gone} is unreachable" in line
    assert "the stack `python -m demo up` started is in trouble" in line
    assert "unset" not in line


def test_bench_says_it_does_not_use_the_users_redis(tmp_path: Path) -> None:
    mine = "redis://127.0.0.1:1/0"
    kit = launch(
        [sys.executable, "-m", "demo", "bench", "--tasks", "1", "--rounds", "1"],
        kit_env(tmp_path, CELERY_BROKER_URL=mine),
    )
    try:
        kit.wait_for(f"bench: CELERY_BROKER_URL={mine} is not used", AT_ONCE_S * 2)
        kit.ctrl_c()
        kit.finish()
    finally:
        kit.kill()
