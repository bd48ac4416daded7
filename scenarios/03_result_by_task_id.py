"""A result, by task id: who subscribes, who writes it, who reads it, and how long it lives.

The client subscribes to `celery-task-meta-<id>` before it publishes; a pool child writes that
key and announces it on the channel of the same name. Anyone who knows the id can read it
later, until `result_expires` removes it; `ignore_result` never writes it.
"""

from __future__ import annotations

import os
import sys
import uuid

from rich.pretty import Pretty

from demo import names
from demo.protocol.envelope import decode_result
from demo.render import tables as ev
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run
from demo.trace import query as q
from demo.trace.event import args_of

WORKER, CHILDREN = "celery", 2
BRIEF, BRIEF_EXPIRES_S = "brief", 3  # step 4's worker and queue; its result_expires
SLOW_S = 0.5  # step 1's slow(0.5)
SLOW_TASK = "envoi_mails.slow"
RESULT_EXPIRES_S = 86400  # Celery's default result_expires: a day
FRESH_S = 400  # a key read this soon after its SETEX still has almost all of its day
EXPIRED_WITHIN_S = (2.0, 4.5)  # "about 3 s": when the brief key is seen gone after its SETEX
LINGER_S = 0.5  # the fetching process stays alive so the spy can name its pid
PENDING_WAIT_S = 1  # how long `demo result` waits for an expired task's result
STDERR_TAIL, TRACEBACK_LINES = 200, 4  # characters, lines shown
AT_ONCE_S = 1  # a get() that has nothing to wait for returns well within this
SOON_S = 5  # how long a hop or command that follows at once may take to be seen
TASK_S = 10  # how long a task may take, from publish to stored result


def returned(s: Scenario, task_id: str) -> object:
    """What step 1's get() returned: the result in the PUBLISH it woke on, as the spy saw it."""
    publish = s.timeline.wait_for(
        command="PUBLISH", task_id=task_id, timeout=SOON_S, what="the PUBLISH"
    )
    return decode_result(args_of(publish)[2]).get("result")


def step_1(s: Scenario) -> None:
    from envoi_mails import slow

    tl, me = s.timeline, os.getpid()
    with s.step(
        "1. Subscribe, publish, wait",
        "`slow.delay(0.5).get()`: the client subscribes to the result channel, then LPUSHes "
        "the message. A pool child stores the result (GET, then SETEX and PUBLISH in one "
        "MULTI); the client's `get()` wakes on that PUBLISH. The worker never reads results.",
    ):
        worker = s.start_worker(WORKER, extra=["-c", str(CHILDREN)])
        result = slow.delay(SLOW_S)
        value, key = result.get(timeout=TASK_S), names.result_key(result.id)
        woke = tl.wait_for(
            event="result.message", task_id=result.id, timeout=SOON_S, what="result.message"
        )
        sub, push, setex, publish = (
            tl.wait_for(command=c, task_id=result.id, timeout=SOON_S, what=c)
            for c in ("SUBSCRIBE", "LPUSH", "SETEX", "PUBLISH")
        )
        tl.settle()
        events, child = tl.for_task(result.id), setex["pid"]
        s.show(ev.commands_table(events), ev.hops_table(q.select(events, role=names.CLIENT)))
        writes = [args_of(e)[0] for e in q.select(events, key_prefix=key, pid=child)]
        late_gets = q.select(events, command="GET", since=setex["ts"])
        main = tl.select(key=key, pid=worker.pid)
        ok = sub["pid"] == push["pid"] == me and sub["ts"] < push["ts"]
        s.expect("SUBSCRIBE comes before LPUSH, both from this client", ok)
        ok = child in worker.children() and writes == ["GET", "SETEX", "PUBLISH"]
        s.expect("a pool child writes the key: GET, SETEX, PUBLISH", ok, f"pid {child}: {writes}")
        ok = woke["pid"] == me and woke["ts"] >= publish["ts"] and not late_gets
        s.expect("get() woke on the PUBLISH (result.message after it, no GET after SETEX)", ok)
        s.expect("the MainProcess sent no command on the result key", not main, f"{len(main)}")
        s.expect("the value is what that child returned", value["pid"] == child)


