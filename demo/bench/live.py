"""`python -m demo bench-live`: how soon the live X-ray shows what happened, and what it holds.

Real processes: a private Redis, a `-c 2` worker, the live engine with its terminal feed
(printing to /dev/null: the rendering is paid, a terminal's own speed is not) and its
page in headless chromium (demo.bench.browser). A client in this process publishes `add`
tasks at a steady rate, without waiting for their results.

- Latency, event to screen. Page: from a task's end (the ts of its child's hop) to the
  browser applying the tick that says so, on the same machine's clock (live.js keeps the
  samples with `?bench`). Terminal: from a log line's event to its print (at most
  LINES_PER_S lines a second are printed; the rest are tallied, and not sampled).
- Bounded: after each phase, the page's JS heap (CDP Performance.getMetrics, after a
  garbage collection), its DOM size, and this process's RSS (the engine, the page's server,
  the client), up to `total` tasks.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from rich.console import Console

from demo.bench import browser as chromium
from demo.config import KitConfig
from demo.live.launch import start_live
from demo.stack.stack import Stack

if TYPE_CHECKING:
    from playwright.sync_api import Page

SLOW_RATE, FAST_RATE = 1.0, 200.0  # tasks a second: the two rates
SLOW_S = 20.0
DRAIN_S = 60.0  # how long the last tasks of a phase may take to show
MB = 1024 * 1024
THREADS = ("xray-live", "xray-terminal", "xray-page")
MS = 1000.0


@dataclass(frozen=True)
class Latency:
    samples: tuple[float, ...]  # seconds

    def quantile(self, q: float) -> float | None:
        if len(self.samples) < 2:
            return self.samples[0] if self.samples else None
        return statistics.quantiles(self.samples, n=100, method="inclusive")[round(q * 100) - 1]


@dataclass(frozen=True)
class Phase:
    rate: float  # asked
    sent: int
    achieved: float  # tasks a second actually published
    shown: int  # tasks the page showed done
    page: Latency
    terminal: Latency
    kit_cpu: float  # the X-ray's threads' CPU, in cores, over the phase


@dataclass(frozen=True)
class Footprint:
    tasks: int  # published so far
    heap_mb: float
    dom_nodes: int
    rss_mb: float


@dataclass
class LiveBench:
    phases: list[Phase] = dataclasses.field(default_factory=list)
    footprints: list[Footprint] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _publish(rate: float, count: int) -> tuple[int, float]:
    """Publish `count` add tasks, `rate` a second, paced against the clock; (sent, seconds)."""
    from envoi_mails import add

    start = time.perf_counter()
    for i in range(count):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        add.apply_async(args=(i, i))
    return count, time.perf_counter() - start


def _kit_cpu_s() -> float:
    """CPU seconds used so far by the live X-ray's own threads (xray-live, xray-terminal,
    xray-page): not the client's publishing, which runs in this process too."""
    ours = {t.native_id for t in threading.enumerate() if t.name.startswith(THREADS)}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ours)


def _page_samples(page: Page) -> list[float]:
    samples: list[float] = page.evaluate("window.xray.latencies.splice(0)")
    return samples


def _footprint(page: Page, tasks: int) -> Footprint:
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    nodes = int(page.evaluate("document.getElementsByTagName('*').length"))
    rss = psutil.Process().memory_info().rss
    return Footprint(tasks, metrics["JSHeapUsedSize"] / MB, nodes, rss / MB)


def _phase(page: Page, terminal: deque[float], rate: float, count: int) -> Phase:
    _page_samples(page)
    terminal.clear()
    cpu, start = _kit_cpu_s(), time.monotonic()
    sent, took = _publish(rate, count)
    samples: list[float] = []
    end = time.monotonic() + DRAIN_S
    while len(samples) < sent and time.monotonic() < end:
        time.sleep(0.25)
        samples += _page_samples(page)
    busy = (_kit_cpu_s() - cpu) / (time.monotonic() - start)
    page_latency, terminal_latency = Latency(tuple(samples)), Latency(tuple(terminal))
    return Phase(rate, sent, sent / took, len(samples), page_latency, terminal_latency, busy)


def run_bench_live(
    *,
    fast_s: float = 10.0,
    total: int = 10_000,
    concurrency: int = 2,
    progress: Callable[[str], None] = print,
) -> LiveBench:
    """Both rates, then more fast tasks up to `total`, measuring the page after each."""
    state_dir = Path(tempfile.mkdtemp(prefix="xray-bench-live-"))
    private = dataclasses.replace(
        KitConfig.from_env(),
        broker_url=None,
        result_backend=None,
        smtp_host=None,
        state_dir=state_dir,
    )
    report = LiveBench()
    try:
        with (
            Stack(private) as stack,
            chromium.launched() as browser,
            open("/dev/null", "w") as sink,
        ):
            stack.apply_env()
            stack.start_worker("bench-live", extra=["-c", str(concurrency)])
            live = start_live(stack.broker_url, console=Console(file=sink), state_dir=state_dir)
            try:
                live.stream()
                assert live.url is not None and live.feed is not None
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{live.url}/?bench")
                page.wait_for_selector("#conn.live")
                terminal = live.feed.latencies
                sent = 0
                plan = [(SLOW_RATE, int(SLOW_S * SLOW_RATE)), (FAST_RATE, int(fast_s * FAST_RATE))]
                while sent < total:
                    rate, count = (
                        plan.pop(0) if plan else (FAST_RATE, min(total - sent, total // 2))
                    )
                    progress(f"{count} tasks at {rate:.0f}/s …")
                    phase = _phase(page, terminal, rate, count)
                    sent += phase.sent
                    report.phases.append(phase)
                    report.footprints.append(_footprint(page, sent))
            finally:
                live.close()
    finally:
        # Its own state folder (mails, logs, the stack's lock): gone once the stack is.
        shutil.rmtree(state_dir, ignore_errors=True)
    return report
