"""Helpers shared by the stack's parts: free ports, waiting with a deadline, a process's
children, stopping."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from demo.errors import KitError


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


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process of the stack: its output appended to `log`, stdin closed, in a session
    of its own (Ctrl-C reaches the kit only, which stops them in order)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


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
    """SIGTERM the process and everything it forked; SIGKILL what is left after `grace_s`."""
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
