"""A pool child killed mid-task: early ack loses the task, acks_late runs it twice.

The scenario SIGKILLs the pool child running a task, as the kernel's OOM killer would. Early
ack: the message is gone, the MainProcess itself stores FAILURE (WorkerLostError). acks_late
with reject_on_worker_lost: the message goes back on the queue and the task runs again.
"""

from __future__ import annotations

import os
import sys

from celery.result import AsyncResult
from rich.pretty import Pretty

from demo import names
from demo.render import tables as ev
from demo.render.sequence_text import to_rich
from demo.scenes import failures as fx
from demo.scenes.frame import Scenario, run
from demo.stack.procs import log_lines
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import args_of
from demo.trace.sequence import build_sequence

SLOW, SLOW_LATE = "envoi_mails.slow", "envoi_mails.slow_late"
SLOW_S = 10  # slow(10): long enough to be killed mid-task
EARLY, LATE = "early", "late"  # the workers' names; LATE is also slow_late's queue
LATE_S = 4.0  # how long slow_late sleeps
CHILDREN = 2
FLAGS = ["-c", str(CHILDREN)]
RESTORE = ["WATCH", "HGET", "MULTI", "ZREM", "HDEL", "LPUSH", "EXEC"]
MAIN_GETS = 2  # the MainProcess GETs the result key twice before it stores FAILURE
RUNS = 2  # acks_late: the killed run, then the redelivered one
TRACEBACK_LINES = 1  # of a stored traceback, shown
RESULT_S, HOP_S = 30, 15  # how long to wait for a result, a hop
KILLED = "exited with 'signal 9 (SIGKILL)'"  # billiard's line in the worker's log file
HANDLER_ERROR, REJECTED = "Task handler raised", "task-rejected"  # the MainProcess says so
FAILURE_HOPS = ("result.stored", "task.failure")  # the task_failure side of a FAILURE
SEEN_IN_THE_RUN = ("task.received", "task.prerun", "task.acked")


def the_message_is_acked_early(s: Scenario) -> AsyncResult:
    from envoi_mails import app

    with s.step(
        "1. slow(10) runs in a child; its message is already acked",
        "Default early ack: the MainProcess acks (ZREM + HDEL `unacked`) as soon as a child "
        "says ACK on its pipe, before the task body has done anything.",
    ):
        worker = s.start_worker(EARLY, FLAGS)
        result = app.send_task(SLOW, args=[SLOW_S])
        victim = fx.wait_running(s.timeline, result.id)  # task.accepted's child = prerun's pid
        events = fx.settled(s.timeline, result.id)
        where = fx.whereabouts(s.redis, names.DEFAULT_QUEUE, result.id)
        s.show(ev.commands_table(events), ev.process_table(worker.pid))
        s.expect("task.accepted, task.prerun: a child of the worker", victim in worker.children())
        ok = [e["pid"] for e in q.select(events, command="HDEL")] == [worker.pid]
        s.expect("the MainProcess acked it (HDEL unacked) before anything went wrong", ok)
        s.expect("while it runs, Redis holds no copy: not in the list, not in unacked", where.gone)
    return result


def sigkill_fails_the_task(s: Scenario, slow: AsyncResult) -> None:
    tl, worker = s.timeline, s.worker(EARLY)
    with s.step(
        "2. SIGKILL the child: FAILURE, written by the MainProcess",
        "The child dies without a word. The MainProcess notices (at once, or at the pool's "
        "5-second check) and fails the job with `WorkerLostError`; the child cannot store "
        "anything now, so the parent does: with revoke and time limits, its only backend write.",
    ):
        victim = fx.wait_running(tl, slow.id)
        killed = fx.kill_child(worker.pid, victim)
        raised = slow.get(timeout=RESULT_S, propagate=False)
        tl.wait_for(
            event=names.LOG,
            containing=HANDLER_ERROR,
            since=killed,
            timeout=HOP_S,
            what=HANDLER_ERROR,
        )
        events = q.since(fx.by_connection(fx.settled(tl, slow.id)), killed)
        write = q.result_writes(events, slow.id)[0]
        exited = log_lines(worker.log, f"pid:{victim} exited")
        late_by = f"FAILURE stored {write.ts - killed:.2f} s after the SIGKILL"
        s.show(
            ev.commands_table(events),
            late_by,
            Pretty(fx.meta_view(write.meta, lines=TRACEBACK_LINES)),
        )
        s.show(*exited, ev.logs_table(tl.select(event=names.LOG, containing="WorkerLostError")))
        said = [e["pid"] for hop in FAILURE_HOPS for e in q.select(events, event=hop)]
        ok = write.pid == worker.pid and said == [worker.pid] * len(FAILURE_HOPS)
        s.expect("SETEX FAILURE, result.stored and task_failure: all in the MainProcess", ok)
        lost = str((write.meta or {}).get("result"))
        ok = write.exc_type == "WorkerLostError" and "(SIGKILL)" in lost
        s.expect("stored: WorkerLostError('Worker exited prematurely: signal 9 (SIGKILL) …')", ok)
        reads = q.select(events, command="GET", key_prefix=names.RESULT_PREFIX)
        gets = [e["pid"] for e in reads if e["ts"] < write.ts]
        ok = gets.count(worker.pid) == MAIN_GETS and set(gets) <= {worker.pid, os.getpid()}
        s.expect("first the MainProcess GETs it twice: did the child store SUCCESS? (5.7)", ok)
        ok = [x.endswith(KILLED) for x in exited] == [True]
        s.expect("the worker logged `Process 'ForkPoolWorker-N' pid:… exited with 'signal 9'`", ok)
        ok = type(raised).__name__ == "WorkerLostError"
        s.expect("the client's get() returns WorkerLostError", ok, repr(raised))


