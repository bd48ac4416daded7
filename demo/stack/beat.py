"""A real `celery -A envoi_mails beat` subprocess, with a schedule file of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from demo.errors import KitError
from demo.stack.procs import Part, stop_process, wait_until

STARTED = "beat: Starting..."  # celery/beat.py Service.start logs it, then sends beat_init


@dataclass
class Beat(Part):
    """`celery -A envoi_mails beat -s SCHEDULE`: the scheduler reads `beat_schedule` from the
    app and keeps when each entry last ran in its own file (PersistentScheduler's shelve)."""

    title: ClassVar[str] = "celery beat"

    env: dict[str, str]
    log: Path
    name: str = "beat"
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def schedule(self) -> Path:
        return self.log.with_name(f"{self.name}-schedule")

    @property
    def command(self) -> list[str]:
        return ["celery", "-A", "envoi_mails", "beat", "--loglevel=info", "-s", str(self.schedule)]

    def start(self, deadline_s: float = 30.0) -> Beat:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", *self.command]
        self._spawn(argv, log=self.log, env={**os.environ, **self.env})
        try:
            wait_until(self._started, deadline_s, f"celery beat {self.name}", self.proc, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def _started(self) -> bool:
        return self.log.exists() and STARTED in self.log.read_text(errors="replace")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise KitError(f"celery beat {self.name} is not started")
        return self.proc.pid

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s)
