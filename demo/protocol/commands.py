"""What a Redis command means for Celery: its task id, its queue, a short human phrase.

Pure functions, no I/O, over a command's arguments as strings (however they were captured).
The phrases are English; `describe(args, "fr")` gives their French (demo.protocol.phrases_fr),
for the French docs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from demo import names
from demo.names import PRIORITY_SEP
from demo.protocol.envelope import task_id_of_envelope
from demo.protocol.phrases_fr import BRPOP_FR, FR

__all__ = ["PRIORITY_SEP", "RULES", "carried_envelopes", "describe", "queue_of", "short"]
__all__ += ["task_id_of"]

_RESULT_PREFIX, _GROUP_PREFIX = re.escape(names.RESULT_PREFIX), re.escape(names.GROUP_PREFIX)
_RESULT = rf"{_RESULT_PREFIX}(?P<id>.+)"
_GROUP = rf"{_GROUP_PREFIX}(?P<id>[^.]+)"
# Chord bookkeeping keys add a one-letter suffix to the group key (.j .t .s .d .c in
# celery/backends/redis.py); older backends count with chord-unlock-<group id>.
_CHORD = rf"(?:{_GROUP_PREFIX}|{re.escape(names.CHORD_UNLOCK_PREFIX)})(?P<id>.+?)(?:\.[a-z])?"
_ID_KEY = re.compile(rf"{_RESULT_PREFIX}(?P<task>.+)|{_CHORD}", re.DOTALL)


def _task_id_in_keys(args: Sequence[str]) -> str | None:
    """The task (or group) id an argument names as a result or chord key, or None."""
    for arg in args[1:]:
        m = _ID_KEY.fullmatch(str(arg))
        if m is not None:
            return m["task"] or m["id"]
    return None


def carried_envelopes(args: Sequence[str]) -> list[tuple[str | None, str]]:
    """(field, value) for each value that may hold a kombu message: what LPUSH/RPUSH push
    (field None), what HSET unacked stores under a delivery tag (field: the tag)."""
    if len(args) < 3:
        return []
    command = str(args[0]).upper()
    if command in ("LPUSH", "RPUSH"):
        return [(None, str(value)) for value in args[2:]]
    if command == "HSET" and args[1] == names.UNACKED:
        return [(str(tag), str(value)) for tag, value in zip(args[2::2], args[3::2], strict=False)]
    return []


def task_id_of(
    args: Sequence[str], envelope_task_ids: Sequence[str | None] | None = None
) -> str | None:
    """The Celery task (or group) id a command concerns, or None. Never raises.

    A result or chord key names it; else the first kombu message the command carries.
    `envelope_task_ids`: those messages' ids, when the caller has already read them.
    """
    if len(args) < 2:
        return None
    found = _task_id_in_keys(args)
    if found is not None:
        return found
    if envelope_task_ids is None:
        envelope_task_ids = [task_id_of_envelope(value) for _, value in carried_envelopes(args)]
    for task_id in envelope_task_ids:
        if task_id is not None:
            return task_id
    return None


def queue_of(key: str) -> tuple[str, int | None]:
    """Split a priority sub-queue name: "celery\\x06\\x163" -> ("celery", 3)."""
    queue, sep, suffix = key.rpartition(PRIORITY_SEP)
    if sep and queue and suffix.isascii() and suffix.isdigit():
        return queue, int(suffix)
    return key, None


_BRPOP_EN = (
    ("wait for a message on queue {listed}", "wait for a message on queues {listed}"),
    (" (and its priority sub-queues {p})", " (and their priority sub-queues {p})"),
)


def _brpop(args: Sequence[str], lang: str) -> str:
    """Phrase for BRPOP: group the sub-queues under the queue they belong to."""
    split = [queue_of(key) for key in args[1:-1]]  # the last argument is the timeout
    queues = list(dict.fromkeys(q for q, p in split if p is None))
    priorities = list(dict.fromkeys(p for _, p in split if p is not None))
    (one, several), (its, their) = BRPOP_FR if lang == "fr" else _BRPOP_EN
    plural = len(queues) != 1
    phrase = (several if plural else one).format(listed=", ".join(f"'{q}'" for q in queues))
    if priorities:
        phrase += (their if plural else its).format(p=", ".join(map(str, priorities)))
    return phrase


@dataclass(frozen=True)
class _Rule:
    """commands: space-separated names ("*": any); key: regex the key must fully match.

    phrase is an English str.format template (fields: the regex groups, key, q = queue
    of key, a = args), whose French is phrases_fr.FR[phrase], or a function of the args
    and the language.
    """

    commands: str
    key: str
    phrase: str | Callable[[Sequence[str], str], str]
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", re.compile(self.key, re.DOTALL))

    def covers(self, command: str) -> bool:
        return self.commands == "*" or command in self.commands.split()


_EV = rf"/\d+{re.escape(names.EVENTS_INFIX)}"
_BIND = rf"{re.escape(names.BINDING_PREFIX)}(?P<ex>.+)"
_PIN = rf"{re.escape(names.BINDING_PERMANENT_PREFIX)}(?P<ex>.+)"
_DEADLINES = re.escape(names.BINDING_DEADLINES)
_PIDBOX = rf"/\d+{re.escape(names.PIDBOX_SUFFIX)}"
_REPLY = rf".+{re.escape(names.REPLY_SUFFIX)}(?:{re.escape(PRIORITY_SEP)}\d+)?"
_UNACKED, _UNACKED_INDEX = re.escape(names.UNACKED), re.escape(names.UNACKED_INDEX)
_MUTEX = re.escape(names.UNACKED_MUTEX)
# Commands that only read a key: on a chord's keys, someone looking (the scenario, a tool).
_READS = "GET MGET EXISTS TYPE TTL PTTL STRLEN SCARD SMEMBERS SISMEMBER ZCARD ZCOUNT ZRANGE"

# First match wins, so specific keys come before the catch-all for a command.
RULES: tuple[_Rule, ...] = (
    _Rule("MULTI", ".*", "begin transaction"),
    _Rule("EXEC", ".*", "commit transaction"),
    _Rule("DISCARD", ".*", "abort transaction"),
    _Rule("*", _MUTEX, "restore unacked messages (visibility timeout check)"),
    _Rule("ZRANGE", _UNACKED_INDEX, "look for unacked messages past the visibility timeout"),
    _Rule("ZADD", _UNACKED_INDEX, "reserve message {a[3]} in unacked"),
    _Rule("HSET", _UNACKED, "reserve message {a[2]} in unacked"),
    _Rule("ZREM HDEL", f"{_UNACKED}|{_UNACKED_INDEX}", "ack message {a[2]}"),
    _Rule("LPUSH RPUSH", _REPLY, "reply to a control command"),
    _Rule("BRPOP", _REPLY, "wait for replies to a control command"),
    _Rule("LPUSH RPUSH", f"(?!{_GROUP_PREFIX}).+", "publish a task message to queue '{q}'"),
    _Rule("BRPOP", ".*", _brpop),
    _Rule("LLEN", ".+", "count messages waiting in queue '{q}'"),
    _Rule("SETEX", _RESULT, "store result of task {id} (expires in {a[2]} s)"),
    _Rule("SET", _RESULT, "store result of task {id}"),
    _Rule("PUBLISH", _RESULT, "announce result of task {id}"),
    _Rule("SUBSCRIBE", _RESULT, "listen for result of task {id}"),
    _Rule("UNSUBSCRIBE", _RESULT, "stop listening for result of task {id}"),
    _Rule("GET MGET", _RESULT, "read result of task {id}"),
    _Rule("DEL", _RESULT, "forget result of task {id}"),
    _Rule("SET SETEX", _GROUP, "store result of group {id}"),
    _Rule("PUBLISH", _GROUP, "announce result of group {id}"),
    _Rule("GET", _GROUP, "read result of group {id}"),
    _Rule(_READS, _CHORD, "read chord state of group {id}"),
    _Rule("*", _CHORD, "update chord state of group {id}"),
    _Rule("PUBLISH", rf"/\d+{re.escape(names.TASK_MULTI_SUFFIX)}", "send batched task events"),
    _Rule("PUBLISH", rf"/\d+{re.escape(names.HEARTBEAT_SUFFIX)}", "send worker heartbeat"),
    _Rule("PUBLISH", _EV + "(?P<rk>.+)", "send event '{rk}'"),
    _Rule("PSUBSCRIBE", _EV + "(?P<rk>.+)", "listen for events matching '{rk}'"),
    _Rule("PUNSUBSCRIBE", _EV + "(?P<rk>.+)", "stop listening for events matching '{rk}'"),
    _Rule("PSUBSCRIBE", _PIDBOX, "listen for remote control commands"),
    _Rule("PUNSUBSCRIBE", _PIDBOX, "stop listening for remote control commands"),
    _Rule("PUBLISH", _PIDBOX, "broadcast a control command"),
    _Rule("SADD", _BIND, "bind queue to exchange '{ex}'"),
    _Rule("SREM", _BIND, "unbind queue from exchange '{ex}'"),
    _Rule("SADD", _PIN, "pin binding to exchange '{ex}'"),
    _Rule("SREM", _PIN, "unpin binding to exchange '{ex}'"),
    _Rule("EVALSHA EVAL", _BIND, "bind queue to exchange '{ex}' (with deadline)"),
    _Rule("EVALSHA EVAL", _DEADLINES, "sweep bindings past their deadline"),
    _Rule("ZADD", _DEADLINES, "push back deadline of exchange '{a[4]}' bindings"),
    _Rule("ZRANGEBYSCORE", _DEADLINES, "find bindings past their deadline"),
    _Rule("SCRIPT", "(?i)load", "load a Lua script into the server's cache"),
    _Rule("SCRIPT", "(?i)exists", "check a Lua script is cached"),
    _Rule("HELLO", ".*", "open the connection (protocol RESP{key})"),
    _Rule("PING", ".*", "check the connection is alive"),
)


def key_of(args: Sequence[str]) -> str:
    """The key a command acts on: for EVAL/EVALSHA the first declared KEYS entry."""
    if not args:
        return ""
    if args[0].upper() in ("EVAL", "EVALSHA"):
        has_keys = len(args) > 3 and args[2].isascii() and args[2].isdigit() and int(args[2]) > 0
        return args[3] if has_keys else ""
    return args[1] if len(args) > 1 else ""


@functools.lru_cache(maxsize=512)
def _rules_for(command: str) -> tuple[_Rule, ...]:
    """The rules that may speak for this command, in order (the spy asks once per line)."""
    return tuple(rule for rule in RULES if rule.covers(command))


def _apply(rule: _Rule, args: Sequence[str], key: str, lang: str) -> str | None:
    """The rule's phrase for this command's key, or None when the rule does not apply."""
    m = rule.pattern.fullmatch(key)
    if m is None:
        return None
    if callable(rule.phrase):
        return rule.phrase(args, lang)
    template = FR.get(rule.phrase, rule.phrase) if lang == "fr" else rule.phrase
    try:
        return template.format(**m.groupdict(), key=key, q=queue_of(key)[0], a=args)
    except (IndexError, KeyError):
        return None  # too few arguments for this template: let a later rule speak


def describe(args: Sequence[str], lang: str = "en") -> str:
    """One short phrase for what the command does in Celery terms, in English or, with
    lang="fr", in French. Never raises. A command no rule knows is its name and key, in
    either language."""
    if not args:
        return ""
    command, key = args[0].upper(), key_of(args)
    for rule in _rules_for(command):
        phrase = _apply(rule, args, key, lang)
        if phrase is not None:
            return phrase
    return f"{command} {_quote(key)}" if key else command


def _escape(ch: str) -> str:
    """One char as Redis would print it inside quotes."""
    if ch in '"\\':
        return "\\" + ch
    if ch in "\n\r\t":
        return repr(ch)[1:-1]
    if not ch.isprintable():
        return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
    return ch


def _quote(arg: str) -> str:
    """Quote one argument the way Redis does; control chars become escapes."""
    return '"' + "".join(map(_escape, arg)) + '"'


def _cut(arg: str, cap: int) -> str:
    """Quote arg; past cap chars, keep a prefix and add a "…(N bytes)" marker.

    The prefix is cut between characters, never inside an escape sequence.
    """
    quoted = _quote(arg)
    if len(quoted) <= cap:
        return quoted
    marker = f"…({len(arg.encode('utf-8', 'surrogatepass'))} bytes)"
    budget, kept = cap - len(marker) - 2, []
    for ch in arg:
        budget -= len(_escape(ch))
        if budget < 0:
            break
        kept.append(_escape(ch))
    return '"' + "".join(kept) + '"' + marker


def short(args: Sequence[str], width: int = 120) -> str:
    """One terminal line for a command, never longer than width (minimum 20).

    Each argument is quoted; one longer than half the width is cut and marked
    with its size, and the line is cut with "…" if still too long. Half the
    width keeps keys such as celery-task-meta-<uuid> whole at the default.
    """
    width = max(width, 20)
    cap = max(width // 2, 16)
    line = " ".join(_cut(str(arg), cap) for arg in args)
    return line if len(line) <= width else line[: width - 1] + "…"


# Connection set-up and keep-alive chatter: every redis-py connection opens with HELLO 3,
# CLIENT SETNAME/SETINFO (and asks for CLIENT MAINT_NOTIFICATIONS), kombu's adds PING. It
# says nothing about Celery: the spy and the timeline leave it out of what they show.
CHATTER = frozenset(
    {
        "PING",
        "HELLO",
        "AUTH",
        "SELECT",
        "ECHO",
        "CLIENT SETNAME",
        "CLIENT SETINFO",
        "CLIENT MAINT_NOTIFICATIONS",
    }
)
_CONTAINERS = ("CLIENT", "SCRIPT", "CONFIG")


def command_name(args: Sequence[str]) -> str:
    """The command's name, upper-cased; two words for a container (CLIENT SETNAME)."""
    if not args:
        return ""
    head = args[0].upper()
    return f"{head} {args[1].upper()}" if head in _CONTAINERS and len(args) > 1 else head


def is_chatter(args: Sequence[str]) -> bool:
    return command_name(args) in CHATTER
