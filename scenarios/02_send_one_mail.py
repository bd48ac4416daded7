"""One mail, end to end: the message in Redis, the worker taking it, a pool child sending it.

`envoi_mail.apply_async(args=['destinataire@example.com'])`, published while no worker runs,
so the message can be read in the `celery` list; then a worker takes it.
"""

from __future__ import annotations

import os
import sys

from celery.result import AsyncResult
from rich.pretty import Pretty

from demo import names
from demo.protocol.envelope import decode_envelope
from demo.render import tables as ev
from demo.render.sequence_text import to_rich
from demo.scenes.frame import Scenario, run
from demo.trace import query as q
from demo.trace.event import args_of, at, key_of
from demo.trace.sequence import build_sequence

ADDRESS = "destinataire@example.com"
MAIL_TASK = "envoi_mails.envoi_mail"
WORKER, CHILDREN = "celery", 2
QUEUE = names.DEFAULT_QUEUE
RESULT_EXPIRES_S = 86400  # Celery's default result_expires: a day
ADDENDS, SUM = (2, 3), 5
SOON_S = 10  # how long a hop or command that follows at once may take to be seen
TASK_S = 30  # how long a task may take, from publish to stored result
ACCEPTED_AND_ACKED = ("task.received", "task.accepted", "task.acked")  # the MainProcess's hops


def step_1(s: Scenario) -> AsyncResult:
    from envoi_mails import envoi_mail

    tl = s.timeline
    with s.step(
        "1. Publish, with no worker running",
        "The client subscribes to the result channel, then pushes one JSON message "
        "onto the Redis list `celery`. Nothing consumes it yet.",
    ):
        result = envoi_mail.apply_async(args=[ADDRESS])
        push = tl.wait_for(
            command="LPUSH", task_id=result.id, timeout=SOON_S, what="the LPUSH of the task"
        )
        sub = tl.first(command="SUBSCRIBE", task_id=result.id)
        s.show(ev.commands_table(tl.for_task(result.id)))
        s.expect(
            "the LPUSH onto 'celery' comes from this client process",
            key_of(push) == QUEUE and push["pid"] == os.getpid(),
            f"pid {push['pid']}",
        )
        s.expect(
            "the client subscribed to celery-task-meta-<id> before publishing",
            sub is not None and sub["pid"] == os.getpid() and sub["ts"] < push["ts"],
        )
        waiting = s.redis.llen(QUEUE)
        s.expect("the message waits in the list 'celery'", waiting == 1, f"LLEN celery = {waiting}")
    return result


def step_2(s: Scenario) -> None:
    with s.step(
        "2. What is in the message",
        "kombu wraps Celery's protocol-2 message in a JSON envelope; the body is "
        "base64 of `[args, kwargs, embed]`. Decoded from the LPUSH above:",
    ):
        task_id = s.task_id(MAIL_TASK)
        push = s.timeline.wait_for(command="LPUSH", task_id=task_id, timeout=SOON_S, what="LPUSH")
        envelope = decode_envelope(args_of(push)[2])
        body = [envelope.args, envelope.kwargs, envelope.embed]
        s.show(
            Pretty({"headers": envelope.headers, "body": body, "properties": envelope.properties})
        )
        s.expect(
            "headers name the task and carry its id",
            envelope.task == MAIL_TASK and envelope.task_id == task_id,
        )
        s.expect("the body holds the arguments, not code", envelope.args == [ADDRESS])


def step_3(s: Scenario) -> None:
    tl = s.timeline
    with s.step(
        "3. A worker takes it",
        "`celery -A envoi_mails worker --loglevel=info -c 2`: the MainProcess BRPOPs "
        "the list, reserves the message in `unacked`, hands it to a pool child over a "
        "pipe, and acks it when the child says it started (early ack): the ack follows the "
        "child's ACK on the pipe, whether or not the child has stored the result yet.",
    ):
        task_id = s.task_id(MAIL_TASK)
        worker = s.start_worker(WORKER, extra=["-c", str(CHILDREN)])
        stored = tl.wait_for(
            command="SETEX", task_id=task_id, timeout=TASK_S, what="the result's SETEX"
        )
        # The MainProcess's hops, recorded where Celery hands it the child's ACK
        # (Request.on_accepted) and where it acks (Request.acknowledge, which leaves the HDEL
        # to the event loop's next turn), on the clock of its HSET and HDEL; it ships them on
        # its own 0.1 s tick, maybe after the child's SETEX.
        (life,) = tl.wait_lives(
            [task_id], timeout=SOON_S, what="the ACK and the ack", hops=ACCEPTED_AND_ACKED
        )
        ack = tl.wait_for(
            command="HDEL", key=names.UNACKED, task_id=task_id, timeout=SOON_S, what="HDEL"
        )
        events = tl.for_task(task_id)
        s.show(ev.commands_table(events), ev.process_table(worker.pid))
        brpop = tl.first(command="BRPOP", role=names.WORKER_MAIN)
        reserve = q.first(events, command="HSET", key=names.UNACKED, pid=worker.pid)
        accepted, acked = life["task.accepted"], life["task.acked"]
        s.expect(
            "BRPOP on celery comes from the worker's MainProcess",
            brpop is not None and brpop["pid"] == worker.pid,
        )
        s.expect(
            "the MainProcess reserves the message (HSET unacked) before a child starts it",
            reserve is not None and at(reserve) < at(accepted),
        )
        s.expect(
            "it acks once the child that stores the result said it started: task.accepted ≤ "
            "task.acked (not late), task.accepted ≤ its HDEL unacked",
            accepted is not None
            and acked is not None
            and accepted.get("child_pid") == stored["pid"]
            and ack["pid"] == worker.pid
            and at(accepted) <= min(at(acked), at(ack))
            and acked.get("late") is False,
            f"ACK from child {accepted.get('child_pid') if accepted else '?'}",
        )
        s.expect(
            "a pool child, not the MainProcess, writes the result (SETEX)",
            stored["pid"] in worker.children() and stored.get("ppid") == worker.pid,
            f"SETEX by {stored['role']} {stored['pid']}, parent {stored.get('ppid')}",
        )
        ttl = args_of(stored)[2]
        s.expect("the result key lives 86400 s (result_expires)", ttl == str(RESULT_EXPIRES_S))


