"""The bench's lanes: for one mode, a private redis-server, a worker and a warm client.

Also what measures them: the CPU a lane's processes use, and when a worker is idle.
See runner.py for why each mode keeps its own lane for half the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from demo import names
from demo.bench.report import PLAIN
from demo.errors import KitError
from demo.stack.redis_server import RedisServer
from demo.stack.shield import deferred
from demo.stack.worker import Worker
from envoi_mails.settings import Settings

IDLE_CPU = 0.10  # the worker counts as idle below this share of one core
QUEUE = names.DEFAULT_QUEUE


class Client:
    """A `python -m demo.bench.client --serve` process: one per lane, warm for the whole run."""

    def __init__(self, env: dict[str, str], chunk: int, warmup: int, log: Path) -> None:
        command = [sys.executable, "-m", "demo.bench.client", "--serve"]
        command += ["--tasks", str(chunk), "--warmup", str(warmup)]
        self._log = log
        self._errors = log.open("w")
        self.proc = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
        )
        # The client's own deadline per batch is 30 s + 1 s per 20 tasks: this one only
        # catches a process that hangs.
        self._limit_s = 2 * (30 + max(chunk, warmup) / 20) + 60
        try:
            ready = self._reply()
            if not ready.get("ready"):
                raise KitError(f"bench client did not start: {ready} (see {log})")
        except BaseException:  # a failure, or a Ctrl-C while it starts
            self.close()  # the lane never gets this client: nothing else would stop it
            raise
        self.traced = bool(ready["traced"])

    def run(self, count: int) -> dict[str, Any]:
        """Publish `count` tasks and wait for their results; the client's JSON report."""
        if self.proc.stdin is None:
            raise KitError("bench client has no stdin")
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        if self.proc.stdout is None:
            raise KitError("bench client has no stdout")
        readable, _, _ = select.select([self.proc.stdout], [], [], self._limit_s)
        line = self.proc.stdout.readline() if readable else ""
        if not line:
            code = self.proc.poll()
            what = "still running" if code is None else f"exited {code}"
            raise KitError(f"bench client {what} without a report (see {self._log})")
        try:
            out: dict[str, Any] = json.loads(line)
        except ValueError:
            raise KitError(f"bench client wrote {line.strip()!r} (see {self._log})") from None
        if "error" in out:
            raise KitError(f"bench client: {out['error']} (see {self._log})")
        return out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF: the client ends by itself
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._errors.close()


@dataclass
class Lane:
    """One mode's redis-server, worker and client, for half of the run (runner.py)."""

    mode: str
    server: RedisServer
    worker: Worker
    client: Client
    store: redis.Redis
    traced: bool  # what the lane's XRAY_TRACE asks for: its stream must grow, or stay empty

    def stream_bytes(self) -> int:
        """Payload bytes ever appended to this lane's trace stream: it only grows, where the
        stream's length stays put once its byte bound trims an entry for each one added."""
        return int(self.store.get(names.TRACE_OFFSET_KEY) or 0)

    def pids(self) -> list[int]:
        """Every process of the lane: redis-server, worker and its children, client."""
        server = [self.server.proc.pid] if self.server.proc else []
        return [*server, self.worker.pid, *self.worker.children(), self.client.proc.pid]


@contextlib.contextmanager
def lane(
    mode: str,
    run_dir: Path,
    concurrency: int,
    chunk: int,
    warmup: int,
    variant_env: Mapping[str, str] | None = None,
) -> Iterator[Lane]:
    """The lane of `mode`; a variant's environment (variants.py) goes on top of the mode's."""
    server = RedisServer()
    slug = mode.replace("+", "-")
    worker: Worker | None = None
    store: redis.Redis | None = None
    client: Client | None = None
    try:  # from the first part on: a Ctrl-C during the lane's start-up stops what started
        server.start()
        env = {
            "CELERY_BROKER_URL": server.url,
            # Empty, not the URL: Celery lets a set CELERY_RESULT_BACKEND override the app's
            # backend class (celery/app/utils.py), which would drop the traced backend's hops.
            # Empty means "the broker's URL", as in the tutorial, and hides an inherited value.
            "CELERY_RESULT_BACKEND": "",
            "XRAY_TRACE": "0" if mode == PLAIN else "1",
            "PYTHONUNBUFFERED": "1",
            **(variant_env or {}),
        }
        log = run_dir / f"worker-{slug}.log"
        worker = Worker(env, log, f"bench-{slug}", ["-c", str(concurrency)])
        store = redis.Redis.from_url(server.url)
        with broker_env(server.url):
            worker.start()
        client = Client(env, chunk, warmup, run_dir / f"client-{slug}.log")
        yield Lane(mode, server, worker, client, store, Settings.from_env(env).xray_trace)
    finally:
        # Not cut short by another Ctrl-C (shield.py); within the runner's own deferral,
        # which closes the lanes, this one leaves the decision to it.
        with deferred(redeliver=True):
            if client is not None:
                client.close()
            if worker is not None:
                worker.stop()
            if store is not None:
                store.close()
            server.stop()


