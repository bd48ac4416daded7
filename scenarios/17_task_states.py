"""Task states a learner expects: STARTED, REVOKED on expiry, a retry after a lost child.

Celery stores a state only when some process writes one. By default a running task is still
PENDING: STARTED exists only with `task_track_started`, and the pool child writes it. A task
whose `expires` has passed when a worker receives it is stored REVOKED by the MainProcess,
which never hands it to a child. And Celery 5.7's `task_retry_on_worker_lost` makes the
MainProcess send a task whose child died again, as a retry.
"""

from __future__ import annotations

import sys
import time

from celery.result import AsyncResult

from demo import names
from demo.render import tables as ev
from demo.scenes import failures as fx
from demo.scenes.frame import Scenario, run
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import pid_of
from demo.trace.wait import wait_until

PLAIN, TRACKED = "plain", "tracked"  # the workers' names; TRACKED is also its queue
TRACKING = {"CELERY_TRACK_STARTED": "1"}
FLAGS = ["-c", "1"]
BUSY_S = 1.0  # slow(1): long enough to read its state while it runs
LATE = "late"  # a queue no worker reads until step 3 asks one to
EXPIRES_S = 1.0
LOST_S = 1.5  # slow_retried(1.5): killed while it runs, then run again in full
RETRY_DELAY_S = 1.0  # slow_retried's default_retry_delay (envoi_mails.tasks.RETRY_LOST_DELAY_S)
DELAY_SLACK_S = 0.5  # the eta header is the retry's publish time + the delay, to the second
SLOW_RETRIED = "envoi_mails.slow_retried"
REVOKED_EVENT = "task-revoked"  # Request._announce_revoked sends it (expired=True)
RUNS = 2  # slow_retried: the killed run, then the retry
HOP_S, RESULT_S, CONTROL_S = 15, 30, 5.0  # how long to wait for a hop, a result, a reply


def state_while_running(s: Scenario, result: AsyncResult) -> str:
    """What a client reads (`result.state`, a GET of the key) once the task body runs."""
    s.timeline.wait_for(event="task.prerun", task_id=result.id, timeout=HOP_S, what="its start")
    return str(result.state)


def pending_until_done(s: Scenario) -> None:
    from envoi_mails import slow

    with s.step(
        "1. By default: PENDING while it runs, then SUCCESS",
        f"`slow({BUSY_S:g})` on a default worker. PENDING is not stored anywhere: it is what "
        "`state` says when there is no key. Nothing is written until the child stores SUCCESS.",
    ):
        worker = s.start_worker(PLAIN, FLAGS)
        result = slow.delay(BUSY_S)
        running = state_while_running(s, result)
        result.get(timeout=RESULT_S)
        writes = q.result_writes(fx.settled(s.timeline, result.id), result.id)
        s.show(ev.commands_table([w.event for w in writes], "its result writes"))
        s.expect("read while it runs: PENDING", running == "PENDING")
        ok = [(w.status, w.pid in worker.children()) for w in writes] == [("SUCCESS", True)]
        s.expect("one write only, SUCCESS, by the pool child", ok)


def started_when_tracked(s: Scenario) -> None:
    from envoi_mails import slow

    with s.step(
        "2. task_track_started: the child stores STARTED first",
        f"A second worker, `-Q {TRACKED}`, runs with `task_track_started` (the app reads "
        "`CELERY_TRACK_STARTED=1`). The child's tracer stores STARTED, with its pid and host "
        "name, before it calls the task body (`celery/app/trace.py` `build_tracer`).",
    ):
        worker = s.start_worker(TRACKED, [*FLAGS, "-Q", TRACKED], env=TRACKING)
        result = slow.apply_async((BUSY_S,), queue=TRACKED)
        running, meta = state_while_running(s, result), result.info
        result.get(timeout=RESULT_S)
        events = fx.settled(s.timeline, result.id)
        writes, ran = q.result_writes(events, result.id), q.life(events, result.id)["task.prerun"]
        s.show(ev.commands_table([w.event for w in writes], "its result writes"))
        s.expect("read while it runs: STARTED", running == "STARTED", f"{meta}")
        ok = [w.status for w in writes] == ["STARTED", "SUCCESS"]
        ok = ok and {w.pid for w in writes} == {pid_of(ran)} and pid_of(ran) in worker.children()
        s.expect("two writes, STARTED then SUCCESS, both by the child that ran it", ok)
        ok = ran is not None and writes[0].ts < ran["ts"] and (meta or {}).get("pid") == ran["pid"]
        s.expect("STARTED is stored before the body starts, with the child's pid", ok)


