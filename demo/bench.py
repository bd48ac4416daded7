"""What tracing costs: plain Celery, traced, and traced with the spy, side by side in one run.

`python -m demo bench [--tasks N] [--rounds R]` (or `python -m demo.bench`). One private
redis-server for the whole run; in each round every mode runs once, in an order rotated
between rounds so that drift (other load, thermal, caches) hits all modes alike. A mode's
figure is its median tasks/s over the rounds; its ratio is that median over plain's.
The bar (issue text): traced / plain >= 0.95. The spy's cost is reported, not judged.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import psutil
import redis
from rich.console import Console
from rich.table import Table

from demo.config import KitConfig
from demo.errors import KitError
from demo.spy import Spy
from demo.stack.redis_server import RedisServer
from demo.stack.worker import Worker
from envoi_mails.xray.emitter import STREAM

PLAIN, TRACED, SPY = "plain", "traced", "traced+spy"
MODES = (PLAIN, TRACED, SPY)
PASS_RATIO = 0.95
# Untimed tasks the client sends first: connections, pub/sub and the emitter's thread are
# set up once per process, not per task, so they stay out of the timed span.
WARMUP_TASKS = 50
IDLE_CPU = 0.10  # the worker counts as idle below this share of one core
QUEUE = "celery"
NOISY_FOREIGN_CPU = 0.10  # above this share taken by others, the verdict warns of noise


@dataclass(frozen=True)
class Measurement:
    """One client run against one freshly started, idle worker."""

    mode: str
    round: int
    position: int  # 0 = first mode of its round
    tasks: int
    received: int  # results that came back before the client's deadline
    wrong: int  # failed tasks or wrong sums
    elapsed_s: float  # first timed publish -> last result
    tasks_per_s: float
    # Entries in the xray:trace stream after the run (events, or batches of them): 0 when
    # plain, more when traced; the check that each mode really ran as it says.
    trace_entries: int
    spy_events: int | None  # what the spy saw during the client run (spy mode only)
    worker_was_idle: bool  # False: the worker still used CPU when the client started
    worker_log: str
    # CPU µs per task, by part: client, worker (MainProcess and pool), redis, and this
    # process (where the spy's thread runs). Other load on the machine barely moves these,
    # so they show the cost of tracing when wall-clock throughput is too noisy to.
    cpu_us: dict[str, float] = field(default_factory=dict)
    # Share of the machine's CPU that other processes took during the client run: the
    # noise in tasks/s. 0.0 on a quiet machine.
    foreign_cpu: float = 0.0

    @property
    def cpu_us_per_task(self) -> float:
        return sum(self.cpu_us.values())

    @property
    def complete(self) -> bool:
        return self.received == self.tasks and self.wrong == 0

    def line(self) -> str:
        spy = f", spy saw {self.spy_events} commands" if self.spy_events is not None else ""
        flag = "" if self.complete else f"  INCOMPLETE: {self.received}/{self.tasks} results"
        if not self.worker_was_idle:
            flag += "  (the worker was still busy when the client started)"
        return (
            f"round {self.round + 1} #{self.position + 1} {self.mode:<10} "
            f"{self.tasks_per_s:8.1f} tasks/s ({self.elapsed_s:.2f} s), "
            f"{self.cpu_us_per_task:.0f} µs CPU/task{spy}{flag}"
        )


@dataclass(frozen=True)
class ModeSummary:
    mode: str
    median: float
    low: float
    high: float
    ratio: float  # this mode's median / plain's median
    round_ratios: list[float]  # per round: this mode / plain of the same round
    cpu_us: float  # median CPU µs per task, all parts together
    cpu_extra: float  # this mode's median CPU per task / plain's, minus 1


@dataclass
class BenchReport:
    """All measurements of a run, and what they add up to."""

    tasks: int
    rounds: int
    concurrency: int
    run_dir: Path
    measurements: list[Measurement] = field(default_factory=list)
    duration_s: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def of(self, mode: str) -> list[Measurement]:
        return sorted((m for m in self.measurements if m.mode == mode), key=lambda m: m.round)

    def summary(self, mode: str) -> ModeSummary:
        speeds = [m.tasks_per_s for m in self.of(mode)]
        plain = {m.round: m.tasks_per_s for m in self.of(PLAIN)}
        base = statistics.median(plain.values())
        cpu = statistics.median(m.cpu_us_per_task for m in self.of(mode))
        base_cpu = statistics.median(m.cpu_us_per_task for m in self.of(PLAIN))
        return ModeSummary(
            mode=mode,
            median=statistics.median(speeds),
            low=min(speeds),
            high=max(speeds),
            ratio=statistics.median(speeds) / base,
            round_ratios=[m.tasks_per_s / plain[m.round] for m in self.of(mode)],
            cpu_us=cpu,
            cpu_extra=cpu / base_cpu - 1 if base_cpu else 0.0,
        )

    @property
    def complete(self) -> bool:
        """Every client got all its results back, right: otherwise the figures mean nothing."""
        return all(m.complete for m in self.measurements)

    @property
    def passed(self) -> bool:
        return self.complete and self.summary(TRACED).ratio >= PASS_RATIO

    def verdict(self) -> str:
        if not self.complete:
            lost = [m.line() for m in self.measurements if not m.complete]
            return "INVALID: some results never came back:\n  " + "\n  ".join(lost)
        traced, spy = self.summary(TRACED), self.summary(SPY)
        word = "PASS" if self.passed else "FAIL"
        sign = ">=" if self.passed else "<"
        lines = [
            f"{word}: traced / plain = {traced.ratio:.3f} {sign} {PASS_RATIO} "
            f"(tracing adds {traced.cpu_extra:+.1%} CPU per task)",
            f"spy: traced+spy / plain = {spy.ratio:.3f}, throughput cost {1 - spy.ratio:.0%} "
            f"(adds {spy.cpu_extra:+.1%} CPU per task)",
        ]
        foreign = statistics.median(m.foreign_cpu for m in self.measurements)
        if foreign > NOISY_FOREIGN_CPU:
            lines.append(
                f"note: other processes took {foreign:.0%} of the machine's CPU during the "
                "measurements (median): tasks/s are noisy, the CPU columns are steadier"
            )
        return "\n".join(lines)

    def table(self) -> Table:
        table = Table(
            title=f"{self.tasks} add tasks, -c {self.concurrency}, {self.rounds} rounds "
            f"({self.duration_s:.0f} s, load {self.load_before[0]:.1f} -> {self.load_after[0]:.1f})"
        )
        columns = ("mode", "median tasks/s", "min–max", "ratio vs plain", "per round")
        for name in (*columns, "CPU µs/task", "CPU vs plain"):
            table.add_column(name, justify="left" if name == "mode" else "right")
        for mode in MODES:
            s = self.summary(mode)
            table.add_row(
                mode,
                f"{s.median:.1f}",
                f"{s.low:.1f}–{s.high:.1f}",
                f"{s.ratio:.3f}",
                f"{min(s.round_ratios):.3f}–{max(s.round_ratios):.3f}",
                f"{s.cpu_us:.0f}",
                f"{s.cpu_extra:+.1%}",
            )
        return table

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "rounds": self.rounds,
            "concurrency": self.concurrency,
            "duration_s": self.duration_s,
            "load_before": self.load_before,
            "load_after": self.load_after,
            "run_dir": str(self.run_dir),
            "measurements": [asdict(m) for m in self.measurements],
            "summary": [asdict(self.summary(mode)) for mode in MODES] if self.measurements else [],
            "passed": self.passed,
        }


def mode_order(round_index: int) -> list[str]:
    """Round r starts with mode r mod 3: each mode takes each position in turn."""
    shift = round_index % len(MODES)
    return [*MODES[shift:], *MODES[:shift]]


def run_bench(
    tasks: int = 1500,
    rounds: int = 5,
    concurrency: int = 2,
    *,
    warmup: int = WARMUP_TASKS,
    run_dir: Path | None = None,
    progress: Callable[[Measurement], None] | None = None,
) -> BenchReport:
    """Measure every mode once per round; worker logs and client errors land in `run_dir`.

    Raises KitError if a part does not start or a client dies; a client that misses
    results is recorded (the report is then not `complete`), not raised.
    """
    run_dir = run_dir or KitConfig.from_env().state_dir / time.strftime("bench-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    report = BenchReport(tasks, rounds, concurrency, run_dir, load_before=os.getloadavg())
    started = time.monotonic()
    # Always a private Redis, even if CELERY_BROKER_URL names one: the bench empties it
    # between measurements, which is allowed only on a Redis the kit started itself.
    server = RedisServer().start()
    try:
        with _broker_env(server.url):
            for round_index in range(rounds):
                for position, mode in enumerate(mode_order(round_index)):
                    measured = _measure(server, mode, round_index, position, report, warmup)
                    report.measurements.append(measured)
                    if progress is not None:
                        progress(measured)
    finally:
        server.stop()
    report.duration_s = time.monotonic() - started
    report.load_after = os.getloadavg()
    return report


@contextlib.contextmanager
def _broker_env(url: str) -> Iterator[None]:
    """Point this process's environment at `url` for the run, then put it back.

    Celery prefers CELERY_BROKER_URL from the environment to the broker an app is built
    with (celery/app/utils.py): the worker pings sent from here would otherwise go to
    whatever Redis the caller's environment names (a test stack, the user's Redis).
    """
    names = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["CELERY_BROKER_URL"] = url
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _measure(
    server: RedisServer,
    mode: str,
    round_index: int,
    position: int,
    report: BenchReport,
    warmup: int,
) -> Measurement:
    # A fresh worker per measurement (= per mode per round). XRAY_TRACE is read when the
    # process imports the app, so a mode needs its own worker anyway; only one worker may
    # consume the `celery` queue at a time, or the modes would run each other's tasks; and
    # three idle workers would still take CPU on a 2-core machine. Restarting each time also
    # starts every measurement from the same state: new pool children, empty trace buffers,
    # an emptied Redis (no stream of the previous run to trim, no stale results).
    url = server.url
    store = redis.Redis.from_url(url)
    store.flushdb()  # the private Redis started by run_bench: nobody else's data
    slug = mode.replace("+", "-")
    env = {
        "CELERY_BROKER_URL": url,
        # Empty, not the URL: Celery lets a set CELERY_RESULT_BACKEND override the app's
        # backend class (celery/app/utils.py), which would drop the traced backend's hops.
        # Empty means "the broker's URL", as in the tutorial, and hides an inherited value.
        "CELERY_RESULT_BACKEND": "",
        "XRAY_TRACE": "0" if mode == PLAIN else "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = report.run_dir / f"worker-r{round_index + 1}-{slug}.log"
    worker = Worker(env, log, f"bench-{slug}", ["-c", str(report.concurrency)])
    spy: Spy | None = None
    seen = itertools.count()  # the spy keeps only its latest events: count them as they come

    def count(_: dict[str, Any]) -> None:
        next(seen)

    spy_events: int | None = None
    try:
        worker.start()
        idle = _wait_idle(worker, report.concurrency)
        if store.llen(QUEUE) or store.hlen("unacked"):
            raise KitError(f"{mode}: the queue is not empty before the client starts")
        if mode == SPY:
            spy = Spy(url, on_event=count).start()
        cpu = _CpuMeter(worker, server)
        out = _run_client(
            env, report.tasks, warmup, report.run_dir / f"client-r{round_index + 1}-{slug}.log"
        )
        if spy is not None:
            spy.stop()
            spy_events, spy = next(seen), None
        # The worker, Redis and the spy also served the client's warm-up: per task of both.
        cpu_us = {
            "client": float(out["cpu_s"]) * 1e6 / report.tasks,
            **{part: s * 1e6 / (report.tasks + warmup) for part, s in cpu.used().items()},
        }
        foreign = cpu.foreign_share()
    finally:
        if spy is not None:
            spy.stop()
        worker.stop()  # its shutdown flushes the last trace events: XLEN below sees them all
    trace_entries = int(store.xlen(STREAM)) if store.exists(STREAM) else 0
    left = int(store.llen(QUEUE))
    store.close()
    if out["traced"] != (mode != PLAIN) or (mode == PLAIN) != (trace_entries == 0):
        raise KitError(
            f"{mode}: the client traced={out['traced']} and the stream holds {trace_entries} "
            "entries: the mode did not take effect (is XRAY_TRACE set by something else?)"
        )
    if left and out["received"] == report.tasks:
        raise KitError(f"{mode}: {left} messages left in the queue after all results came back")
    return Measurement(
        mode=mode,
        round=round_index,
        position=position,
        tasks=report.tasks,
        received=int(out["received"]),
        wrong=int(out["wrong"]),
        elapsed_s=float(out["elapsed_s"]),
        tasks_per_s=float(out["tasks_per_s"]),
        trace_entries=trace_entries,
        spy_events=spy_events,
        worker_was_idle=idle,
        worker_log=str(log),
        cpu_us=cpu_us,
        foreign_cpu=foreign,
    )


class _CpuMeter:
    """CPU seconds used since creation by the worker's processes, Redis and this process,
    and the share of the machine that other processes took meanwhile."""

    def __init__(self, worker: Worker, server: RedisServer) -> None:
        if server.proc is None:
            raise KitError("the bench's redis-server is not running")
        self._worker = psutil.Process(worker.pid)
        self._redis = psutil.Process(server.proc.pid)
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        machine = psutil.cpu_times()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client, once reaped
        return {
            "worker": _family_cpu(self._worker),
            "redis": _family_cpu(self._redis),
            "bench": time.process_time(),  # the spy's reader thread runs in this process
            "client": children.ru_utime + children.ru_stime,
            "machine": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
            "wall": time.monotonic(),
        }

    def used(self) -> dict[str, float]:
        """CPU seconds of the worker, Redis and this process."""
        now = self._now()
        return {part: now[part] - self._start[part] for part in ("worker", "redis", "bench")}

    def foreign_share(self) -> float:
        """Share of all cores used by processes that are not part of the measurement."""
        now = self._now()
        spent = {part: now[part] - self._start[part] for part in now}
        ours = spent["worker"] + spent["redis"] + spent["bench"] + spent["client"]
        capacity = spent["wall"] * (os.cpu_count() or 1)
        return max(0.0, (spent["machine"] - ours) / capacity) if capacity else 0.0


def _family_cpu(proc: psutil.Process) -> float:
    """CPU seconds of `proc` and its live children (0 for a process that is gone)."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for member in family:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _wait_idle(worker: Worker, children: int, deadline_s: float = 20.0) -> bool:
    """Wait until the pool is forked and the worker's processes stop using CPU.

    A worker answers ping before it is quiet (start-up imports in the children, mingle):
    timing from then would charge its start-up to the first mode. False at the deadline.
    """
    proc = psutil.Process(worker.pid)
    end = time.monotonic() + deadline_s
    quiet = 0
    while time.monotonic() < end:
        before, since = _family_cpu(proc), time.monotonic()
        time.sleep(0.3)
        share = (_family_cpu(proc) - before) / (time.monotonic() - since)
        quiet = quiet + 1 if share < IDLE_CPU and len(worker.children()) == children else 0
        if quiet >= 2:
            return True
    return False


