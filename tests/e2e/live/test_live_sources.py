"""The live page's other sources, through its routes: a running scenario followed on its own
Redis, and a browser that comes back resuming after the last stream entry it saw."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from demo.live import registry
from demo.live.launch import LiveView
from demo.stack.stack import Stack

TIMEOUT_S = 5


def _get(url: str) -> tuple[str, str]:
    """(the final URL after redirects, the body)."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
        return reply.geturl(), reply.read().decode()


def _first_event(url: str, headers: dict[str, str] | None = None) -> str:
    """The first Server-Sent Event of the stream at `url` (it stays open: read to its end)."""
    request = urllib.request.Request(url, headers=headers or {})
    lines = []
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
        while (line := reply.readline().decode()) not in ("\n", ""):
            lines.append(line)
    return "".join(lines)


def test_a_running_scenario_is_listed_and_followed_on_its_own_redis(
    stack: Stack, live: LiveView, tmp_path: Path
) -> None:
    assert live.url is not None
    # The same Redis under another name: the page already follows the stack's own URL.
    other = stack.broker_url.replace("127.0.0.1", "localhost")
    with registry.announce(tmp_path, "02 send one mail", other):
        _, page = _get(live.url)
        assert f"/follow?pid={os.getpid()}" in page
        where, followed = _get(f"{live.url}/follow?pid={os.getpid()}")
    assert "source=follow-" in where
    assert "02 send one mail" in followed and 'id="procs"' in followed


def _data(event: str) -> dict[str, Any]:
    """The JSON of one Server-Sent Event's `data:` line."""
    line = next(x for x in event.splitlines() if x.startswith("data: "))
    found: dict[str, Any] = json.loads(line.removeprefix("data: "))
    return found


def test_the_event_stream_carries_the_entry_id_and_resumes_after_it(live: LiveView) -> None:
    assert live.url is not None
    first = _first_event(f"{live.url}/events")
    assert first.startswith("id: ") and "\nevent: tick\n" in first
    entry = first.split("\n", 1)[0].removeprefix("id: ")
    again = _first_event(f"{live.url}/events", {"Last-Event-ID": entry})
    # Resumed, not reset: only what came after `entry` (the shared stack may have moved on
    # meanwhile: a worker of another test stopping, say), none of what `first` carried.
    before, after = _data(first), _data(again)
    assert after["reset"] is False
    assert not {json.dumps(row) for row in before.get("feed", [])} & {
        json.dumps(row) for row in after.get("feed", [])
    }
    resumed_at = again.split("\n", 1)[0].removeprefix("id: ")
    assert tuple(map(int, resumed_at.split("-"))) >= tuple(map(int, entry.split("-")))
