"""Who sent a Redis command, and for which task.

MONITOR names a client by its socket address as Redis sees it ("127.0.0.1:54321"): on this
host, the client socket's local address, so the OS knows its pid (sockets.py)
and the pid's command line its Celery role. Lua commands show "lua" and kombu's acks only a
delivery tag: the pure helpers here carry both back to a sender and a task.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
import redis

from demo import names
from demo.protocol.commands import carried_envelopes, task_id_of
from demo.protocol.envelope import envelope_ids
from demo.spy.monitor_line import MonitorLine
from demo.spy.sockets import scan_sockets
from envoi_mails.xray import emitter, process

CONTROL_NAME = names.SPY_CLIENT_NAME  # the spy's own CLIENT LIST connection: filtered too
REFRESH_EVERY_S = 0.05  # at most one psutil scan + CLIENT LIST per 50 ms
NEGATIVE_TTL_S = 2.0  # an address no refresh could place stays unknown this long
NAMES_KEPT = 10_000  # connection names remembered, newest last
_VALUE_OPTIONS = {"-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config"}
_BY_TAG = {("ZADD", names.UNACKED_INDEX), ("ZREM", names.UNACKED_INDEX), ("HDEL", names.UNACKED)}
_EVAL = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}


@dataclass(frozen=True)
class Sender:
    """The process behind a connection; `name` is the connection's CLIENT SETNAME, if any."""

    role: str
    pid: int | None
    ppid: int | None
    name: str | None
    host: str | None = None  # a host named by the connection's name; None: this one


UNKNOWN = Sender(names.UNKNOWN, None, None, None)
LUA = Sender(names.LUA, None, None, None)


def celery_subcommand(cmdline: Sequence[str]) -> str | None:
    """The subcommand ("worker", "flower"…) of a celery (or flower) command line, else None."""
    # Only the program (`celery`, `flower`, or python's script or -m module) counts:
    # `pytest -k flower` is not Flower.
    head = [os.path.basename(arg) for arg in cmdline[:3]]
    if "flower" in head[:2]:
        return "flower"
    if "celery" not in head:
        return None
    rest = cmdline[head.index("celery") + 1 :]
    for i, arg in enumerate(rest):
        # The value of `-A worker` names an app, not the subcommand.
        if not arg.startswith("-") and (i == 0 or rest[i - 1] not in _VALUE_OPTIONS):
            return arg
    return None


def role_from_cmdlines(cmdline: Sequence[str], parent_cmdline: Sequence[str]) -> str:
    """Role of a process from its command line and its parent's.

    A prefork child is forked, not exec'd: it keeps the worker's command line, so only
    the parent (also a celery worker) tells it apart from the MainProcess.
    """
    sub = celery_subcommand(cmdline)
    if sub == "worker":
        worker_parent = celery_subcommand(parent_cmdline) == "worker"
        return names.POOL_CHILD if worker_parent else names.WORKER_MAIN
    if sub == "flower":
        return names.FLOWER
    if sub == "beat":
        return names.BEAT
    return names.CLIENT


def parse_client_list(text: str) -> dict[str, str]:
    """CLIENT LIST output -> {addr: name} ("" for an unnamed connection)."""
    names: dict[str, str] = {}
    for line in text.splitlines():
        fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
        if "addr" in fields:
            names[fields["addr"]] = fields.get("name", "")
    return names


