"""The live X-ray beside a running stack: the engine, the terminal feed, the page.

`demo up` (and `demo live`) only wire this: `start_live(…)` starts the engine and the
page and prints nothing; `live.stream()` starts the terminal feed (after the banner);
`live.close()` stops all three.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from demo.live.engine import Engine
from demo.live.server import LiveServer
from demo.live.sources import LIVE, Sources
from demo.live.terminal import ALL, LOGS, QUIET, TerminalFeed

OFF = "off"  # no terminal feed at all


def terminal_mode(*, quiet: bool = False, logs_only: bool = False, off: bool = False) -> str:
    """The feed's mode from a command's flags (the quietest wins)."""
    return OFF if off else QUIET if quiet else LOGS if logs_only else ALL


@dataclass
class LiveView:
    engine: Engine
    feed: TerminalFeed | None
    server: LiveServer | None
    streaming: bool = False

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def stream(self) -> None:
        """Start printing what happens, from now on, in the terminal."""
        if self.feed is not None and not self.streaming:
            self.streaming = True
            self.feed.since = time.time()
            self.engine.subscribe(self.feed)
            self.feed.start()

    def close(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        self.engine.stop()
        if self.server is not None:
            self.server.stop()


def start_live(
    redis_url: str,
    *,
    mode: str = ALL,
    page: bool = True,
    flower: str | None = None,
    state_dir: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    title: str = "the stack",
    console: Console | None = None,
) -> LiveView:
    """The engine following `redis_url`, the page on `host:port` (0: a free port) unless
    `page` is False, and a terminal feed in `mode` (OFF: none), started by `stream()`."""
    engine = Engine(redis_url)
    feed = None if mode == OFF else TerminalFeed(engine, console or Console(), mode=mode)
    server = None
    if page:
        sources = Sources(flower)
        sources.add(LIVE, f"{title}: {redis_url}", engine)
        server = LiveServer(sources, host=host, port=port, state_dir=state_dir).start()
    engine.start()
    return LiveView(engine, feed, server)
