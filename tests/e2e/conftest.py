"""Real parts for the e2e tests: a private redis-server and SMTP sink, real worker processes,
real scenario runs. Each starts on first use and stops at the end of the session: a run that
selects no test needing one never starts it.

`envoi_mails` builds its app from the environment on first use, so the stack points the
environment at itself before it hands itself to a test, and refuses to start once the app
exists (the app would keep the address it was built with).

A test that reads a scenario's run is marked `@pytest.mark.scenario("NN")`. The runs that the
selected tests read start together, in the background, with the session's first e2e test, and
those tests go last: meanwhile the session runs everything else.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator

import pytest
import redis

from demo.config import KitConfig
from demo.stack.stack import Stack
from demo.stack.worker import Worker
from scenario_runner import ScenarioRun, ScenarioRuns

SCENARIO = "scenario"  # the marker: @pytest.mark.scenario("02")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Readers of a scenario's run go last (a stable sort: the order is kept otherwise)."""
    items.sort(key=lambda item: item.get_closest_marker(SCENARIO) is not None)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """A private Redis and SMTP sink, whatever the environment names; this process (the
    client) points at them from now on."""
    if "envoi_mails.instance" in sys.modules:
        pytest.fail("the tutorial's app was built before the test stack: it keeps another Redis")
    private = dataclasses.replace(
        KitConfig.from_env(), broker_url=None, result_backend=None, smtp_host=None
    )
    with Stack(private) as started:
        started.apply_env()
        yield started


@pytest.fixture(scope="session")
def worker(stack: Stack) -> Iterator[Worker]:
    """The tutorial's worker, two pool children, task events on; it inherits the session's
    short SMTP backoff (tests/conftest.py)."""
    started = stack.start_worker("tests", extra=["-c", "2", "-E"])
    yield started
    started.stop()


@pytest.fixture
def redis_client(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.broker_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def scenario_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScenarioRuns]:
    """Starts, in the background, the run of every scenario that a selected test reads."""
    runs = ScenarioRuns(tmp_path_factory.mktemp)
    marks = (mark for item in request.session.items for mark in item.iter_markers(SCENARIO))
    runs.start(dict.fromkeys(str(mark.args[0]) for mark in marks))
    yield runs
    runs.close()


@pytest.fixture(scope="session")
def scenario_run(scenario_runs: ScenarioRuns) -> Callable[[str], ScenarioRun]:
    """`scenario_run("02")`: that scenario's run, done once per session and shared."""
    return scenario_runs.get
