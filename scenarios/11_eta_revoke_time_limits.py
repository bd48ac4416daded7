"""ETA, revoke and time limits: what the MainProcess does with a task the child never sees.

A countdown task is taken off the queue at once and held, reserved, in the MainProcess until
it is due. A revoked task that waits its turn is discarded by the MainProcess; a worker started
later learns the id from the others. A time limit is a timer in the MainProcess: the soft one
raises inside the task, the hard one kills the child.
"""

from __future__ import annotations

import os
import sys
import time

from demo import inspectors as ins
from demo import names
from demo.render import tables as ev
from demo.render.inspect import clock, render_unacked
from demo.scenes import timing as tm
from demo.scenes.frame import Scenario, run
from demo.stack import control
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import args_of, at, pid_of

COUNTDOWN, LIMIT = 4, 1  # seconds
CONCURRENCY = 1  # one child: a task can be made to wait its turn
BUSY_S, LONG_S = 4, 5  # slow(4) keeps the only child busy; slow(5) runs longer than LIMIT
REVOKED = "REVOKED TaskRevokedError"
TRACE_S, RESULT_S = 15.0, 30.0  # how long to wait for a hop, command or log line; a result
INSPECT_S = 2.0  # how long `inspect scheduled` waits for the worker's reply
PING_S = 0.5  # the ping whose wait makes this client sweep
ETA_SLACK_S = 1.0  # the eta header is the publish time + COUNTDOWN, to the second
SCHEDULED_SLACK_S = 0.01  # `inspect scheduled` reports the eta header's own time
TIMER_SLACK_S = 0.05  # the worker's timer may fire a hair before the ETA
VISIBILITY_SLACK_S = 5.0  # a sweep's ceiling is its own time − 3600 s, give or take
RECEIPT_SLACK_S = 1.0  # the reservation's score is the receipt time, to the second
LATE = "late"  # step 6: a worker started after the revoke, and its own queue


def countdown(s: Scenario) -> None:
    from envoi_mails import add

    tl, r = s.timeline, s.redis
    worker = s.start_worker(extra=["-c", str(CONCURRENCY)])
    t0, task = time.time(), add.apply_async((1, 2), countdown=COUNTDOWN)
    push = msg.pushed(tl.wait_for(msg.is_task_push, task_id=task.id, timeout=TRACE_S, what="LPUSH"))
    got = tl.wait_for(event="task.received", task_id=task.id, timeout=TRACE_S, what="task.received")
    held, listed = ins.unacked(r), r.llen(names.DEFAULT_QUEUE)
    sched, looked = tm.scheduled(s.stack.env, worker.nodename, timeout=INSPECT_S), time.time()
    s.show(render_unacked(held), tm.scheduled_line(sched))
    value, eta = tm.outcome(task, timeout=RESULT_S), push.eta or float("nan")
    tl.wait_lives([task.id], timeout=RESULT_S, hops=["task.prerun"])
    acked = tl.wait_for(command="HDEL", task_id=task.id, timeout=TRACE_S, what="the ack (HDEL)")
    started = q.life(tl.events(), task.id)["task.prerun"]
    s.show(ev.task_lives_table(q.lives(tl.events(), [task.id]), t0, {task.id: "add(1, 2)"}))
    s.expect(
        f"the `eta` header says: publish time + {COUNTDOWN} s",
        abs(eta - push.ts - COUNTDOWN) < ETA_SLACK_S,
        str(push.header("eta")),
    )
    s.expect(
        "the MainProcess received it before its ETA",
        got["pid"] == worker.pid and got["ts"] < eta,
        f"{got['ts'] - push.ts:.3f} s after the push",
    )
    mine = [e for e in held.entries if e.message.task_id == task.id]
    s.expect(
        "while it waits: reserved in `unacked`, not in the list, not started",
        bool(mine) and listed == 0 and looked < min(eta, at(started)),
    )
    s.expect(
        "`inspect scheduled` lists it with that ETA",
        abs(sched.get(task.id, 0) - eta) < SCHEDULED_SLACK_S,
    )
    s.expect(
        "a child started it at its ETA; the MainProcess acked it (HDEL) only then",
        min(at(started), at(acked)) >= eta - TIMER_SLACK_S
        and pid_of(acked) == worker.pid
        and value == "3",
    )


