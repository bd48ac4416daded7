"""`demo bench-live` end to end: a real stack, the live page in a real browser, both rates.

Not a timing test: only what it counts is checked (every task sent is shown on the page,
the terminal's feed printed lines), and that it leaves nothing behind."""

from __future__ import annotations

import glob

import pytest

from demo.bench import browser as chromium
from demo.bench.live import run_bench_live


@pytest.mark.timeout(300)
def test_bench_live_shows_every_task_and_leaves_no_folder() -> None:
    why = chromium.missing()
    if why is not None:
        pytest.skip(f"browser tests: {why}")
    before = set(glob.glob("/tmp/xray-bench-live-*"))

    report = run_bench_live(fast_s=0.5, total=100, progress=lambda _: None)

    assert [phase.rate for phase in report.phases] == [1.0, 200.0]
    for phase in report.phases:
        assert phase.sent > 0 and phase.shown == phase.sent, phase
        # The terminal prints a line per task at 1/s, fewer (grouped) at 200/s.
        assert phase.terminal.samples, "the terminal's feed printed what it saw"
    assert [f.tasks for f in report.footprints] == [20, 120]
    assert set(glob.glob("/tmp/xray-bench-live-*")) == before, "its state folder is removed"
