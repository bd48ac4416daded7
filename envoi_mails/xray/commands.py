"""Every Redis command this process sends, recorded by this process, where redis-py packs it.

Why the command packer: redis-py turns every command into bytes in one place. A sync
connection's `send_command` and `pack_commands` both call `self._command_packer.pack(*args)`,
so that point sees `execute_command`, pipelines, kombu's raw `connection.send_command('BRPOP',
…)`, pub/sub, EVALSHA/SCRIPT LOAD and the connect handshake. (Wrapping `execute_command`, as
OpenTelemetry's redis instrumentation does, misses kombu's BRPOP and all of pub/sub.) redis.asyncio,
which Flower uses, packs in `AbstractConnection.pack_command`.

Why patch instead of redis-py's official `command_packer=` argument: the app never builds
those connections itself. kombu's Redis transport and Celery's Redis backend build their own
connection arguments and pass no such option through, so the packer is wrapped where redis-py
constructs it (`_construct_command_packer`), once per connection.

The hot path only appends a tuple to the emitter's buffer (about half a microsecond): the
arguments go as redis-py got them, and become text when the batch is encoded, in the
emitter's thread (wire.py); only a long command has its large values cut on the spot.
The kit's own connections (named `xray…`, the emitter's among them) are not recorded.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from envoi_mails.xray import emitter, process, wire

EVENT = "redis.command"
REPLY = "redis.reply"
ARG_CAP = 16 * 1024  # characters kept per argument: an envelope fits, a huge value does not
KIT_PREFIX = "xray"  # the kit's own connections carry names starting with this

_pipes = itertools.count(1)
_installed = False


class Peer:
    """What a connection says about where a command went: mutable, since it reconnects."""

    __slots__ = ("conn", "skip")

    def __init__(self, conn: Any) -> None:
        path = getattr(conn, "path", None)
        server = path if path else f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
        # [db, server, addr]: one list, shared by every command sent on this connection until
        # it reconnects (wire.py writes it beside each command).
        self.conn: list[Any] = [getattr(conn, "db", 0), server, ""]
        name = getattr(conn, "client_name", None) or ""
        self.skip = name.startswith(KIT_PREFIX)

    def connected(self, sock: Any) -> None:
        try:
            local = sock.getsockname()
        except (OSError, AttributeError):
            return
        laddr = f"{local[0]}:{local[1]}" if isinstance(local, tuple) else str(local)
        # A new list, not an update: commands already queued keep the address they went by.
        self.conn = [*self.conn[:2], laddr]


# Commands whose arguments are scores or score ranges, where -inf and +inf are common.
_SCORED = frozenset(
    {
        "ZADD",
        "ZCOUNT",
        "ZINCRBY",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZRANGESTORE",
        "ZREMRANGEBYSCORE",
        "ZREVRANGE",
        "ZREVRANGEBYSCORE",
    }
)


def _text(arg: Any) -> str:
    if type(arg) is str:
        return arg if len(arg) <= ARG_CAP else arg[:ARG_CAP]
    if isinstance(arg, wire.BINARY):
        return bytes(arg[:ARG_CAP]).decode("utf-8", "replace")
    return str(arg)[:ARG_CAP]


def _record(peer: Peer, args: tuple[Any, ...], packed: list[Any], pipe: int | None) -> None:
    """Queue the command as the stream holds it (wire.py): its arguments as redis-py got
    them, turned into text only when the batch is encoded, off the caller's path."""
    sink = emitter.get()
    if sink is None or peer.skip:
        return
    # redis-py packs an argument over 6 000 bytes as a chunk of its own (hiredis packs all in
    # one): a long packed command is the one place a large value must be cut, here, before
    # it is queued. Every other command goes as it is.
    if len(packed) != 1 or len(packed[0]) > ARG_CAP:
        args = tuple(_text(arg) for arg in args)
    elif args[0] in _SCORED and float in map(type, args):
        # A score may be ±inf, which JSON cannot hold (orjson writes null): as the text
        # redis-py sends (repr). Only where scores go: the test costs 0.3 µs a command here.
        args = tuple(repr(arg) if type(arg) is float else arg for arg in args)
    sink.emit(process.identity(), (time.time(), EVENT, args, peer.conn, pipe))


class RecordingPacker:
    """Wraps a connection's own packer: packs exactly as before, then records."""

    __slots__ = ("inner", "peer", "pipe")

    def __init__(self, inner: Any, peer: Peer) -> None:
        self.inner, self.peer = inner, peer
        self.pipe: int | None = None

    def pack(self, *args: Any) -> Any:
        packed = self.inner.pack(*args)
        _record(self.peer, args, packed, self.pipe)
        return packed


