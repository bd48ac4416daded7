"""What one flush of the emitter costs, in the process and in Redis: fixed, and per event.

A micro-benchmark of envoi_mails/xray/emitter.py against a private redis-server: for each
batch size, many rounds of queueing that many hops and flushing them as one stream entry.
The CPU this process used (the hops queued, the flush's encoding, sending and waiting for
the reply) and the CPU the redis-server used (the append script, its trim) are each fitted
with a line, a + b × events: `a` is what a flush costs whatever it holds, `b` what each
event adds. Every process of the app flushes up to 10 times a second, so `a` is paid up to
10 times a second per process, busy or not; `b` scales with the tasks.

Run: `python -m demo bench-flush`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import redis

from demo.bench.capture_cost import HeldEmitter
from demo.names import KIT_PREFIX
from demo.stack.redis_server import RedisServer

SIZES = (1, 50, 200, 800)  # events per flush: an idle process's, a busy worker's
HOP = ("task.prerun", {"task_id": "ab28f8df-c94b-4fcd-a034-427fbbae1376", "task": "add"})
IDENTITY = {"role": "bench", "pid": 1, "ppid": 0, "host": "bench"}


@dataclass(frozen=True)
class FlushCost:
    process_fixed_us: float
    process_per_event_us: float
    redis_fixed_us: float
    redis_per_event_us: float

    def line(self) -> str:
        return (
            f"flush: this process {self.process_fixed_us:.0f} µs + "
            f"{self.process_per_event_us:.2f} µs per event (queued, encoded, sent); Redis "
            f"{self.redis_fixed_us:.0f} µs + {self.redis_per_event_us:.2f} µs per event "
            f"(appended, trimmed); batches of {', '.join(map(str, SIZES))} hops"
        )


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares line through (x, y) points: (intercept, slope)."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if len(set(xs)) < 2:
        raise ValueError("a line needs at least two different x")
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope


def _redis_cpu(client: redis.Redis) -> float:
    """The server's CPU seconds, as it counts them (getrusage: finer than /proc's ticks,
    which are 10 ms: a batch size's whole run can be a few ticks)."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def measure(flushes: int = 300) -> FlushCost:
    server = RedisServer()
    client: redis.Redis | None = None
    try:  # a Ctrl-C while the server starts still stops it (and removes its folder)
        server.start()
        # Named as the kit's own: the app's command capture leaves it out (KIT_PREFIX).
        client = redis.Redis.from_url(server.url, client_name=f"{KIT_PREFIX}-bench-flush")
        held = HeldEmitter(server.url)
        held.emit(IDENTITY, (time.time(), *HOP))
        held.flush()  # connected, script loaded: one-off costs stay out of the figures
        mine: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        for size in SIZES:
            started, redis_started = time.process_time(), _redis_cpu(client)
            for _ in range(flushes):
                for _ in range(size):
                    held.emit(IDENTITY, (time.time(), *HOP))
                held.flush()
            mine.append((size, (time.process_time() - started) * 1e6 / flushes))
            theirs.append((size, (_redis_cpu(client) - redis_started) * 1e6 / flushes))
        if held.dropped:
            raise RuntimeError(f"{held.dropped} events were not sent: the figures mean nothing")
        return FlushCost(*fit(mine), *fit(theirs))
    finally:
        if client is not None:
            client.close()
        server.stop()
