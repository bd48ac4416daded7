"""`demo up`'s terminal, as a newcomer sees it: after the banner, the tutorial's `received` and
`succeeded` lines for a mail sent from another process appear within a second, each with
the process that printed it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from demo.errors import KitError
from demo.stack.procs import free_port
from demo.trace.wait import wait_until

WITHIN_S = 1.0  # the bar: from the task being done to both lines on screen
BANNER_S = 90
RESULT_S = 30
# The tutorial's line, then the moment its get() returned (the task was received and done).
CLIENT = (
    "import time; from envoi_mails import envoi_mail; "
    "r = envoi_mail.apply_async(args=['destinataire@example.com']); "
    "value = r.get(timeout=30); print(r.id, value['pid'], time.time(), flush=True)"
)


class Reader(threading.Thread):
    """Every line of the process's output, with the time it arrived."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.proc, self.lines = proc, list[tuple[float, str]]()

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), line))

    def arrival(self, pattern: str) -> float | None:
        return next((at for at, line in list(self.lines) if re.search(pattern, line)), None)

    def text(self) -> str:
        return "".join(line for _, line in list(self.lines))


def _wait(reader: Reader, pattern: str, timeout: float) -> float:
    try:
        return wait_until(
            lambda: reader.arrival(pattern), timeout=timeout, what=repr(pattern), poll_s=0.02
        )
    except KitError as exc:
        raise AssertionError(f"{exc}:\n{reader.text()[-2000:]}") from None


def test_the_tutorials_received_and_succeeded_lines_appear_within_a_second(
    tmp_path: Path,
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CELERY_BROKER_URL", "SMTP_HOST", "SMTP_PORT"}
    }
    env.update(XRAY_STATE_DIR=str(tmp_path), SMTP_PORT=str(free_port()))
    up = subprocess.Popen(
        [sys.executable, "-m", "demo", "up", "-c", "1", "--no-flower", "--no-page"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    reader = Reader(up)
    reader.start()
    try:
        _wait(reader, "demo send", BANNER_S)
        stack = json.loads((tmp_path / "stack.json").read_text())
        client = subprocess.run(
            [sys.executable, "-c", CLIENT],
            env={**env, **stack["env"]},
            capture_output=True,
            text=True,
            timeout=RESULT_S,
            check=True,
        )
        task_id, pid, done = client.stdout.split()
        line = rf"Task envoi_mails\.envoi_mail\[{task_id}\]"
        received = _wait(reader, rf"MainProcess {stack['worker_pid']} +{line} received", WITHIN_S)
        succeeded = _wait(reader, rf"ForkPoolWorker-\d+ {pid} +{line} succeeded in", WITHIN_S)
        assert max(received, succeeded) - float(done) <= WITHIN_S, reader.text()[-2000:]
        _wait(reader, rf"✔ envoi_mail\[{task_id[:8]}\] SUCCESS in", WITHIN_S)
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=60)
        reader.join(timeout=5)
    assert "nothing left running" in reader.text()
