"""One mail, end to end: the message in Redis, the worker taking it, a pool child sending it.

`envoi_mail.apply_async(args=['destinataire@example.com'])`, published while no worker runs,
so the message can be read in the `celery` list; then a worker takes it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import redis
from rich.pretty import Pretty

from demo.protocol.envelope import decode_envelope, decode_result
from demo.render import tables as ev
from demo.render.sequence_text import to_rich
from demo.scenes.frame import Scenario, run
from demo.trace import query as q
from demo.trace.sequence import build_sequence

ADDRESS = "destinataire@example.com"


def story(s: Scenario) -> None:
    from envoi_mails import envoi_mail

    tl, me = s.timeline, os.getpid()
    with s.step(
        "1. Publish, with no worker running",
        "The client subscribes to the result channel, then pushes one JSON message "
        "onto the Redis list `celery`. Nothing consumes it yet.",
    ):
        result = envoi_mail.apply_async(args=[ADDRESS])
        push = tl.wait_for(
            lambda e: e.get("command", [""])[0] == "LPUSH" and e.get("task_id") == result.id,
            timeout=10,
            what="the LPUSH of the task",
        )
        sub = q.first(tl.events(), command="SUBSCRIBE", task_id=result.id)
        s.show(ev.commands_table(tl.for_task(result.id)))
        s.expect(
            "the LPUSH onto 'celery' comes from this client process",
            push["command"][1] == "celery" and push["pid"] == me,
            f"pid {push['pid']}",
        )
        s.expect(
            "the client subscribed to celery-task-meta-<id> before publishing",
            sub is not None and sub["pid"] == me and sub["ts"] < push["ts"],
        )
        waiting = redis.Redis.from_url(s.stack.broker_url).llen("celery")
        s.expect("the message waits in the list 'celery'", waiting == 1, f"LLEN celery = {waiting}")

    with s.step(
        "2. What is in the message",
        "kombu wraps Celery's protocol-2 message in a JSON envelope; the body is "
        "base64 of `[args, kwargs, embed]`. Decoded from the LPUSH above:",
    ):
        envelope = decode_envelope(push["command"][2])
        s.show(
            Pretty(
                {
                    "headers": envelope.headers,
                    "body": [envelope.args, envelope.kwargs, envelope.embed],
                    "properties": envelope.properties,
                }
            )
        )
        s.expect(
            "headers name the task and carry its id",
            envelope.task == "envoi_mails.envoi_mail" and envelope.task_id == result.id,
        )
        s.expect("the body holds the arguments, not code", envelope.args == [ADDRESS])

    with s.step(
        "3. A worker takes it",
        "`celery -A envoi_mails worker --loglevel=info -c 2`: the MainProcess BRPOPs "
        "the list, reserves the message in `unacked`, hands it to a pool child over a "
        "pipe, and acks it when the child says it started (early ack).",
    ):
        worker = s.start_worker(extra=["-c", "2"])
        stored = tl.wait_for(
            lambda e: e.get("command", [""])[0] == "SETEX" and e.get("task_id") == result.id,
            timeout=30,
            what="the result's SETEX",
        )
        events = tl.for_task(result.id)
        s.show(ev.commands_table(events), ev.process_table(worker.pid))
        brpop = q.first(tl.events(), command="BRPOP", role="worker-main")
        reserve = q.first(events, command="HSET", key_prefix="unacked")
        ack = q.first(events, command="HDEL", key_prefix="unacked")
        s.expect(
            "BRPOP on celery comes from the worker's MainProcess",
            brpop is not None and brpop["pid"] == worker.pid,
        )
        s.expect(
            "the MainProcess reserves the message (HSET unacked)",
            reserve is not None and reserve["pid"] == worker.pid,
        )
        s.expect(
            "the MainProcess acks it (HDEL unacked) before the result is written",
            ack is not None and ack["pid"] == worker.pid and ack["ts"] < stored["ts"],
        )
        s.expect(
            "a pool child, not the MainProcess, writes the result (SETEX)",
            stored["pid"] in worker.children() and stored["ppid"] == worker.pid,
            f"SETEX by {stored['role']} {stored['pid']}, parent {stored['ppid']}",
        )
        s.expect("the result key lives 86400 s (result_expires)", stored["command"][2] == "86400")

    with s.step(
        "4. The mail arrives; the client gets the result",
        "The child sent the mail over SMTP itself. `result.get()` reads the key once "
        "(GET): the result is already there, so it returns at once. Called earlier, it "
        "would wait for the child's PUBLISH on the channel it subscribed to (scenario 03).",
    ):
        value = result.get(timeout=30)
        mails = [m for m in s.stack.mails() if result.id in m.message_id]
        s.show(Pretty(value), Pretty([m.path.name for m in mails]))
        s.expect("exactly one mail reached the SMTP sink", len(mails) == 1)
        s.expect(
            "the pid that sent it is the child that wrote the result", value["pid"] == stored["pid"]
        )

    with s.step(
        "5. The worker's log lines",
        "At INFO the MainProcess logs `received`, the child logs `succeeded in`. "
        "There is no `started` line.",
    ):
        # Two processes, each shipping its lines every 0.1 s: wait for both.
        for word in ("received", "succeeded"):

            def line(e: Mapping[str, Any], word: str = word) -> bool:
                message = str(e.get("message", ""))
                return e.get("event") == "log" and e.get("task_id") == result.id and word in message

            tl.wait_for(line, timeout=10, what=f"the '{word}' log line")
        logs = q.select(tl.for_task(result.id), event="log")
        s.show(ev.logs_table(logs))
        received = [e for e in logs if e["message"].endswith("received")]
        succeeded = [e for e in logs if " succeeded in " in e["message"]]
        s.expect(
            "'received' is printed by the MainProcess", [e["pid"] for e in received] == [worker.pid]
        )
        s.expect(
            "'succeeded' is printed by a ForkPoolWorker child",
            len(succeeded) == 1 and succeeded[0]["process_name"].startswith("ForkPoolWorker"),
        )
        s.expect("no 'started' line at INFO", not any("started" in e["message"] for e in logs))
        s.show(s.flower(f"task/{result.id}"))

    with s.step(
        "6. The task's life as a sequence diagram", "Every arrow is a real command or hop."
    ):
        s.show(to_rich(build_sequence(tl.events(), result.id)))
        s.expect(
            "the diagram has a lane for the pool child that ran the task",
            any(
                p.key == f"child-{stored['pid']}"
                for p in build_sequence(tl.events(), result.id).participants
            ),
        )

    with s.step(
        "7. add.delay(2, 3): who computes, who stores, who reads",
        "The tutorial's other example. The MainProcess learns which child took the job from "
        "the child's ACK on its pipe, not from Redis; the child computes 5 and stores it; "
        "the caller reads it. The worker never fetches the result.",
    ):
        from envoi_mails import add

        sum_ = add.delay(2, 3)
        five = sum_.get(timeout=30)
        stored5 = tl.wait_for(
            lambda e: e.get("command", [""])[0] == "SETEX" and e.get("task_id") == sum_.id,
            timeout=30,
            what="the SETEX of add's result",
        )
        accepted = tl.wait_for(
            lambda e: e.get("event") == "task.accepted" and e.get("task_id") == sum_.id,
            timeout=10,
            what="the MainProcess hearing the child's ACK",
        )
        tl.settle()
        on_key = [
            e
            for e in q.select(tl.for_task(sum_.id), event="redis.command")
            if e["pid"] == worker.pid and e["command"][1].startswith("celery-task-meta-")
        ]
        s.show(ev.commands_table(tl.for_task(sum_.id)))
        s.expect("the caller's get() returns 5", five == 5)
        s.expect(
            "a pool child of the worker stored 5 under celery-task-meta-<id>",
            decode_result(stored5["command"][3])["result"] == 5
            and stored5["pid"] in worker.children(),
        )
        s.expect(
            "the MainProcess knew that child's pid from its ACK over the pipe (task.accepted)",
            accepted["child_pid"] == stored5["pid"] and accepted["pid"] == worker.pid,
        )
        s.expect(
            "the MainProcess sent no command on the result key",
            on_key == [],
            f"{len(on_key)} commands",
        )


if __name__ == "__main__":
    sys.exit(run("02 · send one mail", story, __doc__ or ""))