def the_pool_forks_a_replacement(s: Scenario) -> None:
    tl, worker = s.timeline, s.worker(EARLY)
    with s.step(
        "3. The pool forks a replacement",
        "billiard keeps the pool at `-c 2`: a new child is forked, runs `worker_process_init` "
        "(the kit's `child.init` hop), and waits for work.",
    ):
        (slow_id,) = s.published(SLOW)
        ran = tl.wait_for(event="task.prerun", task_id=slow_id, timeout=HOP_S, what="slow's run")
        victim = ran["pid"]  # the child killed in step 2: it ran the task
        # The pool's first children, then the one forked to replace the killed child.
        inits = tl.wait_until(
            event="child.init", count=CHILDREN + 1, timeout=HOP_S, what="the new child's child.init"
        )
        born, first = inits[-1], {e["pid"] for e in inits[:-1]}
        kids = worker.children()
        s.show(ev.hops_table([born]), ev.process_table(worker.pid))
        ok = born["ppid"] == worker.pid and born["pid"] not in (victim, worker.pid, *first)
        ok = ok and born["ts"] > ran["ts"]
        s.expect("a new child.init after the kill, from a new child of the worker", ok)
        ok = len(kids) == CHILDREN and born["pid"] in kids and victim not in kids
        s.expect("the OS shows 2 children: the new one, not the killed one", ok, f"{kids}")


def the_message_is_gone(s: Scenario) -> None:
    with s.step(
        "4. The message is gone: at most once",
        "Acked before it ran, the message is nowhere: not queued, not reserved. Celery recorded "
        "the loss as FAILURE and never runs the task again. Early ack means *at most once*.",
    ):
        (slow_id,) = s.published(SLOW)
        events = fx.settled(s.timeline, slow_id)
        where = fx.whereabouts(s.redis, names.DEFAULT_QUEUE, slow_id)
        runs = [len(q.select(events, event=hop)) for hop in ("task.received", "task.prerun")]
        s.show(str(where), s.flower(f"task/{slow_id}"))
        s.expect("not in the list, not in unacked", where.gone)
        ok = len(msg.pushes(events, [slow_id])) == 1 and runs == [1, 1]
        s.expect("one publish, one delivery, one run: nobody sent it again", ok, f"{runs}")


def acks_late_keeps_it_reserved(s: Scenario) -> AsyncResult:
    from envoi_mails import app

    with s.step(
        "5. acks_late: the message stays reserved while the task runs",
        f"`slow_late({LATE_S:g})` is `slow` with `acks_late=True, reject_on_worker_lost=True`, "
        "task attributes (`apply_async` has no such option). On a worker of its own, queue "
        f"`{LATE}`. The MainProcess will ack only when the task ends.",
    ):
        late = s.start_worker(LATE, [*FLAGS, "-Q", LATE])
        result = app.send_task(SLOW_LATE, args=[LATE_S], queue=LATE)
        fx.wait_running(s.timeline, result.id)
        events = fx.settled(s.timeline, result.id)
        where = fx.whereabouts(s.redis, LATE, result.id)
        s.show(ev.commands_table(events), str(where))
        ok = not q.select(events, command="HDEL") and not q.select(events, event="task.acked")
        ok = ok and [e["pid"] for e in q.select(events, command="HSET")] == [late.pid]
        s.expect("reserved by the MainProcess (HSET unacked); no HDEL, no task.acked hop", ok)
        ok = not where.queued and len(where.reserved) == 1
        s.expect("while it runs: in unacked, not in the list", ok, str(where))
    return result


