"""Unit tests run in seconds on pure functions, parsers, renderers and recorded fixtures
(tests/fixtures/): they start no process and reach no server. Each test is held to it.

Only the test's own thread is held: in a whole-suite session, scenario runs go on in
background threads (tests/e2e/conftest.py) and may start their processes meanwhile.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest

SPAWNERS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system")
REFUSED = "a unit test started a process or opened a connection: it belongs in tests/e2e/"


@pytest.fixture(autouse=True)
def no_process_and_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    test_thread = threading.get_ident()

    def refused_in_the_test(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == test_thread:
                raise AssertionError(REFUSED)
            return original(*args, **kwargs)

        return guarded

    monkeypatch.setattr(
        subprocess.Popen, "__init__", refused_in_the_test(subprocess.Popen.__init__)
    )
    for name in SPAWNERS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refused_in_the_test(getattr(os, name)))
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refused_in_the_test(getattr(socket.socket, name)))