def visibility_timeout(s: Scenario) -> None:
    from envoi_mails import app

    tl, me, worker = s.timeline, os.getpid(), s.worker()
    # A kombu consumer sweeps when a wait comes back empty (the first time, then one
    # in ten), and skips it while another holds kombu's restore mutex (the worker's, as
    # it starts). A ping to all (no destination) waits out its timeout after the reply:
    # on a connection of its own, now, it shows this client sweeping every time.
    with app.connection_for_write() as conn:
        app.control.ping(timeout=PING_S, connection=conn)
        tl.settle()
    events = tl.events()
    scans = tm.restore_scans(events)
    s.show(tm.scans_table(scans, "the sweeps of unacked_index seen so far"))
    s.expect(
        "every sweep asks for what was reserved over 3600 s before it",
        bool(scans)
        and all(abs(x.lag - ins.VISIBILITY_TIMEOUT_S) < VISIBILITY_SLACK_S for x in scans),
        f"{[round(x.lag, 1) for x in scans]}",
    )
    sweepers = {pid_of(x.event) for x in scans}
    # The worker's sweep at start and the one of start_worker's ping can meet: the
    # loser finds the mutex held and skips. So for the worker, the try is the fact.
    s.expect(
        "the worker tried to sweep as it started (SET unacked_mutex NX); this client "
        "swept, waiting for a ping reply",
        worker.pid in tm.restore_tries(events) and me in sweepers,
        f"sweeps by {sorted(p for p in sweepers if p is not None)}",
    )
    task_id = tm.eta_task(events)  # step 1's countdown task
    reserved = q.first(events, command="ZADD", key=names.UNACKED_INDEX, task_id=task_id)
    received = q.life(events, task_id)["task.received"]
    score = float(args_of(reserved)[2]) if reserved else 0.0
    s.expect(
        "the clock starts at receipt: the score is when the MainProcess took it, not the ETA",
        pid_of(reserved) == worker.pid and abs(score - at(received)) < RECEIPT_SLACK_S,
        f"if still unacked, visible again at {clock(score + ins.VISIBILITY_TIMEOUT_S)}",
    )


def revoke_waiting(s: Scenario) -> None:
    from envoi_mails import add, app, slow

    tl, me, worker = s.timeline, os.getpid(), s.worker()
    long, victim = slow.delay(BUSY_S), add.delay(2, 2)
    tl.wait_for(event="task.prerun", task_id=long.id, timeout=TRACE_S, what="slow(4) starting")
    tl.wait_for(event="task.received", task_id=victim.id, timeout=TRACE_S, what="add(2, 2)")
    since = time.time()
    app.control.revoke(victim.id)
    sent = tl.wait_for(
        command="PUBLISH", key=names.pidbox_channel(), since=since, timeout=TRACE_S, what="revoke"
    )
    tm.outcome(long, timeout=RESULT_S)
    _, acked = tm.discarded(tl, add.name, victim.id, since=since, timeout=TRACE_S)
    # Each process ships its hops every 0.1 s: the child's may land after the ack.
    tl.wait_for(event="task.postrun", task_id=long.id, timeout=TRACE_S, what="slow(4) ending")
    tl.settle()
    events, state = tl.events(), victim.state
    writes, ended = q.result_writes(events, victim.id), q.life(events, long.id)["task.postrun"]
    stored = [(w.pid, str(w)) for w in writes]
    reads = q.select(events, command="GET", key=names.result_key(victim.id), pid=worker.pid)
    s.show(
        ev.commands_table([sent, *(w.event for w in writes), acked]),
        ev.logs_table(q.task_logs(events, victim.id)),
    )
    revoke = msg.control_command(sent)
    s.expect(
        "the client PUBLISHes `revoke` on /0.celery.pidbox",
        pid_of(sent) == me
        and (revoke.method, revoke.arguments.get("task_id")) == ("revoke", victim.id),
    )
    s.expect(
        "the MainProcess stores REVOKED at once, while the task still waits (celery#9869)",
        stored[:1] == [(worker.pid, REVOKED)] and writes[0].ts < at(ended),
    )
    s.expect(
        "when its turn comes, the MainProcess discards it and acks it: no child ever ran it",
        q.life(events, victim.id)["task.prerun"] is None
        and pid_of(acked) == worker.pid
        and at(ended) < at(acked) < float("inf"),
    )
    s.expect(
        "REVOKED is written twice, both times by the MainProcess; the client reads REVOKED",
        stored == [(worker.pid, REVOKED)] * 2 and state == "REVOKED",
    )
    s.expect(
        "before each write the MainProcess GETs the key: the revoke reads the state first "
        "(`_revoke`), and a store never overwrites a SUCCESS",
        tm.read_before_each(reads, [w.event for w in writes]),
        f"{len(reads)} GET by pid {worker.pid}",
    )


