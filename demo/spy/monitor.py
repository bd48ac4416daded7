"""The Redis spy: an opt-in MONITOR watcher that turns each command into a trace event.

MONITOR is costly (Redis documents throughput losses above 50%), so nothing starts it
unless asked. It uses one raw socket speaking RESP: after MONITOR, Redis sends every
command as one simple-string line with each argument escaped, so a line reader is all
it takes, and no client library sits between the wire and the timestamps.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from demo import names
from demo.errors import KitError
from demo.protocol.commands import CHATTER, describe
from demo.spy.attribution import Attributor, DeliveryTags, LuaSenders, Sender, split_addr
from demo.spy.monitor_line import MonitorLine, parse_monitor_line

NOISE = CHATTER  # left out of the events (demo.protocol.commands.CHATTER)
TRACE_STREAM = names.TRACE_STREAM  # the kit's own stream: its XADDs are never shown
ARG_CAP = 16 * 1024  # characters kept per argument: an envelope fits, a huge value does not
MAX_LINE = 64 * 1024 * 1024  # a longer MONITOR line is dropped rather than buffered
SPY_NAME = f"{names.SPY_CLIENT_NAME}-monitor"
START_DEADLINE_S = 5.0
STOP_DEADLINE_S = 2.0
# The kit's own trace batches: a script's XADD, and the EVALSHA that runs it (stream.py).
_OWN_STREAM = f'] "XADD" "{TRACE_STREAM}"'.encode()
_OWN_APPEND = f'" "2" "{TRACE_STREAM}" "{names.TRACE_OFFSET_KEY}"'.encode()
_OWN_KEYS = (TRACE_STREAM, names.TRACE_OFFSET_KEY)
_POLL_S = 0.2  # how often the reader thread looks at the stop flag while Redis is quiet

Event = dict[str, Any]


def _resp(*args: str) -> bytes:
    """One command in RESP, as a client sends it."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _command_name(line: MonitorLine) -> str:
    """ "CLIENT SETNAME" for container commands, else the command name."""
    if line.command in ("CLIENT", "SCRIPT", "CONFIG") and len(line.args) > 1:
        return f"{line.command} {line.args[1].upper()}"
    return line.command


def _set_name(line: MonitorLine) -> str | None:
    """The connection name a CLIENT SETNAME or HELLO … SETNAME line gives, if any."""
    name = _command_name(line)
    if name == "CLIENT SETNAME" and len(line.args) > 2:
        return line.args[2]
    if name == "HELLO":
        upper = [arg.upper() for arg in line.args]
        if "SETNAME" in upper and upper.index("SETNAME") + 1 < len(line.args):
            return line.args[upper.index("SETNAME") + 1]
    return None


