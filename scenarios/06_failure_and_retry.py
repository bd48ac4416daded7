"""A task fails, a task retries, a mail waits for its SMTP server: who writes what, and where.

A failure is a result like any other: the pool child stores it, traceback included. A retry
is not the same message run again: the pool child publishes a brand-new message with an
`eta`, which waits inside the worker (reserved in `unacked`), not in the queue.
"""

from __future__ import annotations

import sys
import time

import redis
from rich.pretty import Pretty

from demo.render import tables as ev
from demo.scenes import failures as fx
from demo.scenes.frame import Scenario, run
from demo.trace import query as q
from demo.trace.event import args_of

MESSAGE, ADDRESS, DOWN = "échec voulu", "destinataire@example.com", "smtp-down"
EXC = {"exc_type": "TeachingError", "exc_message": [MESSAGE], "exc_module": "envoi_mails.tasks"}


def story(s: Scenario) -> None:
    from envoi_mails import envoi_mail, fail, flaky
    from envoi_mails.tasks import TeachingError

    tl, r = s.timeline, redis.Redis.from_url(s.stack.broker_url)
    with s.step(
        "1. A task raises: FAILURE, stored by the pool child",
        "`fail.delay('échec voulu')` raises `TeachingError`. The child that ran it stores the "
        "exception as JSON (type, module, arguments) with its traceback, and logs at ERROR.",
    ):
        worker = s.start_worker(extra=["-c", "2"])
        result = fail.delay(MESSAGE)
        raised = result.get(timeout=30, propagate=False)
        # Each process ships its hops every 0.1 s: the MainProcess's may land after the
        # child's postrun, which settle() waits for.
        for name in ("task.accepted", "task.acked"):
            tl.wait_for(fx.hop(name, result.id), timeout=10, what=f"the MainProcess's {name}")
        events = fx.settle(tl, r, result.id, "FAILURE")
        (setex, meta), line = fx.stored(events, result.id)[0], fx.messages(events, "raised")
        s.show(ev.commands_table(events), Pretty(fx.meta_view(meta)), ev.logs_table(line))
        ok = setex["pid"] in worker.children() and meta["status"] == "FAILURE"
        s.expect("a pool child, not the MainProcess, wrote FAILURE (SETEX)", ok, setex["role"])
        s.expect("the JSON names the exception: type, module, arguments", meta["result"] == EXC)
        ok = "raise TeachingError" in str(meta["traceback"])
        s.expect("the traceback is stored too, down to the task's raise", ok)
        who = [(e["level"], e["pid"], e["process_name"][:14]) for e in line]
        ok = who == [("error", setex["pid"], "ForkPoolWorker")]
        ok = ok and line[0]["message"].endswith(f"raised unexpected: {raised!r}")
        s.expect("`Task … raised unexpected: TeachingError(…)`: ERROR, from that child", ok)
        ok = isinstance(raised, TeachingError)
        s.expect("the client re-raises a TeachingError, rebuilt from exc_module/exc_type", ok)
        # Early ack: the MainProcess acks on the child's ACK, while the child already runs
        # the task; for a task this short, its SETEX may come first (a race, not an order).
        ack, where = q.first(events, command="HDEL"), fx.whereabouts(r, "celery", result.id)
        started = q.first(events, event="task.accepted")
        acked = q.first(events, event="task.acked")
        ok = (
            ack is not None
            and ack["pid"] == worker.pid
            and started is not None
            and acked is not None
            and started["ts"] <= acked["ts"]
            and not acked["late"]
            and not where.queued
            and not where.reserved
        )
        what = "not redelivered: acked by the MainProcess on the child's ACK, gone"
        s.expect(what, ok, str(where))
        s.show(s.flower(f"task/{result.id}"))

    with s.step(
        "2. flaky(2, countdown=1): the retry waits inside the worker",
        "`self.retry(countdown=1)` publishes a new message with an `eta` one second ahead. The "
        "countdown is not spent in the queue: the MainProcess takes the message at once and "
        "holds it, reserved in `unacked`, until the eta. Looked at while it waits:",
    ):
        t0, result = time.time(), flaky.delay(2, countdown=1)
        push = tl.wait_for(
            fx.command("LPUSH", result.id, role="pool-child"), timeout=15, what="a retry"
        )
        tl.wait_for(
            fx.command("HSET", result.id, push["ts"], "unacked"), timeout=10, what="its reservation"
        )
        waiting = fx.whereabouts(r, "celery", result.id)
        value, events = result.get(timeout=30), fx.settle(tl, r, result.id, "SUCCESS")
        waits = fx.retry_waits(events, result.id)
        s.show(f"while it waited: {waiting}", fx.waits_table(waits, t0, "each retry's wait"))
        held = [e.message.summary["retries"] for e in waiting.reserved]
        ok = not waiting.queued and held == [1]
        s.expect("while it waits: not in the list, reserved in `unacked` with retries=1", ok)
        ok = len(waits) == 2 and all(w.reserved_before_eta(worker.pid) for w in waits)
        s.expect("each retry was reserved by the MainProcess before its eta", ok)
        ok = all(w.started_after_eta() for w in waits)
        s.expect("… and acked (HDEL) when a child started it, not before its eta", ok)

    with s.step(
        "3. Each retry is a new LPUSH, by the pool child",
        "Not the client: `Task.retry` calls `signature_from_request(…).apply_async()` inside "
        "the task, in the child, before it raises `Retry`. Same task id, `retries` + 1, an eta.",
    ):
        sent, kid = fx.pushes(events, result.id), waits[0].push.event["pid"]
        s.show(fx.pushes_table(sent, t0, "the messages that carried the task"))
        senders = [(p.event["role"], p.event["pid"]) for p in sent]
        ok = senders[1:] == [("pool-child", kid)] * 2 and senders[0][0] == "client"
        s.expect("three LPUSHes: the client's, then two from the child that ran the try", ok)
        s.expect("that child is one of the worker's", kid in worker.children(), f"pid {kid}")
        etas = [p.eta is not None and p.eta > float(p.event["ts"]) for p in sent]
        ok = [p.retries for p in sent] == [0, 1, 2] and etas == [False, True, True]
        s.expect("headers: retries 0, 1, 2; no eta, then an eta in the future", ok)
        ok = all(p.envelope.headers["parent_id"] == result.id for p in sent[1:])
        s.expect("each retry names the task itself as its parent (parent_id)", ok)

    with s.step(
        "4. The states: RETRY, RETRY, SUCCESS, all stored by the child",
        "Each failed try stores RETRY with that try's exception, after the new message is "
        "published. `result.get()` skips RETRY and keeps waiting for a final state.",
    ):
        states, logs = fx.stored(events, result.id), q.select(events, event="log")
        s.show(ev.commands_table(q.select(events, command="SETEX")), ev.logs_table(logs))
        ok = [x.status for x in states] == ["RETRY", "RETRY", "SUCCESS"]
        s.expect(
            "RETRY, RETRY, SUCCESS, each SETEX from that child", ok and fx.pids(states) == {kid}
        )
        ok = all(x.meta["children"][0][0][0] == result.id for x in states[:2])
        ok = ok and states[2].meta.get("parent_id") == result.id
        s.expect("RETRY lists the task itself in `children`; SUCCESS says it is its own parent", ok)
        ok = all(w.push.event["ts"] < x.event["ts"] for w, x in zip(waits, states, strict=False))
        s.expect("each retry's LPUSH came before its RETRY was stored", ok)
        ok = [(e["level"], e["pid"]) for e in fx.messages(logs, ": Retry in 1s:")] == [
            ("info", kid)
        ] * 2
        s.expect("`retry: Retry in 1s: …` is INFO, from that child, twice", ok)
        s.expect("the value: SUCCESS at the third try", value["tries"] == 3, str(value))
        s.show(s.flower(f"task/{result.id}"))

    with fx.smtp_sink_down(s.stack.run_dir / "mails-smtp-down") as sink:
        with s.step(
            "5. The mail task while the SMTP server is down",
            "A worker on queue `smtp-down` whose SMTP server does not listen, with "
            "MAIL_RETRY_BACKOFF=0.5 and MAIL_MAX_RETRIES=6: the first try is refused, retried.",
        ):
            env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port)}
            env |= {"MAIL_RETRY_BACKOFF": "0.5", "MAIL_MAX_RETRIES": "6"}
            down = s.start_worker("smtpdown", ["-c", "1", "-Q", DOWN], env)
            mail = envoi_mail.apply_async(args=[ADDRESS], queue=DOWN)
            retry = tl.wait_for(fx.stores(mail.id, "RETRY"), timeout=30, what="the RETRY state")
            first = fx.stored([retry], mail.id)[0].meta
            s.show(Pretty(fx.meta_view(first, 1)))
            ok = retry["ppid"] == down.pid and first["result"]["exc_type"] == "SmtpUnavailable"
            s.expect("RETRY stored by the child, with the SMTP error it met", ok)
            mine = [m for m in [*sink.mails(), *s.stack.mails()] if mail.id in m.message_id]
            s.expect("no mail arrived anywhere yet", not mine)

        with s.step(
            "6. The SMTP server comes back: exactly one mail",
            "The sink starts on that port; the next try (0.5 s, 1 s, 2 s… after the last) gets "
            "through. Retries keep the task id, so every try builds the same Message-ID.",
        ):
            sink.start()
            value = mail.get(timeout=60)
            sent = fx.pushes(fx.settle(tl, r, mail.id, "SUCCESS"), mail.id)
            got = [m for m in sink.mails() if m.message_id == f"<{mail.id}@envoi-mails>"]
            s.show(Pretty(value), fx.pushes_table(sent, float(sent[0].event["ts"]), "its messages"))
            ok = len(got) == 1 == len(sink.mails())
            s.expect("exactly one mail, Message-ID <task_id@envoi-mails>", ok)
            s.expect("it took at least two tries", value["tries"] >= 2, f"tries: {value['tries']}")
            queues = {args_of(p.event)[1] for p in sent}
            ok = queues == {DOWN} and len(sent) == value["tries"]
            s.expect("one message per try, every retry on the queue `smtp-down`", ok, str(queues))
            s.show(s.flower(f"task/{mail.id}"))


if __name__ == "__main__":
    sys.exit(run("06 · failure and retry", story, __doc__ or ""))