def soft_limit(s: Scenario) -> None:
    from envoi_mails import slow, slow_tidy

    tl, worker = s.timeline, s.worker()
    soft = slow.apply_async((LONG_S,), soft_time_limit=LIMIT)
    raised = tm.outcome(soft, timeout=RESULT_S)
    warn = tm.limit_logged(tl, "Soft", LIMIT, slow.name, soft.id, timeout=TRACE_S)
    tl.wait_for(event="task.postrun", task_id=soft.id, timeout=TRACE_S, what="the task.postrun hop")
    tl.settle()  # the child's SETEX, as it recorded it
    events = tl.events()
    life, writes = q.life(events, soft.id), q.result_writes(events, soft.id)
    child = life.child_pid
    s.show(
        ev.logs_table(q.task_logs(events, soft.id)), ev.commands_table([w.event for w in writes])
    )
    s.expect("the MainProcess logs the WARNING", pid_of(warn) == worker.pid)
    s.expect(
        "the child itself stores FAILURE SoftTimeLimitExceeded; the client gets that exception",
        [(w.pid, str(w)) for w in writes] == [(child, "FAILURE SoftTimeLimitExceeded")]
        and raised == "SoftTimeLimitExceeded",
    )
    s.expect(
        "slow(5) stopped early, and the child lives on",
        at(life["task.postrun"]) - at(life["task.prerun"]) < LONG_S - 1
        and child in worker.children(),
        f"pid {child}",
    )
    # The same limit on a task that catches SoftTimeLimitExceeded in its body.
    tidy = slow_tidy.apply_async((LONG_S,), soft_time_limit=LIMIT)
    value = tidy.get(timeout=RESULT_S)
    warn = tm.limit_logged(tl, "Soft", LIMIT, slow_tidy.name, tidy.id, timeout=TRACE_S)
    tl.wait_for(event="task.postrun", task_id=tidy.id, timeout=TRACE_S, what="its task.postrun")
    events = tl.events()
    writes, child = q.result_writes(events, tidy.id), q.life(events, tidy.id).child_pid
    s.show(ev.commands_table([w.event for w in writes]), f"slow_tidy(5) returned {value}")
    s.expect(
        "a task that catches it in its body returns: SUCCESS, its marker stored by the child "
        "that ran it, after the MainProcess's WARNING",
        [(w.pid, str(w)) for w in writes] == [(child, "SUCCESS")]
        and value == {**value, "caught": "SoftTimeLimitExceeded", "pid": child}
        and pid_of(warn) == worker.pid
        and writes[0].ts > warn["ts"],
        f"pid {child}",
    )


def hard_limit(s: Scenario) -> None:
    from envoi_mails import slow

    tl, worker = s.timeline, s.worker()
    since, hard = time.time(), slow.apply_async((LONG_S,), time_limit=LIMIT)
    raised = tm.outcome(hard, timeout=RESULT_S)
    err = tm.limit_logged(tl, "Hard", LIMIT, slow.name, hard.id, timeout=TRACE_S)
    fresh = tl.wait_for(
        event="child.init", ppid=worker.pid, since=since, timeout=TRACE_S, what="a new child"
    )
    tl.settle()
    events, kids = tl.events(), worker.children()
    writes, killed = q.result_writes(events, hard.id), q.life(events, hard.id).child_pid
    failures = q.select(events, event="task.failure", task_id=hard.id)
    logs = q.select(events, event=names.LOG, pid=worker.pid, since=since)
    s.show(ev.logs_table(logs), ev.commands_table([w.event for w in writes]))
    s.show(ev.process_table(worker.pid))
    s.expect("the MainProcess logs the ERROR", pid_of(err) == worker.pid)
    s.expect(
        "FAILURE TimeLimitExceeded is stored by the MainProcess; the client gets the exception",
        {(w.pid, str(w)) for w in writes} == {(worker.pid, "FAILURE TimeLimitExceeded")}
        and raised == "TimeLimitExceeded",
    )
    s.expect(
        "… twice in Celery 5.7 (Request.on_failure, then on_timeout), with two task_failure",
        len(writes) == 2 and [pid_of(e) for e in failures] == [worker.pid] * 2,
    )
    s.expect(
        "the child that ran it is gone; a newly forked child took its place",
        killed not in kids and pid_of(fresh) in kids and pid_of(fresh) != killed,
        f"{killed} → {pid_of(fresh)}",
    )
    s.show(s.flower(f"task/{hard.id}"))