def split_addr(addr: str) -> tuple[str, int] | None:
    """("127.0.0.1", 54321) for "127.0.0.1:54321" or "[::1]:54321"; None for lua/unix."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or addr.startswith("unix:"):
        return None
    return host.strip("[]"), int(port)


class LuaSenders:
    """A Lua script's commands belong to whoever ran EVAL/EVALSHA just before on that db.

    Redis runs a script atomically, and MONITOR logs the script's commands right after
    the EVALSHA that started them, so the last EVAL sender per db is the script's sender.
    """

    def __init__(self) -> None:
        self._by_db: dict[int, Sender] = {}

    def observe(self, line: MonitorLine, sender: Sender) -> None:
        """Remember the sender of an EVAL-like command."""
        if not line.from_lua and line.command in _EVAL:
            self._by_db[line.db] = sender

    def sender_for(self, db: int) -> Sender:
        """The sender of the last script started on `db` (LUA if none was seen)."""
        return self._by_db.get(db, LUA)


class DeliveryTags:
    """Map kombu delivery tags to task ids, so ZADD/ZREM/HDEL on unacked carry a task id.

    The tag is learnt from the published envelope (properties.delivery_tag) and from
    HSET unacked <tag> <[envelope, exchange, routing_key]>; ZADD comes before HSET in
    kombu's MULTI, so the LPUSH is what names it there. Bounded: oldest tags go first.
    """

    def __init__(self, keep: int = 100_000) -> None:
        self._tags: OrderedDict[str, str] = OrderedDict()
        self._keep = keep

    def task_id(self, args: Sequence[str]) -> str | None:
        """The task id this command concerns (learning any tag it reveals). Never raises."""
        if len(args) < 3:
            return task_id_of(args)
        task_ids = []
        for field, value in carried_envelopes(args):  # each message read once, body left alone
            ids = envelope_ids(value)
            self._remember(field or ids.delivery_tag, ids.task_id)  # HSET unacked: field = tag
            task_ids.append(ids.task_id)
        found = task_id_of(args, task_ids)
        if found is None and (args[0].upper(), args[1]) in _BY_TAG:
            found = next((self._tags[a] for a in args[2:] if a in self._tags), None)
        return found

    def learn(self, tag: str, task: str | None) -> None:
        """A tag learnt elsewhere (BRPOP's reply names the message it delivered)."""
        self._remember(tag, task)

    def _remember(self, tag: str | None, task: str | None) -> None:
        if tag and task:
            self._tags[tag] = task
            self._tags.move_to_end(tag)
            while len(self._tags) > self._keep:
                self._tags.popitem(last=False)


class Attributor:
    """who(addr) -> Sender, for clients on this host. Caches; refreshes on a miss.

    `known_roles` (pid -> role, e.g. from trace events) wins over the command-line
    heuristics. Connections named xray* (KIT_PREFIX) are the kit's own: role "kit".
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        known_roles: dict[int, str] | None = None,
        scan: Callable[[], dict[tuple[str, int], int]] | None = None,
        client_list: Callable[[], str] | None = None,
    ) -> None:
        self.known_roles: dict[int, str] = known_roles if known_roles is not None else {}
        port = urlsplit(redis_url).port if redis_url else None
        self._scan = scan or (lambda: scan_sockets(port or 6379 if redis_url else None))
        self._client_list = client_list or self._redis_client_list
        self._url = redis_url
        self._redis: redis.Redis | None = None
        self._pids: dict[tuple[str, int], int] = {}
        # addr -> connection name: from CLIENT SETNAME lines and from CLIENT LIST. Kept after
        # the connection closes (the reader may reach its lines later), until HELLO says the
        # address is a new connection; bounded, oldest first.
        self._names: OrderedDict[str, str] = OrderedDict()
        self._missing: dict[str, float] = {}
        self._procs: dict[int, tuple[str, int | None]] = {}
        self._last_refresh = float("-inf")
        self.host = socket.gethostname()
        self.scans = 0

    def who(self, addr: str) -> Sender:
        """The sender behind a MONITOR address; UNKNOWN when no local process owns it."""
        if addr == names.MONITOR_LUA_ADDR:
            return LUA
        where = split_addr(addr)
        if where is None:
            return UNKNOWN
        missing = addr not in self._names or where not in self._pids
        if missing and self._missing.get(addr, 0.0) <= time.monotonic():
            self._refresh()
            self._names.setdefault(addr, "")  # not in CLIENT LIST: unnamed, or already gone
            if where not in self._pids:
                self._missing[addr] = time.monotonic() + NEGATIVE_TTL_S
        name = self._names.get(addr) or None
        named = process.parse_connection_name(name) if name else None
        if named is not None:
            # The app names each connection role-pid@host when it connects: that holds on
            # any host, where the OS's socket table only knows this one.
            role, named_pid, host = named
            ppid = self._process(named_pid)[1] if host == self.host else None
            return Sender(role, named_pid, ppid, name, None if host == self.host else host)
        pid = self._pids.get(where)
        if pid is None:
            return Sender(names.KIT if _is_kit(name) else names.UNKNOWN, None, None, name)
        role, ppid = self._process(pid)
        return Sender(names.KIT if _is_kit(name) else role, pid, ppid, name)

    def new_connection(self, addr: str) -> None:
        """HELLO seen: the address may be a reused port, so forget what it meant."""
        where = split_addr(addr)
        if where is not None:
            self._pids.pop(where, None)
        self._names[addr] = ""  # a fresh connection has no name until CLIENT SETNAME
        self._missing.pop(addr, None)

    def learn_name(self, addr: str, name: str) -> None:
        """CLIENT SETNAME (or HELLO … SETNAME) seen on the wire."""
        self._remember_names({addr: name})

    def _remember_names(self, found: dict[str, str]) -> None:
        for addr, name in found.items():
            if name or addr not in self._names:
                self._names[addr] = name
                self._names.move_to_end(addr)
        while len(self._names) > NAMES_KEPT:
            self._names.popitem(last=False)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    def _refresh(self) -> None:
        # One refresh per window; waiting the rest of it keeps a burst of new
        # connections (a worker starting) from turning into a scan per line.
        wait = self._last_refresh + REFRESH_EVERY_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_refresh = time.monotonic()
        self.scans += 1
        # Each answer replaces the cache, which so stays as small as the live connections.
        # Attribution is best effort: a failed refresh leaves the command shown as unknown.
        with contextlib.suppress(psutil.Error, OSError):
            self._pids = self._scan()
            live = set(self._pids.values())
            self._procs = {pid: known for pid, known in self._procs.items() if pid in live}
        with contextlib.suppress(redis.RedisError, OSError):
            self._remember_names(parse_client_list(self._client_list()))
        now = time.monotonic()
        self._missing = {addr: until for addr, until in self._missing.items() if until > now}

    def _redis_client_list(self) -> str:
        if self._url is None:
            return ""
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self._url, client_name=CONTROL_NAME, socket_timeout=2, decode_responses=True
            )
        return str(self._redis.execute_command("CLIENT", "LIST"))  # type: ignore[no-untyped-call]

    def _process(self, pid: int) -> tuple[str, int | None]:
        if pid not in self._procs:
            self._procs[pid] = _describe_pid(pid)
        role, ppid = self._procs[pid]
        return self.known_roles.get(pid) or _own_role(pid) or role, ppid


def _is_kit(name: str | None) -> bool:
    return bool(name) and str(name).startswith(names.KIT_PREFIX)


def _own_role(pid: int) -> str | None:
    """The spy's own process is "spy", unless it also runs the traced app (a test, a
    scenario): then it is what its own trace events say it is, usually "client"."""
    if pid != os.getpid():
        return None
    return process.role() if emitter.get() is not None else names.SPY


def _describe_pid(pid: int) -> tuple[str, int | None]:
    """(role from the command lines, ppid); ("unknown", None) if the process is gone."""
    try:
        proc = psutil.Process(pid)
        cmdline, ppid = proc.cmdline(), proc.ppid()
    except psutil.Error:
        return names.UNKNOWN, None
    parent_cmdline: list[str] = []
    with contextlib.suppress(psutil.Error):
        parent_cmdline = psutil.Process(ppid).cmdline() if ppid else []
    return role_from_cmdlines(cmdline, parent_cmdline), ppid