def reply(command: str, **fields: Any) -> None:
    """Record what a command returned, when the kit needs it to name a task (BRPOP's message)."""
    sink = emitter.get()
    if sink is not None:
        sink.emit(process.identity(), (time.time(), REPLY, {"reply_to": command, **fields}))


def install() -> None:
    """Wrap redis-py's packers (sync and asyncio) and name every new connection. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    _install_sync()
    _install_asyncio()
    _install_kombu()


def _install_sync() -> None:
    from redis import connection

    cls: Any = connection.AbstractConnection  # untyped on purpose: its methods are replaced
    construct, pack_commands, on_connect = (
        cls._construct_command_packer,
        cls.pack_commands,
        cls.on_connect_check_health,
    )

    def _construct_command_packer(self: Any, packer: Any) -> Any:
        return RecordingPacker(construct(self, packer), Peer(self))

    def _pack_commands(self: Any, commands: Any) -> Any:
        packer = self._command_packer
        if not isinstance(packer, RecordingPacker):
            return pack_commands(self, commands)
        packer.pipe = next(_pipes)  # a pipeline (MULTI … EXEC included) is one unit
        try:
            return pack_commands(self, commands)
        finally:
            packer.pipe = None

    def _on_connect(self: Any, check_health: bool = True) -> Any:
        _name(self)
        packer = self._command_packer
        if isinstance(packer, RecordingPacker):
            packer.peer.connected(self._sock)
        return on_connect(self, check_health)

    cls._construct_command_packer = _construct_command_packer
    cls.pack_commands = _pack_commands
    cls.on_connect_check_health = _on_connect


def _install_asyncio() -> None:
    from redis.asyncio import connection

    cls: Any = connection.AbstractConnection  # untyped on purpose: its methods are replaced
    pack_command, pack_commands, on_connect = (
        cls.pack_command,
        cls.pack_commands,
        cls.on_connect_check_health,
    )

    def _peer(conn: Any) -> Peer:
        peer: Peer | None = conn.__dict__.get("_xray_peer")
        if peer is None:
            peer = conn.__dict__["_xray_peer"] = Peer(conn)
        return peer

    def _pack_command(self: Any, *args: Any) -> Any:
        packed = pack_command(self, *args)
        _record(_peer(self), args, packed, self.__dict__.get("_xray_pipe"))
        return packed

    def _pack_commands(self: Any, commands: Any) -> Any:
        self._xray_pipe = next(_pipes)
        try:
            return pack_commands(self, commands)  # calls self.pack_command for each
        finally:
            self._xray_pipe = None

    async def _on_connect(self: Any, check_health: bool = True) -> None:
        _name(self)
        writer = getattr(self, "_writer", None)
        if writer is not None:
            _peer(self).connected(writer.get_extra_info("socket"))
        await on_connect(self, check_health)

    cls.pack_command = _pack_command
    cls.pack_commands = _pack_commands
    cls.on_connect_check_health = _on_connect


def _install_kombu() -> None:
    """BRPOP's reply is the message: kombu hands it to `Transport._deliver`. Recording its task
    id and delivery tag there ties the BRPOP (and the reservation that follows) to the task."""
    from kombu.transport import redis as kombu_redis

    cls: Any = kombu_redis.Transport
    deliver: Any = cls._deliver

    def _deliver(self: Any, message: Any, queue: Any) -> Any:
        try:
            headers, properties = message.get("headers") or {}, message.get("properties") or {}
            reply(
                "BRPOP",
                key=str(queue),
                task_id=str(headers.get("id", "")),
                delivery_tag=str(properties.get("delivery_tag", "")),
            )
        except AttributeError:  # not a kombu envelope: deliver it all the same
            pass
        return deliver(self, message, queue)

    cls._deliver = _deliver


def _name(conn: Any) -> None:
    """CLIENT SETNAME role-pid@host on connect, in the process that connects: a pool child's
    new connection carries the child's name, not the parent's it was forked from."""
    named = conn.__dict__.get("_xray_named")
    if getattr(conn, "client_name", None) and named is None:
        return  # a name somebody chose (the kit's own `xray…` among them)
    pid = process.identity()["pid"]
    if named != pid:
        conn.client_name = process.connection_name()
        conn._xray_named = pid
