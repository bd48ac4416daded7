"""The worker's processes: as the OS sees them (psutil), and as the worker reports them
(`inspect stats`, a control command). No Redis key is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from demo.errors import KitError
from demo.stack.procs import ProcessInfo, process_family

STATS_TIMEOUT_S = 2.0  # how long the worker may take to answer `inspect stats`


@dataclass(frozen=True)
class PoolView:
    main: ProcessInfo  # the worker's MainProcess
    children: tuple[ProcessInfo, ...]  # its direct children, the pool, by pid

    @property
    def child_pids(self) -> list[int]:
        return [child.pid for child in self.children]


def pool_processes(worker_pid: int) -> PoolView:
    """The MainProcess and its direct children as the OS sees them (psutil, no Redis)."""
    family = process_family(worker_pid)
    if family is None:
        raise KitError(f"no process with pid {worker_pid}: is the worker running?")
    return PoolView(*family)


def stats_pool_pids(
    env: Mapping[str, str], nodename: str, *, timeout: float = STATS_TIMEOUT_S
) -> list[int]:
    """The pool pids the worker itself reports (`inspect stats`), in its order.

    Not a Redis read: the command is PUBLISHed and the reply comes back on a list Celery
    creates (`<oid>.reply.celery.pidbox`), which is why `snapshot` leaves it out.
    """
    from demo.stack.control import inspect_stats  # imports celery: only when asked

    return [int(pid) for pid in inspect_stats(env, nodename, timeout=timeout)["pool"]["processes"]]
