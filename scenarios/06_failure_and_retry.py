"""A task fails, a task retries, a mail waits for its SMTP server: who writes what, and where.

A failure is a result like any other: the pool child stores it, traceback included. A retry
is not the same message run again: the pool child publishes a brand-new message with an
`eta`, which waits inside the worker (reserved in `unacked`), not in the queue; if it waits
there longer than the visibility timeout, a sweep delivers it again and it runs twice.
"""

from __future__ import annotations

import os
import sys
import time

from celery.result import AsyncResult
from rich.pretty import Pretty

from demo import names
from demo.render import tables as ev
from demo.scenes import failures as fx
from demo.scenes.frame import Scenario, run
from demo.stack.smtp_sink import SmtpSink
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import args_of

MESSAGE, ADDRESS, DOWN = "échec voulu", "destinataire@example.com", "smtp-down"
EXC = {"exc_type": "TeachingError", "exc_message": [MESSAGE], "exc_module": "envoi_mails.tasks"}
WORKER, DOWN_WORKER = "celery", "smtpdown"
WORKER_FLAGS, DOWN_FLAGS = ["-c", "2"], ["-c", "1", "-Q", DOWN]
FLAKY = "envoi_mails.flaky"
FAILURES, COUNTDOWN_S = 2, 1  # flaky(2, countdown=1): two failed tries, each retried 1 s later
STATES = ["RETRY"] * FAILURES + ["SUCCESS"]
MAIL_RETRIES = {"MAIL_RETRY_BACKOFF": "0.5", "MAIL_MAX_RETRIES": "6"}
MIN_MAIL_TRIES = 2  # refused while the sink is down, then through
RESULT_S, MAIL_RESULT_S, HOP_S = 30, 60, 15  # how long to wait for a result, a mail, a hop
TRACEBACK_LINES = 1  # of a stored traceback, shown
SWEEPER = "sweeper"  # step 7's worker, and its own queue
VISIBILITY_S, SWEEP_S, COUNTDOWN_LONG_S = 2.5, 0.5, 4  # its visibility timeout, its sweep
SHORT_VISIBILITY = {
    "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_S),
    "CELERY_UNACKED_RESTORE_INTERVAL": str(SWEEP_S),
}
ETA_SLACK_S = 1.0  # the eta header is the publish time + the countdown, to the second
TIMER_SLACK_S = 0.05  # the worker's timer may fire a hair before the ETA


def a_task_raises(s: Scenario) -> None:
    from envoi_mails import fail
    from envoi_mails.tasks import TeachingError

    with s.step(
        "1. A task raises: FAILURE, stored by the pool child",
        "`fail.delay('échec voulu')` raises `TeachingError`. The child that ran it stores the "
        "exception as JSON (type, module, arguments) with its traceback, and logs at ERROR.",
    ):
        worker = s.start_worker(WORKER, WORKER_FLAGS)
        result = fail.delay(MESSAGE)
        raised = result.get(timeout=RESULT_S, propagate=False)
        main_hops = ("task.accepted", "task.acked")  # the MainProcess's, which may land late
        events = fx.settled(s.timeline, result.id, state="FAILURE", hops=main_hops)
        write = q.result_writes(events, result.id)[0]
        meta, line = write.meta or {}, q.select(events, event=names.LOG, containing="raised")
        s.show(ev.commands_table(events), Pretty(fx.meta_view(meta)), ev.logs_table(line))
        ok = write.pid in worker.children() and write.status == "FAILURE"
        s.expect(
            "a pool child, not the MainProcess, wrote FAILURE (SETEX)", ok, write.event["role"]
        )
        s.expect("the JSON names the exception: type, module, arguments", meta.get("result") == EXC)
        ok = "raise TeachingError" in str(meta.get("traceback"))
        s.expect("the traceback is stored too, down to the task's raise", ok)
        who = [(e["level"], e["pid"], e["process_name"][:14]) for e in line]
        ok = who == [("error", write.pid, "ForkPoolWorker")]
        ok = ok and line[0]["message"].endswith(f"raised unexpected: {raised!r}")
        s.expect("`Task … raised unexpected: TeachingError(…)`: ERROR, from that child", ok)
        ok = isinstance(raised, TeachingError)
        s.expect("the client re-raises a TeachingError, rebuilt from exc_module/exc_type", ok)
        # Early ack: the MainProcess acks on the child's ACK, while the child already runs
        # the task; for a task this short, its SETEX may come first (a race, not an order).
        ack = q.first(events, command="HDEL")
        where = fx.whereabouts(s.redis, names.DEFAULT_QUEUE, result.id)
        started = q.first(events, event="task.accepted")
        acked = q.first(events, event="task.acked")
        ok = (
            ack is not None
            and ack["pid"] == worker.pid
            and started is not None
            and acked is not None
            and started["ts"] <= acked["ts"]
            and not acked["late"]
            and where.gone
        )
        what = "not redelivered: acked by the MainProcess on the child's ACK, gone"
        s.expect(what, ok, str(where))
        s.show(s.flower(f"task/{result.id}"))


