"""Issue 15, cases 4 to 6: one stack per state folder, the Redis the user names wins and every
command says which Redis it talks to, and a failed start leaves no empty run folder.

One `demo up` runs for the module, in a state folder of its own; the test session's stack
(conftest) plays "another Redis", with its worker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit_launch import DEMO_UP, ROOT, Launched, kit_env, launch

from demo.stack.procs import free_port
from demo.stack.stack import Stack
from demo.stack.worker import Worker

pytestmark = pytest.mark.e2e

START_DEADLINE_S = 90.0
COMMAND_DEADLINE_S = 30.0


@dataclass
class Running:
    kit: Launched
    env: dict[str, str]
    state: dict[str, object]

    @property
    def broker_url(self) -> str:
        return str(self.state["env"]["CELERY_BROKER_URL"])  # type: ignore[index]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state_dir = tmp_path_factory.mktemp("state")
    env = kit_env(state_dir)
    kit = launch([*DEMO_UP, "--no-flower"], env)
    try:
        kit.wait_for("demo send", START_DEADLINE_S)
        yield Running(kit, env, json.loads((state_dir / "stack.json").read_text()))
        kit.ctrl_c()
        assert kit.finish() == 0, str(kit)
        assert kit.left_behind() == [], str(kit)
    finally:
        kit.kill()


def demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_DEADLINE_S,
    )


def test_a_second_demo_up_in_the_same_folder_refuses_and_the_first_keeps_working(
    running: Running,
) -> None:
    second = launch([*DEMO_UP, "--no-flower"], running.env)
    try:
        code = second.finish(deadline_s=COMMAND_DEADLINE_S)
    finally:
        second.kill()
    assert code == 1, str(second)
    pid = running.kit.proc.pid
    assert f"error: a stack is already running from {running.env['XRAY_STATE_DIR']}" in (
        second.output
    )
    assert f"`demo up` pid {pid}" in second.output and "XRAY_STATE_DIR=" in second.output
    sent = demo("send", "destinataire@example.com", env=running.env)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["state"] == "SUCCESS"
    assert f"using Redis {running.broker_url} (the stack `demo up` pid {pid}" in sent.stderr


def test_the_redis_the_user_names_wins_over_the_running_stack(
    running: Running, stack: Stack, worker: Worker
) -> None:
    from envoi_mails import add

    task_id = add.delay(2, 3).id  # on the test session's Redis, not the running stack's
    theirs = {**running.env, "CELERY_BROKER_URL": stack.broker_url}
    fetched = demo("result", task_id, env=theirs)
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["result"] == 5
    named = f"Redis {stack.broker_url} (CELERY_BROKER_URL; the stack `demo up` started uses "
    assert named + f"{running.broker_url})" in fetched.stderr
    inspected = demo("inspect", env=theirs)
    assert inspected.returncode == 0, inspected.stderr
    assert inspected.stdout.startswith(named), inspected.stdout[:300]


def test_every_command_names_the_redis_it_talks_to(running: Running) -> None:
    named = f"Redis {running.broker_url} (the stack `demo up` pid {running.kit.proc.pid}"
    sent = demo("send", "destinataire@example.com", env=running.env)
    task_id = json.loads(sent.stdout)["task_id"]
    for args in (["result", task_id], ["trace", task_id], ["inspect"], ["spy", "--seconds", "1"]):
        out = demo(*args, env=running.env)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        assert named in out.stdout + out.stderr, f"{args}: {out.stdout[:300]} {out.stderr}"


def test_a_failed_start_leaves_no_empty_run_folder(tmp_path: Path) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    failed = demo("up", "--no-flower", env=kit_env(tmp_path, CELERY_BROKER_URL=nobody))
    assert failed.returncode == 1 and f"Redis at {nobody} is unreachable" in failed.stderr
    assert list(tmp_path.glob("run-*")) == []
