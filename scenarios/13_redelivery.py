"""Redelivery: what `unacked` really protects, and when it hands a message out again.

A worker that dies holding messages (reserved, or an `acks_late` task running) gives nothing
back: the messages wait in `unacked` until they are older than `visibility_timeout` and a
kombu consumer's sweep (`QoS.restore_visible`) puts them back on their queue. A warm shutdown
puts its reserved messages back at once. And a task whose ETA is further away than the
visibility timeout is delivered again while the first worker still holds it: it runs twice.
This run sets the timeout to 4 s (`CELERY_VISIBILITY_TIMEOUT`, read by the app into
`broker_transport_options`) instead of kombu's 3600.
"""

from __future__ import annotations

import os
import sys
import time

from demo import inspectors as ins
from demo import names
from demo.render import tables as ev
from demo.render.inspect import render_unacked
from demo.scenes import delivery as dv
from demo.scenes import failures as fx
from demo.scenes.frame import Scenario, run
from demo.stack.procs import process_family
from demo.trace import messages as msg
from demo.trace import query as q

VISIBILITY_S, SWEEP_EVERY_S = 4.0, 1.0  # instead of kombu's 3600 s, and ~100 s between sweeps
SHORT = {
    "CELERY_VISIBILITY_TIMEOUT": f"{VISIBILITY_S:g}",
    "CELERY_UNACKED_RESTORE_INTERVAL": f"{SWEEP_EVERY_S:g}",
}
QUEUE, FIRST, SECOND = "work", "a", "b"  # the queue, and the two workers' names
FLAGS = ["-c", "1", "-Q", QUEUE]  # one child: a window of 1 × 4 messages
SLOW_LATE, ADD, SLOW = "envoi_mails.slow_late", "envoi_mails.add", "envoi_mails.slow"
LATE_S, BUSY_S = 2.0, 1.0  # slow_late(2) is running when the worker dies; slow(1) at the stop
RESERVED = 3  # messages waiting behind the running one
HELD = 1 + RESERVED  # what worker a holds when it dies
# Due after the first sweep that finds it (VISIBILITY_S + up to SWEEP_EVERY_S) and before a
# second one could find its second reservation (2 × VISIBILITY_S): delivered twice, not thrice.
COUNTDOWN_S = 6.5
EXPECTED_RUNS = 2
RESTORING = "unacknowledged message(s)"  # kombu's RESTORING_FMT, logged by restore_unacked_once
HOP_S, RESULT_S = 15, 30  # how long to wait for a hop, a task's whole life
SWEEP_SLACK_S = 0.1  # a sweep's ceiling is its own clock: a reservation scored a hair later


def a_worker_holds_four(s: Scenario) -> None:
    from envoi_mails import app

    with s.step(
        "1. A worker holds four messages: one acks_late task running, three reserved",
        f"Worker `a` (`-c 1 -Q {QUEUE}`) gets `slow_late({LATE_S:g})` (acks_late) and three "
        "`add`s. Its one child runs slow_late; the adds wait in the MainProcess. All four are "
        "reserved in `unacked` (`ZADD unacked_index`, `HSET unacked`): none is acked yet.",
    ):
        worker = s.start_worker(FIRST, FLAGS, env=SHORT)
        late = app.send_task(SLOW_LATE, args=[LATE_S], queue=QUEUE)
        for n in range(RESERVED):
            app.send_task(ADD, args=[n, n], queue=QUEUE)
        fx.wait_running(s.timeline, late.id)
        held = dv.wait_reserved(s.timeline, worker.pid, count=HELD, timeout=HOP_S)
        s.timeline.settle()
        view = ins.unacked(s.redis, visibility_s=VISIBILITY_S)
        s.show(render_unacked(view))
        acks = s.timeline.select(command="ZREM", key=names.UNACKED_INDEX, pid=worker.pid)
        s.expect("four reservations by the MainProcess, no ack", len(held) == HELD and not acks)
        ok = s.redis.llen(QUEUE) == 0 and view.total == HELD
        s.expect(f"Redis: `{QUEUE}` is empty, `unacked` holds the four", ok, f"{view.total}")


