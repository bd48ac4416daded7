"""`python -m demo live`: the page of a trace file, or of a stack started elsewhere (the
docker-compose path: a fixed port, any address), served until --seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from demo.stack.procs import free_port
from demo.stack.stack import Stack
from demo.trace.wait import wait_until

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "trace_send_one_mail.jsonl"
MAIL = "ab28f8df-c94b-4fcd-a034-427fbbae1376"
UP_S = 30


def _page(url: str) -> str:
    def served() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return str(reply.read().decode())
        except OSError:
            return None

    return wait_until(served, timeout=UP_S, what=f"the page {url}", poll_s=0.2)


def _serve(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    command = [sys.executable, "-m", "demo", "live", "--port", str(port), "--seconds", "20", *args]
    proc = subprocess.Popen(
        command,
        env=env or dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, port


def _first_line_with(proc: subprocess.Popen[str], text: str) -> str:
    """The first line of its output that holds `text` ("" if it ends without one): waits for
    it, bounded by --seconds. The page can answer before the command has printed its URL."""
    assert proc.stdout is not None
    return next((line for line in proc.stdout if text in line), "")


def test_a_trace_file_opens_on_a_page_with_its_tasks() -> None:
    proc, port = _serve("--trace", str(FIXTURE))
    try:
        page = _page(f"http://127.0.0.1:{port}/")
        assert f'data-task="{MAIL}"' in page
        assert "a trace file: no live Redis" in page
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_stack_started_elsewhere_is_followed_through_its_redis_url(stack: Stack) -> None:
    env = {**os.environ, "CELERY_BROKER_URL": stack.broker_url}
    proc, port = _serve("--host", "0.0.0.0", "--no-terminal", env=env)
    try:
        page = _page(f"http://127.0.0.1:{port}/")
        assert stack.broker_url in page and 'id="procs"' in page
        said = _first_line_with(proc, "X-ray of")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert f"X-ray of {stack.broker_url}, live on http://127.0.0.1:{port}" in said
