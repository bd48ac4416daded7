"""Run the scenarios as a learner's CI would (demo.docsgen.headless), each once per test
session, shared by the scenario tests and the docs tests.

The runs mostly wait (on workers, retries, countdowns), so they run side by side in the
background, a few at a time, while the session goes on with other tests; a test that reads a
run waits for that one. Each scenario starts its own Redis and SMTP sink: runs never share
anything with each other or with the session's stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from demo.docsgen.headless import ROOT, HeadlessRun, run_headless

SCENARIOS = sorted((ROOT / "scenarios").glob("[0-9][0-9]_*.py"))
TIMEOUT_S = 150
# Scenarios running at once: on a 2-core machine more makes them wait on the CPU instead.
AT_ONCE = 3


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


class ScenarioRuns:
    """Each scenario's one run: `start` queues runs in the background, `get` waits for one
    (queuing it first if nobody did). `workdir(number)` gives each run a fresh folder."""

    def __init__(self, workdir: Callable[[str], Path], *, at_once: int = AT_ONCE) -> None:
        self._workdir = workdir
        self._pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="scenario")
        self._runs: dict[str, Future[ScenarioRun]] = {}

    def start(self, numbers: Iterable[str]) -> None:
        for number in numbers:
            if number not in self._runs:
                path, workdir = scenario_path(number), self._workdir(number)
                self._runs[number] = self._pool.submit(run_scenario, path, workdir)

    def get(self, number: str) -> ScenarioRun:
        self.start([number])
        return self._runs[number].result()

    def close(self) -> None:
        """Drop the runs nobody started; wait for those running (each has its timeout)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
