"""A result, by task id: who subscribes, who writes it, who reads it, and how long it lives.

The client subscribes to `celery-task-meta-<id>` before it publishes; a pool child writes that
key and announces it on the channel of the same name. Anyone who knows the id can read it
later, until `result_expires` removes it; `ignore_result` never writes it.
"""

from __future__ import annotations

import os
import sys
import uuid

import redis
from rich.pretty import Pretty

from demo.render import tables as ev
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run
from demo.trace import query as q


def story(s: Scenario) -> None:
    from envoi_mails import add, get_inside, slow

    tl, me, r = s.timeline, os.getpid(), redis.Redis.from_url(s.stack.broker_url)
    with s.step(
        "1. Subscribe, publish, wait",
        "`slow.delay(0.5).get()`: the client subscribes to the result channel, then LPUSHes "
        "the message. A pool child stores the result (GET, then SETEX and PUBLISH in one "
        "MULTI); the client's `get()` wakes on that PUBLISH. The worker never reads results.",
    ):
        worker = s.start_worker(extra=["-c", "2"])
        result = slow.delay(0.5)
        value, key = result.get(timeout=10), res.result_key(result.id)
        woke = tl.wait_for(
            res.is_hop("result.message", result.id), timeout=5, what="result.message"
        )
        sub, push, setex, publish = (
            tl.wait_for(res.is_command(c, result.id), timeout=5, what=c)
            for c in ("SUBSCRIBE", "LPUSH", "SETEX", "PUBLISH")
        )
        tl.settle()
        events, child = tl.for_task(result.id), setex["pid"]
        s.show(ev.commands_table(events), ev.hops_table(q.select(events, role="client")))
        writes = [e["command"][0] for e in q.select(events, key_prefix=key) if e["pid"] == child]
        late_gets = [e for e in q.select(events, command="GET") if e["ts"] > setex["ts"]]
        main = [e for e in q.select(tl.events(), key=key) if e["pid"] == worker.pid]
        ok = sub["pid"] == push["pid"] == me and sub["ts"] < push["ts"]
        s.expect("SUBSCRIBE comes before LPUSH, both from this client", ok)
        ok = child in worker.children() and writes == ["GET", "SETEX", "PUBLISH"]
        s.expect("a pool child writes the key: GET, SETEX, PUBLISH", ok, f"pid {child}: {writes}")
        ok = woke["pid"] == me and woke["ts"] >= publish["ts"] and not late_gets
        s.expect("get() woke on the PUBLISH (result.message after it, no GET after SETEX)", ok)
        s.expect("the MainProcess sent no command on the result key", not main, f"{len(main)}")
        s.expect("the value is what that child returned", value["pid"] == child)

    with s.step(
        "2. What the child stored",
        "JSON, not a Python object, living `result_expires` (a day by default). Celery adds no "
        "pid and no worker name (the pid in `result` is what `slow` returned): only the spy "
        "can say which process wrote it. (This GET and TTL are the scenario's own.)",
    ):
        stored = res.read_result(r, result.id)
        meta = stored.meta or {}
        s.show(Pretty(meta), f"TTL {stored.key} = {stored.ttl_s} s")
        ok = meta.get("status") == "SUCCESS" and meta.get("result") == value
        s.expect(
            "status SUCCESS, result as returned, task_id inside",
            ok and meta["task_id"] == result.id,
        )
        ok = stored.ttl_s is not None and 86000 < stored.ttl_s <= 86400
        s.expect("it expires in a day (TTL ≤ 86400 s)", ok, f"{stored.ttl_s} s")
        s.expect("no 'worker' field (result_extended is off)", "worker" not in meta)

    with s.step(
        "3. Another process, with only the task id",
        "`python -m demo result <task_id>`: a new Python process builds an AsyncResult from "
        "the id alone and reads the key: a result is not tied to the process that sent the "
        "task. (It lingers 0.5 s before exiting: the spy asks the OS which pid owns a socket, "
        "and the OS forgets the sockets of a process that has exited.)",
    ):
        fetched = res.fetch_in_new_process(s.stack.env, result.id, linger_s=0.5)
        tl.settle()
        theirs = [e for e in tl.for_task(result.id) if e.get("pid") == fetched.pid]
        s.show(Pretty(fetched.output), ev.commands_table(theirs, "Redis commands of that process"))
        got, known = q.first(theirs, command="GET"), {me, worker.pid, *worker.children()}
        ok = fetched.returncode == 0 and (fetched.output or {}).get("result") == value
        s.expect("it prints the same result", ok, fetched.stderr[-200:])
        ok = got is not None and fetched.pid not in known
        s.expect("its GET comes from a new pid", ok, f"pid {fetched.pid}")

    with s.step(
        "4. result_expires: a worker that keeps results 3 s",
        "A second worker (queue `brief`) runs with `CELERY_RESULT_EXPIRES=3`. The TTL is the "
        "writer's setting; the client's own `result_expires` (a day) plays no part.",
    ):
        brief = s.start_worker("brief", ["-c", "1", "-Q", "brief"], {"CELERY_RESULT_EXPIRES": "3"})
        short = add.apply_async((20, 22), queue="brief")
        short.get(timeout=10)
        setex = tl.wait_for(res.is_command("SETEX", short.id), timeout=5, what="the SETEX")
        stored = res.read_result(r, short.id)
        gone = res.wait_until_gone(r, stored.key, timeout=10) - setex["ts"]
        later = res.fetch_in_new_process(s.stack.env, short.id, timeout=1)
        unknown = add.AsyncResult(str(uuid.uuid4())).state
        said = (later.stderr.splitlines() or [""])[0]
        s.show(ev.commands_table([setex]), f"TTL then: {stored.ttl_s} s; gone {gone:.2f} s later")
        s.show(f"`python -m demo result <id>` now: exit {later.returncode}: {said}")
        ok = setex["command"][2] == "3" and setex["pid"] in brief.children()
        s.expect("the brief worker's child wrote it with SETEX … 3", ok)
        ok = stored.ttl_s is not None and 0 < stored.ttl_s <= 3
        s.expect("TTL ≤ 3 s", ok, f"{stored.ttl_s} s")
        s.expect("the key is gone about 3 s after the SETEX", 2.0 <= gone <= 4.5, f"{gone:.2f} s")
        ok = later.returncode == 1 and "state PENDING" in said and unknown == "PENDING"
        s.expect("asked by id, the expired task is PENDING, like an id never seen", ok)

    with s.step(
        "5. ignore_result=True on a call",
        "The task runs, but no result key is written, and the client does not even "
        "subscribe: `get()` returns None at once.",
    ):
        ignored = add.apply_async((2, 2), ignore_result=True)
        tl.wait_for(res.is_hop("task.postrun", ignored.id), timeout=10, what="task.postrun")
        tl.settle()
        events, key = tl.for_task(ignored.id), res.result_key(ignored.id)
        s.show(ev.hops_table(events), ev.commands_table(events))
        ran = q.first(events, event="task.success")
        on_key, exists = q.select(events, key_prefix=key), r.exists(key)
        ok = ran is not None and ran["pid"] in worker.children()
        s.expect("the task ran (task.success in a pool child)", ok)
        s.expect(
            "nobody touched its key: no SUBSCRIBE, no SETEX; it does not exist",
            not on_key and not exists,
        )
        s.expect("get() returns None without waiting", ignored.get(timeout=1) is None)

    with s.step(
        "6. get() inside a task",
        "`get_inside` publishes `add`, then calls `.get()` on it. Celery refuses, since a pool "
        "child waiting on another task can deadlock the pool; the refusal is stored as FAILURE. "
        "In a pool child, publishing does not even subscribe to the result channel.",
    ):
        inside = get_inside.delay(1, 2)
        error = inside.get(timeout=10, propagate=False)
        runner = tl.wait_for(res.is_hop("task.prerun", inside.id), timeout=5, what="task.prerun")[
            "pid"
        ]
        meta = res.read_result(r, inside.id).meta or {}
        exc, trace = meta.get("result") or {}, str(meta.get("traceback")).strip().splitlines()
        inner = (meta.get("children") or [[[""]]])[0][0][0]
        push = tl.wait_for(res.is_command("LPUSH", inner), timeout=5, what="the inner add's LPUSH")
        done = tl.wait_for(
            res.is_command("SETEX", inner), timeout=10, what="the inner add's result"
        )
        s.show(Pretty({k: v for k, v in meta.items() if k != "traceback"}), "\n".join(trace[-4:]))
        s.show(ev.commands_table(tl.for_task(inner), "the inner add (its id is in 'children')"))
        ok = inside.state == "FAILURE" and exc.get("exc_type") == "RuntimeError"
        s.expect("FAILURE, RuntimeError, stored and raised", ok and isinstance(error, RuntimeError))
        ok = "Never call result.get() within a task!" in str(exc.get("exc_message"))
        s.expect("message: 'Never call result.get() within a task!'", ok)
        ok = any("assert_will_not_block" in line for line in trace)
        s.expect("the stored traceback goes through assert_will_not_block", ok)
        ok = push["pid"] == runner and push["role"] == "pool-child"
        s.expect("the inner add was published anyway, by that pool child", ok, f"pid {push['pid']}")
        subs = q.select(tl.for_task(inner), command="SUBSCRIBE")
        s.expect("… without a SUBSCRIBE: a pool child never listens for results", not subs)
        ok = done["pid"] in worker.children()
        s.expect("… and it ran: its result is stored all the same", ok, f"by pid {done['pid']}")


if __name__ == "__main__":
    sys.exit(run("03 · a result, by task id", story, __doc__ or ""))
