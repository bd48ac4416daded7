"""What the live page can show: the stack's Redis, a trace file, a running scenario's Redis.

Each source is an engine (demo.live.engine) and its hub (demo.live.hub). The stack's is
given; the others are opened from the page and closed with the server. At most
SOURCES_MAX are open: opening one more closes the oldest opened from the page.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from demo.errors import KitError
from demo.live.engine import Engine
from demo.live.hub import Hub

LIVE = "live"
SOURCES_MAX = 8


@dataclass
class Source:
    key: str
    title: str
    engine: Engine
    hub: Hub
    owned: bool  # opened from the page: this registry stops it


class Sources:
    def __init__(self, flower: str | None) -> None:
        self.flower = flower
        self._by_key: OrderedDict[str, Source] = OrderedDict()
        self._lock = threading.Lock()
        self._count = 0

    def add(self, key: str, title: str, engine: Engine, *, owned: bool = False) -> Source:
        source = Source(key, title, engine, Hub(engine, self.flower), owned)
        with self._lock:
            self._by_key[key] = source
            spare = [s for s in self._by_key.values() if s.owned]
            gone = spare[: max(len(self._by_key) - SOURCES_MAX, 0)]
            for old in gone:
                del self._by_key[old.key]
        for old in gone:
            self._close(old)
        return source

    def get(self, key: str) -> Source | None:
        with self._lock:
            return self._by_key.get(key)

    def all(self) -> list[Source]:
        with self._lock:
            return list(self._by_key.values())

    def _next_key(self, kind: str) -> str:
        with self._lock:
            self._count += 1
            return f"{kind}-{self._count}"

    def open_file(self, path: Path, title: str | None = None) -> Source:
        """A `--json-trace` file (KitError if it cannot be read)."""
        try:
            engine = Engine.from_file(path)
        except (OSError, ValueError) as exc:
            raise KitError(f"cannot read the trace {path}: {exc}") from None
        source = self.add(self._next_key("file"), title or path.name, engine, owned=True)
        engine.run(threading.Event())  # folds the file's events, once, at once
        return source

    def open_upload(self, name: str, body: bytes) -> Source:
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as copy:
            copy.write(body)
            copy.flush()
            return self.open_file(Path(copy.name), name)

    def follow(self, redis_url: str, title: str) -> Source:
        """Another Redis (a running scenario's), followed from its stream's oldest entry."""
        for source in self.all():
            if source.engine.redis_url == redis_url:
                return source
        return self.add(self._next_key("follow"), title, Engine(redis_url).start(), owned=True)

    def _close(self, source: Source) -> None:
        if source.owned:
            source.engine.stop()
        source.hub.close()

    def close(self) -> None:
        for source in self.all():
            self._close(source)