def mingle(s: Scenario) -> None:
    from envoi_mails import add

    tl, first = s.timeline, s.worker()
    revoked, since = tm.revoked_id(tl.events()), time.time()  # the id step 3 revoked
    late = s.start_worker(LATE, ["-c", "1", "-Q", LATE])
    hello = tm.Hello.read(tl, since)
    listed = control.inspect_revoked(s.stack.env, late.nodename, timeout=INSPECT_S)
    sent, again = time.time(), add.apply_async((2, 2), task_id=revoked, queue=LATE)
    said, acked = tm.discarded(tl, add.name, revoked, since=sent, timeout=TRACE_S)
    events = q.since(tl.events(), sent)
    s.show(
        ev.commands_table([hello.command.event, *hello.replies], "mingle: hello, and answers"),
        f"celery inspect revoked -d {late.nodename} → {listed}",
        ev.commands_table(q.select(events, event=names.REDIS_COMMAND, task_id=revoked)),
    )
    s.expect(
        "as it started, the new worker's MainProcess broadcast `hello` (mingle) on the pidbox",
        hello.command.pid == late.pid and hello.command.arguments.get("from_node") == late.nodename,
    )
    s.expect(
        "the first worker's MainProcess answered it; its reply carries the id revoked in step 3",
        [pid_of(e) for e in hello.replies] == [first.pid]
        and revoked in hello.revoked_by(first.pid),
    )
    s.expect("`inspect revoked` on the new worker lists that id", revoked in listed)
    s.expect(
        "a message with that id, sent to its queue: its MainProcess discards it, stores REVOKED "
        "and acks it; no child runs it",
        pid_of(said) == pid_of(acked) == late.pid
        and [(w.pid, str(w)) for w in q.result_writes(events, revoked)] == [(late.pid, REVOKED)]
        and not q.select(events, event="task.prerun", task_id=revoked)
        and again.state == "REVOKED",
    )


def story(s: Scenario) -> None:
    with s.step(
        f"1. countdown={COUNTDOWN}: received at once, run later",
        f"`add.apply_async((1, 2), countdown={COUNTDOWN})` on a `-c 1` worker. The message says "
        "when it is due (`eta` header). The MainProcess takes it at once, keeps it reserved in "
        "`unacked` and in its own timer, and hands it to the child only when it is due.",
    ):
        countdown(s)
    with s.step(
        "2. The visibility timeout (3600 s)",
        "kombu scores each reservation with the time it was made (`ZADD unacked_index`). Every "
        "kombu consumer of this Redis, even `celery inspect`, sweeps that index "
        "(`QoS.restore_visible`: a worker when it starts, then about every 100 s; skipped while "
        "another's sweep holds kombu's `unacked_mutex`) and pushes back to the queue what was "
        "reserved over 3600 s ago. So a task due in more than an hour is delivered again, to "
        "any worker, and **runs twice** (06 · 7 shows it with a short timeout). Set "
        "`broker_transport_options['visibility_timeout']` above your longest ETA.",
    ):
        visibility_timeout(s)
    with s.step(
        "3. Revoking a task that waits its turn",
        "`slow(4)` keeps the only child busy; `add(2, 2)` is received and waits in the "
        "MainProcess. `app.control.revoke(id)` is a broadcast on the `celery.pidbox` channel; "
        "every worker that hears it adds the id to its revoked set (in memory; `--statedb` "
        "keeps it on disk; a worker started later learns it: step 6), and the one holding the "
        "task never hands it to a child.",
    ):
        revoke_waiting(s)
    with s.step(
        f"4. Soft time limit: {LIMIT} s",
        f"`slow.apply_async((5,), soft_time_limit={LIMIT})`. The limit is a timer in the "
        "MainProcess; when it fires, it sends SIGUSR1 to the child, whose handler raises "
        "`SoftTimeLimitExceeded` inside the task. Uncaught, it fails the task; `slow_tidy` "
        "catches it in its body, cleans up and returns.",
    ):
        soft_limit(s)
    with s.step(
        f"5. Hard time limit: {LIMIT} s",
        f"`slow.apply_async((5,), time_limit={LIMIT})`. When this timer fires the MainProcess "
        "does not ask: it terminates the child (SIGTERM), records the failure itself, and forks "
        "a new child in its place.",
    ):
        hard_limit(s)
    with s.step(
        "6. A worker started later learns the revoked id (mingle)",
        f"`celery worker -n {LATE}@%h -c 1 -Q {LATE}`, started after the revoke. Before it "
        "consumes, mingle broadcasts `hello` on `celery.pidbox`; every running worker answers "
        "with its revoked ids, which the newcomer adds to its own. A message carrying the id "
        "revoked in step 3, sent to its queue, is discarded.",
    ):
        mingle(s)


if __name__ == "__main__":
    sys.exit(run("11 · ETA, revoke, time limits", story, __doc__ or ""))
