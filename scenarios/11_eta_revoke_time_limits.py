"""ETA, revoke and time limits: what the MainProcess does with a task the child never sees.

A countdown task is taken off the queue at once and held, reserved, in the MainProcess until
it is due. A revoked task that waits its turn is discarded by the MainProcess. A time limit is
a timer in the MainProcess: the soft one raises inside the task, the hard one kills the child.
"""

from __future__ import annotations

import os
import sys
import time

import redis

from demo import inspectors as ins
from demo.render import tables as ev
from demo.render.inspect import clock, render_unacked
from demo.scenes import canvas as cv
from demo.scenes import processes as proc
from demo.scenes import results as res
from demo.scenes import timing as tm
from demo.scenes.frame import Scenario, run
from demo.trace.event import args_of, at, pid_of

COUNTDOWN, LIMIT = 4, 1  # seconds
REVOKED = "REVOKED TaskRevokedError"


def story(s: Scenario) -> None:
    from envoi_mails import add, app, slow

    tl, me = s.timeline, os.getpid()
    r = redis.Redis.from_url(s.stack.broker_url, decode_responses=True)
    with s.step(
        f"1. countdown={COUNTDOWN}: received at once, run later",
        f"`add.apply_async((1, 2), countdown={COUNTDOWN})` on a `-c 1` worker. The message says "
        "when it is due (`eta` header). The MainProcess takes it at once, keeps it reserved in "
        "`unacked` and in its own timer, and hands it to the child only when it is due.",
    ):
        worker = s.start_worker(extra=["-c", "1"])
        t0, task = time.time(), add.apply_async((1, 2), countdown=COUNTDOWN)
        push = cv.wait_published(tl, task.id)
        got = tl.wait_for(res.is_hop("task.received", task.id), timeout=10, what="task.received")
        held, listed = ins.unacked(r), r.llen("celery")
        sched, looked = tm.scheduled(s.stack.env, worker.nodename), time.time()
        s.show(render_unacked(held), tm.scheduled_line(sched))
        value, eta = tm.outcome(task), tm.epoch(push.header("eta"))
        proc.wait_ran(tl, [task.id])
        tl.wait_for(res.is_command("HDEL", task.id), timeout=10, what="the ack (HDEL)")
        t = tm.trail(tl.events(), task.id)
        s.show(res.rows_table(res.task_rows(tl.events(), [task.id]), t0, {task.id: "add(1, 2)"}))
        s.expect(
            f"the `eta` header says: publish time + {COUNTDOWN} s",
            abs(eta - push.ts - COUNTDOWN) < 1,
            push.header("eta"),
        )
        s.expect(
            "the MainProcess received it before its ETA",
            got["pid"] == worker.pid and got["ts"] < eta,
            f"{got['ts'] - push.ts:.3f} s after the push",
        )
        mine = [e for e in held.entries if e.message.task_id == task.id]
        s.expect(
            "while it waits: reserved in `unacked`, not in the list, not started",
            bool(mine) and listed == 0 and looked < min(eta, at(t.started)),
        )
        s.expect(
            "`inspect scheduled` lists it with that ETA", abs(sched.get(task.id, 0) - eta) < 0.01
        )
        s.expect(
            "a child started it at its ETA; the MainProcess acked it (HDEL) only then",
            min(at(t.started), at(t.acked)) >= eta - 0.05
            and pid_of(t.acked) == worker.pid
            and value == "3",
        )

    with s.step(
        "2. The visibility timeout (3600 s)",
        "kombu scores each reservation with the time it was made (`ZADD unacked_index`). Every "
        "kombu consumer of this Redis, even `celery inspect`, sweeps that index "
        "(`QoS.restore_visible`: a worker when it starts, then about every 100 s; skipped while "
        "another's sweep holds kombu's `unacked_mutex`) and pushes back "
        "to the queue what was reserved over 3600 s ago. So a task due in more than an hour is "
        "delivered again, to any worker, and **runs twice**. Set "
        "`broker_transport_options['visibility_timeout']` above your longest ETA.",
    ):
        # A kombu consumer sweeps when a wait comes back empty (the first time, then one
        # in ten), and skips it while another holds kombu's restore mutex (the worker's, as
        # it starts). A ping to all (no destination) waits out its timeout after the reply:
        # on a connection of its own, now, it shows this client sweeping every time. The
        # spy names a sender from its live socket: settle while the connection is open.
        with app.connection_for_write() as conn:
            app.control.ping(timeout=0.5, connection=conn)
            tl.settle()
        scans = tm.restore_scans(tl.events())
        s.show(tm.scans_table(scans, t0, "the sweeps of unacked_index seen so far"))
        s.expect(
            "every sweep asks for what was reserved over 3600 s before it",
            bool(scans) and all(abs(x.lag - 3600) < 5 for x in scans),
            f"{[round(x.lag, 1) for x in scans]}",
        )
        sweepers = {pid_of(x.event) for x in scans}
        # The worker's sweep at start and the one of start_worker's ping can meet: the
        # loser finds the mutex held and skips. So for the worker, the try is the fact.
        s.expect(
            "the worker tried to sweep as it started (SET unacked_mutex NX); this client "
            "swept, waiting for a ping reply",
            worker.pid in tm.restore_tries(tl.events()) and me in sweepers,
            f"sweeps by {sorted(p for p in sweepers if p is not None)}",
        )
        score = float(args_of(t.reserved)[2]) if t.reserved else 0.0
        s.expect(
            "the clock starts at receipt: the score is when the MainProcess took it, not the ETA",
            pid_of(t.reserved) == worker.pid and abs(score - got["ts"]) < 1,
            f"if still unacked, visible again at {clock(mine[0].visible_again_at)}",
        )

    with s.step(
        "3. Revoking a task that waits its turn",
        "`slow(4)` keeps the only child busy; `add(2, 2)` is received and waits in the "
        "MainProcess. `app.control.revoke(id)` is a broadcast on the `celery.pidbox` channel; "
        "the worker keeps the id (in memory) and never hands that task to a child.",
    ):
        long, victim = slow.delay(4), add.delay(2, 2)
        tl.wait_for(res.is_hop("task.prerun", long.id), timeout=15, what="slow(4) starting")
        tl.wait_for(res.is_hop("task.received", victim.id), timeout=15, what="add(2, 2) received")
        since = time.time()
        app.control.revoke(victim.id)
        sent = tm.wait_broadcast(tl, since)
        tm.outcome(long)
        tm.wait_log(tl, f"Discarding revoked task: envoi_mails.add[{victim.id}]")
        tl.wait_for(
            res.is_command("HDEL", victim.id), timeout=10, what="the ack of the revoked task"
        )
        # Each process ships its hops every 0.1 s: the child's may land after the ack.
        tl.wait_for(res.is_hop("task.postrun", long.id), timeout=10, what="slow(4) ending")
        tl.settle()
        v, busy, state = (
            tm.trail(tl.events(), victim.id),
            tm.trail(tl.events(), long.id),
            victim.state,
        )
        s.show(
            ev.commands_table([sent, *v.writes, *([v.acked] if v.acked else [])]),
            ev.logs_table(v.logs),
        )
        s.expect(
            "the client PUBLISHes `revoke` on /0.celery.pidbox",
            pid_of(sent) == me and tm.control_command(sent) == ("revoke", victim.id),
        )
        s.expect(
            "the MainProcess stores REVOKED at once, while the task still waits (celery#9869)",
            v.stored[:1] == [(worker.pid, REVOKED)] and at(v.writes[0]) < at(busy.ended),
        )
        s.expect(
            "when its turn comes, the MainProcess discards it and acks it: no child ever ran it",
            v.started is None
            and pid_of(v.acked) == worker.pid
            and at(busy.ended) < at(v.acked) < float("inf"),
        )
        s.expect(
            "REVOKED is written twice, both times by the MainProcess; the client reads REVOKED",
            v.stored == [(worker.pid, REVOKED)] * 2 and state == "REVOKED",
        )

    with s.step(
        f"4. Soft time limit: {LIMIT} s",
        f"`slow.apply_async((5,), soft_time_limit={LIMIT})`. The limit is a timer in the "
        "MainProcess; when it fires, it sends SIGUSR1 to the child, whose handler raises "
        "`SoftTimeLimitExceeded` inside the task: the task could catch it and clean up.",
    ):
        soft = slow.apply_async((5,), soft_time_limit=LIMIT)
        raised = tm.outcome(soft)
        warn = tm.wait_limit(tl, "Soft", LIMIT, soft.id, slow.name)
        tl.wait_for(res.is_hop("task.postrun", soft.id), timeout=10, what="the task.postrun hop")
        tl.settle()  # the child's SETEX, as the spy saw it
        t = tm.trail(tl.events(), soft.id)
        child = pid_of(t.started)
        s.show(ev.logs_table(t.logs), ev.commands_table(t.writes))
        s.expect("the MainProcess logs the WARNING", pid_of(warn) == worker.pid)
        s.expect(
            "the child itself stores FAILURE SoftTimeLimitExceeded; the client gets that exception",
            t.stored == [(child, "FAILURE SoftTimeLimitExceeded")]
            and raised == "SoftTimeLimitExceeded",
        )
        s.expect(
            "slow(5) stopped early, and the child lives on",
            at(t.ended) - at(t.started) < 4 and child in worker.children(),
            f"pid {child}",
        )

    with s.step(
        f"5. Hard time limit: {LIMIT} s",
        f"`slow.apply_async((5,), time_limit={LIMIT})`. When this timer fires the MainProcess "
        "does not ask: it terminates the child (SIGTERM), records the failure itself, and forks "
        "a new child in its place.",
    ):
        since, hard = time.time(), slow.apply_async((5,), time_limit=LIMIT)
        raised = tm.outcome(hard)
        err = tm.wait_limit(tl, "Hard", LIMIT, hard.id, slow.name)
        fresh = tm.wait_new_child(tl, worker.pid, since)
        tl.settle()
        t, kids = tm.trail(tl.events(), hard.id), worker.children()
        killed = pid_of(t.started)
        logs = tm.logs_of(tl.events(), worker.pid, since)
        s.show(ev.logs_table(logs), ev.commands_table(t.writes), ev.process_table(worker.pid))
        s.expect("the MainProcess logs the ERROR", pid_of(err) == worker.pid)
        s.expect(
            "FAILURE TimeLimitExceeded is stored by the MainProcess; the client gets the exception",
            set(t.stored) == {(worker.pid, "FAILURE TimeLimitExceeded")}
            and raised == "TimeLimitExceeded",
        )
        s.expect(
            "… twice in Celery 5.7 (Request.on_failure, then on_timeout), with two task_failure",
            len(t.writes) == 2 and [pid_of(e) for e in t.failures] == [worker.pid] * 2,
        )
        s.expect(
            "the child that ran it is gone; a newly forked child took its place",
            killed not in kids and pid_of(fresh) in kids and pid_of(fresh) != killed,
            f"{killed} → {pid_of(fresh)}",
        )
        s.show(s.flower(f"task/{hard.id}"))


if __name__ == "__main__":
    sys.exit(run("11 · ETA, revoke, time limits", story, __doc__ or ""))