def expired_at_receipt(s: Scenario) -> None:
    from envoi_mails import add, app

    worker = s.worker(PLAIN)
    with s.step(
        "3. expires: discarded at receipt, REVOKED by the MainProcess",
        f"`add.apply_async((2, 2), expires={EXPIRES_S:g})` onto `{LATE}`, a queue nobody reads "
        f"yet. Once it has expired, `celery control add_consumer {LATE}` makes the worker read "
        "it. Its MainProcess receives the message, sees the expiry (`celery/worker/strategy.py` "
        "`default` → `Request.revoked`), stores REVOKED and acks it: no child ever sees it.",
    ):
        result = add.apply_async((2, 2), queue=LATE, expires=EXPIRES_S)
        due = time.time() + EXPIRES_S
        wait_until(lambda: time.time() > due, timeout=2 * EXPIRES_S, what="the expiry")
        app.control.add_consumer(LATE, destination=[worker.nodename], reply=True, timeout=CONTROL_S)
        state = final_state(result)
        events = fx.settled(s.timeline, result.id, hops=["task.acked"])
        life, writes = q.life(events, result.id), q.result_writes(events, result.id)
        logs = q.task_logs(s.timeline.events(), result.id)  # the discard names it in its text
        s.show(ev.logs_table(logs), ev.commands_table([w.event for w in writes]))
        got = life["task.received"]
        ok = pid_of(got) == worker.pid and got is not None and got["ts"] > due
        s.expect("received by the MainProcess after it had expired", ok)
        ok = [(w.pid, str(w)) for w in writes] == [(worker.pid, "REVOKED TaskRevokedError")]
        s.expect(
            "REVOKED stored by the MainProcess; no child ran it", ok and not life.has("task.prerun")
        )
        ok = any("Discarding revoked task" in e.get("message", "") for e in logs)
        ok = ok and pid_of(life["task.acked"]) == worker.pid and state == "REVOKED"
        s.expect("logged `Discarding revoked task`, acked; the client reads REVOKED", ok)
        told = [e.get("type") for e in q.select(events, event="task.event")]
        s.expect("its only task event: task-revoked, never task-received", told == [REVOKED_EVENT])


def final_state(result: AsyncResult) -> str:
    """The task's final state as the client reads it, once there is one."""
    final = wait_until(
        lambda: result.state if result.state in ("REVOKED", "SUCCESS", "FAILURE") else None,
        timeout=HOP_S,
        what="a final state",
    )
    return str(final)


def retried_after_a_lost_child(s: Scenario) -> None:
    from envoi_mails import slow_retried

    tl, worker = s.timeline, s.worker(PLAIN)
    with s.step(
        "4. task_retry_on_worker_lost: the MainProcess sends it again",
        f"`slow_retried` has `retry_on_worker_lost=True` (5.7; the setting is "
        f"`task_retry_on_worker_lost`), `default_retry_delay={RETRY_DELAY_S:g}`, "
        "`max_retries=1`. Its child is killed mid-task. Early ack: the message is gone, yet "
        "the MainProcess publishes a retry itself, with the same id "
        "(`Request._retry_worker_lost`).",
    ):
        result = slow_retried.delay(LOST_S)
        killed = fx.kill_child(worker.pid, fx.wait_running(tl, result.id))
        value = result.get(timeout=RESULT_S)
        events = fx.settled(tl, result.id, state="SUCCESS")
        sent, writes = msg.pushes(events, [result.id]), q.result_writes(events, result.id)
        runs = q.select(events, event="task.prerun")
        s.show(
            fx.pushes_table(sent, killed, "its messages, after the SIGKILL"),
            ev.commands_table([w.event for w in writes], "its result writes"),
        )
        retry = sent[-1]
        ok = len(sent) == RUNS and retry.pid == worker.pid and retry.retries == 1
        s.expect("a second LPUSH, by the MainProcess: same id, retries = 1", ok)
        ok = retry.eta is not None and abs(retry.eta - retry.ts - RETRY_DELAY_S) < DELAY_SLACK_S
        s.expect(f"due {RETRY_DELAY_S:g} s later (default_retry_delay)", ok)
        ok = [(w.pid, w.status) for w in writes] == [
            (worker.pid, "RETRY"),
            (value["pid"], "SUCCESS"),
        ]
        s.expect("RETRY stored by the MainProcess, SUCCESS by the child of the second run", ok)
        ok = len(runs) == RUNS and runs[0]["pid"] != runs[1]["pid"] == value["pid"]
        s.expect("run twice, in two children (the first was killed)", ok)
        acks = q.select(events, command="HDEL", key=names.UNACKED)
        s.expect(
            "both deliveries acked early, by the MainProcess",
            [e["pid"] for e in acks] == [worker.pid] * RUNS,
        )


def story(s: Scenario) -> None:
    pending_until_done(s)
    started_when_tracked(s)
    expired_at_receipt(s)
    retried_after_a_lost_child(s)


if __name__ == "__main__":
    sys.exit(run("17 · task states", story, __doc__ or ""))
