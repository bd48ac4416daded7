"""Signals held off while the kit starts or stops one of its processes.

A Ctrl-C lands wherever the kit happens to be. Two places must not be cut in half: between
fork() and the moment the kit holds the new process's handle (it could never stop a
process it does not know), and the stop itself (a second Ctrl-C during the first one's
stop used to leave Redis and the SMTP sink running, and their folder in /tmp). Inside
`deferred()`, SIGINT, SIGTERM and SIGHUP are noted instead of acted on; on leaving, they
are handed to their usual handlers, or dropped when what they ask for (stop) is done.

A SIGKILL cannot be held off: for that, `procs.spawn` asks Linux to SIGTERM each part when
the kit dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_holding = False  # one deferral at a time: an inner one leaves the signals to the outer


@contextlib.contextmanager
def deferred(*, redeliver: bool) -> Iterator[list[int]]:
    """Note SIGINT, SIGTERM and SIGHUP instead of acting on them, within the block.

    On leaving, `redeliver=True` raises what arrived in their usual handlers (a Ctrl-C then
    interrupts just after the block); `redeliver=False` drops them: a stop already does
    what they ask. Only the main thread receives signals: elsewhere, and inside another
    `deferred()`, this does nothing (the outer one decides).
    """
    global _holding
    if _holding or threading.current_thread() is not threading.main_thread():
        yield []
        return
    arrived: list[int] = []

    def note(signum: int, _: Any) -> None:
        arrived.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in STOP_SIGNALS}
    _holding = True
    try:
        yield arrived
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        _holding = False
    if redeliver:
        for number in dict.fromkeys(arrived):
            signal.raise_signal(number)
