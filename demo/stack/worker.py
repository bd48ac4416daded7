"""A real `celery -A envoi_mails worker` subprocess, ready when it answers a ping."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from demo.errors import KitError
from demo.stack.procs import Part, process_family, stop_process, tail, wait_until

PING_TIMEOUT_S = 0.2  # per readiness ping: the start deadline bounds the whole wait


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
        argv = [*self.launcher, sys.executable, "-m", *self.command]
        self._spawn(argv, log=self.log, env={**os.environ, **self.env})
        try:
            wait_until(
                self._answers_ping, deadline_s, f"worker {self.nodename}", self.proc, self.log
            )
        except BaseException:
            self.stop()  # a worker that never answered must not outlive the failed start
            raise
        return self

    def _answers_ping(self) -> bool:
        from demo.stack.control import pings  # imports celery: only when a worker starts

        return pings(self.env, self.nodename, timeout=PING_TIMEOUT_S)

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
