"""A real `celery -A envoi_mails worker` subprocess, ready when it answers a ping."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from demo.errors import KitError
from demo.stack.procs import Part, process_family, stop_process, tail, wait_until

# Readiness pings. A ping sent before the worker subscribed to its control channel is lost
# and costs its whole timeout, so none goes before the log's `<nodename> ready.` line (or
# PING_ANYWAY_S without it), and the first ones are short; each one that fails waits longer,
# for a worker on a loaded machine that answers slowly. The start deadline bounds it all.
PING_TIMEOUT_S = 0.2
PING_TIMEOUT_MAX_S = 1.0
PING_ANYWAY_S = 5.0


@dataclass
class Worker(Part):
    """The tutorial's worker command; `extra` adds options such as `-c 2` or `-E`."""

    title: ClassVar[str] = "worker"

    env: dict[str, str]
    log: Path
    name: str = "celery"
    extra: list[str] = field(default_factory=list)
    # Runs the command elsewhere: a second host's `ip netns exec …` (demo.stack.netns).
    launcher: list[str] = field(default_factory=list)
    hostname: str | None = None  # that host's name; None: this machine's
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def nodename(self) -> str:
        import socket

        return f"{self.name}@{self.hostname or socket.gethostname()}"

    @property
    def command(self) -> list[str]:
        return [
            "celery",
            "-A",
            "envoi_mails",
            "worker",
            "--loglevel=info",
            "-n",
            f"{self.name}@%h",
            *self.extra,
        ]

    def start(self, deadline_s: float = 30.0) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        ready = _Readiness(self)  # before the start: a restarted worker appends to its log
        argv = [*self.launcher, sys.executable, "-m", *self.command]
        self._spawn(argv, log=self.log, env={**os.environ, **self.env})
        try:
            wait_until(ready.check, deadline_s, f"worker {self.nodename}", self.proc, self.log)
        except BaseException:
            self.stop()  # a worker that never answered must not outlive the failed start
            raise
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise KitError(f"worker {self.nodename} is not started")
        return self.proc.pid

    def children(self) -> list[int]:
        """The pool's child pids, as the OS sees them ([] once the worker is gone)."""
        family = process_family(self.pid)
        return [child.pid for child in family[1]] if family is not None else []

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s)

    def log_tail(self) -> str:
        return tail(self.log)


class _Readiness:
    """One start's readiness check: the log's ready line, then pings (see PING_TIMEOUT_S)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.line = f"{worker.nodename} ready.".encode()
        self.began = time.monotonic()
        try:  # the log's bytes before this start: never searched
            self.read = worker.log.stat().st_size
        except OSError:
            self.read = 0
        self.seen = False
        self.timeout = PING_TIMEOUT_S

    def check(self) -> bool:
        if not self.seen:
            self.seen = self._logged() or time.monotonic() - self.began > PING_ANYWAY_S
            if not self.seen:
                return False
        from demo.stack.control import pings  # imports celery: only when a worker starts

        if pings(self.worker.env, self.worker.nodename, timeout=self.timeout):
            return True
        self.timeout = min(self.timeout + PING_TIMEOUT_S, PING_TIMEOUT_MAX_S)
        return False

    def _logged(self) -> bool:
        try:
            with self.worker.log.open("rb") as log:
                log.seek(self.read)
                chunk = log.read()
        except OSError:
            return False
        # Only whole lines: the ready line may be half written.
        end = chunk.rfind(b"\n") + 1
        self.read += end
        return self.line in chunk[:end]
