"""The trace stream `xray:trace` in Redis: one round trip per flush, bounded in bytes.

Why the entry IDs are byte offsets: the stream must take a bounded share of a Redis the kit
may not own, whatever the events weigh (an idle worker ships a few hundred bytes a second, a
busy one tens of KB a flush). Bounding entries by count and by size (10 000 entries of at
most 4 000 bytes, as before) forced a busy process to cut every flush into dozens of XADDs,
each batch encoded twice: that cost more than the rest of the tracing. So each entry's ID is
`<end>-0`, where `end` counts the payload bytes ever appended to the stream, itself
included; the newest end is kept in OFFSET_KEY. One script (APPEND_LUA) adds a flush's
entry, moves the offset and drops, with XTRIM MINID, every entry that ended more than
MAX_BYTES before the new end: the stream holds at most MAX_BYTES + one entry of payload,
whether it holds a few large entries or many small ones. MAXLEN caps the count too, since
each entry costs a few bytes more than its payload. Readers need nothing new: IDs still
grow, so XREAD and XRANGE cursors work as before; an event's time is its `ts` field.

Needs Redis 6.2 (XTRIM MINID).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import ConnectionError, NoScriptError, TimeoutError

from envoi_mails.xray import wire

STREAM = "xray:trace"
OFFSET_KEY = "xray:trace:offset"  # the end offset of the newest entry (payload bytes ever added)
MAX_BYTES = 32 * 2**20  # payload kept: the newest entries, up to one entry more than this
ENTRY_MAX_BYTES = 2**20  # an entry's JSON, at most: a larger flush goes as several entries
STREAM_MAXLEN = 10_000  # entries (approximately: MAXLEN ~ trims whole nodes): what readers of the
# whole history (`demo trace`, the live views) read when events are small
STREAM_MAX_MB = 48  # in Redis memory: 1.38 times the payload at worst (measured), and a margin
FILL = 0.8  # of an entry, aimed at when a batch is sliced: events differ in size
VALUE_MAX_CHARS = 500  # a string longer than this is cut, in an event too large alone

# A stream whose offset key was lost (deleted by hand, or a stream an older kit wrote with
# time-based IDs) goes on from its newest entry's ID, so IDs keep growing.
APPEND_LUA = b"""
local limit, maxlen, field = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local offset = tonumber(redis.call('GET', KEYS[2]) or '0')
for i = 4, #ARGV do
  local payload = ARGV[i]
  offset = offset + #payload
  local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', maxlen,
                            string.format('%d-0', offset), field, payload)
  if type(added) == 'table' and added.err then
    local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1]
    offset = tonumber(string.match(newest, '^(%d+)')) + #payload
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen,
               string.format('%d-0', offset), field, payload)
  end
end
redis.call('SET', KEYS[2], string.format('%d', offset))
if offset > limit then
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', offset - limit))
end
return offset
"""
_append = Script(None, APPEND_LUA)  # type: ignore[arg-type]  # bytes: no client needed
# The script's KEYS, and its ARGV before the payloads: one list for both ways of calling it.
_KEYS = (STREAM, OFFSET_KEY)
_ARGS = (MAX_BYTES, STREAM_MAXLEN, wire.FIELD)


def append(client: redis.Redis, payloads: Sequence[bytes]) -> None:
    """Add the entries, in order, in one round trip; the stream stays within its bound."""
    if payloads:
        _append(keys=list(_KEYS), args=[*_ARGS, *payloads], client=client)


class Appender:
    """`append` on one connection of its own, for the emitter, which appends ten times a second.

    Why not a redis.Redis: its client layer (connection pool, retry wrapper) costs more than
    the rest of a small flush. Measured on this project's 2-core VM: a PING through
    `Redis.ping` took 106 µs of CPU, the same on the Connection 43 µs. The Connection still
    connects, says HELLO and CLIENT SETNAME, and reconnects after an error or an idle close.
    """

    def __init__(self, url: str, client_name: str) -> None:
        pool = redis.ConnectionPool.from_url(
            url, socket_connect_timeout=1, socket_timeout=2, client_name=client_name
        )
        self._conn: Any = pool.make_connection()  # redis-py leaves its methods unannotated

    def append(self, payloads: Sequence[bytes]) -> None:
        """As `append`; raises RedisError if the entries may not have gone in."""
        if not payloads:
            return
        command = ("EVALSHA", _append.sha, len(_KEYS), *_KEYS, *_ARGS)
        conn = self._conn
        try:
            conn.connect()  # a no-op when connected
            if _closed(conn):
                # The server closed it while it was idle (its `timeout`, a restart). The
                # pool checks the same before lending a connection; without it this batch
                # would go down a dead socket.
                conn.disconnect()
                conn.connect()
            try:
                self._call(*command, *payloads)
            except NoScriptError:  # a new or restarted Redis: load the script, once
                self._call("SCRIPT", "LOAD", APPEND_LUA)
                self._call(*command, *payloads)
        except (ConnectionError, TimeoutError):
            self._conn.disconnect()  # half a reply may be on the way: start clean next time
            raise

    def _call(self, *args: Any) -> Any:
        self._conn.send_command(*args)
        return self._conn.read_response()


def entries(items: Sequence[wire.Item]) -> list[bytes]:
    """The queued items as stream entries of at most ENTRY_MAX_BYTES each, in order.

    One encoding when it fits (nearly always: a 0.1 s flush of a busy worker is tens of KB).
    Else slices, as many as would each fill about FILL of an entry, each encoded again (a
    slice that still does not fit is sliced again), each starting with its identity. An
    event that does not fit alone has its long strings cut (`fit`).
    """
    payload = wire.encode(items)
    if len(payload) <= ENTRY_MAX_BYTES:
        return [payload]
    if wire.events(items) == 1:
        return [wire.encode([fit(item) if type(item) is tuple else item for item in items])]
    parts = max(2, math.ceil(len(payload) / (ENTRY_MAX_BYTES * FILL)))
    return [entry for part in wire.slices(items, parts) for entry in entries(part)]


def fit(event: tuple[Any, ...]) -> tuple[Any, ...]:
    """The event with every string over VALUE_MAX_CHARS cut, saying how long it was; if
    that is still too large, its fields give way to one saying how large they were."""
    ts, name = event[0], event[1]
    cut = {key: _cut(value) for key, value in wire.fields_of(event).items()}
    if len(wire.encode([(ts, name, cut)])) <= ENTRY_MAX_BYTES:
        return ts, name, cut
    size = len(wire.encode([event]))
    return ts, name, {"cut": f"{size} bytes of fields, over {ENTRY_MAX_BYTES}"}


def _cut(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str) and len(value) > VALUE_MAX_CHARS:
        return f"{value[:VALUE_MAX_CHARS]}… [cut: {len(value)} chars]"
    if depth > 2:  # deeper structures are not events' business: the size check decides
        return value
    if isinstance(value, Mapping):
        return {key: _cut(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut(item, depth + 1) for item in value]
    return value


def _closed(conn: Any) -> bool:
    """True if an idle connection has something to read: only an EOF (or an error) can be."""
    try:
        return bool(conn.can_read())
    except (ConnectionError, TimeoutError, OSError):
        return True
