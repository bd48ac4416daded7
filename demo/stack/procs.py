"""Helpers shared by the stack's parts: starting one, free ports, waiting with a deadline, a
process's children, stopping."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psutil

from demo.errors import KitError
from demo.stack.shield import deferred

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Part:
    """A process of the stack (Redis, SMTP sink, worker, Flower), started by `_spawn`."""

    title: ClassVar[str]  # what the user calls it: "Redis", "SMTP sink", "worker", "Flower"
    proc: subprocess.Popen[bytes] | None

    def ended(self) -> str | None:
        """How the process ended ("was killed by signal 9 (SIGKILL)"); None while it runs."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return exit_cause(self.proc.returncode)

    def ask_to_stop(self) -> None:
        """SIGTERM, without waiting for the end: `stop()` waits (and SIGKILLs if it must).
        Parts that can stop side by side get it first (Stack.stop)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def _spawn(
        self, argv: list[str], *, log: Path | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start the part: output appended to `log` (else dropped), stdin closed.

        In a session of its own, so that a Ctrl-C reaches the kit only and the kit stops
        the parts in order. On Linux the part also gets SIGTERM if the kit dies without
        stopping it (even by SIGKILL), so that nothing outlives the kit. Signals are held
        off from fork() until `self.proc` is set (shield.py): a Ctrl-C then interrupts
        just after, with the process known to the stop.
        """
        with contextlib.ExitStack() as files, deferred(redeliver=True):
            out = files.enter_context(log.open("ab")) if log is not None else None
            self.proc = subprocess.Popen(
                argv,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out or subprocess.DEVNULL,
                stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()),  # see _die_with
            )
        return self.proc


def exit_cause(returncode: int) -> str:
    """A process's end in words: `exited with code 1`, `was killed by signal 9 (SIGKILL)`."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = f" ({signal.Signals(-returncode).name})"
    except ValueError:
        name = ""
    return f"was killed by signal {-returncode}{name}"


def _die_with(kit_pid: int) -> Callable[[], None] | None:
    """PR_SET_PDEATHSIG, in the child between fork and exec: SIGTERM when the kit dies.

    It fires when the *thread* that forked ends: every part is started from the kit's main
    thread. The libc function is looked up here, before fork(), so the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != kit_pid:  # the kit died between fork() and prctl()
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    deadline_s: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll `check` until true; raise KitError naming `what` at the deadline or if `proc` died."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise KitError(f"{what}: the process exited with code {proc.returncode}{tail(log)}")
        time.sleep(0.05)
    raise KitError(f"{what}: not ready after {deadline_s:.0f} s{tail(log)}")


def tail(log: Path | None, lines: int = 5) -> str:
    if log is None or not log.exists():
        return ""
    last = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return " (last log lines: " + " | ".join(line.strip()[:200] for line in last) + ")"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    create_time: float  # epoch s


def _process_info(proc: psutil.Process) -> ProcessInfo:
    with proc.oneshot():  # one read of /proc for all the fields
        cmdline, created = tuple(proc.cmdline()), proc.create_time()
        return ProcessInfo(proc.pid, proc.ppid(), proc.name(), cmdline, created)


def process_family(pid: int) -> tuple[ProcessInfo, tuple[ProcessInfo, ...]] | None:
    """A process and its direct children by pid, as the OS sees them (a worker's MainProcess
    and its pool); None if the process is gone. A child that exits meanwhile is left out."""
    try:
        main = psutil.Process(pid)
        head, kids = _process_info(main), main.children()
    except psutil.NoSuchProcess:
        return None
    children = []
    for kid in sorted(kids, key=lambda proc: proc.pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            children.append(_process_info(kid))
    return head, tuple(children)


def log_lines(log: Path, containing: str) -> list[str]:
    """The lines of a log file that contain `containing`, stripped.

    What a worker prints outside logging (billiard's own lines, Celery's `safe_say`) is only
    in its log file, not in the trace.
    """
    if not log.exists():
        return []
    text = log.read_text(errors="replace")
    return [line.strip() for line in text.splitlines() if containing in line]


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process and everything it forked; SIGKILL what is left after `grace_s`.

    A Ctrl-C meanwhile waits until this process is stopped (shield.py)."""
    with deferred(redeliver=True):
        _stop(proc, grace_s)


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is not None:
        return
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