def step_2(s: Scenario) -> None:
    with s.step(
        "2. What the child stored",
        "JSON, not a Python object, living `result_expires` (a day by default). Celery adds no "
        "pid and no worker name (the pid in `result` is what `slow` returned): only the spy "
        "can say which process wrote it. (This GET and TTL are the scenario's own.)",
    ):
        task_id = s.task_id(SLOW_TASK)
        stored = res.read_result(s.redis, task_id)
        meta = stored.meta or {}
        s.show(Pretty(meta), f"TTL {stored.key} = {stored.ttl_s} s")
        ok = meta.get("status") == "SUCCESS" and meta.get("result") == returned(s, task_id)
        s.expect(
            "status SUCCESS, result as returned, task_id inside",
            ok and meta["task_id"] == task_id,
        )
        ttl = stored.ttl_s
        ok = ttl is not None and RESULT_EXPIRES_S - FRESH_S < ttl <= RESULT_EXPIRES_S
        s.expect("it expires in a day (TTL ≤ 86400 s)", ok, f"{ttl} s")
        s.expect("no 'worker' field (result_extended is off)", "worker" not in meta)


def step_3(s: Scenario) -> None:
    worker = s.worker(WORKER)
    with s.step(
        "3. Another process, with only the task id",
        "`python -m demo result <task_id>`: a new Python process builds an AsyncResult from "
        "the id alone and reads the key: a result is not tied to the process that sent the "
        "task. (It lingers 0.5 s before exiting: the spy asks the OS which pid owns a socket, "
        "and the OS forgets the sockets of a process that has exited.)",
    ):
        task_id = s.task_id(SLOW_TASK)
        fetched = res.fetch_in_new_process(s.stack.env, task_id, linger_s=LINGER_S)
        s.timeline.settle()
        theirs = q.select(s.timeline.for_task(task_id), pid=fetched.pid)
        s.show(Pretty(fetched.output), ev.commands_table(theirs, "Redis commands of that process"))
        got, known = q.first(theirs, command="GET"), {os.getpid(), worker.pid, *worker.children()}
        same = (fetched.output or {}).get("result") == returned(s, task_id)
        ok = fetched.returncode == 0 and same
        s.expect("it prints the same result", ok, fetched.stderr[-STDERR_TAIL:])
        ok = got is not None and fetched.pid not in known
        s.expect("its GET comes from a new pid", ok, f"pid {fetched.pid}")


def step_4(s: Scenario) -> None:
    from envoi_mails import add

    with s.step(
        "4. result_expires: a worker that keeps results 3 s",
        "A second worker (queue `brief`) runs with `CELERY_RESULT_EXPIRES=3`. The TTL is the "
        "writer's setting; the client's own `result_expires` (a day) plays no part.",
    ):
        expires = {"CELERY_RESULT_EXPIRES": str(BRIEF_EXPIRES_S)}
        brief = s.start_worker(BRIEF, ["-c", "1", "-Q", BRIEF], expires)
        short = add.apply_async((20, 22), queue=BRIEF)
        short.get(timeout=TASK_S)
        setex = s.timeline.wait_for(
            command="SETEX", task_id=short.id, timeout=SOON_S, what="the SETEX"
        )
        stored = res.read_result(s.redis, short.id)
        gone = res.wait_until_gone(s.redis, stored.key, timeout=TASK_S) - setex["ts"]
        later = res.fetch_in_new_process(s.stack.env, short.id, timeout=PENDING_WAIT_S)
        unknown = add.AsyncResult(str(uuid.uuid4())).state
        said = (later.stderr.splitlines() or [""])[0]
        s.show(ev.commands_table([setex]), f"TTL then: {stored.ttl_s} s; gone {gone:.2f} s later")
        s.show(f"`python -m demo result <id>` now: exit {later.returncode}: {said}")
        ok = args_of(setex)[2] == str(BRIEF_EXPIRES_S) and setex["pid"] in brief.children()
        s.expect("the brief worker's child wrote it with SETEX … 3", ok)
        ok = stored.ttl_s is not None and 0 < stored.ttl_s <= BRIEF_EXPIRES_S
        s.expect("TTL ≤ 3 s", ok, f"{stored.ttl_s} s")
        low, high = EXPIRED_WITHIN_S
        s.expect("the key is gone about 3 s after the SETEX", low <= gone <= high, f"{gone:.2f} s")
        ok = later.returncode == 1 and "state PENDING" in said and unknown == "PENDING"
        s.expect("asked by id, the expired task is PENDING, like an id never seen", ok)


