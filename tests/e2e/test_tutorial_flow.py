"""The tutorial's flow on real processes: a worker, a Redis, an SMTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from demo.stack.procs import wait_until
from demo.stack.stack import Stack
from demo.stack.worker import Worker


def test_envoi_mail_delivers_one_mail_to_the_recipient(stack: Stack, worker: Worker) -> None:
    from envoi_mails import envoi_mail

    result = envoi_mail.apply_async(args=["destinataire@example.com"])
    value = result.get(timeout=30)

    assert value["destinataire"] == "destinataire@example.com"
    assert value["pid"] in worker.children(), "a pool child, not the MainProcess, sends the mail"
    delivered = [m for m in stack.mails() if result.id in m.message_id]
    assert len(delivered) == 1
    assert delivered[0].recipients == "destinataire@example.com"


def test_add_returns_the_sum(worker: Worker) -> None:
    from envoi_mails import add

    assert add.delay(2, 3).get(timeout=10) == 5


def test_worker_logs_received_in_main_and_succeeded_in_a_child(worker: Worker) -> None:
    from envoi_mails import add

    result = add.delay(20, 22)
    assert result.get(timeout=10) == 42

    def task_lines() -> list[dict[str, Any]]:
        lines = worker.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{") and result.id in line]

    # The child logs "succeeded" after it has stored the result: get() may return first.
    wait_until(lambda: len(task_lines()) >= 2, 10, "the task's two log lines")
    lines = task_lines()
    received = [line for line in lines if line["event"].endswith("received")]
    succeeded = [line for line in lines if " succeeded in " in line["event"]]
    assert [line["pid"] for line in received] == [worker.pid]
    assert len(succeeded) == 1 and succeeded[0]["pid"] in worker.children()
    assert succeeded[0]["role"] == "pool-child" and received[0]["role"] == "worker-main"


def test_result_is_fetched_later_by_task_id_from_another_process(worker: Worker) -> None:
    from envoi_mails import add

    task_id = add.delay(2, 3).id
    out = subprocess.run(
        [sys.executable, "-m", "demo", "result", task_id],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    fetched = json.loads(out.stdout)
    assert fetched == {"task_id": task_id, "state": "SUCCESS", "result": 5}


def test_invalid_address_fails_at_once_with_no_mail(stack: Stack, worker: Worker) -> None:
    from envoi_mails import envoi_mail

    before = len(stack.mails())
    result = envoi_mail.apply_async(args=["pas-une-adresse"])
    error = result.get(timeout=10, propagate=False)

    assert result.state == "FAILURE"
    assert type(error).__name__ == "InvalidAddress"
    assert "'pas-une-adresse' is not a valid e-mail address" in str(error)
    assert len(stack.mails()) == before


def test_send_command_reports_a_failed_task_in_one_line(worker: Worker) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "demo", "send", "pas une adresse"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "InvalidAddress" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("command", [["send", "destinataire@example.com"], ["up", "--no-flower"]])
def test_unreachable_redis_gives_one_line_error_within_seconds(command: list[str]) -> None:
    from demo.stack.procs import free_port

    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    run = subprocess.run(
        [sys.executable, "-m", "demo", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: Redis at redis://127.0.0.1:")
    assert "unreachable" in run.stderr and run.stderr.count("\n") == 1


def test_trace_command_draws_a_finished_task_from_the_stream(worker: Worker) -> None:
    from envoi_mails import add

    result = add.delay(1, 1)
    assert result.get(timeout=10) == 2
    # The child's hops reach the stream within the emitter's flush interval: poll for them.
    runs: list[subprocess.CompletedProcess[str]] = []

    def drawn() -> bool:
        runs.append(
            subprocess.run(
                [sys.executable, "-m", "demo", "trace", result.id, "--mermaid"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        )
        return "Pool child" in runs[-1].stdout

    wait_until(drawn, 10, "the pool child's lane in the diagram")
    run = runs[-1]
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("sequenceDiagram")
    assert f"Worker MainProcess pid {worker.pid}" in run.stdout
    assert "Pool child pid" in run.stdout


def test_trace_command_says_so_when_a_task_id_is_unknown(worker: Worker) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "demo", "trace", "no-such-task"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: no trace event for task no-such-task")


def test_result_of_an_unknown_task_id_is_one_line_after_the_timeout(worker: Worker) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo",
            "result",
            "00000000-0000-0000-0000-000000000000",
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: task 00000000-0000-0000-0000-000000000000 not finished")
    assert "(state PENDING)" in run.stderr and run.stderr.count("\n") == 1
