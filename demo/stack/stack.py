"""The whole stack, started in order and stopped in reverse, whatever happens in between."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from demo.config import KitConfig
from demo.stack.beat import Beat
from demo.stack.flower import Flower
from demo.stack.procs import free_port, port_is_free
from demo.stack.redis_server import RedisServer, check_reachable
from demo.stack.shield import deferred
from demo.stack.smtp_sink import Mail, SmtpSink
from demo.stack.worker import Worker


@dataclass
class Stack:
    """Redis (the named one, or a private one), an SMTP sink (unless SMTP_HOST is set),
    then the workers and Flower a story asks for. Use as a context manager."""

    config: KitConfig
    prefer_tutorial_ports: bool = False
    smtp_latency_s: float = 0.0  # the SMTP sink's wait before each 250 (the soak's)
    redis: RedisServer | None = field(default=None, init=False)
    smtp: SmtpSink | None = field(default=None, init=False)
    workers: list[Worker] = field(default_factory=list, init=False)
    beats: list[Beat] = field(default_factory=list, init=False)
    flower: Flower | None = field(default=None, init=False)
    broker_url: str = field(default="", init=False)
    smtp_host: str = field(default="", init=False)
    smtp_port: int = field(default=0, init=False)
    run_dir: Path = field(default=Path(), init=False)

    def start(self) -> Stack:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        # Its own folder even when another stack starts in the same second (tests do).
        prefix = time.strftime("run-%Y%m%d-%H%M%S-")
        self.run_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=self.config.state_dir))
        if self.config.broker_url:
            check_reachable(self.config.broker_url)
            self.broker_url = self.config.broker_url
        else:
            # Kept before it starts: stop() must reap a half-started one (Ctrl-C, a failure).
            self.redis = RedisServer(
                prefer_tutorial_port=self.prefer_tutorial_ports, folder=self.run_dir
            )
            self.broker_url = self.redis.start().url
        if self.config.smtp_host:
            self.smtp_host, self.smtp_port = self.config.smtp_host, self.config.smtp_port
        else:
            port = self.config.smtp_port
            if not (self.prefer_tutorial_ports and port_is_free(port)):
                port = free_port()
            self.smtp = SmtpSink(port, self.config.state_dir / "mails", self.smtp_latency_s)
            self.smtp.start()
            self.smtp_host, self.smtp_port = "127.0.0.1", port
        return self

    @property
    def env(self) -> dict[str, str]:
        """The variables every process of the app gets (workers, Flower, the client)."""
        env = {
            "CELERY_BROKER_URL": self.broker_url,
            "SMTP_HOST": self.smtp_host,
            "SMTP_PORT": str(self.smtp_port),
            "PYTHONUNBUFFERED": "1",
        }
        if self.config.result_backend:
            env["CELERY_RESULT_BACKEND"] = self.config.result_backend
        return env

    def apply_env(self) -> None:
        """Point this process (a client) at the stack; do it before importing envoi_mails."""
        os.environ.update(self.env)

    def start_worker(
        self,
        name: str = "celery",
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Worker:
        log = self.run_dir / f"worker-{name}.log"
        worker = Worker({**self.env, **(env or {})}, log, name, extra or [])
        self.workers.append(worker)  # before start: stop() must reap a half-started one
        return worker.start()

    def start_beat(self, name: str = "beat", env: dict[str, str] | None = None) -> Beat:
        beat = Beat({**self.env, **(env or {})}, self.run_dir / f"{name}.log", name)
        self.beats.append(beat)  # before start: stop() must reap a half-started one
        return beat.start()

    def start_flower(self, password: str | None = None) -> Flower:
        """Flower; with `password`, only for who knows it (see flower.py)."""
        port = self.config.flower_port if port_is_free(self.config.flower_port) else free_port()
        self.flower = Flower(self.env, port, self.run_dir / "flower.log", password)
        return self.flower.start()

    def mails(self) -> list[Mail]:
        return self.smtp.mails() if self.smtp else []

    def parts(self) -> list[Beat | Worker | Flower | SmtpSink | RedisServer]:
        """What was started (or began to start), in the order to stop it."""
        parts = [self.flower, *reversed(self.beats), *reversed(self.workers), self.smtp, self.redis]
        return [part for part in parts if part is not None]

    def stop(self) -> None:
        """Stop every part, in order. Signals meanwhile (a second Ctrl-C, a SIGTERM) are
        dropped: they ask for what is being done, and must not cut it short (shield.py)."""
        with deferred(redeliver=False):
            # A worker's warm shutdown takes about 2 s, in Celery itself: workers, beats and
            # Flower stop side by side. The SMTP sink and Redis, which they use to the end,
            # stop after them (the order of parts()).
            for part in self.parts():
                if isinstance(part, Worker | Beat | Flower):
                    part.ask_to_stop()
            for part in self.parts():
                with contextlib.suppress(Exception):  # stop the rest even if one part fails
                    part.stop()
            if self.run_dir != Path():  # a start that failed early wrote nothing there
                with contextlib.suppress(OSError):  # not empty: its logs say what happened
                    self.run_dir.rmdir()

    def left_running(self) -> list[str]:
        """The parts whose process still runs, as `title (pid N)`: [] once stopped."""
        return [
            f"{part.title} (pid {part.proc.pid})"
            for part in self.parts()
            if part.proc is not None and part.proc.poll() is None
        ]

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
