"""Run a scenario as a learner's CI would: a subprocess, `--no-pause`, stdin closed.

One run per scenario per test session, shared by the scenario tests and the docs tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("[0-9][0-9]_*.py"))


@dataclass(frozen=True)
class ScenarioRun:
    path: Path
    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]

    @property
    def expectations(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "scenario.expectation"]

    def failure_report(self) -> str:
        tail = f"{self.stdout[-3000:]}\n{self.stderr[-2000:]}"
        return f"{self.path.name} exited {self.returncode}\n{tail}"


def scenario_path(number: str) -> Path:
    matches = [p for p in SCENARIOS if p.name.startswith(f"{number}_")]
    if not matches:
        raise LookupError(f"no scenario {number} in {ROOT / 'scenarios'}")
    return matches[0]


def run_scenario(path: Path, workdir: Path) -> ScenarioRun:
    # Without CELERY_BROKER_URL/SMTP_HOST the scenario starts its own Redis and SMTP sink,
    # as on a learner's machine: the test session's worker cannot steal its tasks.
    hidden = {"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SMTP_HOST", "SMTP_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env["XRAY_STATE_DIR"] = str(workdir / "state")
    trace = workdir / "trace.jsonl"
    done = subprocess.run(
        [sys.executable, str(path), "--no-pause", "--json-trace", str(trace)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
        cwd=ROOT,
    )
    events = []
    if trace.exists():
        events = [json.loads(line) for line in trace.read_text().splitlines()]
    return ScenarioRun(path, done.returncode, done.stdout, done.stderr, events)