def sigkill_requeues_it(s: Scenario) -> None:
    tl, late = s.timeline, s.worker(LATE)
    with s.step(
        "6. SIGKILL the child: the MainProcess puts the message back",
        "kombu's `reject(requeue=True)` moves it from `unacked` to the queue in one transaction, "
        "with LPUSH (`leftmost=True`). BRPOP takes from the right: the message goes to the back "
        "of the queue, behind any already waiting. No FAILURE is stored.",
    ):
        (late_id,) = s.published(SLOW_LATE)
        killed = fx.kill_child(late.pid, fx.wait_running(tl, late_id))
        back = tl.wait_for(
            command=msg.PUSHES, key=LATE, since=killed, timeout=RESULT_S, what="the requeue"
        )
        tl.wait_for(
            event="task.event", task_id=late_id, type=REJECTED, timeout=HOP_S, what=REJECTED
        )
        fx.settled(tl, late_id)  # the whole transaction is on the timeline
        tx = fx.transaction(fx.by_connection(tl.events()), back)
        events = tl.for_task(late_id)
        sent = msg.pushes(events, [late_id])
        s.show(ev.commands_table(tx), fx.pushes_table(sent, sent[0].ts, "its messages"))
        ok = [args_of(e)[0] for e in tx] == RESTORE and {e["pid"] for e in tx} == {late.pid}
        s.expect("from the MainProcess: WATCH, HGET, MULTI, ZREM, HDEL, LPUSH, EXEC", ok)
        ok = sent[-1].envelope.task_id == late_id and sent[-1].redelivered
        s.expect("the same message (same task id), marked headers.redelivered = true", ok)
        rejected = [e["pid"] for e in q.select(events, type=REJECTED)]
        ok = rejected == [late.pid] and not q.result_writes(events, late_id)
        s.expect("the MainProcess sent a task-rejected event; nothing was stored", ok)


def redelivered_and_run_again(s: Scenario, slow_late: AsyncResult) -> None:
    tl, late = s.timeline, s.worker(LATE)
    with s.step(
        "7. Redelivered, run again in another child: SUCCESS, then the late ack",
        "The MainProcess BRPOPs the message again and a child runs the task from the start and "
        "stores SUCCESS; only then does the MainProcess ack (ZREM + HDEL).",
    ):
        late_id = slow_late.id
        value = slow_late.get(timeout=LATE_S + RESULT_S)
        tl.wait_for(event="task.acked", task_id=late_id, timeout=HOP_S, what="the late ack's hop")
        events = fx.by_connection(fx.settled(tl, late_id, state="SUCCESS"))
        runs = [e["pid"] for e in q.select(events, event="task.prerun")]
        got = [e["pid"] for e in q.select(events, event="task.received")]
        states, acks = q.result_writes(events, late_id), q.select(events, command="HDEL")
        s.show(ev.hops_table([e for e in events if e["event"] in SEEN_IN_THE_RUN]))
        killed = runs[0] not in late.children()  # the first run's child is gone
        ok = got == [late.pid] * RUNS and len(runs) == RUNS and killed and runs[0] != runs[1]
        s.expect("received twice by the MainProcess; run by the killed child, then another", ok)
        ok = [x.status for x in states] == ["SUCCESS"]
        ok = ok and {x.pid for x in states} == {runs[1], value["pid"]}
        s.expect("one result only, SUCCESS, stored by the child of the second run", ok)
        ok = acks[-1]["pid"] == late.pid and acks[-1]["ts"] > states[0].ts
        s.expect("the late ack (HDEL) comes after the SETEX, from the MainProcess", ok)
        requeued = msg.pushes(events, [late_id])[-1].ts  # after the SIGKILL
        ok = value["started"] > requeued and value["ended"] - value["started"] >= LATE_S
        s.expect(f"the second run slept the full {LATE_S:g} s again: the work was redone", ok)
        where = fx.whereabouts(s.redis, LATE, late_id)
        s.expect("nothing left: not in the list, not in unacked", where.gone)
        s.show(to_rich(build_sequence(events, late_id)), s.flower(f"task/{late_id}"))


def side_effects(s: Scenario) -> None:
    with s.step(
        "8. What this means for side effects",
        "`acks_late` + `reject_on_worker_lost` is *at least once*: one publish, the body started "
        "twice. Whatever it did before the kill (a mail sent, a row written) happens again: the "
        "task must be idempotent. envoi_mail's Message-ID is `<task id@envoi-mails>` and a "
        "redelivery keeps the task id, so a duplicate mail is at least detectable.",
    ):
        (late_id,) = s.published(SLOW_LATE)
        events = s.timeline.for_task(late_id)
        sent, runs = msg.pushes(events, [late_id]), q.select(events, event="task.prerun")
        ids = {p.envelope.task_id for p in sent}
        ok = [p.redelivered for p in sent] == [False, True] and ids == {late_id}
        ok = ok and len(runs) == RUNS
        s.expect("one publish, two runs, both with the same task id (same Message-ID)", ok)


def story(s: Scenario) -> None:
    # Only the result handles go from step to step: a dropped AsyncResult unsubscribes from
    # its result channel (AsyncResult.__del__), and the trace would show it.
    slow = the_message_is_acked_early(s)
    sigkill_fails_the_task(s, slow)
    the_pool_forks_a_replacement(s)
    the_message_is_gone(s)
    slow_late = acks_late_keeps_it_reserved(s)
    sigkill_requeues_it(s)
    redelivered_and_run_again(s, slow_late)
    side_effects(s)


if __name__ == "__main__":
    sys.exit(run("07 · a child crash, early ack and acks_late", story, __doc__ or ""))