def the_worker_dies(s: Scenario) -> None:
    worker = s.worker(FIRST)
    with s.step(
        "2. SIGKILL the whole worker: nothing comes back",
        "The MainProcess and its child die at once (`kill -9` of the process group, as the OOM "
        "killer or a lost machine would). Nobody is left to put the messages back: they stay "
        "in `unacked`, invisible to every worker.",
    ):
        killed = dv.kill_worker(worker)
        s.timeline.settle()
        back = msg.pushes(s.timeline.events(), key=QUEUE, since=killed)
        view = ins.unacked(s.redis, visibility_s=VISIBILITY_S)
        s.show(render_unacked(view))
        s.expect("the worker's processes are gone", process_family(worker.pid) is None)
        ok = not back and s.redis.llen(QUEUE) == 0 and view.total == HELD
        s.expect(f"nothing pushed back: `{QUEUE}` empty, the four still in `unacked`", ok)


def another_worker_gets_them_back(s: Scenario) -> None:
    tl, dead = s.timeline, s.worker(FIRST)
    with s.step(
        "3. Another worker gets them back, once the visibility timeout has passed",
        f"Worker `b` starts on `{QUEUE}`. Its sweep (every {SWEEP_EVERY_S:g} s here; about "
        f"every 100 s by default) asks `unacked_index` for reservations older than "
        f"{VISIBILITY_S:g} s and puts each back at the head of the queue (`RPUSH`, "
        "`redelivered`); then it takes and runs them. slow_late starts over from the beginning.",
    ):
        worker = s.start_worker(SECOND, FLAGS, env=SHORT)
        back = tl.wait_until(
            command="RPUSH", key=QUEUE, count=HELD, timeout=HOP_S, what="the restores"
        )
        first = dv.reservations(tl.events(), pid=dead.pid)
        ids, t0 = [r.task_id for r in first], first[0].score
        tl.wait_until(
            event="task.postrun", ppid=worker.pid, count=len(ids), timeout=RESULT_S, what="b's runs"
        )
        tl.settle()
        events = tl.events()
        restored = dv.restores(events, QUEUE, pid=worker.pid)
        lives = q.lives(q.since(events, back[0]["ts"]), ids)  # their second delivery
        s.show(
            fx.pushes_table(msg.pushes(events, ids), t0, "the four messages, after a took them"),
            ev.task_lives_table(lives, t0, title="their second lives, after a took them"),
        )
        ok = {p.pid for p in restored} == {worker.pid} and len(back) == len(first)
        ok = ok and {p.task_id for p in restored if p.redelivered} == set(ids)
        s.expect("worker b's MainProcess put all four back (RPUSH), marked redelivered", ok)
        scores = {r.task_id: r.score for r in first}
        late = [round(p.ts - scores[p.task_id or ""], 2) for p in restored]
        # A sweep asks for what was reserved before its ceiling: its own time − the timeout.
        sweep = dv.last_sweep(events, worker.pid, before=back[0]["ts"])
        ok = sweep is not None and all(sweep.ceiling > score for score in scores.values())
        ok = ok and all(lag >= VISIBILITY_S - SWEEP_SLACK_S for lag in late)
        s.expect(
            f"by b's sweep, once they were reserved over {VISIBILITY_S:g} s ago", ok, f"{late}"
        )
        ok = all(life.worker_pid == worker.pid and life.has("task.postrun") for life in lives)
        s.expect("worker b received and ran all four", ok)
        runs = q.select(events, event="task.prerun", task=SLOW_LATE)
        ok = len(runs) == EXPECTED_RUNS and runs[1].get("ppid") == worker.pid
        s.expect("slow_late started twice: in a's killed child, then in b's", ok)
        s.show(s.flower(f"worker/{worker.nodename}"))