def the_retry_waits_in_the_worker(s: Scenario) -> None:
    from envoi_mails import flaky

    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "2. flaky(2, countdown=1): the retry waits inside the worker",
        "`self.retry(countdown=1)` publishes a new message with an `eta` one second ahead. The "
        "countdown is not spent in the queue: the MainProcess takes the message at once and "
        "holds it, reserved in `unacked`, until the eta. Looked at while it waits:",
    ):
        t0, result = time.time(), flaky.delay(FAILURES, countdown=COUNTDOWN_S)
        retry = tl.wait_for(
            command="LPUSH", task_id=result.id, role=names.POOL_CHILD, timeout=HOP_S, what="a retry"
        )
        tl.wait_for(
            command="HSET",
            task_id=result.id,
            key=names.UNACKED,
            since=retry["ts"],
            timeout=HOP_S,
            what="its reservation",
        )
        waiting = fx.whereabouts(s.redis, names.DEFAULT_QUEUE, result.id)
        result.get(timeout=RESULT_S)
        waits = fx.retry_waits(fx.settled(tl, result.id, state="SUCCESS"), result.id)
        s.show(f"while it waited: {waiting}", fx.waits_table(waits, t0, "each retry's wait"))
        held = [e.message.summary["retries"] for e in waiting.reserved]
        ok = not waiting.queued and held == [1]
        s.expect("while it waits: not in the list, reserved in `unacked` with retries=1", ok)
        ok = len(waits) == FAILURES and all(w.reserved_before_eta(worker.pid) for w in waits)
        s.expect("each retry was reserved by the MainProcess before its eta", ok)
        ok = all(w.started_after_eta() for w in waits)
        s.expect("… and acked (HDEL) when a child started it, not before its eta", ok)


def each_retry_is_a_new_lpush(s: Scenario) -> None:
    with s.step(
        "3. Each retry is a new LPUSH, by the pool child",
        "Not the client: `Task.retry` calls `signature_from_request(…).apply_async()` inside "
        "the task, in the child, before it raises `Retry`. Same task id, `retries` + 1, an eta.",
    ):
        (flaky_id,) = s.published(FLAKY)
        worker, sent = s.worker(WORKER), msg.pushes(s.timeline.for_task(flaky_id), [flaky_id])
        kid = next((p.pid for p in sent if p.retries), None)  # the first retry's sender
        s.show(fx.pushes_table(sent, sent[0].ts, "the messages that carried the task"))
        senders = [(p.event["role"], p.pid) for p in sent]
        ok = senders[1:] == [(names.POOL_CHILD, kid)] * FAILURES and senders[0][0] == names.CLIENT
        s.expect("three LPUSHes: the client's, then two from the child that ran the try", ok)
        s.expect("that child is one of the worker's", kid in worker.children(), f"pid {kid}")
        etas = [p.eta is not None and p.eta > p.ts for p in sent]
        ok = [p.retries for p in sent] == list(range(FAILURES + 1))
        ok = ok and etas == [False] + [True] * FAILURES
        s.expect("headers: retries 0, 1, 2; no eta, then an eta in the future", ok)
        ok = all(p.envelope.headers["parent_id"] == flaky_id for p in sent[1:])
        s.expect("each retry names the task itself as its parent (parent_id)", ok)


