"""The whole stack, started in order and stopped in reverse, whatever happens in between."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from demo.config import KitConfig
from demo.stack.beat import Beat
from demo.stack.flower import Flower
from demo.stack.procs import free_port, port_is_free
from demo.stack.redis_server import RedisServer, check_reachable
from demo.stack.smtp_sink import Mail, SmtpSink
from demo.stack.worker import Worker


@dataclass
class Stack:
    """Redis (the named one, or a private one), an SMTP sink (unless SMTP_HOST is set),
    then the workers and Flower a story asks for. Use as a context manager."""

    config: KitConfig
    prefer_tutorial_ports: bool = False
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
        self.run_dir = self.config.state_dir / time.strftime("run-%Y%m%d-%H%M%S")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.config.broker_url:
            check_reachable(self.config.broker_url)
            self.broker_url = self.config.broker_url
        else:
            self.redis = RedisServer(prefer_tutorial_port=self.prefer_tutorial_ports).start()
            self.broker_url = self.redis.url
        if self.config.smtp_host:
            self.smtp_host, self.smtp_port = self.config.smtp_host, self.config.smtp_port
        else:
            port = self.config.smtp_port
            if not (self.prefer_tutorial_ports and port_is_free(port)):
                port = free_port()
            self.smtp = SmtpSink(port, self.config.state_dir / "mails").start()
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

    def start_flower(self) -> Flower:
        port = self.config.flower_port if port_is_free(self.config.flower_port) else free_port()
        self.flower = Flower(self.env, port, self.run_dir / "flower.log")
        return self.flower.start()

    def mails(self) -> list[Mail]:
        return self.smtp.mails() if self.smtp else []

    def stop(self) -> None:
        parts: list[Beat | Worker | Flower | SmtpSink | RedisServer | None] = [
            self.flower,
            *reversed(self.beats),
            *reversed(self.workers),
            self.smtp,
            self.redis,
        ]
        for part in parts:
            if part is not None:
                with contextlib.suppress(Exception):  # stop the rest even if one part fails
                    part.stop()

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
