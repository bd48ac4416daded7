"""What `demo up` keeps an eye on while the stack runs, and how it says what went wrong.

Every POLL_S it asks: is the worker's MainProcess alive, does Redis answer PING. The answer
goes to `demo up`'s own terminal within a second or two, with what the worker says about it
in its log (which nobody else is reading).

What the kit does when Redis stops answering, and why:
- its own redis-server is gone (killed, crashed): it kept nothing on disk, so the queues,
  the results and the trace went with it. A new Redis would let the worker reconnect as if
  nothing had happened and hide that loss, so the kit says so and stops the stack: exit 1.
- a Redis that still runs but does not answer (the kit's, stopped; or one the kit did not
  start, named by CELERY_BROKER_URL, which may be restarting on its side): the kit says so
  at once, shows what the worker does meanwhile (it retries), and waits up to
  REDIS_GRACE_S for Redis to answer again before stopping the stack: exit 1.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import redis

from demo import names
from demo.errors import KitError
from demo.stack.stack import Stack

CLIENT_NAME = f"{names.KIT_PREFIX}-watch"
POLL_S = 0.5
PING_TIMEOUT_S = 1.0
REDIS_GRACE_S = 30.0  # how long a Redis that still runs may stay silent
WORKER_NEWS_S = 3.0  # how long to wait for the worker's own words about its broker
# What the worker's lines about its broker connection say (celery/worker/consumer, kombu).
BROKER_WORDS = ("broker", "connect", "trying again", "connection")
RECONNECTED = ("connected to",)  # celery/worker/consumer: "Connected to redis://…"
RECONNECT_NEWS_S = 10.0  # the worker retries every 2 s, then 4, 6, 8 …
LINE_CHARS = 300  # a log line quoted in the terminal, at most


def watch(stack: Stack, say: Callable[[str], None]) -> None:
    """Watch until Ctrl-C (KeyboardInterrupt, raised through) or a failure (KitError)."""
    worker = stack.workers[0]
    client = redis.Redis.from_url(
        stack.broker_url,
        socket_connect_timeout=PING_TIMEOUT_S,
        socket_timeout=PING_TIMEOUT_S,
        client_name=CLIENT_NAME,  # the kit's own: `demo spy` leaves its PINGs out
    )
    read_up_to = _size(worker.log)
    silent_since: float | None = None
    silent_from = read_up_to  # the worker log's size when Redis fell silent
    try:
        while True:
            time.sleep(POLL_S)
            ended = worker.ended()
            if ended is not None:
                raise KitError(
                    f"the worker (MainProcess pid {worker.pid}) {ended}: its log is {worker.log}"
                )
            if _answers(client):
                if silent_since is not None:
                    waited = time.monotonic() - silent_since
                    say(f"Redis at {stack.broker_url} answers again, after {waited:.0f} s.")
                    news = worker_news(worker.log, silent_from, RECONNECTED, RECONNECT_NEWS_S)
                    say(f"  the worker: {news}")
                    silent_since = None
                read_up_to = _size(worker.log)
                continue
            if silent_since is None:
                silent_since, silent_from = time.monotonic(), read_up_to
                _say_redis_is_silent(stack, say, read_up_to)
            _give_up_on(stack, silent_since)
    finally:
        client.close()


def _say_redis_is_silent(stack: Stack, say: Callable[[str], None], read_up_to: int) -> None:
    redis_server = stack.redis
    ended = redis_server.ended() if redis_server is not None else None
    if redis_server is not None and redis_server.proc is not None and ended is not None:
        say(
            f"\nRedis is gone: its redis-server (pid {redis_server.proc.pid}) {ended}. "
            "The queues, results and trace it held are gone with it (no persistence)."
        )
    else:
        say(f"\nRedis at {stack.broker_url} does not answer PING.")
    say(f"  the worker: {worker_news(stack.workers[0].log, read_up_to)}")
    if ended is not None:
        say("  The kit does not start a new, empty Redis (it would hide that loss): stopping.")
    else:
        say(f"  Waiting up to {REDIS_GRACE_S:.0f} s for it to answer again (Ctrl-C stops).")


def _give_up_on(stack: Stack, silent_since: float) -> None:
    redis_server = stack.redis
    ended = redis_server.ended() if redis_server is not None else None
    if redis_server is not None and ended is not None:
        log = redis_server.folder / "redis.log" if redis_server.folder else None
        raise KitError(f"the stack's Redis {ended}" + (f": its log is {log}" if log else ""))
    if time.monotonic() - silent_since > REDIS_GRACE_S:
        raise KitError(
            f"Redis at {stack.broker_url} did not answer for {REDIS_GRACE_S:.0f} s: "
            "the stack is stopped"
        )


def worker_news(
    log: Path, after: int, words: tuple[str, ...] = BROKER_WORDS, deadline_s: float = WORKER_NEWS_S
) -> str:
    """The last line with one of `words` the worker wrote to `log` past byte `after`,
    waiting up to `deadline_s` for one (it notices a lost connection on its next command,
    and tries to reconnect every few seconds)."""
    end = time.monotonic() + deadline_s
    while True:
        lines = [_message(line) for line in _lines_after(log, after)]
        about = [line for line in lines if any(w in line.lower() for w in words)]
        if about:
            return about[-1]
        if time.monotonic() > end:
            return f"nothing about it in its log yet ({log})"
        time.sleep(POLL_S / 5)


def _lines_after(log: Path, offset: int) -> list[str]:
    with contextlib.suppress(OSError), log.open("rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace").splitlines()
    return []


def _message(line: str) -> str:
    """A worker log line as a person reads it: the JSON line's `event`, else the line."""
    text = line.strip()
    if text.startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            text = str(json.loads(text).get("event", text))
    text = " ".join(text.split())  # kombu's retry message spans two lines
    return text if len(text) <= LINE_CHARS else text[:LINE_CHARS] + "…"


def _size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
