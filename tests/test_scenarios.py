"""Every scenario, run as a learner's terminal would not: `--no-pause`, stdin closed.

Each must exit 0 (all its expectations held) and write a trace that honours the contract of
shared/DESIGN.md. Scenario 02's trace must also prove the attribution the kit exists for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("[0-9][0-9]_*.py"))
REQUIRED = {"ts", "event", "role", "pid", "ppid", "host"}


def run_scenario(path: Path, trace: Path) -> subprocess.CompletedProcess[str]:
    # Without CELERY_BROKER_URL/SMTP_HOST the scenario starts its own Redis and SMTP sink,
    # as it would on a learner's machine; the test session's worker cannot steal its tasks.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SMTP_HOST", "SMTP_PORT"}
    }
    env["XRAY_STATE_DIR"] = str(trace.parent / "state")
    return subprocess.run(
        [sys.executable, str(path), "--no-pause", "--json-trace", str(trace)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=110,
        cwd=ROOT,
    )


def read_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_runs_green_and_writes_a_contract_trace(path: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    done = run_scenario(path, trace)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "did NOT hold" not in done.stdout
    events = read_trace(trace)
    assert events, "the trace is empty"
    for event in events:
        missing = REQUIRED - event.keys()
        assert not missing, f"{event.get('event')} lacks {missing}"
    stamps = [event["ts"] for event in events]
    assert stamps == sorted(stamps), "the trace must be ordered by time"
    assert {"redis.command", "task.received"} <= {event["event"] for event in events}


def test_scenario_02_trace_shows_who_sent_each_command(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    done = run_scenario(ROOT / "scenarios" / "02_send_one_mail.py", trace)
    assert done.returncode == 0, done.stdout[-3000:]
    events = read_trace(trace)
    mail_task = next(
        e["task_id"]
        for e in events
        if e["event"] == "task.publishing" and e.get("task") == "envoi_mails.envoi_mail"
    )

    def command(name: str, key: str) -> dict[str, Any]:
        found = [
            e
            for e in events
            if e["event"] == "redis.command"
            and e.get("task_id") == mail_task
            and e["command"][0] == name
            and e["command"][1].startswith(key)
        ]
        assert found, f"no {name} {key}… for the mail task in the trace"
        return found[0]

    main_pid = next(
        e["pid"] for e in events if e["event"] == "task.received" and e["task_id"] == mail_task
    )
    lpush, setex = command("LPUSH", "celery"), command("SETEX", "celery-task-meta-")
    zrem, hdel = command("ZREM", "unacked_index"), command("HDEL", "unacked")
    assert lpush["role"] == "client"
    assert setex["role"] == "pool-child" and setex["ppid"] == main_pid
    assert setex["pid"] != main_pid
    for ack in (zrem, hdel):
        assert ack["role"] == "worker-main" and ack["pid"] == main_pid
        assert ack["ts"] < setex["ts"], "early ack: the MainProcess acks before the child's SETEX"
    assert setex["command"][2] == "86400"
