"""A result, by task id: who subscribes, who writes it, who reads it, and how long it lives.

The client subscribes to `celery-task-meta-<id>` before it publishes; a pool child writes that
key and announces it on the channel of the same name. Anyone who knows the id can read it
later, until `result_expires` removes it; `ignore_result` never writes it.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass

from rich.pretty import Pretty

from demo import names
from demo.protocol.envelope import decode_result
from demo.render import tables as ev
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run
from demo.stack.client import release
from demo.trace import query as q
from demo.trace.event import args_of

WORKER, CHILDREN = "celery", 2
BRIEF, BRIEF_EXPIRES_S = "brief", 3  # step 4's worker and queue; its result_expires
SLOW_S = 0.5  # step 1's slow(0.5)
SLOW_TASK = "envoi_mails.slow"
RESULT_EXPIRES_S = 86400  # Celery's default result_expires: a day
FRESH_S = 400  # a key read this soon after its SETEX still has almost all of its day
EXPIRED_WITHIN_S = (2.0, 4.5)  # "about 3 s": when the brief key is seen gone after its SETEX
GET_TIMEOUT_S = 1  # how long get() waits for an expired (or unknown) task's result
STDERR_TAIL, TRACEBACK_LINES = 200, 4  # characters, lines shown
AT_ONCE_S = 1  # a get() that has nothing to wait for returns well within this
SOON_S = 5  # how long a hop or command that follows at once may take to be seen
TASK_S = 10  # how long a task may take, from publish to stored result


def returned(s: Scenario, task_id: str) -> object:
    """What step 1's get() returned: the result in the PUBLISH it woke on, as the child
    recorded it."""
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
        "MULTI); the client's `get()` reads the key once, then sleeps until that PUBLISH: no "
        "polling. The MainProcess does not touch the key here (it reads one when a child is "
        "lost or a revoke arrives: 07, 11).",
    ):
        worker = s.start_worker(WORKER, extra=["-c", str(CHILDREN)])
        result = slow.delay(SLOW_S)
        value, key = result.get(timeout=TASK_S), names.result_key(result.id)
        woke, wait, fetched = (
            tl.wait_for(event=hop, task_id=result.id, pid=me, timeout=SOON_S, what=hop)
            for hop in ("result.message", "result.wait", "result.fetched")
        )
        sub, push, setex, publish = (
            tl.wait_for(command=c, task_id=result.id, timeout=SOON_S, what=c)
            for c in ("SUBSCRIBE", "LPUSH", "SETEX", "PUBLISH")
        )
        tl.settle()
        events, child = tl.for_task(result.id), setex["pid"]
        s.show(ev.commands_table(events), ev.hops_table(q.select(events, role=names.CLIENT)))
        writes = [args_of(e)[0] for e in q.select(events, key_prefix=key, pid=child)]
        # Every GET this client sent while get() waited: result.wait to result.fetched.
        gets = q.select(events, command="GET", pid=me, since=wait["ts"], until=fetched["ts"])
        main = tl.select(key=key, pid=worker.pid)
        ok = sub["pid"] == push["pid"] == me and sub["ts"] < push["ts"]
        s.expect("SUBSCRIBE comes before LPUSH, both from this client", ok)
        ok = child in worker.children() and writes == ["GET", "SETEX", "PUBLISH"]
        s.expect("a pool child writes the key: GET, SETEX, PUBLISH", ok, f"pid {child}: {writes}")
        ok = len(gets) == 1 and gets[0]["ts"] < setex["ts"]
        s.expect(
            "while get() waited, the client sent exactly one GET, before the child's SETEX: "
            "it read once, it did not poll",
            ok,
            f"{len(gets)} GET",
        )
        s.expect(
            "get() woke on the PUBLISH (result.message at or after it)", woke["ts"] >= publish["ts"]
        )
        s.expect("the MainProcess sent no command on the result key", not main, f"{len(main)}")
        s.expect("the value is what that child returned", value["pid"] == child)


def step_2(s: Scenario) -> None:
    with s.step(
        "2. What the child stored",
        "JSON, not a Python object, living `result_expires` (a day by default). Celery adds no "
        "pid and no worker name (the pid in `result` is what `slow` returned): only the trace "
        "says which process wrote it, the SETEX as its sender recorded it. (This GET and TTL "
        "are the scenario's own.)",
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
        "task. That process records its Redis commands itself, like any client of the app.",
    ):
        task_id = s.task_id(SLOW_TASK)
        fetched = res.fetch_in_new_process(s.stack.env, task_id)
        s.timeline.settle()
        theirs = q.select(s.timeline.for_task(task_id), pid=fetched.pid)
        s.show(Pretty(fetched.output), ev.commands_table(theirs, "Redis commands of that process"))
        got, known = q.first(theirs, command="GET"), {os.getpid(), worker.pid, *worker.children()}
        same = (fetched.output or {}).get("result") == returned(s, task_id)
        ok = fetched.returncode == 0 and same
        s.expect("it prints the same result", ok, fetched.stderr[-STDERR_TAIL:])
        ok = got is not None and fetched.pid not in known
        s.expect("its GET comes from a new pid", ok, f"pid {fetched.pid}")


@dataclass(frozen=True)
class Waited:
    """What `AsyncResult(id).get(timeout=…)` did in this process."""

    raised: str  # the exception's qualified name; "" if get() returned
    waited_s: float
    state: str

    @property
    def timed_out(self) -> bool:
        return (
            self.raised == "celery.exceptions.TimeoutError"
            and self.waited_s >= GET_TIMEOUT_S
            and self.state == "PENDING"
        )

    def __str__(self) -> str:
        return f"{self.raised or 'returned'} after {self.waited_s:.2f} s, state {self.state}"


def waits_out(task_id: str) -> Waited:
    """Ask the app for a result by id alone, `AsyncResult(task_id)`, and wait GET_TIMEOUT_S."""
    from envoi_mails import app

    asked, raised = time.monotonic(), ""
    handle = app.AsyncResult(task_id)
    try:
        handle.get(timeout=GET_TIMEOUT_S)
    except Exception as exc:  # whatever it raises is what the step reports
        raised = f"{type(exc).__module__}.{type(exc).__qualname__}"
    waited = Waited(raised, time.monotonic() - asked, handle.state)
    release(handle)  # a caller that gives up stops listening
    return waited


def step_4(s: Scenario) -> None:
    from envoi_mails import add

    with s.step(
        "4. result_expires: a worker that keeps results 3 s",
        "A second worker (queue `brief`) runs with `CELERY_RESULT_EXPIRES=3`. The TTL is the "
        "writer's setting; the client's own `result_expires` (a day) plays no part. Once the "
        "key is gone, `AsyncResult(id).get(timeout=1)` cannot tell expired from never seen: "
        "it waits its second and raises `TimeoutError`; the state reads PENDING.",
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
        expired, unknown = waits_out(short.id), waits_out(str(uuid.uuid4()))
        s.show(ev.commands_table([setex]), f"TTL then: {stored.ttl_s} s; gone {gone:.2f} s later")
        s.show(f"get(timeout={GET_TIMEOUT_S}) now: {expired}; on an id never seen: {unknown}")
        ok = args_of(setex)[2] == str(BRIEF_EXPIRES_S) and setex["pid"] in brief.children()
        s.expect("the brief worker's child wrote it with SETEX … 3", ok)
        ok = stored.ttl_s is not None and 0 < stored.ttl_s <= BRIEF_EXPIRES_S
        s.expect("TTL ≤ 3 s", ok, f"{stored.ttl_s} s")
        low, high = EXPIRED_WITHIN_S
        s.expect("the key is gone about 3 s after the SETEX", low <= gone <= high, f"{gone:.2f} s")
        s.expect(
            "get(timeout=1) on the expired task waits its second, raises "
            "celery.exceptions.TimeoutError; its state reads PENDING",
            expired.timed_out,
            str(expired),
        )
        s.expect("… exactly as for an id Redis never saw", unknown.timed_out, str(unknown))


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
