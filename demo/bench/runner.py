"""What tracing costs: plain Celery, traced, and traced with MONITOR, side by side in one run.

`python -m demo bench [--tasks N] [--rounds R]`. Each mode has
its own lane (lanes.py): a private redis-server, a `-c 2` worker started with that
mode's XRAY_TRACE, and a warm client. Each round sends N tasks per mode, in chunks that
alternate between the modes in an order rotated from chunk to chunk; what the figures mean
is in report.py.

Why lanes that live half the run: this machine's speed drifts by tens of percent within
a minute (other VMs on the host). Measurements close in time share that drift, so the
rounds must be short; restarting a worker for each measurement took longer than the
measurement itself. Why a Redis per lane: the plain worker's Redis never sees a trace
stream, and the spy watches only its own lane. Idle lanes cost next to nothing (a BRPOP
that times out each second), and every mode runs beside the same two idle lanes.

Why two halves, with the lanes started in opposite orders: two lanes that both ran plain
Celery (an A/A check) measured 1.029 and 1.020 in favour of the lane started later, and
0.994 with the start order reversed. Each half restarts every lane, so that a start-order
bias cancels in the median instead of favouring one mode; the A/A check then gave 0.997.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo import names
from demo.bench.lanes import QUEUE, CpuMeter, Lane, lane, wait_idle
from demo.bench.report import MODES, SPY, BenchReport, Measurement, mode_order
from demo.bench.variants import Variant
from demo.config import KitConfig
from demo.errors import KitError
from demo.spy.monitor import Spy
from demo.stack.shield import deferred

# Untimed tasks the client sends first: connections, pub/sub and the emitter's thread are
# set up once per process, not per task, so they stay out of the timed span.
WARMUP_TASKS = 50
# A round's tasks go in chunks, alternating between the modes: each mode's figure is the
# sum over its chunks, and drift slower than a chunk (well under a second) hits all alike.
CHUNK_TASKS = 300
GAP_S = 0.1  # between two chunks


@dataclass
class _Chunk:
    """One client batch of one mode, and the CPU its lane used meanwhile."""

    report: dict[str, Any]
    cpu_s: dict[str, float]
    foreign_share: float
    spy_events: int | None


def run_bench(
    tasks: int = 1500,
    rounds: int = 10,
    concurrency: int = 2,
    *,
    chunk: int = CHUNK_TASKS,
    warmup: int = WARMUP_TASKS,
    run_dir: Path | None = None,
    progress: Callable[[Measurement], None] | None = None,
    modes: tuple[str, ...] = MODES,
    variants: Sequence[Variant] = (),
) -> BenchReport:
    """`rounds` rounds of `tasks` tasks per mode, sent in alternating chunks of at most
    `chunk` tasks; worker logs and client errors land in `run_dir`. Each variant is one
    more mode, run beside the others with its environment on top of traced's.

    Raises KitError if a part does not start or a client dies; a client that misses
    results is recorded (the report is then not `complete`), not raised.
    """
    run_dir = run_dir or KitConfig.from_env().state_dir / time.strftime("bench-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    envs = {v.name: v.env for v in variants}
    modes = (*modes, *envs)
    report = BenchReport(
        tasks,
        rounds,
        concurrency,
        run_dir,
        load_before=os.getloadavg(),
        modes=modes,
        variants=envs,
    )
    started = time.monotonic()
    sizes = chunk_sizes(tasks, chunk)
    first_half = rounds - rounds // 2
    halves = [(range(first_half), modes), (range(first_half, rounds), modes[::-1])]
    for round_indexes, start_order in halves:
        if round_indexes:
            _half(report, round_indexes, start_order, sizes, warmup, envs, progress)
    report.duration_s = time.monotonic() - started
    report.load_after = os.getloadavg()
    return report


def _half(
    report: BenchReport,
    round_indexes: range,
    start_order: tuple[str, ...],
    sizes: list[int],
    warmup: int,
    envs: dict[str, dict[str, str]],
    progress: Callable[[Measurement], None] | None,
) -> None:
    """Start every lane, run these rounds, stop every lane."""
    stack = contextlib.ExitStack()
    interrupted = True
    try:
        # Always private Redis servers, even if CELERY_BROKER_URL names one: nobody
        # else's data, and nobody else's load in the figures.
        lanes = {
            mode: stack.enter_context(
                lane(mode, report.run_dir, report.concurrency, max(sizes), warmup, envs.get(mode))
            )
            for mode in start_order
        }
        try:
            for round_index in round_indexes:
                for measured in _round(lanes, round_index, sizes, report):
                    report.measurements.append(measured)
                    if progress is not None:
                        progress(measured)
        finally:
            # The warm shutdowns side by side (about 2 s each), after the last round or
            # a Ctrl-C: the lanes then close one by one, their workers already stopping.
            for each in lanes.values():
                each.worker.ask_to_stop()
        interrupted = False
    finally:
        # A Ctrl-C while the lanes close must not cut that short: it would leave a lane's
        # redis-server to the kernel's parent-death signal. After an interruption a second
        # one is dropped (the stop is under way); otherwise it takes effect once all is
        # closed, so a Ctrl-C between the halves still ends the run.
        with deferred(redeliver=not interrupted):
            stack.close()


def chunk_sizes(tasks: int, chunk: int) -> list[int]:
    """`tasks` split into as few chunks of at most `chunk` as possible, sizes within 1."""
    count = -(-tasks // max(chunk, 1))
    return [tasks // count + (1 if i < tasks % count else 0) for i in range(count)]


def _round(
    lanes: dict[str, Lane], round_index: int, sizes: list[int], report: BenchReport
) -> list[Measurement]:
    """Each mode's chunks, interleaved: chunk c of round r runs the modes in the order
    mode_order(r * len(sizes) + c), so each mode takes each position in turn."""
    modes = report.modes
    idle = {mode: wait_idle(lane.worker, report.concurrency) for mode, lane in lanes.items()}
    appended = {mode: lane.stream_bytes() for mode, lane in lanes.items()}
    chunks: dict[str, list[_Chunk]] = {mode: [] for mode in lanes}
    everyone = [pid for lane in lanes.values() for pid in lane.pids()]
    for index, size in enumerate(sizes):
        for mode in mode_order(round_index * len(sizes) + index, modes):
            chunks[mode].append(_chunk(lanes[mode], size, everyone))
            time.sleep(GAP_S)  # the last acks and log lines of this chunk, before the next
    time.sleep(0.3)  # the emitters flush every 0.1 s: their last batches are in
    measured = []
    for position, mode in enumerate(mode_order(round_index * len(sizes), modes)):
        lane, done = lanes[mode], chunks[mode]
        gained = lane.stream_bytes() - appended[mode]
        if lane.client.traced != lane.traced or lane.traced == (gained == 0):
            raise KitError(
                f"{mode}: the client traced={lane.client.traced} and the stream gained "
                f"{gained} bytes: the mode did not take effect (is XRAY_TRACE set by "
                "something else?)"
            )
        measured.append(_measurement(lane, round_index, position, done, gained, idle[mode]))
    return measured


def _measurement(
    lane: Lane, round_index: int, position: int, done: list[_Chunk], gained: int, idle: bool
) -> Measurement:
    tasks = sum(int(c.report["tasks"]) for c in done)
    received = sum(int(c.report["received"]) for c in done)
    elapsed = sum(float(c.report["elapsed_s"]) for c in done)
    cpu_us = {
        "client": sum(float(c.report["cpu_s"]) for c in done) * 1e6 / tasks,
        **{
            part: sum(c.cpu_s[part] for c in done) * 1e6 / tasks
            for part in ("worker", "redis", "bench")
        },
    }
    spied = [c.spy_events for c in done if c.spy_events is not None]
    return Measurement(
        mode=lane.mode,
        round=round_index,
        position=position,
        tasks=tasks,
        received=received,
        wrong=sum(int(c.report["wrong"]) for c in done),
        elapsed_s=elapsed,
        tasks_per_s=received / elapsed if elapsed else 0.0,
        trace_bytes=gained,
        spy_events=sum(spied) if spied else None,
        worker_was_idle=idle,
        worker_log=str(lane.worker.log),
        cpu_us=cpu_us,
        threads_us=sum(c.cpu_s["threads"] for c in done) * 1e6 / tasks,
        foreign_cpu=statistics.median(c.foreign_share for c in done),
    )


def _chunk(lane: Lane, size: int, everyone: list[int]) -> _Chunk:
    if lane.store.llen(QUEUE) or lane.store.hlen(names.UNACKED):
        raise KitError(f"{lane.mode}: the queue is not empty before the client starts")
    seen = itertools.count()  # the spy keeps only its latest events: count them as they come

    def count(_: dict[str, Any]) -> None:
        next(seen)

    spy = Spy(lane.server.url, on_event=count).start() if lane.mode == SPY else None
    try:
        cpu = CpuMeter(lane, everyone)
        out = lane.client.run(size)
        used, foreign = cpu.stop()
    finally:
        if spy is not None:
            spy.stop()
    if int(out["received"]) == size and int(lane.store.llen(QUEUE)):
        raise KitError(f"{lane.mode}: messages left in the queue after all results came back")
    return _Chunk(out, used, foreign, next(seen) if spy is not None else None)
