"""The kit launched as a user launches it: a foreground job in a terminal of its own.

`launch()` starts a command in its own process group (a terminal's foreground job), reads
its output on a thread so that a test never blocks on it, and keeps every process the kit
started, so that a test can check afterwards that none is left and say which one is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

from demo.errors import KitError
from demo.stack.procs import free_port
from demo.trace.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
DEMO_UP = [sys.executable, "-m", "demo", "up", "-c", "1"]
RUN_DEMO = [sys.executable, str(ROOT / "run"), "demo", "-c", "1"]
# What the test session's own stack exports: a launched kit must start its own parts.
SESSION_VARIABLES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SMTP_HOST", "SMTP_PORT")
STOP_DEADLINE_S = 60.0  # the kit's stop: worker warm shutdown, then Flower, SMTP, Redis
READ_TAIL_S = 2.0  # for the reader thread to reach the end of an exited kit's output
POLL_S = 0.02
T = TypeVar("T")


def kit_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """A new user's environment: no Redis or SMTP named, free ports, a state folder of its own."""
    env = {key: value for key, value in os.environ.items() if key not in SESSION_VARIABLES}
    env.update(XRAY_STATE_DIR=str(state_dir), FLOWER_PORT=str(free_port()))
    env.update(SMTP_PORT=str(free_port()))
    env.update(extra)
    return env


@dataclass
class Launched:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    read_all: threading.Event = field(default_factory=threading.Event)  # the output's end

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def family(self) -> list[psutil.Process]:
        """Every process the kit started so far, still running or not (kept once seen)."""
        try:
            for kid in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(kid.pid, kid)
        except psutil.NoSuchProcess:
            pass
        return list(self.seen.values())

    def wait_for(self, marker: str, deadline_s: float) -> str:
        """The output up to the first line holding `marker`; AssertionError at the deadline."""

        def printed() -> str | None:
            self.family()
            if marker in self.output:
                return self.output
            if self.proc.poll() is not None:
                self.read_all.wait(READ_TAIL_S)  # the reader thread's last lines
                if marker in self.output:
                    return self.output
                raise AssertionError(f"exited {self.proc.returncode} before {marker!r}: {self}")
            return None

        return _within(printed, deadline_s, f"{marker!r} printed", self)

    def wait_for_process(self, marker: str, deadline_s: float) -> psutil.Process:
        """The first process of the kit whose command line contains `marker`."""

        def started() -> psutil.Process | None:
            for proc in self.family():
                try:
                    if marker in " ".join(proc.cmdline()):
                        return proc
                except psutil.Error:
                    continue
            return None

        return _within(started, deadline_s, f"a process {marker!r}", self)

    def ctrl_c(self) -> None:
        """Ctrl-C in the terminal: SIGINT to the foreground process group."""
        self.family()
        os.killpg(self.proc.pid, signal.SIGINT)

    def ctrl_c_until_it_exits(self, gap_s: float, deadline_s: float = STOP_DEADLINE_S) -> int:
        """An impatient user: Ctrl-C, and again every `gap_s` until the kit has exited, so
        that some land while it is stopping what it started. Its exit code."""
        end = time.monotonic() + deadline_s
        while self.proc.poll() is None and time.monotonic() < end:
            self.ctrl_c()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=gap_s)
        return self.finish()

    def finish(self, deadline_s: float = STOP_DEADLINE_S) -> int:
        """Wait for the kit to exit; kill it (and say so) if it does not."""
        try:
            return self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"did not exit within {deadline_s} s: {self}") from None

    def left_behind(self, grace_s: float = 5.0) -> list[str]:
        """The kit's processes still running `grace_s` after it exited (then killed)."""
        _, alive = psutil.wait_procs(list(self.seen.values()), timeout=grace_s)
        described = []
        for proc in alive:
            try:
                described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
                proc.kill()
            except psutil.Error:
                continue
        return described

    def kill(self) -> None:
        """The test's own cleanup: nothing the kit started outlives the test."""
        self.family()
        if self.proc.poll() is None:
            self.proc.kill()
        for proc in self.seen.values():
            try:
                if proc.is_running():
                    proc.kill()
            except psutil.Error:
                continue
        self.proc.wait(timeout=10)

    def __str__(self) -> str:
        return f"exit {self.proc.poll()}, output: …{self.output[-1500:]}"


def launch(argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> Launched:
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    launched = Launched(proc)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            launched.lines.append(line)
        launched.read_all.set()

    threading.Thread(target=read, daemon=True).start()
    return launched


def redis_folder(proc: psutil.Process, deadline_s: float = 10.0) -> Path:
    """The folder a redis-server works in: its --dir, where it chdir()s while reading its
    options; then it rewrites its command line, so the option is no longer there to read."""
    _within(lambda: "--dir" not in proc.cmdline(), deadline_s, f"redis-server {proc.pid} started")
    return Path(proc.cwd())


def wait_for_children(proc: psutil.Process, deadline_s: float) -> list[psutil.Process]:
    """A worker's pool: its MainProcess's children, once it has forked them."""
    return _within(proc.children, deadline_s, f"a child forked by process {proc.pid}")


def _within(probe: Callable[[], T | None], deadline_s: float, what: str, kit: object = "") -> T:
    """wait_until (the kit's one poll), failing as a test assertion that shows the kit."""
    try:
        return wait_until(probe, timeout=deadline_s, what=what, poll_s=POLL_S)
    except KitError as exc:
        raise AssertionError(f"{exc}: {kit}") from None