def step_4(s: Scenario, result: AsyncResult) -> None:
    with s.step(
        "4. The mail arrives; the client gets the result",
        "The child sent the mail over SMTP itself. `result.get()` reads the key once "
        "(GET): the result is already there, so it returns at once. Called earlier, it "
        "would wait for the child's PUBLISH on the channel it subscribed to (scenario 03).",
    ):
        task_id = result.id
        value = result.get(timeout=TASK_S)
        stored = s.timeline.wait_for(command="SETEX", task_id=task_id, timeout=SOON_S, what="SETEX")
        mails = [m for m in s.stack.mails() if task_id in m.message_id]
        s.show(Pretty(value), Pretty([m.path.name for m in mails]))
        s.expect("exactly one mail reached the SMTP sink", len(mails) == 1)
        s.expect(
            "the pid that sent it is the child that wrote the result", value["pid"] == stored["pid"]
        )


def step_5(s: Scenario) -> None:
    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "5. The worker's log lines",
        "At INFO the MainProcess logs `received`, the child logs `succeeded in`. "
        "There is no `started` line.",
    ):
        task_id = s.task_id(MAIL_TASK)
        # Two processes, each shipping its lines every 0.1 s: wait for both.
        for word in ("received", "succeeded"):
            what = f"the '{word}' log line"
            tl.wait_for(
                event=names.LOG, task_id=task_id, containing=word, timeout=SOON_S, what=what
            )
        logs = q.select(tl.for_task(task_id), event=names.LOG)
        s.show(ev.logs_table(logs))
        received = [e for e in logs if e.get("message", "").endswith("received")]
        succeeded = q.select(logs, containing=" succeeded in ")
        s.expect(
            "'received' is printed by the MainProcess", [e["pid"] for e in received] == [worker.pid]
        )
        s.expect(
            "'succeeded' is printed by a ForkPoolWorker child",
            len(succeeded) == 1
            and succeeded[0].get("process_name", "").startswith("ForkPoolWorker"),
        )
        s.expect("no 'started' line at INFO", not q.select(logs, containing="started"))
        s.show(s.flower(f"task/{task_id}"))


def step_6(s: Scenario) -> None:
    with s.step(
        "6. The task's life as a sequence diagram", "Every arrow is a real command or hop."
    ):
        task_id = s.task_id(MAIL_TASK)
        stored = s.timeline.wait_for(command="SETEX", task_id=task_id, timeout=SOON_S, what="SETEX")
        sequence = build_sequence(s.timeline.events(), task_id)
        s.show(to_rich(sequence))
        s.expect(
            "the diagram has a lane for the pool child that ran the task",
            any(p.key == f"child-{stored['pid']}" for p in sequence.participants),
        )


def step_7(s: Scenario) -> None:
    from envoi_mails import add

    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "7. add.delay(2, 3): who computes, who stores, who reads",
        "The tutorial's other example. The MainProcess learns which child took the job from "
        "the child's ACK on its pipe, not from Redis; the child computes 5 and stores it "
        "(after a GET of its own: it never overwrites a stored SUCCESS); the caller reads it. "
        "The MainProcess sends no command on the result key here: it reads one only when a "
        "child is lost or a revoke arrives (07, 11).",
    ):
        sum_ = add.delay(*ADDENDS)
        five = sum_.get(timeout=TASK_S)
        stored = tl.wait_for(
            command="SETEX", task_id=sum_.id, timeout=TASK_S, what="the SETEX of add's result"
        )
        accepted = tl.wait_for(
            event="task.accepted",
            task_id=sum_.id,
            timeout=SOON_S,
            what="the MainProcess hearing the child's ACK",
        )
        tl.settle()
        events = tl.for_task(sum_.id)
        on_key = q.select(events, pid=worker.pid, key_prefix=names.RESULT_PREFIX)
        written = q.result_writes(events, sum_.id)
        s.show(ev.commands_table(events))
        s.expect("the caller's get() returns 5", five == SUM)
        s.expect(
            "a pool child of the worker stored 5 under celery-task-meta-<id>",
            bool(written)
            and (written[0].meta or {}).get("result") == SUM
            and written[0].pid in worker.children(),
        )
        s.expect(
            "the MainProcess knew that child's pid from its ACK over the pipe (task.accepted)",
            accepted.get("child_pid") == stored["pid"] and accepted["pid"] == worker.pid,
        )
        s.expect(
            "the MainProcess sent no command on the result key",
            on_key == [],
            f"{len(on_key)} commands",
        )


def story(s: Scenario) -> None:
    # The one thing a step hands on: step 1's AsyncResult, alive until step 4's get(). Celery
    # unsubscribes from the result channel when an AsyncResult is garbage-collected
    # (AsyncResult.__del__), which would change what the client does in step 4.
    result = step_1(s)
    step_2(s)
    step_3(s)
    step_4(s, result)
    for step in (step_5, step_6, step_7):
        step(s)


if __name__ == "__main__":
    sys.exit(run("02 · send one mail", story, __doc__ or ""))
