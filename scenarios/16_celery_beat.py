"""celery beat: a process of its own that only publishes, and two of them publishing twice.

`celery -A envoi_mails beat` reads `beat_schedule` from the app (here: `tick` every second,
`BEAT_EVERY=1`) and, each time an entry is due, sends it with `apply_async`, like any client.
It never takes a message off a queue and never runs a task: a worker does. Start a second
beat and every periodic task is sent twice.
"""

from __future__ import annotations

import sys
import time

from demo import names
from demo.render import tables as ev
from demo.scenes.frame import Scenario, run
from demo.stack.beat import Beat
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, command_name, key_of, pid_of

TICK = "envoi_mails.tick"
EVERY_S = 1.0  # beat_schedule: tick every second (the app reads BEAT_EVERY)
BEAT_ENV = {"BEAT_EVERY": f"{EVERY_S:g}"}
FIRST, SECOND = "beat", "beat2"  # the two beats' names (and their schedule files')
WORKER_FLAGS = ["-c", "2"]
TICKS = 3  # ticks watched per step
EVERY_SLACK_S = 0.25  # beat sleeps until the next entry is due, 10 ms early (Scheduler.adjust)
DOUBLE_SLACK = 0.75  # two beats: at least this share of twice one beat's rate
TAKES = ("BRPOP", "HSET", "SETEX")  # taking a message, reserving it, storing a result
HOP_S, RESULT_S = 15, 30  # how long to wait for a hop, a task's whole life


def ticks_sent(s: Scenario, beat: Beat, *, count: int, since: float = 0.0) -> list[TraceEvent]:
    """The first `count` task.published hops of `tick` by that beat's process after `since`."""
    return s.timeline.wait_until(
        event="task.published",
        task=TICK,
        pid=beat.pid,
        since=since,
        count=count,
        timeout=HOP_S + count * EVERY_S,
        what=f"{count} ticks sent by {beat.name}",
    )


def evenly(sent: list[TraceEvent]) -> bool:
    """Each send EVERY_S after the one before it."""
    return all(abs(gap - EVERY_S) < EVERY_SLACK_S for gap in q.gaps(sent))


def a_process_that_publishes(s: Scenario) -> None:
    with s.step(
        "1. celery beat: a process that only publishes",
        "`celery -A envoi_mails beat -s beat-schedule`, beside a worker. When `tick` is due, "
        "beat's scheduler (`Scheduler.apply_entry`) calls `apply_async`: it `LPUSH`es the "
        "message onto `celery` like any client. The kit names its role `beat` when Celery "
        "sends `beat_init`.",
    ):
        s.start_worker(extra=WORKER_FLAGS)
        beat = s.start_beat(FIRST, env=BEAT_ENV)
        sent = ticks_sent(s, beat, count=TICKS)
        s.timeline.settle()
        events = q.select(s.timeline.events(), pid=beat.pid)
        first_tick = [e for e in events if e.get("task_id") == sent[0].get("task_id")]
        s.show(ev.commands_table(first_tick, "what beat sent for its first tick"))
        init = q.first(events, event="beat.init")
        s.expect(
            "beat_init came from the `celery beat` process the scenario started",
            init is not None and init["role"] == names.BEAT,
            f"pid {beat.pid}",
        )
        pushes = msg.pushes(events)
        sent_as = {(p.envelope.task, key_of(p.event), p.header("celery_beat_task")) for p in pushes}
        ok = len(pushes) >= TICKS and sent_as == {(TICK, names.DEFAULT_QUEUE, True)}
        s.expect("its LPUSHes onto 'celery' carry tick, headers.celery_beat_task = true", ok)
        taken = sorted({command_name(e) for e in q.select(events, command=TAKES)})
        ran = q.select(events, event="task.prerun")
        s.expect("it never took, reserved or ran a task (no BRPOP, HSET, SETEX)", not taken + ran)


def a_worker_runs_them(s: Scenario) -> None:
    tl, beat, worker = s.timeline, s.beat(FIRST), s.worker()
    with s.step(
        "2. A worker runs them, one a second",
        "Each tick is an ordinary message: the worker's MainProcess takes it and a pool child "
        "runs it. Beat sleeps until the next entry is due, so the sends are a second apart.",
    ):
        sent = ticks_sent(s, beat, count=TICKS)
        ids = [e.get("task_id", "") for e in sent]
        lives = tl.wait_lives(ids, timeout=RESULT_S)
        s.show(ev.task_lives_table(lives, sent[0]["ts"], title="each tick, after the first send"))
        ok = all(
            life.worker_pid == worker.pid and pid_of(life["task.prerun"]) in worker.children()
            for life in lives
        )
        s.expect("received by the worker's MainProcess, run by its children", ok)
        gaps = [round(gap, 2) for gap in q.gaps(sent)]
        s.expect(f"sent every {EVERY_S:g} s", evenly(sent), f"{gaps}")


def two_beats(s: Scenario) -> None:
    tl, first = s.timeline, s.beat(FIRST)
    with s.step(
        "3. A second beat: every tick sent twice",
        "Nothing tells two beats about each other: each reads the same `beat_schedule`, keeps "
        "its own schedule file, and sends every entry when it is due. Twice the ticks, each a "
        "task of its own, and the worker runs them all.",
    ):
        second = s.start_beat(SECOND, env=BEAT_ENV)
        theirs = ticks_sent(s, second, count=TICKS)
        since = theirs[0]["ts"]
        mine = ticks_sent(s, first, count=TICKS, since=since)
        ids = [e.get("task_id", "") for e in [*mine, *theirs]]
        tl.wait_lives(ids, timeout=RESULT_S)
        both = sorted([*mine, *theirs], key=lambda e: e["ts"])
        window = q.select(both, until=min(mine[-1]["ts"], theirs[-1]["ts"]))
        s.show(ev.hops_table(both, "ticks sent while both beats run"))
        ok = q.pids(mine) == [first.pid] and q.pids(theirs) == [second.pid]
        s.expect(
            "both beat processes send tick, each every second",
            ok and evenly(mine) and evenly(theirs),
        )
        rate = q.per_second(window)
        ok = rate >= 2 * DOUBLE_SLACK / EVERY_S
        s.expect("together: twice a second", ok, f"{rate:.2f} sends a second")
        ran = {e.get("task_id") for e in tl.select(event="task.prerun", task=TICK)}
        s.expect("the worker ran every one of them: duplicates", set(ids) <= ran, f"{len(ids)}")


def back_to_one(s: Scenario) -> None:
    tl, first, second = s.timeline, s.beat(FIRST), s.beat(SECOND)
    with s.step(
        "4. One beat again",
        "Celery itself has no lock between beats: the cure is to run exactly one (one replica, "
        "not `worker -B` on several workers), or a scheduler that takes a lock in Redis "
        "(celery-redbeat). Stop the second one (SIGTERM): only the first sends.",
    ):
        second.stop()
        stopped = time.time()  # stop() returns once the process has exited
        mine = ticks_sent(s, first, count=TICKS, since=stopped)
        tl.settle()
        late = tl.select(event="task.published", pid=second.pid, since=stopped)
        s.show(ev.hops_table(mine, "ticks sent since the second beat stopped"))
        s.expect("the first beat goes on, a second apart", evenly(mine))
        ok = not late and second.proc is not None and second.proc.returncode is not None
        s.expect("the stopped one has exited and sent nothing since", ok)


def story(s: Scenario) -> None:
    a_process_that_publishes(s)
    a_worker_runs_them(s)
    two_beats(s)
    back_to_one(s)


if __name__ == "__main__":
    sys.exit(run("16 · celery beat", story, __doc__ or ""))
