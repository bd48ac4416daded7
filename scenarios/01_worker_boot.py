"""A worker starts: one MainProcess, two pre-forked children, and what it sets up in Redis.

`celery -A envoi_mails worker --loglevel=info -c 2`, started while the spy watches Redis: the
children exist before any task, only the MainProcess talks to the broker, and it tells the
world it is alive every two seconds.
"""

from __future__ import annotations

import os
import sys
import time

import redis

from demo import inspectors as ins
from demo.render import tables as ev
from demo.render.inspect import escape, render_bindings
from demo.scenes import processes as proc
from demo.scenes.frame import Scenario, run
from demo.trace import query as q

QUEUE_LISTS = ["celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169"]
TASK_ROUTE = ("celery", "celery", "celery")  # exchange, routing key, queue


def story(s: Scenario) -> None:
    import envoi_mails  # noqa: F401  # this process is the app's client: the spy labels it so

    tl = s.timeline
    with s.step(
        "1. Start the worker with two children",
        "`celery -A envoi_mails worker --loglevel=info -c 2 -E` starts one process, the "
        "MainProcess. Before it even connects to Redis, billiard forks its pool: 2 children.",
    ):
        worker = s.start_worker(extra=["-c", "2"])
        pool = ins.pool_processes(worker.pid)
        kids = pool.child_pids
        init = proc.wait_hop(tl, "worker.init", worker.pid)
        s.show(ev.process_table(worker.pid))
        s.expect(
            "the OS shows 2 children, each with the MainProcess as parent",
            len(kids) == 2 and {c.ppid for c in pool.children} == {worker.pid},
            f"MainProcess {worker.pid}, children {kids}",
        )
        talks = q.first(tl.events(), event="redis.command", role="worker-main")
        s.expect(
            "both were forked (OS start time) before the MainProcess's first Redis command",
            talks is not None and max(c.create_time for c in pool.children) <= talks["ts"],
        )

    with s.step(
        "2. The children are forked at start, before any task",
        "Each new child runs `worker_process_init` (the kit's `child.init` hop). The worker "
        "says `ready` once it consumes; no task has been sent.",
    ):
        ready = proc.wait_hop(tl, "worker.ready", worker.pid)
        for kid in kids:  # each child ships its hops itself, a few ms after the fact
            proc.wait_hop(tl, "child.init", kid)
        inits = proc.child_hops(tl.events(), worker.pid)
        s.show(ev.hops_table([init, *inits, ready], "the worker's start, as its processes told it"))
        s.expect(
            "one child.init per OS child, each from a pid whose parent is the worker",
            sorted(e["pid"] or 0 for e in inits) == kids,
            f"{[e['pid'] for e in inits]}",
        )
        forked_in_time = all(init["ts"] < e["ts"] < ready["ts"] for e in inits)
        s.expect("both were forked after worker_init, before worker_ready", forked_in_time)
        s.expect("worker_ready's pool list is the OS children", sorted(ready["children"]) == kids)
        s.expect("no task ran: they wait for work", not q.select(tl.events(), event="task.prerun"))

    with s.step(
        "3. The worker reports the same pids",
        "`celery inspect stats` PUBLISHes a command on `celery.pidbox`; the MainProcess "
        "answers by LPUSHing its stats, pool pids included, onto the caller's reply list.",
    ):
        asked = time.time()
        reported = sorted(ins.stats_pool_pids(s.stack.env, worker.nodename))
        replied = proc.command_is("LPUSH", suffix=".reply.celery.pidbox", since=asked)
        reply = tl.wait_for(replied, timeout=10, what="the reply to inspect stats")
        views = {"the OS (psutil)": kids, "worker_ready": ready["children"], "inspect": reported}
        s.show(proc.pids_table(views, "three views of the pool"), ev.commands_table([reply]))
        s.expect("`inspect stats` names the OS's pool pids", reported == kids, f"{reported}")
        s.expect("the MainProcess answered, not a child", reply["pid"] == worker.pid)

    with s.step(
        "4. The bindings the worker declares",
        "kombu keeps routing in sets `_kombu.binding.<exchange>`. New in 5.7: a queue that never "
        "expires is also pinned in `_kombu.binding_permanent.<exchange>`; expiring ones (events, "
        "control) get a deadline in `_kombu.binding_deadlines`, past which a sweep may drop them.",
    ):
        r = redis.Redis.from_url(s.stack.broker_url, decode_responses=True)
        view, keys = ins.bindings(r), ins.scan_keys(r, "_kombu.binding*", 50)[0]
        writes = proc.binding_writes(tl.events(), worker.pid)
        s.show(
            ev.commands_table(writes, "the worker's writes (a deadline's ZADD: in a Lua script)"),
            render_bindings(view),
            "keys: " + ", ".join(escape(k) for k in keys),
        )
        plain = {(b.exchange, b.routing_key, b.queue) for b in view.bindings}
        pinned = {(b.exchange, b.routing_key, b.queue) for b in view.permanent}
        left = {d.exchange: d.seconds_left for d in view.deadlines}
        tables = {e["command"][1] for e in writes}
        s.expect(
            "binding.celery and binding_permanent.celery route celery → celery; the MainProcess "
            "wrote both",
            TASK_ROUTE in plain & pinned
            and {"_kombu.binding.celery", "_kombu.binding_permanent.celery"} <= tables,
        )
        s.expect(
            "events and control tables have a deadline about 1 h ahead; `celery` has none",
            "celery" not in left
            and all(3000 < left.get(x, 0) <= 3600 for x in ("celeryev", "celery.pidbox")),
            ", ".join(f"{x}: {t:.0f} s" for x, t in left.items()),
        )

    with s.step(
        "5. The consume loop: BRPOP, one second at a time",
        "The MainProcess blocks on `celery` and its priority lists (`\\x06\\x16` + 3, 6, 9) for "
        "at most 1 s, then asks again. The children never talk to the broker.",
    ):
        loops = proc.wait_for_each(tl, proc.command_is("BRPOP", "celery"), 3, 10, "BRPOP celery")
        gaps = proc.gaps(loops)
        s.show(
            ev.commands_table(loops, "BRPOP"),
            f"seconds apart: {', '.join(f'{g:.3f}' for g in gaps)}",
        )
        sent = q.select(tl.events(), event="redis.command")
        s.expect(
            "BRPOP names celery and its priority lists 3, 6, 9, with timeout 1",
            loops[0]["command"][1:] == [*QUEUE_LISTS, "1"],
            escape(" ".join(loops[0]["command"])),
        )
        brpop_pids = {e["pid"] for e in sent if proc.is_command(e, "BRPOP", "celery")}
        from_kids = [e for e in sent if e.get("ppid") == worker.pid]
        s.expect(
            "every BRPOP on celery comes from the MainProcess; the children sent no command at all",
            brpop_pids == {worker.pid} and not from_kids,
            f"{len(from_kids)} from children",
        )
        s.expect("on an empty queue each BRPOP waits its full second", min(gaps) >= 0.95)

    with s.step(
        "6. The heartbeat",
        "With `-E` the MainProcess PUBLISHes a `worker-heartbeat` event every 2 s; monitors "
        "such as Flower call a worker offline after 2 × freq without one.",
    ):
        heartbeat = proc.command_is("PUBLISH", suffix=".celeryev/worker.heartbeat")
        beats = proc.wait_for_each(tl, heartbeat, 2, 10, "a heartbeat PUBLISH")
        online = proc.published(tl.events(), ".celeryev/worker.online", worker.pid)
        signals = proc.wait_for_each(tl, proc.hop_is("worker.heartbeat", worker.pid), 3, 5, "hop")
        bodies = [proc.event_body(e) for e in [*online, *beats]]
        s.show(
            ev.commands_table([*online, *beats], "worker events on the celeryev channels"),
            ", ".join(f"{b['type']}: pid={b['pid']} freq={b['freq']}" for b in bodies),
        )
        gap = proc.gaps(beats)[0]
        order = [signals[0], *online, signals[1], beats[0], signals[2], beats[1]]
        named = all(b["pid"] == worker.pid and b["freq"] == 2.0 for b in bodies)
        s.expect(
            "PUBLISHed by the MainProcess; each event names its pid and freq 2.0",
            {e["pid"] for e in beats} == {worker.pid} and named,
            beats[0]["command"][1],
        )
        s.expect("about every 2 s", 1.5 <= gap <= 3.0, f"{gap:.3f} s apart")
        s.expect(
            "heartbeat_sent also fires for worker-online: signal, online, signal, beat, …",
            len(online) == 1 and [e["ts"] for e in order] == sorted(e["ts"] for e in order),
        )
        s.show(s.flower(f"worker/{worker.nodename}"))

    with s.step(
        "7. Without -c: one child per CPU",
        "With neither `-c` nor `worker_concurrency`, Celery sizes the pool with "
        "`billiard.cpu_count()`, which is `os.cpu_count()`: every CPU the OS reports, whatever "
        "a container's CPU quota. A second worker, started with no `-c`, shows it.",
    ):
        cpus = os.cpu_count()
        default = s.start_worker("no-c")
        chosen = proc.wait_hop(tl, "worker.init", default.pid)
        forked = default.children()
        s.show(ev.process_table(default.pid))
        s.expect(
            "Celery chose os.cpu_count() as its concurrency (worker_init says so)",
            chosen.get("concurrency") == cpus,
            f"concurrency={chosen.get('concurrency')}, os.cpu_count()={cpus}",
        )
        s.expect("the OS shows that many children", len(forked) == cpus, f"{forked}")


if __name__ == "__main__":
    sys.exit(run("01 · a worker boots", story, __doc__ or ""))