def an_eta_beyond_the_timeout(s: Scenario) -> None:
    from envoi_mails import app

    tl, worker = s.timeline, s.worker(SECOND)
    with s.step(
        f"4. A countdown of {COUNTDOWN_S:g} s, longer than the visibility timeout: two runs",
        "The MainProcess holds an ETA task reserved in `unacked` until it is due (scenario "
        f"11). After {VISIBILITY_S:g} s the sweep sees an old reservation and puts the message "
        "back; the worker takes it again and now holds it twice, on two timers. At the ETA both "
        "fire. The second run's child finds SUCCESS already stored and leaves it: the result "
        "looks right, the work was done twice.",
    ):
        task = app.send_task(ADD, args=[40, 2], queue=QUEUE, countdown=COUNTDOWN_S)
        runs = tl.wait_until(
            event="task.prerun",
            task_id=task.id,
            count=EXPECTED_RUNS,
            timeout=COUNTDOWN_S + HOP_S,
            what="both runs",
        )
        tl.wait_until(
            event="task.postrun", task_id=task.id, count=EXPECTED_RUNS, timeout=HOP_S, what="ends"
        )
        events = fx.settled(tl, task.id)
        sent = msg.pushes(events, [task.id])
        got = q.select(events, event="task.received")
        writes = q.result_writes(events, task.id)
        reads = q.select(events, command="GET", role=names.POOL_CHILD)
        eta = sent[0].eta or float("inf")
        s.show(
            fx.pushes_table(sent, sent[0].ts, "its messages"),
            ev.hops_table(got + runs, "its deliveries and runs"),
        )
        ok = [(p.pid, p.redelivered) for p in sent] == [(os.getpid(), False), (worker.pid, True)]
        s.expect("one publish by the client; one restore by the worker's sweep", ok)
        ok = [e["pid"] for e in got] == [worker.pid] * EXPECTED_RUNS and sent[1].ts < eta
        s.expect("received twice by the same MainProcess, both before the ETA", ok)
        ok = all(e["ts"] >= eta for e in runs)
        s.expect("run twice, both at the ETA", ok, f"{len(runs)} runs")
        ok = len(reads) == EXPECTED_RUNS and [w.status for w in writes] == ["SUCCESS"]
        s.expect("both children read the key; only the first stored SUCCESS", ok)


def a_warm_shutdown(s: Scenario) -> None:
    from envoi_mails import app

    tl, worker = s.timeline, s.worker(SECOND)
    with s.step(
        "5. A warm shutdown puts the reserved messages back itself",
        f"`slow({BUSY_S:g})` runs, three `add`s wait reserved. SIGTERM: the worker stops "
        "consuming, lets the running task finish, and as it finally closes its connection "
        "kombu puts back what it still holds unacked (`restore_at_shutdown`): no sweep, no "
        "visibility timeout to wait for.",
    ):
        sent = time.time()
        busy = app.send_task(SLOW, args=[BUSY_S], queue=QUEUE)
        adds = [app.send_task(ADD, args=[n, 1], queue=QUEUE).id for n in range(RESERVED)]
        fx.wait_running(tl, busy.id)
        dv.wait_reserved(tl, worker.pid, count=HELD, since=sent, timeout=HOP_S)
        stopping = time.time()
        worker.stop()
        tl.settle()
        events = tl.events()
        restored = dv.restores(events, QUEUE, since=stopping)
        restored_events = [p.event for p in restored]
        ended = q.life(events, busy.id)["task.postrun"]
        said = q.select(events, event=names.LOG, pid=worker.pid, containing=RESTORING)
        sweeps = q.select(events, command="ZRANGE", pid=worker.pid, since=stopping)
        held = [r.score for r in dv.reservations(events, pid=worker.pid, since=sent)]
        s.show(
            fx.pushes_table(restored, stopping, "put back, after the SIGTERM"),
            ev.logs_table(q.select(events, event=names.LOG, pid=worker.pid, since=stopping)),
        )
        ok = {p.task_id for p in restored} == set(adds) and q.pids(restored_events) == [worker.pid]
        ok = ok and bool(said) and not sweeps and said[0]["ts"] <= restored[0].ts
        s.expect("the MainProcess logged `Restoring 3 …` and put the three back; no sweep", ok)
        ok = ended is not None and all(ended["ts"] < p.ts for p in restored)
        ok = ok and all(p.ts - min(held) < VISIBILITY_S for p in restored)
        s.expect("after the running task, and before any visibility timeout", ok)
        queued = s.redis.llen(QUEUE)
        ok = queued == RESERVED and worker.proc is not None and worker.proc.returncode == 0
        s.expect(f"they wait in `{QUEUE}`; the worker exited with 0", ok, f"LLEN {queued}")


def story(s: Scenario) -> None:
    a_worker_holds_four(s)
    the_worker_dies(s)
    another_worker_gets_them_back(s)
    an_eta_beyond_the_timeout(s)
    a_warm_shutdown(s)


if __name__ == "__main__":
    sys.exit(run("13 · redelivery", story, __doc__ or ""))
