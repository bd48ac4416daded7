"""Slow tasks and prefetch: who waits where, and why a short task can wait behind a long one.

A worker takes more messages than it has children: prefetch = concurrency ×
`worker_prefetch_multiplier` (4). The extra ones wait in the MainProcess, reserved in
`unacked`, not in the queue: no other worker can take them, until the visibility timeout
(an hour by default) lets a sweep push them back (11).
"""

from __future__ import annotations

import sys
import time

from demo import inspectors, names
from demo.render.tables import commands_table, task_lives_table
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run
from demo.stack import control
from demo.trace import query as q
from demo.trace.event import at

PAIR, CHILDREN, MULTIPLIER = "pair", 2, 4  # step 1's worker; Celery's default multiplier
SLOWS, SLOW_S = 6, 2  # step 1: six slow(2)
WAITED_S = 1.5  # a task that waited for a free child waited at least this long
LONG, SHORTS = 4.0, 5  # one long task, then five short ones, on a queue of their own
QUEUE = names.DEFAULT_QUEUE
SLOW_TASK, ADD_TASK = "envoi_mails.slow", "envoi_mails.add"
CONTROL_S = 2.0  # how long a control command waits for the worker's reply
SOON_S = 10  # how long a hop that follows at once may take to be seen
TASK_S = 30  # how long step 1's tasks may take, all six
STOPS_ASKING_S = 15  # how long a busy worker may take to fill its prefetch window


def contest(s: Scenario, queue: str, flags: list[str], *, expected: int) -> None:
    """slow(LONG) then SHORTS adds on `queue`; a busy `-c 1` worker takes what its window
    allows, then step 1's idle worker joins the queue. Checks that `expected` adds waited
    behind the long task."""
    from envoi_mails import add, slow

    tl, t0 = s.timeline, time.time()
    long = slow.apply_async((LONG,), queue=queue)
    shorts = [add.apply_async((n, n), queue=queue) for n in range(1, SHORTS + 1)]
    label = {long.id: f"slow({LONG:g})"} | {x.id: f"add #{n}" for n, x in enumerate(shorts, 1)}
    busy = s.start_worker(f"busy-{queue}", ["-c", "1", "-Q", queue, *flags])
    tl.wait_for(event="task.prerun", task_id=long.id, timeout=SOON_S, what="the long task starting")
    res.wait_stops_asking(tl, busy.pid, queue=queue, timeout=STOPS_ASKING_S)  # its window is full
    listed, view = s.redis.llen(queue), inspectors.unacked(s.redis)
    reserved = sorted(label[i] for e in view.entries if (i := e.message.task_id) in label)
    after, who = time.time() - t0, ", ".join(reserved) or "none"
    quiet = f"no BRPOP from the busy worker for {res.QUIET_S:g} s (+{after:.2f} s)"
    s.show(f"{quiet}: LLEN {queue} = {listed}")
    s.show(f"reserved by it in `unacked`: {who}")
    control.add_consumer(s.stack.env, s.worker(PAIR).nodename, queue, timeout=CONTROL_S)
    lives = tl.wait_lives(list(label), timeout=LONG + TASK_S)
    s.show(task_lives_table(lives, t0, label, f"queue {queue!r}, seconds after publishing"))
    first, held = lives[0], {label[t.task_id] for t in lives[1:] if t.worker_pid == busy.pid}
    ok = len(reserved) == expected and listed == SHORTS - expected
    s.expect(
        f"while it is full: {expected} short task(s) in `unacked`, {SHORTS - expected} in the list",
        ok,
    )
    s.expect("… the ones its MainProcess received", held == set(reserved), f"pid {busy.pid}")
    ended = at(first["task.postrun"])
    ok = all((at(t["task.postrun"]) > ended) == (label[t.task_id] in held) for t in lives[1:])
    s.expect("they ran after the long one; the idle worker ran the others meanwhile", ok)


def window_freed_by_the_ack(s: Scenario, queue: str) -> None:
    """Why a short task waited with a window of 1: the busy MainProcess reserved it only once
    the long task's ack (HDEL unacked) had freed the window, while the long task still ran."""
    busy, events = s.worker(f"busy-{queue}"), s.timeline.events()
    (long_id,) = s.published(SLOW_TASK, routing_key=queue)
    shorts = s.published(ADD_TASK, count=SHORTS, routing_key=queue)
    ack = q.first(events, command="HDEL", key=names.UNACKED, task_id=long_id, pid=busy.pid)
    held = [
        e
        for t in shorts
        if (e := q.first(events, command="HSET", key=names.UNACKED, task_id=t, pid=busy.pid))
    ]
    ended = q.life(events, long_id)["task.postrun"]
    s.show(
        commands_table(
            [e for e in (ack, *held) if e], "the long task's ack, then the short one's reservation"
        )
    )
    s.expect(
        "its MainProcess acked the long task (HDEL unacked) before it reserved that short one "
        "(HSET unacked), and reserved it while the long one still ran",
        len(held) == 1 and at(ack) < at(held[0]) < at(ended),
        f"{len(held)} short task(s) reserved by pid {busy.pid}",
    )