def the_states(s: Scenario) -> None:
    with s.step(
        "4. The states: RETRY, RETRY, SUCCESS, all stored by the child",
        "Each failed try stores RETRY with that try's exception, after the new message is "
        "published. `result.get()` skips RETRY and keeps waiting for a final state.",
    ):
        (flaky_id,) = s.published(FLAKY)
        events = s.timeline.for_task(flaky_id)
        states, logs = q.result_writes(events, flaky_id), q.select(events, event=names.LOG)
        kid = next((p.pid for p in msg.pushes(events, [flaky_id]) if p.retries), None)
        s.show(ev.commands_table(q.select(events, command="SETEX")), ev.logs_table(logs))
        ok = [x.status for x in states] == STATES and {x.pid for x in states} == {kid}
        s.expect("RETRY, RETRY, SUCCESS, each SETEX from that child", ok)
        metas = [x.meta or {} for x in states]
        ok = all(meta["children"][0][0][0] == flaky_id for meta in metas[:FAILURES])
        ok = ok and metas[FAILURES].get("parent_id") == flaky_id
        s.expect("RETRY lists the task itself in `children`; SUCCESS says it is its own parent", ok)
        waits = fx.retry_waits(events, flaky_id)
        ok = all(w.push.ts < x.ts for w, x in zip(waits, states, strict=False))
        s.expect("each retry's LPUSH came before its RETRY was stored", ok)
        said = q.select(logs, containing=f": Retry in {COUNTDOWN_S}s:")
        ok = [(e["level"], e["pid"]) for e in said] == [("info", kid)] * FAILURES
        s.expect("`retry: Retry in 1s: …` is INFO, from that child, twice", ok)
        value = q.returned(events, flaky_id) or {}  # what result.get() returned in step 2
        ok = states[-1].status == "SUCCESS" and value.get("tries") == FAILURES + 1
        s.expect("the value: SUCCESS at the third try", ok, str(value))
        s.show(s.flower(f"task/{flaky_id}"))


def the_smtp_server_is_down(s: Scenario, sink: SmtpSink) -> AsyncResult:
    from envoi_mails import envoi_mail

    with s.step(
        "5. The mail task while the SMTP server is down",
        "A worker on queue `smtp-down` whose SMTP server does not listen, with "
        "MAIL_RETRY_BACKOFF=0.5 and MAIL_MAX_RETRIES=6: the first try is refused, retried.",
    ):
        env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), **MAIL_RETRIES}
        down = s.start_worker(DOWN_WORKER, DOWN_FLAGS, env)
        mail = envoi_mail.apply_async(args=[ADDRESS], queue=DOWN)
        retry = s.timeline.wait_for(
            lambda e: [w.status for w in q.result_writes([e], mail.id)] == ["RETRY"],
            timeout=RESULT_S,
            what="the RETRY state",
        )
        first = q.result_writes([retry], mail.id)[0]
        s.show(Pretty(fx.meta_view(first.meta, lines=TRACEBACK_LINES)))
        ok = retry.get("ppid") == down.pid and first.exc_type == "SmtpUnavailable"
        s.expect("RETRY stored by the child, with the SMTP error it met", ok)
        mine = [m for m in [*sink.mails(), *s.stack.mails()] if mail.id in m.message_id]
        s.expect("no mail arrived anywhere yet", not mine)
    return mail


def the_smtp_server_comes_back(s: Scenario, sink: SmtpSink, mail: AsyncResult) -> None:
    with s.step(
        "6. The SMTP server comes back: exactly one mail",
        "The sink starts on that port; the next try (0.5 s, 1 s, 2 s… after the last) gets "
        "through. Retries keep the task id, so every try builds the same Message-ID.",
    ):
        mail_id = mail.id
        sink.start()
        value = mail.get(timeout=MAIL_RESULT_S)
        sent = msg.pushes(fx.settled(s.timeline, mail_id, state="SUCCESS"), [mail_id])
        got = [m for m in sink.mails() if m.message_id == f"<{mail_id}@envoi-mails>"]
        s.show(Pretty(value), fx.pushes_table(sent, sent[0].ts, "its messages"))
        ok = len(got) == 1 == len(sink.mails())
        s.expect("exactly one mail, Message-ID <task_id@envoi-mails>", ok)
        ok = value["tries"] >= MIN_MAIL_TRIES
        s.expect("it took at least two tries", ok, f"tries: {value['tries']}")
        queues = {args_of(p.event)[1] for p in sent}
        ok = queues == {DOWN} and len(sent) == value["tries"]
        s.expect("one message per try, every retry on the queue `smtp-down`", ok, str(queues))
        s.show(s.flower(f"task/{mail_id}"))


