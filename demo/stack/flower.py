"""Flower beside the worker, on 127.0.0.1, with its HTTP API usable locally."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from demo.stack.procs import Part, stop_process, wait_until


@dataclass
class Flower(Part):
    title: ClassVar[str] = "Flower"

    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline_s: float = 30.0) -> Flower:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "FLOWER_UNAUTHENTICATED_API": "true"}
        argv = [sys.executable, "-m", "celery", "-A", "envoi_mails", "flower"]
        self._spawn([*argv, "--address=127.0.0.1", f"--port={self.port}"], log=self.log, env=env)
        wait_until(self._healthy, deadline_s, f"Flower on {self.url}", self.proc, self.log)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthcheck", timeout=0.5) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=5)