def step_5(s: Scenario) -> None:
    from envoi_mails import add

    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "5. ignore_result=True on a call",
        "The task runs, but no result key is written, and the client does not even "
        "subscribe: `get()` returns None at once.",
    ):
        ignored = add.apply_async((2, 2), ignore_result=True)
        tl.wait_for(event="task.postrun", task_id=ignored.id, timeout=TASK_S, what="task.postrun")
        tl.settle()
        events, key = tl.for_task(ignored.id), names.result_key(ignored.id)
        s.show(ev.hops_table(events), ev.commands_table(events))
        ran = q.first(events, event="task.success")
        on_key, exists = q.select(events, key_prefix=key), s.redis.exists(key)
        ok = ran is not None and ran["pid"] in worker.children()
        s.expect("the task ran (task.success in a pool child)", ok)
        s.expect(
            "nobody touched its key: no SUBSCRIBE, no SETEX; it does not exist",
            not on_key and not exists,
        )
        s.expect("get() returns None without waiting", ignored.get(timeout=AT_ONCE_S) is None)


def step_6(s: Scenario) -> None:
    from envoi_mails import get_inside

    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "6. get() inside a task",
        "`get_inside` publishes `add`, then calls `.get()` on it. Celery refuses, since a pool "
        "child waiting on another task can deadlock the pool; the refusal is stored as FAILURE. "
        "In a pool child, publishing does not even subscribe to the result channel.",
    ):
        inside = get_inside.delay(1, 2)
        error = inside.get(timeout=TASK_S, propagate=False)
        prerun = tl.wait_for(
            event="task.prerun", task_id=inside.id, timeout=SOON_S, what="task.prerun"
        )
        meta = res.read_result(s.redis, inside.id).meta or {}
        exc, trace = meta.get("result") or {}, str(meta.get("traceback")).strip().splitlines()
        inner = (meta.get("children") or [[[""]]])[0][0][0]
        push = tl.wait_for(
            command="LPUSH", task_id=inner, timeout=SOON_S, what="the inner add's LPUSH"
        )
        done = tl.wait_for(
            command="SETEX", task_id=inner, timeout=TASK_S, what="the inner add's result"
        )
        s.show(
            Pretty({k: v for k, v in meta.items() if k != "traceback"}),
            "\n".join(trace[-TRACEBACK_LINES:]),
        )
        s.show(ev.commands_table(tl.for_task(inner), "the inner add (its id is in 'children')"))
        ok = inside.state == "FAILURE" and exc.get("exc_type") == "RuntimeError"
        s.expect("FAILURE, RuntimeError, stored and raised", ok and isinstance(error, RuntimeError))
        ok = "Never call result.get() within a task!" in str(exc.get("exc_message"))
        s.expect("message: 'Never call result.get() within a task!'", ok)
        ok = any("assert_will_not_block" in line for line in trace)
        s.expect("the stored traceback goes through assert_will_not_block", ok)
        ok = push["pid"] == prerun["pid"] and push["role"] == names.POOL_CHILD
        s.expect("the inner add was published anyway, by that pool child", ok, f"pid {push['pid']}")
        subs = q.select(tl.for_task(inner), command="SUBSCRIBE")
        s.expect("… without a SUBSCRIBE: a pool child never listens for results", not subs)
        ok = done["pid"] in worker.children()
        s.expect("… and it ran: its result is stored all the same", ok, f"by pid {done['pid']}")


def story(s: Scenario) -> None:
    for step in (step_1, step_2, step_3, step_4, step_5, step_6):
        step(s)


if __name__ == "__main__":
    sys.exit(run("03 · a result, by task id", story, __doc__ or ""))