class Spy:
    """Watch every command Redis receives, attributed to a role and pid.

    Events follow the trace contract (ts, event="redis.command", role, pid, ppid, host)
    plus addr, db, command (each argument capped at ARG_CAP), summary, task_id when
    known and via="lua" for a script's commands. `on_event` runs in the reader thread.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        keep: int = 50_000,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self._url = redis_url
        self._events: deque[Event] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._on_event = on_event
        self.attributor = Attributor(redis_url)
        self._lua = LuaSenders()
        self._tags = DeliveryTags()
        self._sock: socket.socket | None = None
        self._own_addr = ""
        self._buf = bytearray()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.skipped = 0  # lines that could not be parsed or handled
        self.callback_errors = 0
        self.error: str | None = None  # why the reader stopped, if not asked to

    def start(self, deadline_s: float = START_DEADLINE_S) -> Spy:
        """Connect, send MONITOR, and return once Redis answered OK (KitError otherwise)."""
        end = time.monotonic() + deadline_s
        try:
            self._sock = sock = self._connect(deadline_s)
            for command in self._handshake():
                sock.sendall(_resp(*command))
                reply = self._next_line(sock, end)
                if not reply.startswith(b"+"):
                    raise KitError(f"Redis refused {command[0]}: {reply.decode(errors='replace')}")
        except (OSError, TimeoutError) as exc:
            self._close_socket()
            raise KitError(f"the spy could not MONITOR {self._url}: {exc}") from None
        except KitError:
            self._close_socket()
            raise
        host, port = sock.getsockname()[:2]
        self._own_addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="xray-spy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """Close the MONITOR connection and join the reader thread (at most deadline_s)."""
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv at once
        if self._thread is not None:
            self._thread.join(deadline_s)
        self._close_socket()
        self.attributor.close()

    def events(self) -> list[Event]:
        """A copy of the events kept so far (the `keep` most recent), oldest first."""
        with self._lock:
            return list(self._events)

    def commands_for(self, task_id: str) -> list[Event]:
        """The events that concern one task (by key, envelope or delivery tag)."""
        return [event for event in self.events() if event.get("task_id") == task_id]

    def __enter__(self) -> Spy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _connect(self, deadline_s: float) -> socket.socket:
        parts = urlsplit(self._url)
        if parts.scheme != "redis":
            raise KitError(f"the spy speaks plain redis:// only, not {parts.scheme}://")
        return socket.create_connection(
            (parts.hostname or "localhost", parts.port or 6379), deadline_s
        )

    def _handshake(self) -> list[tuple[str, ...]]:
        parts = urlsplit(self._url)
        auth: list[tuple[str, ...]] = []
        if parts.password is not None:
            user = (unquote(parts.username),) if parts.username else ()
            auth = [("AUTH", *user, unquote(parts.password))]
        # Named, so that another spy (and CLIENT LIST readers) know it as the kit's own.
        return [*auth, ("CLIENT", "SETNAME", SPY_NAME), ("MONITOR",)]

    def _next_line(self, sock: socket.socket, end: float | None = None) -> bytes:
        """The next CRLF-terminated line; TimeoutError when `end` (or one poll) passes."""
        while (cut := self._buf.find(b"\r\n")) < 0:
            remaining = _POLL_S if end is None else end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from Redis in time")
            sock.settimeout(remaining)
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("Redis closed the MONITOR connection")
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                self._buf.clear()  # the tail of that line will fail to parse: counted
        line = bytes(self._buf[:cut])
        del self._buf[: cut + 2]
        return line

    def _run(self, sock: socket.socket) -> None:
        # The socket is passed in, not read from self: stop() may drop self._sock while
        # this thread is still between two lines.
        while not self._stop.is_set():
            try:
                raw = self._next_line(sock)
            except TimeoutError:
                continue
            except Exception as exc:  # closed, reset, or stopped: the reader ends quietly
                if not self._stop.is_set():
                    self.error = str(exc) or type(exc).__name__
                return
            try:
                self._handle(raw)
            except Exception:  # the reader must outlive any one odd line
                self.skipped += 1

    def _handle(self, raw: bytes) -> None:
        # The kit's own trace batches are the longest lines by far and never shown: they
        # are dropped before the parse. The header ("+<ts> [<db> <addr>] ") is < 80 bytes.
        if raw.find(_OWN_STREAM, 0, 80 + len(_OWN_STREAM)) >= 0:
            return
        if raw.find(_OWN_APPEND, 0, 140 + len(_OWN_APPEND)) >= 0:  # after "EVALSHA" "<sha>"
            return
        # MONITOR escapes every non-printable byte, so the line is ASCII: latin-1 never fails.
        text = raw.decode("latin-1")
        line = parse_monitor_line(text[1:]) if text.startswith("+") else None
        if line is None:
            self.skipped += 1
            return
        event = self._event_for(line)
        if event is None:
            return
        with self._lock:
            self._events.append(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                self.callback_errors += 1

    def _event_for(self, line: MonitorLine) -> Event | None:
        """The trace event for one line, or None for noise and for the kit's own traffic."""
        name = _command_name(line)
        if name == "HELLO":
            self.attributor.new_connection(line.addr)
        new_name = _set_name(line)
        if new_name is not None:
            self.attributor.learn_name(line.addr, new_name)
        if name in NOISE or line.addr == self._own_addr:
            return None
        # A script's commands show "lua", not an address: they belong to its EVAL's sender.
        sender = self._lua.sender_for(line.db) if line.from_lua else self.attributor.who(line.addr)
        self._lua.observe(line, sender)
        task_id = self._tags.task_id(line.args)
        if sender.role == names.KIT or (len(line.args) > 1 and line.args[1] in _OWN_KEYS):
            return None
        return self._build(line, sender, task_id)

    def _build(self, line: MonitorLine, sender: Sender, task_id: str | None) -> Event:
        where = split_addr(line.addr)
        host = sender.host or (
            self.attributor.host if sender.pid is not None else (where[0] if where else None)
        )
        event: Event = {
            "ts": line.ts,
            "event": names.REDIS_COMMAND,
            "role": sender.role,
            "pid": sender.pid,
            "ppid": sender.ppid,
            "host": host,
            "addr": line.addr,
            "db": line.db,
            "command": [arg[:ARG_CAP] for arg in line.args],
            "summary": describe(line.args),
        }
        if task_id is not None:
            event["task_id"] = task_id
        if line.from_lua:
            event["via"] = names.LUA
        return event

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
