"""Run a scenario as a learner's CI would (demo.docsgen.headless), once per test session,
shared by the scenario tests and the docs tests."""

from __future__ import annotations

from pathlib import Path

from demo.docsgen.headless import ROOT, HeadlessRun, run_headless

SCENARIOS = sorted((ROOT / "scenarios").glob("[0-9][0-9]_*.py"))
TIMEOUT_S = 150


ScenarioRun = HeadlessRun


def scenario_path(number: str) -> Path:
    matches = [p for p in SCENARIOS if p.name.startswith(f"{number}_")]
    if not matches:
        raise LookupError(f"no scenario {number} in {ROOT / 'scenarios'}")
    return matches[0]


def run_scenario(path: Path, workdir: Path) -> ScenarioRun:
    # Without CELERY_BROKER_URL/SMTP_HOST the scenario starts its own Redis and SMTP sink,
    # as on a learner's machine: the test session's worker cannot steal its tasks.
    return run_headless(path, workdir, TIMEOUT_S)