def _run_client(env: dict[str, str], tasks: int, warmup: int, log: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "demo.bench_client", "--tasks", str(tasks)]
    command += ["--warmup", str(warmup)]
    # The client has its own per-batch deadline; this one only catches a hung process.
    limit = 2 * (30 + max(tasks, warmup) / 20) + 60
    with log.open("w") as errors:
        try:
            run = subprocess.run(
                command,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise KitError(f"bench client still running after {limit:.0f} s (see {log})") from None
    try:
        out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise KitError(
            f"bench client exited {run.returncode} without a report (see {log})"
        ) from None
    if "error" in out:
        raise KitError(f"bench client: {out['error']} (see {log})")
    return out


@click.command("bench")
@click.option("--tasks", type=click.IntRange(min=1), default=1500, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="write the report")
def bench_command(tasks: int, rounds: int, concurrency: int, json_path: Path | None) -> None:
    """Throughput of plain Celery, traced, and traced with the spy, side by side.

    Exit code 0 on PASS and on FAIL (this is a measurement); 1 if a part failed or
    results went missing (then there is nothing to measure).
    """
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a log file gets the whole table, not 80 columns of it
    console.print(
        f"bench: {len(MODES)} modes × {rounds} rounds × {tasks} add tasks, -c {concurrency}"
    )
    try:
        report = run_bench(tasks, rounds, concurrency, progress=lambda m: console.print(m.line()))
    except KitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
    if report.complete:
        console.print(report.table())
    console.print(report.verdict(), style="bold green" if report.passed else "bold red")
    console.print(f"worker and client logs: {report.run_dir}")
    if not report.complete:
        sys.exit(1)


if __name__ == "__main__":
    bench_command()
