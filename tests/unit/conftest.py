"""Unit tests run in seconds on pure functions, parsers, renderers and recorded fixtures
(tests/fixtures/): they start no process and reach no server. Each test is held to it."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import NoReturn

import pytest

SPAWNERS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system")


def _refused(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError(
        "a unit test started a process or opened a connection: it belongs in tests/e2e/"
    )


@pytest.fixture(autouse=True)
def no_process_and_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refused)
    for name in SPAWNERS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refused)
    monkeypatch.setattr(socket.socket, "connect", _refused)
    monkeypatch.setattr(socket.socket, "connect_ex", _refused)
