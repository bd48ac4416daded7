"""`demo bench-live` end to end, as a user runs it: a real stack, the live page in a real
browser, both rates. In a process of its own: it is the tutorial's client, and its app
would point at its own Redis, not the test session's.

Not a timing test: only what it counts is checked (every task sent is shown on the page,
the terminal's feed printed lines), and that it leaves nothing behind."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest

from demo.bench import browser as chromium


@pytest.mark.timeout(300)
def test_bench_live_shows_every_task_and_leaves_no_folder(tmp_path: Path) -> None:
    why = chromium.missing()
    if why is not None:
        pytest.skip(f"browser tests: {why}")
    before = set(glob.glob("/tmp/xray-bench-live-*"))
    figures = tmp_path / "live.json"
    command = [sys.executable, "-m", "demo", "bench-live", "--tasks", "100"]
    command += ["--fast-seconds", "0.5", "--json", str(figures)]

    done = subprocess.run(command, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(figures.read_text())
    assert [phase["rate"] for phase in report["phases"]] == [1.0, 200.0]
    for phase in report["phases"]:
        assert phase["sent"] > 0 and phase["shown"] == phase["sent"], phase
        # The terminal prints a line per task at 1/s, fewer (grouped) at 200/s.
        assert phase["terminal"]["samples"], "the terminal's feed printed what it saw"
    assert [f["tasks"] for f in report["footprints"]] == [20, 120]
    assert set(glob.glob("/tmp/xray-bench-live-*")) == before, "its state folder is removed"