def step_1(s: Scenario) -> None:
    from envoi_mails import slow

    tl = s.timeline
    with s.step(
        "1. Six slow(2) tasks, two pool children",
        "`worker -c 2`, then six `slow(2)` at once. Two children run two tasks at a time; the "
        "MainProcess takes all six off the list at once (prefetch 2 × 4 = 8 ≥ 6) and keeps "
        "the four it cannot run yet reserved in `unacked`. `-O fair` is already the default "
        "(asynpool maps `default` to it): a job goes down a child's pipe only when it is idle.",
    ):
        worker = s.start_worker(PAIR, ["-c", str(CHILDREN)])
        t0 = time.time()
        ids = [slow.delay(SLOW_S).id for _ in range(SLOWS)]

        def ended() -> bool:
            return all(life.has("task.postrun") for life in q.lives(tl.events(), ids))

        samples = res.watch(s.redis, QUEUE, ids, done=ended, timeout=TASK_S)
        lives = sorted(tl.wait_lives(ids, timeout=SOON_S), key=lambda t: at(t["task.prerun"]))
        stats = control.inspect_stats(s.stack.env, worker.nodename, timeout=CONTROL_S)
        labels = {t.task_id: f"slow({SLOW_S}) #{ids.index(t.task_id) + 1}" for t in lives}
        s.show(task_lives_table(lives, t0, labels), res.samples_table(samples, lives, t0))
        first_end = min(at(t["task.postrun"]) for t in lives)
        waited = lives[CHILDREN:]
        seen = frozenset().union(*(sample.reserved for sample in samples))
        empty = next((x.at for x in samples if x.queued == 0), None)
        strategy = stats["pool"]["writes"].get("strategy")
        ok = stats["prefetch_count"] == CHILDREN * MULTIPLIER and strategy == "fair"
        s.expect(
            "the worker reports prefetch_count 8 and the fair strategy",
            ok,
            f"{stats['prefetch_count']}, {strategy}",
        )
        ok = all(t.worker_pid == worker.pid for t in lives)
        s.expect(
            "the MainProcess received all six before the first ended",
            ok and max(at(t["task.received"]) for t in lives) < first_end,
        )
        ok = lives[0].overlaps(lives[1]) and lives[0].child_pid != lives[1].child_pid
        s.expect("two ran at once, in two different children", ok)
        pids = {t.child_pid for t in lives}
        s.expect(
            "the same two children ran all six (no new process)",
            pids <= set(worker.children()) and len(pids) == CHILDREN,
        )
        ok = all(at(t["task.prerun"]) - at(t["task.received"]) > WAITED_S for t in waited)
        s.expect("the four others waited ≥ 1.5 s between received and started", ok)
        s.expect("… reserved in `unacked` meanwhile", {t.task_id for t in waited} <= seen)
        s.expect(
            "the list 'celery' was empty before the first task ended",
            empty is not None and empty < first_end,
        )


def story(s: Scenario) -> None:
    step_1(s)
    with s.step(
        "2. A long task ahead of short ones, prefetch multiplier 4 (the default)",
        f"`slow({LONG:g})` then {SHORTS} `add` on a queue of their own. A `-c 1` worker takes the "
        "long one and, while its only child is busy, reserves as many short ones as its window "
        "allows (1 × 4). Once it stops asking Redis (no BRPOP for over a second), the idle "
        "worker of step 1 joins the queue (`celery control add_consumer`) and gets the rest.",
    ):
        contest(s, "mult4", [], expected=min(SHORTS, 1 * MULTIPLIER))

    with s.step(
        "3. The same with --prefetch-multiplier 1",
        "The window is 1 × 1, yet one short task still waits behind the long one: with the "
        "default early ack, the running task is acked when it starts, so its place in the "
        "window is free again. Prefetch limits *unacked* messages, not running tasks.",
    ):
        contest(s, "mult1", ["--prefetch-multiplier", "1"], expected=1)
        window_freed_by_the_ack(s, "mult1")

    with s.step(
        "4. The same with --disable-prefetch (Celery ≥ 5.6, Redis only)",
        "This flag makes the worker ask Redis for a message only while it holds fewer tasks "
        "(running or reserved) than it has children: every short task goes to the idle worker.",
    ):
        contest(s, "noprefetch", ["--disable-prefetch"], expected=0)


if __name__ == "__main__":
    sys.exit(run("04 · slow tasks and prefetch", story, __doc__ or ""))
