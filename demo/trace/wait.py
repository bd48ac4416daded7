"""The one way the kit waits: poll a probe until it answers, or fail saying what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from demo.errors import KitError

T = TypeVar("T")
POLL_S = 0.05


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    poll_s: float = POLL_S,
    progress: Callable[[], str] | None = None,
) -> T:
    """Call `probe` every `poll_s` until it returns something truthy, and return that.

    At the deadline, raise KitError("<what>: not seen within <timeout> s"), followed by what
    `progress()` says was seen so far (for example "2 of 3"). The probe runs once more at
    the deadline, so a slow poll never loses the last chance.
    """
    end = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() >= end:
            seen = f" ({progress()})" if progress is not None else ""
            raise KitError(f"{what}: not seen within {timeout:g} s{seen}")
        time.sleep(min(poll_s, max(end - time.monotonic(), 0.0)) or poll_s)