def a_countdown_outlives_the_visibility_timeout(s: Scenario) -> None:
    from envoi_mails import add

    tl = s.timeline
    with s.step(
        "7. A countdown longer than the visibility timeout runs twice",
        f"A worker started with `CELERY_VISIBILITY_TIMEOUT={VISIBILITY_S:g}` and "
        f"`CELERY_UNACKED_RESTORE_INTERVAL={SWEEP_S:g}` (the app passes them to kombu's "
        "`broker_transport_options`): every half second it sweeps `unacked` and pushes back "
        f"what was reserved over {VISIBILITY_S:g} s ago, whatever its ETA. "
        f"`add.apply_async((3, 3), countdown={COUNTDOWN_LONG_S})` on its queue is reserved at "
        "once, found overdue, pushed back and reserved again: both copies run at the ETA. "
        "With the default 3600 s, a countdown or retry over an hour away does the same.",
    ):
        sweeper = s.start_worker(SWEEPER, ["-c", "1", "-Q", SWEEPER], SHORT_VISIBILITY)
        task = add.apply_async((3, 3), countdown=COUNTDOWN_LONG_S, queue=SWEEPER)
        runs = tl.wait_until(
            event="task.prerun", task_id=task.id, count=2, timeout=RESULT_S, what="two runs"
        )
        tl.settle()
        events = tl.events()
        seen = fx.Redelivery.read(events, task.id, client=os.getpid(), worker=sweeper.pid)
        s.show(ev.commands_table(q.select(events, event=names.REDIS_COMMAND, task_id=task.id)))
        s.expect(
            f"the client published it once (one LPUSH), due in {COUNTDOWN_LONG_S} s",
            len(seen.published) == 1
            and abs(seen.eta - seen.published[0].ts - COUNTDOWN_LONG_S) < ETA_SLACK_S,
        )
        s.expect(
            f"{VISIBILITY_S:g} s after reserving it, well before its ETA, the worker's own sweep "
            "pushed it back (RPUSH, redelivered)",
            seen.pushed_back_after >= VISIBILITY_S
            and seen.back[0].redelivered
            and seen.back[0].ts < seen.eta,
            f"after {seen.pushed_back_after:.2f} s",
        )
        s.expect(
            "its MainProcess received it twice, and its child ran it twice, at the ETA: two "
            "task.prerun for one publish",
            [e["pid"] for e in seen.received] == [sweeper.pid] * 2
            and all(
                e.get("ppid") == sweeper.pid and e["ts"] >= seen.eta - TIMER_SLACK_S for e in runs
            ),
        )
        s.expect(
            "the second run found SUCCESS stored (its GET) and wrote nothing: the body ran "
            "twice, the result was stored once",
            [str(w) for w in seen.writes] == ["SUCCESS"]
            and len(seen.reads) == len(runs)
            and seen.reads[-1]["ts"] > seen.writes[0].ts,
            f"{len(seen.reads)} GET, {len(seen.writes)} SETEX",
        )


def story(s: Scenario) -> None:
    a_task_raises(s)
    the_retry_waits_in_the_worker(s)
    each_retry_is_a_new_lpush(s)
    the_states(s)
    # Only handles go from step to step: the sink, and the mail's AsyncResult (a dropped
    # one unsubscribes from its result channel, AsyncResult.__del__, and the trace shows it).
    with fx.smtp_sink_down(s.stack.run_dir / "mails-smtp-down") as sink:
        mail = the_smtp_server_is_down(s, sink)
        the_smtp_server_comes_back(s, sink, mail)
    a_countdown_outlives_the_visibility_timeout(s)


if __name__ == "__main__":
    sys.exit(run("06 · failure and retry", story, __doc__ or ""))
