"""Flower beside the worker, on 127.0.0.1: protected by a password, or open to local use.

With a password (what `demo up` does: a random one per run), Flower asks for it on every
page and API call, and refuses cross-site requests: a web page open in the user's browser
cannot drive it. Without one (a scenario's Flower: scenario 12 reads its API as a learner
would), its API is open to anything that reaches 127.0.0.1, web pages included (Flower then
allows cross-origin requests): see the README's security section.

The password travels in FLOWER_BASIC_AUTH, not on the command line: another local user can
read a process's command line (ps), not its environment.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from demo.stack.procs import Part, stop_process, wait_until

USER = "xray"
# Inherited settings that would open Flower or replace its password: never passed on.
FLOWER_AUTH_VARIABLES = ("FLOWER_UNAUTHENTICATED_API", "FLOWER_BASIC_AUTH", "FLOWER_AUTH")


def new_password() -> str:
    return secrets.token_urlsafe(18)


@dataclass
class Flower(Part):
    title: ClassVar[str] = "Flower"

    env: dict[str, str]
    port: int
    log: Path
    password: str | None = None  # None: the API is open to local use
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The Authorization header Flower expects, or None when it asks for nothing."""
        if self.password is None:
            return None
        token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def start(self, deadline_s: float = 30.0) -> Flower:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(FLOWER_AUTH_VARIABLES)}
        env.update(self.env)
        if self.password is None:
            env["FLOWER_UNAUTHENTICATED_API"] = "true"
        else:
            env["FLOWER_BASIC_AUTH"] = f"{USER}:{self.password}"
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
