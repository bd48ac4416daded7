"""Real parts for the tests: a private redis-server and SMTP sink, real worker processes.

The stack starts in pytest_configure, before test modules are imported, and the process
environment points at it: `envoi_mails` builds its app from the environment on first use,
so it can never talk to another Redis. Tests always use a private Redis (never the one the
environment names), so nothing here can touch somebody else's data.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from demo.config import KitConfig
from demo.stack.stack import Stack
from demo.stack.worker import Worker
from scenario_runner import ScenarioRun, run_scenario, scenario_path

# Short SMTP backoff so that retry tests take seconds, not minutes.
FAST_RETRY = {"MAIL_RETRY_BACKOFF": "0.2", "MAIL_RETRY_BACKOFF_MAX": "1"}

_stack: Stack | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _stack
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SMTP_HOST", "SMTP_PORT"):
        os.environ.pop(name, None)
    state_dir = Path(tempfile.mkdtemp(prefix="xray-tests-"))
    os.environ["XRAY_STATE_DIR"] = str(state_dir)
    _stack = Stack(KitConfig.from_env()).start()
    _stack.apply_env()
    os.environ.update(FAST_RETRY)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _stack is not None:
        _stack.stop()


@pytest.fixture(scope="session")
def stack() -> Stack:
    assert _stack is not None
    return _stack


@pytest.fixture(scope="session")
def worker(stack: Stack) -> Iterator[Worker]:
    """The tutorial's worker, two pool children, task events on."""
    started = stack.start_worker("tests", extra=["-c", "2", "-E"], env=FAST_RETRY)
    yield started
    started.stop()


@pytest.fixture
def redis_client(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.broker_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def scenario_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ScenarioRun]:
    """`scenario_run("02")`: that scenario's run, done once per session and shared."""
    runs: dict[str, ScenarioRun] = {}

    def get(number: str) -> ScenarioRun:
        if number not in runs:
            runs[number] = run_scenario(scenario_path(number), tmp_path_factory.mktemp(number))
        return runs[number]

    return get
