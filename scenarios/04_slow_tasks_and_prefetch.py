"""Slow tasks and prefetch: who waits where, and why a short task can wait behind a long one.

A worker takes more messages than it has children: prefetch = concurrency ×
`worker_prefetch_multiplier` (4). The extra ones wait in the MainProcess, reserved in
`unacked`, not in the queue, and no other worker can take them.
"""

from __future__ import annotations

import sys
import time

import redis

from demo import inspectors
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run

LONG, SHORTS = 4.0, 5  # one long task, then five short ones, on a queue of their own


def contest(s: Scenario, idle_node: str, queue: str, flags: list[str], expected: int) -> None:
    """slow(LONG) then SHORTS adds on `queue`; a busy `-c 1` worker takes what its window
    allows, then an idle worker joins the queue. Checks that `expected` adds waited behind
    the long task."""
    from envoi_mails import add, slow

    tl, r = s.timeline, redis.Redis.from_url(s.stack.broker_url)
    t0 = time.time()
    long = slow.apply_async((LONG,), queue=queue)
    shorts = [add.apply_async((n, n), queue=queue) for n in range(1, SHORTS + 1)]
    label = {long.id: f"slow({LONG:g})"} | {x.id: f"add #{n}" for n, x in enumerate(shorts, 1)}
    busy = s.start_worker(f"busy-{queue}", ["-c", "1", "-Q", queue, *flags])
    tl.wait_for(res.is_hop("task.prerun", long.id), timeout=10, what="the long task starting")
    res.wait_quiet(tl, r, busy.pid, queue)  # it stopped sending BRPOP: its window is full
    listed, view = r.llen(queue), inspectors.unacked(r)
    reserved = sorted(label[i] for e in view.entries if (i := e.message.task_id) in label)
    at, names = time.time() - t0, ", ".join(reserved) or "none"
    s.show(f"no BRPOP from the busy worker for 1.3 s (+{at:.2f} s): LLEN {queue} = {listed}")
    s.show(f"reserved by it in `unacked`: {names}")
    res.add_consumer(s.stack.env, idle_node, queue)  # now the idle worker takes the rest
    rows = res.wait_rows(tl, list(label), LONG + 20)
    s.show(res.rows_table(rows, t0, label, f"queue {queue!r}, seconds after publishing"))
    first, held = rows[0], {label[row.task_id] for row in rows[1:] if row.worker_pid == busy.pid}
    ok = len(reserved) == expected and listed == SHORTS - expected
    s.expect(
        f"while it is full: {expected} short task(s) in `unacked`, {SHORTS - expected} in the list",
        ok,
    )
    s.expect("… the ones its MainProcess received", held == set(reserved), f"pid {busy.pid}")
    ok = all(
        ((row.ended or 0) > (first.ended or 0)) == (label[row.task_id] in held) for row in rows[1:]
    )
    s.expect("they ran after the long one; the idle worker ran the others meanwhile", ok)


def story(s: Scenario) -> None:
    from envoi_mails import slow

    tl, r = s.timeline, redis.Redis.from_url(s.stack.broker_url)
    with s.step(
        "1. Six slow(2) tasks, two pool children",
        "`worker -c 2`, then six `slow(2)` at once. Two children run two tasks at a time; the "
        "MainProcess takes all six off the list at once (prefetch 2 × 4 = 8 ≥ 6) and keeps "
        "the four it cannot run yet reserved in `unacked`. `-O fair` is already the default "
        "(asynpool maps `default` to it): a job goes down a child's pipe only when it is idle.",
    ):
        worker = s.start_worker("pair", ["-c", "2"])
        t0 = time.time()
        ids = [slow.delay(2).id for _ in range(6)]

        def ended() -> bool:
            return all(row.ended for row in res.task_rows(tl.events(), ids))

        samples = res.watch(r, "celery", ids, ended, timeout=30)
        rows = sorted(res.task_rows(tl.events(), ids), key=lambda row: row.started or 0)
        stats = res.worker_stats(s.stack.env, worker.nodename)
        labels = {row.task_id: f"slow(2) #{ids.index(row.task_id) + 1}" for row in rows}
        s.show(res.rows_table(rows, t0, labels), res.samples_table(samples, rows, t0))
        first_end = min(row.ended or 0 for row in rows)
        waited = rows[2:]
        seen = frozenset().union(*(sample.reserved for sample in samples))
        empty = next((x.at for x in samples if x.queued == 0), None)
        strategy = stats["pool"]["writes"].get("strategy")
        ok = stats["prefetch_count"] == 8 and strategy == "fair"
        s.expect(
            "the worker reports prefetch_count 8 and the fair strategy",
            ok,
            f"{stats['prefetch_count']}, {strategy}",
        )
        ok = all(row.worker_pid == worker.pid for row in rows)
        s.expect(
            "the MainProcess received all six before the first ended",
            ok and max(row.received or 1e18 for row in rows) < first_end,
        )
        ok = rows[0].overlaps(rows[1]) and rows[0].child_pid != rows[1].child_pid
        s.expect("two ran at once, in two different children", ok)
        pids = {row.child_pid for row in rows}
        s.expect(
            "the same two children ran all six (no new process)",
            pids <= set(worker.children()) and len(pids) == 2,
        )
        ok = all((row.started or 0) - (row.received or 0) > 1.5 for row in waited)
        s.expect("the four others waited ≥ 1.5 s between received and started", ok)
        s.expect("… reserved in `unacked` meanwhile", {row.task_id for row in waited} <= seen)
        s.expect(
            "the list 'celery' was empty before the first task ended",
            empty is not None and empty < first_end,
        )

    with s.step(
        "2. A long task ahead of short ones, prefetch multiplier 4 (the default)",
        f"`slow({LONG:g})` then {SHORTS} `add` on a queue of their own. A `-c 1` worker takes the "
        "long one and, while its only child is busy, reserves as many short ones as its window "
        "allows (1 × 4). Once it stops asking Redis (no BRPOP for over a second), the idle "
        "worker of step 1 joins the queue (`celery control add_consumer`) and gets the rest.",
    ):
        contest(s, worker.nodename, "mult4", [], expected=min(SHORTS, 1 * 4))

    with s.step(
        "3. The same with --prefetch-multiplier 1",
        "The window is 1 × 1, yet one short task still waits behind the long one: with the "
        "default early ack, the running task is acked when it starts, so its place in the "
        "window is free again. Prefetch limits *unacked* messages, not running tasks.",
    ):
        contest(s, worker.nodename, "mult1", ["--prefetch-multiplier", "1"], expected=1)

    with s.step(
        "4. The same with --disable-prefetch (Celery ≥ 5.6, Redis only)",
        "This flag makes the worker ask Redis for a message only while it holds fewer tasks "
        "(running or reserved) than it has children: every short task goes to the idle worker.",
    ):
        contest(s, worker.nodename, "noprefetch", ["--disable-prefetch"], expected=0)


if __name__ == "__main__":
    sys.exit(run("04 · slow tasks and prefetch", story, __doc__ or ""))
