"""The trace emitter survives fork(): a prefork pool child must never hang at start-up."""

from __future__ import annotations

import os
import threading
import time

import redis

from demo.stack.stack import Stack
from demo.trace.wait import wait_until
from envoi_mails.xray import wire
from envoi_mails.xray.emitter import Emitter
from envoi_mails.xray.stream import STREAM


def test_children_forked_while_the_parent_flushes_can_emit_and_exit(stack: Stack) -> None:
    emitter = Emitter(stack.broker_url)
    stop = threading.Event()

    def busy_parent() -> None:
        # Keep the flush thread inside redis-py as much as possible while we fork.
        # Bounded rate: the capped stream must not trim the children's events away.
        while not stop.wait(0.0002):
            emitter.emit({"pid": os.getpid()}, (time.time(), "test.parent", {}))

    threading.Thread(target=busy_parent, daemon=True).start()
    children = []
    try:
        for n in range(100):
            pid = os.fork()
            if pid == 0:  # the child: what a pool child does in worker_process_init
                emitter.emit({"pid": os.getpid()}, (time.time(), "test.child", {"n": n}))
                emitter.flush()
                os._exit(0)
            children.append(pid)
            # Pacing, not waiting: 100 forks spread over several of the parent's flushes.
            stop.wait(0.005)

        def all_reaped() -> bool:
            for pid in list(children):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    assert os.waitstatus_to_exitcode(status) == 0
                    children.remove(pid)
            return not children

        wait_until(
            all_reaped,
            timeout=20,
            what="every forked child's exit",
            poll_s=0.01,
            progress=lambda: f"{len(children)} forked children hung",
        )
    finally:
        stop.set()
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    client = redis.Redis.from_url(stack.broker_url, decode_responses=True)
    batches = [
        wire.decode(fields or {}) or [] for _, fields in client.xrange(STREAM, "-", "+") or []
    ]
    shipped = [e for batch in batches for e in batch if e["event"] == "test.child"]
    assert len(shipped) == 100, "every child's event reached the stream"
