"""The worker's processes: as the OS sees them (psutil), and as the worker reports them
(`inspect stats`, a control command). No Redis key is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from demo.errors import KitError


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    create_time: float  # epoch s


@dataclass(frozen=True)
class PoolView:
    main: ProcessInfo  # the worker's MainProcess
    children: tuple[ProcessInfo, ...]  # its direct children, the pool, by pid

    @property
    def child_pids(self) -> list[int]:
        return [child.pid for child in self.children]


def _process_info(proc: psutil.Process) -> ProcessInfo:
    with proc.oneshot():  # one read of /proc for all the fields
        cmdline, created = tuple(proc.cmdline()), proc.create_time()
        return ProcessInfo(proc.pid, proc.ppid(), proc.name(), cmdline, created)


def pool_processes(worker_pid: int) -> PoolView:
    """The MainProcess and its direct children as the OS sees them (psutil, no Redis)."""
    try:
        main = psutil.Process(worker_pid)
        children = sorted(main.children(), key=lambda proc: proc.pid)
        return PoolView(_process_info(main), tuple(_process_info(c) for c in children))
    except psutil.NoSuchProcess:
        raise KitError(f"no process with pid {worker_pid}: is the worker running?") from None


def stats_pool_pids(env: Mapping[str, str], nodename: str, timeout: float = 2.0) -> list[int]:
    """The pool pids the worker itself reports (`inspect stats`), in its order.

    Not a Redis read: the command is PUBLISHed and the reply comes back on a list Celery
    creates (`<oid>.reply.celery.pidbox`), which is why `snapshot` leaves it out.
    """
    from demo.stack.control import control_app  # imports celery: only when asked

    replies = control_app(env).control.inspect([nodename], timeout=timeout).stats() or {}
    if nodename not in replies:
        raise KitError(f"worker {nodename} did not answer `inspect stats` within {timeout} s")
    return [int(pid) for pid in replies[nodename]["pool"]["processes"]]
