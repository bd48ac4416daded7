"""A pool child killed mid-task: early ack loses the task, acks_late runs it twice.

The scenario SIGKILLs the pool child running a task, as the kernel's OOM killer would. Early
ack: the message is gone, the MainProcess itself stores FAILURE (WorkerLostError). acks_late
with reject_on_worker_lost: the message goes back on the queue and the task runs again.
"""

from __future__ import annotations

import os
import sys

import redis
from rich.pretty import Pretty

from demo.render import tables as ev
from demo.render.sequence_text import to_rich
from demo.scenes import failures as fx
from demo.scenes.frame import Scenario, run
from demo.trace import query as q
from demo.trace.event import args_of
from demo.trace.sequence import build_sequence

LATE, LATE_S = "late", 4.0  # slow_late's queue, and how long it sleeps
RESTORE = ["WATCH", "HGET", "MULTI", "ZREM", "HDEL", "LPUSH", "EXEC"]


def story(s: Scenario) -> None:
    from envoi_mails import app

    tl, r = s.timeline, redis.Redis.from_url(s.stack.broker_url)
    with s.step(
        "1. slow(10) runs in a child; its message is already acked",
        "Default early ack: the MainProcess acks (ZREM + HDEL `unacked`) as soon as a child "
        "says ACK on its pipe, before the task body has done anything.",
    ):
        worker = s.start_worker("early", ["-c", "2"])
        result = app.send_task("envoi_mails.slow", args=[10])
        victim = fx.wait_running(tl, result.id)  # task.accepted's child_pid = task.prerun's pid
        events, where = fx.settled(tl, r, result.id), fx.whereabouts(r, "celery", result.id)
        s.show(ev.commands_table(events), ev.process_table(worker.pid))
        s.expect("task.accepted, task.prerun: a child of the worker", victim in worker.children())
        ok = fx.pids_of(events, "HDEL") == [worker.pid]
        s.expect("the MainProcess acked it (HDEL unacked) before anything went wrong", ok)
        s.expect("while it runs, Redis holds no copy: not in the list, not in unacked", where.gone)

    with s.step(
        "2. SIGKILL the child: FAILURE, written by the MainProcess",
        "The child dies without a word. The MainProcess notices (at once, or at the pool's "
        "5-second check) and fails the job with `WorkerLostError`; the child cannot store "
        "anything now, so the parent does: with revoke and time limits, its only backend write.",
    ):
        killed = fx.kill_child(worker.pid, victim)
        raised = result.get(timeout=30, propagate=False)
        tl.wait_for(
            fx.logged("Task handler raised", killed),
            timeout=10,
            what="the MainProcess's ERROR line",
        )
        events = [e for e in fx.by_connection(fx.settled(tl, r, result.id)) if e["ts"] > killed]
        (setex, meta) = fx.stored(events, result.id)[0]
        exited = fx.log_lines(worker.log, f"pid:{victim} exited")
        late_by = f"FAILURE stored {setex['ts'] - killed:.2f} s after the SIGKILL"
        s.show(ev.commands_table(events), late_by, Pretty(fx.meta_view(meta, 1)), *exited)
        s.show(ev.logs_table(fx.messages(tl.events(), "WorkerLostError")))
        said = fx.pids_of(events, "result.stored", "task.failure")
        ok = setex["pid"] == worker.pid and said == [worker.pid] * 2
        s.expect("SETEX FAILURE, result.stored and task_failure: all in the MainProcess", ok)
        ok = meta["result"]["exc_type"] == "WorkerLostError" and "(SIGKILL)" in str(meta["result"])
        s.expect("stored: WorkerLostError('Worker exited prematurely: signal 9 (SIGKILL) …')", ok)
        gets = fx.pids_of(
            q.select(events, key_prefix="celery-task-meta"), "GET", before=setex["ts"]
        )
        ok = gets.count(worker.pid) == 2 and set(gets) <= {worker.pid, os.getpid()}
        s.expect("first the MainProcess GETs it twice: did the child store SUCCESS? (5.7)", ok)
        ok = [x.endswith("exited with 'signal 9 (SIGKILL)'") for x in exited] == [True]
        s.expect("the worker logged `Process 'ForkPoolWorker-N' pid:… exited with 'signal 9'`", ok)
        ok = type(raised).__name__ == "WorkerLostError"
        s.expect("the client's get() returns WorkerLostError", ok, repr(raised))

    with s.step(
        "3. The pool forks a replacement",
        "billiard keeps the pool at `-c 2`: a new child is forked, runs `worker_process_init` "
        "(the kit's `child.init` hop), and waits for work.",
    ):
        born = tl.wait_for(
            fx.hop("child.init", since=killed), timeout=15, what="the new child's child.init"
        )
        kids = worker.children()
        s.show(ev.hops_table([born]), ev.process_table(worker.pid))
        ok = born["ppid"] == worker.pid and born["pid"] not in (victim, worker.pid)
        s.expect("a new child.init after the kill, from a new child of the worker", ok)
        ok = len(kids) == 2 and born["pid"] in kids and victim not in kids
        s.expect("the OS shows 2 children: the new one, not the killed one", ok, f"{kids}")

    with s.step(
        "4. The message is gone: at most once",
        "Acked before it ran, the message is nowhere: not queued, not reserved. Celery recorded "
        "the loss as FAILURE and never runs the task again. Early ack means *at most once*.",
    ):
        events, where = fx.settled(tl, r, result.id), fx.whereabouts(r, "celery", result.id)
        runs = [len(fx.hops(events, h)) for h in ("task.received", "task.prerun")]
        s.show(str(where), s.flower(f"task/{result.id}"))
        s.expect("not in the list, not in unacked", where.gone)
        ok = len(fx.pushes(events, result.id)) == 1 and runs == [1, 1]
        s.expect("one publish, one delivery, one run: nobody sent it again", ok, f"{runs}")

    with s.step(
        "5. acks_late: the message stays reserved while the task runs",
        f"`slow_late({LATE_S:g})` is `slow` with `acks_late=True, reject_on_worker_lost=True`, "
        "task attributes (`apply_async` has no such option). On a worker of its own, queue "
        f"`{LATE}`. The MainProcess will ack only when the task ends.",
    ):
        late = s.start_worker("late", ["-c", "2", "-Q", LATE])
        result = app.send_task("envoi_mails.slow_late", args=[LATE_S], queue=LATE)
        victim = fx.wait_running(tl, result.id)
        events, where = fx.settled(tl, r, result.id), fx.whereabouts(r, LATE, result.id)
        s.show(ev.commands_table(events), str(where))
        ok = not fx.pids_of(events, "HDEL", "task.acked")
        ok = ok and fx.pids_of(events, "HSET") == [late.pid]
        s.expect("reserved by the MainProcess (HSET unacked); no HDEL, no task.acked hop", ok)
        ok = not where.queued and len(where.reserved) == 1
        s.expect("while it runs: in unacked, not in the list", ok, str(where))

    with s.step(
        "6. SIGKILL the child: the MainProcess puts the message back",
        "kombu's `reject(requeue=True)` moves it from `unacked` to the queue in one transaction, "
        "with LPUSH (`leftmost=True`). BRPOP takes from the right: the message goes to the back "
        "of the queue, behind any already waiting. No FAILURE is stored.",
    ):
        killed = fx.kill_child(late.pid, victim)
        back = tl.wait_for(
            fx.command("LPUSH|RPUSH", since=killed, key=LATE), timeout=30, what="the requeue"
        )
        tl.wait_for(
            fx.hop("task.event", result.id, type="task-rejected"), timeout=10, what="task-rejected"
        )
        fx.settled(tl, r, result.id)  # the spy has shown the whole transaction
        tx = fx.transaction(fx.by_connection(tl.events()), back)
        events = tl.for_task(result.id)
        sent = fx.pushes(events, result.id)
        s.show(ev.commands_table(tx), fx.pushes_table(sent, sent[0].event["ts"], "its messages"))
        names = [args_of(e)[0] for e in tx]
        ok = names == RESTORE and {e["pid"] for e in tx} == {late.pid}
        s.expect("from the MainProcess: WATCH, HGET, MULTI, ZREM, HDEL, LPUSH, EXEC", ok)
        ok = sent[-1].envelope.task_id == result.id and sent[-1].redelivered
        s.expect("the same message (same task id), marked headers.redelivered = true", ok)
        rejected = [e["pid"] for e in events if e.get("type") == "task-rejected"]
        ok = rejected == [late.pid] and not fx.stored(events, result.id)
        s.expect("the MainProcess sent a task-rejected event; nothing was stored", ok)

    with s.step(
        "7. Redelivered, run again in another child: SUCCESS, then the late ack",
        "The MainProcess BRPOPs the message again and a child runs the task from the start and "
        "stores SUCCESS; only then does the MainProcess ack (ZREM + HDEL).",
    ):
        value = result.get(timeout=LATE_S + 30)
        tl.wait_for(fx.hop("task.acked", result.id), timeout=10, what="the late ack's hop")
        events = fx.by_connection(fx.settle(tl, r, result.id, "SUCCESS"))
        runs, got = fx.pids_of(events, "task.prerun"), fx.pids_of(events, "task.received")
        states, acks = fx.stored(events, result.id), q.select(events, command="HDEL")
        s.show(ev.hops_table(fx.hops(events, "task.received", "task.prerun", "task.acked")))
        ok = got == [late.pid] * 2 and len(runs) == 2 and runs[0] == victim != runs[1]
        s.expect("received twice by the MainProcess; run by the killed child, then another", ok)
        ok = [x.status for x in states] == ["SUCCESS"]
        ok = ok and fx.pids(states) == {runs[1], value["pid"]}
        s.expect("one result only, SUCCESS, stored by the child of the second run", ok)
        ok = acks[-1]["pid"] == late.pid and acks[-1]["ts"] > states[0].event["ts"]
        s.expect("the late ack (HDEL) comes after the SETEX, from the MainProcess", ok)
        ok = value["started"] > killed and value["ended"] - value["started"] >= LATE_S
        s.expect(f"the second run slept the full {LATE_S:g} s again: the work was redone", ok)
        where = fx.whereabouts(r, LATE, result.id)
        s.expect("nothing left: not in the list, not in unacked", where.gone)
        s.show(to_rich(build_sequence(events, result.id)), s.flower(f"task/{result.id}"))

    with s.step(
        "8. What this means for side effects",
        "`acks_late` + `reject_on_worker_lost` is *at least once*: one publish, the body started "
        "twice. Whatever it did before the kill (a mail sent, a row written) happens again: the "
        "task must be idempotent. envoi_mail's Message-ID is `<task id@envoi-mails>` and a "
        "redelivery keeps the task id, so a duplicate mail is at least detectable.",
    ):
        ids = {p.envelope.task_id for p in sent}
        ok = [p.redelivered for p in sent] == [False, True] and ids == {result.id}
        ok = ok and len(runs) == 2
        s.expect("one publish, two runs, both with the same task id (same Message-ID)", ok)


if __name__ == "__main__":
    sys.exit(run("07 · a child crash, early ack and acks_late", story, __doc__ or ""))
