"""A loop in a daemon thread, stopped by an event: the engine's and the terminal's."""

from __future__ import annotations

import threading

from typing_extensions import Self


class Background:
    """Subclasses define `run(stop)`, a loop that returns soon after `stop` is set."""

    thread_name = "xray-background"

    def run(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self.run, args=(self._stopping,), name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the loop to end and wait for it (at most `timeout`); a no-op if never started."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            self._stopping.set()
            thread.join(timeout)
