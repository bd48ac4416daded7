"""Every scenario exits 0 (all its expectations held) and writes a trace that honours the
`--json-trace` contract (ts, event, role, pid, ppid, host on every event, in time order);
scenario 02's trace also proves the kit's attribution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scenario_runner import SCENARIOS, ScenarioRun

REQUIRED = {"ts", "event", "role", "pid", "ppid", "host"}
NUMBERS = [
    pytest.param(p.name[:2], id=p.stem, marks=pytest.mark.scenario(p.name[:2])) for p in SCENARIOS
]


@pytest.mark.parametrize("number", NUMBERS)
def test_scenario_runs_green_and_writes_a_contract_trace(
    number: str, scenario_run: Callable[[str], ScenarioRun]
) -> None:
    run = scenario_run(number)
    assert run.returncode == 0, run.failure_report()
    assert "did NOT hold" not in run.stdout
    assert run.expectations and all(e["held"] for e in run.expectations)
    for event in run.events:
        missing = REQUIRED - event.keys()
        assert not missing, f"{event.get('event')} lacks {missing}"
    stamps = [event["ts"] for event in run.events]
    assert stamps == sorted(stamps), "the trace must be ordered by time"
    kinds = {event["event"] for event in run.events}
    assert {"redis.command", "worker.init"} <= kinds, "the spy and the worker's hops are merged"


@pytest.mark.scenario("02")
def test_scenario_02_trace_shows_who_sent_each_command(
    scenario_run: Callable[[str], ScenarioRun],
) -> None:
    run = scenario_run("02")
    assert run.returncode == 0, run.failure_report()
    events = run.events
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

    def hop(name: str) -> dict[str, Any]:
        found = [e for e in events if e["event"] == name and e.get("task_id") == mail_task]
        assert found, f"no {name} hop for the mail task in the trace"
        return found[0]

    main_pid = next(
        e["pid"] for e in events if e["event"] == "task.received" and e["task_id"] == mail_task
    )
    lpush, setex = command("LPUSH", "celery"), command("SETEX", "celery-task-meta-")
    zrem, hdel = command("ZREM", "unacked_index"), command("HDEL", "unacked")
    assert lpush["role"] == "client"
    assert setex["role"] == "pool-child" and setex["ppid"] == main_pid
    assert setex["pid"] != main_pid
    accepted, acked = hop("task.accepted"), hop("task.acked")
    assert accepted["pid"] == acked["pid"] == main_pid
    assert accepted["child_pid"] == setex["pid"], "the child that ACKed is the one that stored"
    assert acked["late"] is False
    for ack in (zrem, hdel):
        assert ack["role"] == "worker-main" and ack["pid"] == main_pid
        # Early ack: once the child said it started (its ACK on the pipe), whether or not it
        # has stored the result yet; the child's SETEX may come first (a race, see 04).
        assert accepted["ts"] <= ack["ts"], "the ack follows the child's ACK"
    assert accepted["ts"] <= acked["ts"]
    assert setex["command"][2] == "86400"
