"""What every test run gets, before any test module is imported: an environment that names
no Redis of anybody's. No process starts here: tests/e2e/conftest.py starts the real parts
on first use, and tests/unit/ never does.

The user's CELERY_BROKER_URL (and result backend, SMTP server) is dropped: tests always use
a private Redis, so nothing here can touch somebody else's data. Until an e2e test asks for
the stack, the broker URL names an address where nothing listens: a test that builds the
tutorial's app without the stack fails at once instead of reaching the machine's Redis.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from demo.docsgen.headless import HIDDEN as USERS_SERVERS  # the variables naming a server

E2E = Path(__file__).parent / "e2e"
# Port 1 (tcpmux) has no listener: the app's first command is refused within a second.
NOWHERE = "redis://127.0.0.1:1/0"
# Short SMTP backoff so that retry tests take seconds, not minutes (scenarios inherit it).
FAST_RETRY = {"MAIL_RETRY_BACKOFF": "0.2", "MAIL_RETRY_BACKOFF_MAX": "1"}
STATE_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    for name in USERS_SERVERS:
        os.environ.pop(name, None)
    os.environ["CELERY_BROKER_URL"] = NOWHERE
    folder = tempfile.mkdtemp(prefix="xray-tests-")
    os.environ["XRAY_STATE_DIR"] = folder
    config.stash[STATE_DIR] = Path(folder)
    os.environ.update(FAST_RETRY)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's state folder (the kit's mails, stack lock and run folders) goes with the
    run: each `./run test` used to leave one in the system's temporary folder."""
    folder = config.stash.get(STATE_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e/ is marked e2e (`-m "not e2e"` runs the unit tests only);
    the unit tests go first: seconds, before anything starts (a stable sort)."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