@contextlib.contextmanager
def broker_env(url: str) -> Iterator[None]:
    """Point this process's environment at `url` for the block, then put it back.

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


class CpuMeter:
    """CPU seconds used from creation to `stop()` by one lane's worker and Redis and by this
    process, the part of it the worker's and client's side threads took, and the share of
    the machine that processes outside the bench took meanwhile."""

    def __init__(self, lane: Lane, everyone: list[int]) -> None:
        if lane.server.proc is None:
            raise KitError("the bench's redis-server is not running")
        self._worker = psutil.Process(lane.worker.pid)
        self._client = psutil.Process(lane.client.proc.pid)
        self._redis = psutil.Process(lane.server.proc.pid)
        self._everyone = [proc for pid in everyone if (proc := _process(pid)) is not None]
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        machine = psutil.cpu_times()
        return {
            "worker": family_cpu(self._worker),
            "redis": family_cpu(self._redis),
            "bench": time.process_time(),  # the spy's reader thread runs in this process
            "threads": side_threads_cpu(self._worker) + side_threads_cpu(self._client),
            "ours": sum(_cpu(proc) for proc in self._everyone) + time.process_time(),
            "machine": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
            "wall": time.monotonic(),
        }

    def stop(self) -> tuple[dict[str, float], float]:
        """CPU seconds of the worker, Redis and this process; the others' share of all cores."""
        now = self._now()
        spent = {part: now[part] - self._start[part] for part in now}
        capacity = spent["wall"] * (os.cpu_count() or 1)
        foreign = max(0.0, (spent["machine"] - spent["ours"]) / capacity) if capacity else 0.0
        return {part: spent[part] for part in ("worker", "redis", "bench", "threads")}, foreign


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _cpu(proc: psutil.Process) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        times = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def _family(proc: psutil.Process) -> list[psutil.Process]:
    """`proc` and its live children ([] for a process that is gone)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def family_cpu(proc: psutil.Process) -> float:
    """CPU seconds of `proc` and its live children (0 for a process that is gone)."""
    return sum(_cpu(member) for member in _family(proc))


def side_threads_cpu(proc: psutil.Process) -> float:
    """CPU seconds of every thread but the main one, in `proc` and its children. Plain
    Celery's worker and client use next to none (measured: under 1 µs a task); traced, it is
    the emitters' threads (envoi_mails/xray/emitter.py)."""
    total = 0.0
    for member in _family(proc):
        try:
            threads = member.threads()
        except psutil.NoSuchProcess:
            continue
        total += sum(t.user_time + t.system_time for t in threads if t.id != member.pid)
    return total


def wait_idle(worker: Worker, children: int, deadline_s: float = 20.0) -> bool:
    """Wait until the pool is forked and the worker's processes stop using CPU.

    A worker answers ping before it is quiet (start-up imports in the children, mingle):
    timing from then would charge its start-up to the first mode. False at the deadline.
    """
    proc = psutil.Process(worker.pid)
    end = time.monotonic() + deadline_s
    quiet = 0
    while time.monotonic() < end:
        before, since = family_cpu(proc), time.monotonic()
        time.sleep(0.3)
        share = (family_cpu(proc) - before) / (time.monotonic() - since)
        quiet = quiet + 1 if share < IDLE_CPU and len(worker.children()) == children else 0
        if quiet >= 2:
            return True
    return False
