"""Which local process owns a connection to Redis: its socket, as the OS sees it.

MONITOR names a client by the socket address Redis sees; on this host that is the client
socket's local address, which psutil maps to a pid. A fork copies sockets, so a pool child
may hold its parent's: the parent, which opened it, is the one that uses it.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil


def scan_sockets(redis_port: int | None = None) -> dict[tuple[str, int], int]:
    """{(local ip, local port): pid} for the inet sockets connected to our Redis.

    The remote end must be Redis's port: a local (ip, port) alone can also belong to an
    unrelated socket (a listener, or a connection to another server) of another process.
    """
    owners: dict[tuple[str, int], int] = {}
    for conn in psutil.net_connections(kind="inet"):
        if conn.pid is None or not conn.laddr:
            continue
        if redis_port is not None and not (conn.raddr and conn.raddr.port == redis_port):
            continue
        owners[(conn.laddr.ip, conn.laddr.port)] = conn.pid
    return prefer_parents(owners, _parent_pid, _local_addrs)


def prefer_parents(
    owners: dict[tuple[str, int], int],
    parent_of: Callable[[int], int | None],
    sockets_of: Callable[[int], set[tuple[str, int]]],
) -> dict[tuple[str, int], int]:
    """Give each socket to the parent when the parent holds it too.

    fork() copies every open socket, so a fresh pool child holds the MainProcess's
    connections, and psutil names one holder per socket, either. Only the process that
    opened a connection uses it (Celery resets its pools after a fork): the parent's.
    """
    # Every holder's parent is asked, not only parents psutil already named for a socket:
    # it may have named the children for all of a parent's sockets.
    parents = {pid: parent_of(pid) for pid in set(owners.values())}
    parent_sockets: dict[int, set[tuple[str, int]]] = {}
    fixed = dict(owners)
    for addr, pid in owners.items():
        parent = parents.get(pid)
        if parent is None or parent <= 1:
            continue
        if parent not in parent_sockets:
            parent_sockets[parent] = sockets_of(parent)
        if addr in parent_sockets[parent]:
            fixed[addr] = parent
    return fixed


def _local_addrs(pid: int) -> set[tuple[str, int]]:
    try:
        conns = psutil.Process(pid).net_connections(kind="inet")
    except psutil.Error:
        return set()
    return {(c.laddr.ip, c.laddr.port) for c in conns if c.laddr}


def _parent_pid(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).ppid())
    except psutil.Error:
        return None
