"""Who this process is: its role in the Celery picture, pid, parent pid, host."""

from __future__ import annotations

import os
import socket
import sys

from envoi_mails.xray.hops import CLIENT, FLOWER, POOL_CHILD, WORKER_MAIN

_role: str | None = None
_identity: dict[str, object] | None = None
_main_pid: int | None = None  # the worker's MainProcess, once worker_init has said so


def role() -> str:
    """The role set by a worker signal, else flower or client from the command line."""
    if _role is not None:
        return _role
    return FLOWER if "flower" in sys.argv else CLIENT


def set_role(value: str) -> None:
    global _role, _identity, _main_pid
    _role = value
    _identity = None
    if value == WORKER_MAIN:
        _main_pid = os.getpid()


def is_worker_main() -> bool:
    """True in the worker's MainProcess: the solo pool runs tasks (and even fires
    worker_process_init) there, without any child."""
    return _main_pid == os.getpid()


def identity() -> dict[str, object]:
    """The fields every trace event carries; cached, and recomputed after a fork."""
    global _identity
    if _identity is None:
        _identity = {
            "role": role(),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "host": socket.gethostname(),
        }
    return _identity


def connection_name() -> str:
    """The name this process gives its Redis connections (CLIENT SETNAME): role-pid@host.

    Never starts with `xray`: that prefix marks the kit's own connections.
    """
    me = identity()
    return f"{me['role']}-{me['pid']}@{me['host']}"


def parse_connection_name(name: str) -> tuple[str, int, str] | None:
    """(role, pid, host) from a name `connection_name` made; None for any other name."""
    who, at, host = name.partition("@")
    role, dash, pid = who.rpartition("-")
    if not (at and dash and role and host and pid.isdigit()):
        return None
    return role, int(pid), host


def _after_fork_in_child() -> None:
    # billiard forks the pool children from the MainProcess: they start as its copy, so
    # the cached pid and role would lie until worker_process_init runs.
    global _identity
    _identity = None
    if _role == WORKER_MAIN:
        set_role(POOL_CHILD)


os.register_at_fork(after_in_child=_after_fork_in_child)
