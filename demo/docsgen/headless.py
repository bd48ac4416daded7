"""Run a scenario as a learner's CI would: a subprocess, `--no-pause`, stdin closed.

The docs generator and the tests both run scenarios this way, and read back the trace
the run wrote with `--json-trace`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo import names

ROOT = Path(__file__).resolve().parents[2]

# Without these the scenario starts its own Redis and SMTP sink: a worker that someone
# else runs against the environment's Redis can never take its tasks.
HIDDEN = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SMTP_HOST", "SMTP_PORT")


@dataclass(frozen=True)
class HeadlessRun:
    path: Path
    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]  # the trace, [] when none was written

    @property
    def expectations(self) -> list[dict[str, Any]]:
        """The scenario's checks, as it wrote them into its trace."""
        return [e for e in self.events if e["event"] == names.EXPECTATION]

    def failure_report(self, stdout_tail: int = 3000, stderr_tail: int = 2000) -> str:
        tail = f"{self.stdout[-stdout_tail:]}\n{self.stderr[-stderr_tail:]}"
        return f"{tail}\n{self.path.name} exited {self.returncode}"


def run_headless(
    script: Path, workdir: Path, timeout_s: float, options: Sequence[str] = ()
) -> HeadlessRun:
    """Run `script --no-pause --json-trace <workdir>/<stem>.jsonl [options]` with its own
    state dir.

    subprocess.TimeoutExpired propagates: each caller says what a hung scenario means.
    """
    trace = workdir / f"{script.stem}.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN}
    env["XRAY_STATE_DIR"] = str(workdir / f"state-{script.stem}")
    done = subprocess.run(
        [sys.executable, str(script), "--no-pause", "--json-trace", str(trace), *options],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout_s,
    )
    events = []
    if trace.exists():
        events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    return HeadlessRun(script, done.returncode, done.stdout, done.stderr, events)
