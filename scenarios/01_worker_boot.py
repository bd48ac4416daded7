"""A worker starts: one MainProcess, two pre-forked children, and what it sets up in Redis.

`celery -A envoi_mails worker --loglevel=info -c 2`, each process recording the Redis commands
it sends: the children exist before any task, at rest only the MainProcess talks to the broker,
and it tells the world it is alive every two seconds.
"""

from __future__ import annotations

import os
import sys
import time

from demo import inspectors as ins
from demo import names
from demo.protocol.envelope import decode_event_body
from demo.render import tables as ev
from demo.render.inspect import escape, render_bindings
from demo.scenes import processes as proc
from demo.scenes.frame import Scenario, run
from demo.trace import query as q
from demo.trace.event import args_of, at, key_of

WORKER, DEFAULT = "celery", "no-c"  # the `-c 2` worker of steps 1-6; step 7's, without -c
CHILDREN = 2
QUEUE = names.DEFAULT_QUEUE
QUEUE_LISTS = [QUEUE, *(f"{QUEUE}{names.PRIORITY_SEP}{n}" for n in (3, 6, 9))]
TASK_ROUTE = (QUEUE, QUEUE, QUEUE)  # exchange, routing key, queue
HEARTBEAT, REPLY = names.HEARTBEAT_SUFFIX, names.REPLY_SUFFIX
BINDINGS = "_kombu.binding"  # the prefix of binding.<x>, binding_permanent.<x>, binding_deadlines
PINNED = names.BINDING_PERMANENT_PREFIX
EVENTS, CONTROL = "celeryev", "celery.pidbox"  # the exchanges whose bindings expire
DEADLINE_S, DEADLINE_SLACK_S = 3600, 600  # kombu's binding deadline: about an hour ahead
KEYS_SHOWN = 50  # binding keys listed at most
BRPOPS, BRPOP_TIMEOUT_S = 3, 1  # consume loops watched; kombu's BRPOP timeout
FULL_WAIT_S = 0.95  # a BRPOP that waited its whole second, give or take the clocks
BEATS, SIGNALS, FREQ_S = 2, 3, 2.0  # heartbeat PUBLISHes and hops watched; their frequency
ABOUT_FREQ_S = (1.5, 3.0)  # two heartbeats this far apart are "about every 2 s"
CONNECTED = "Connected to redis://"  # the MainProcess logs it once its broker connection is up
SOON_S = 10  # how long a hop or command that follows at once may take to be seen


def step_1(s: Scenario) -> None:
    with s.step(
        "1. Start the worker with two children",
        "`celery -A envoi_mails worker --loglevel=info -c 2 -E` starts one process, the "
        "MainProcess. Before it even connects to Redis, billiard forks its pool: 2 children.",
    ):
        worker = s.start_worker(WORKER, extra=["-c", str(CHILDREN)])
        pool = ins.pool_processes(worker.pid)
        s.timeline.wait_for(event="worker.init", pid=worker.pid, timeout=SOON_S, what="init")
        s.show(ev.process_table(worker.pid))
        s.expect(
            "the OS shows 2 children, each with the MainProcess as parent",
            len(pool.child_pids) == CHILDREN and {c.ppid for c in pool.children} == {worker.pid},
            f"MainProcess {worker.pid}, children {pool.child_pids}",
        )
        connected = s.timeline.wait_for(
            event=names.LOG, pid=worker.pid, containing=CONNECTED, timeout=SOON_S, what=CONNECTED
        )
        # Its very first command, the connection's handshake (HELLO) included: the timeline
        # leaves that chatter out of its events, not out of what it read.
        opened = s.timeline.first_sent(worker.pid)
        forked = max(c.create_time for c in pool.children)
        s.show(ev.commands_table([e for e in (opened,) if e], "the MainProcess's first command"))
        s.expect(
            "both were forked (OS start time) before the MainProcess's first Redis command "
            "and its `Connected to redis://` log line",
            opened is not None and forked < opened["ts"] and forked < connected["ts"],
            f"forked {forked:.3f}, first command {at(opened):.3f}, connected {connected['ts']:.3f}",
        )


def step_2(s: Scenario) -> None:
    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "2. The children are forked at start, before any task",
        "Each new child runs `worker_process_init` (the kit's `child.init` hop). The worker "
        "says `ready` once it consumes; no task has been sent.",
    ):
        kids = worker.children()
        init = tl.wait_for(event="worker.init", pid=worker.pid, timeout=SOON_S, what="init")
        ready = tl.wait_for(event="worker.ready", pid=worker.pid, timeout=SOON_S, what="ready")
        # Each child ships its hops itself, a few ms after the fact.
        tl.wait_until(
            event="child.init", ppid=worker.pid, count=CHILDREN, timeout=SOON_S, what="child.init"
        )
        inits = tl.select(event="child.init", ppid=worker.pid)
        s.show(ev.hops_table([init, *inits, ready], "the worker's start, as its processes told it"))
        s.expect(
            "one child.init per OS child, each from a pid whose parent is the worker",
            sorted(e["pid"] or 0 for e in inits) == kids,
            f"{[e['pid'] for e in inits]}",
        )
        forked_in_time = all(init["ts"] < e["ts"] < ready["ts"] for e in inits)
        s.expect("both were forked after worker_init, before worker_ready", forked_in_time)
        s.expect("worker_ready's pool list is the OS children", sorted(ready["children"]) == kids)
        s.expect("no task ran: they wait for work", not tl.select(event="task.prerun"))


def step_3(s: Scenario) -> None:
    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "3. The worker reports the same pids",
        "`celery inspect stats` PUBLISHes a command on `celery.pidbox`; the MainProcess "
        "answers by LPUSHing its stats, pool pids included, onto the caller's reply list.",
    ):
        asked = time.time()
        reported = sorted(ins.stats_pool_pids(s.stack.env, worker.nodename))
        reply = tl.wait_for(
            command="LPUSH", key_suffix=REPLY, since=asked, timeout=SOON_S, what="the reply"
        )
        ready = tl.wait_for(event="worker.ready", pid=worker.pid, timeout=SOON_S, what="ready")
        kids = worker.children()
        views = {"the OS (psutil)": kids, "worker_ready": ready["children"], "inspect": reported}
        s.show(proc.pids_table(views, "three views of the pool"), ev.commands_table([reply]))
        s.expect("`inspect stats` names the OS's pool pids", reported == kids, f"{reported}")
        s.expect("the MainProcess answered, not a child", reply["pid"] == worker.pid)


def step_4(s: Scenario) -> None:
    worker = s.worker(WORKER)
    with s.step(
        "4. The bindings the worker declares",
        "kombu keeps routing in sets `_kombu.binding.<exchange>`. New in 5.7: a queue that never "
        "expires is also pinned in `_kombu.binding_permanent.<exchange>`; expiring ones (events, "
        "control) get a deadline in `_kombu.binding_deadlines`, past which a sweep may drop them.",
    ):
        view, keys = (
            ins.bindings(s.redis),
            ins.scan_keys(s.redis, f"{BINDINGS}*", limit=KEYS_SHOWN)[0],
        )
        writes = s.timeline.select(command=("SADD", "ZADD"), key_prefix=BINDINGS, pid=worker.pid)
        s.show(
            ev.commands_table(writes, "the worker's writes (a deadline's ZADD: in a Lua script)"),
            render_bindings(view),
            "keys: " + ", ".join(escape(k) for k in keys),
        )
        plain = {(b.exchange, b.routing_key, b.queue) for b in view.bindings}
        pinned = {(b.exchange, b.routing_key, b.queue) for b in view.permanent}
        left = {d.exchange: d.seconds_left for d in view.deadlines}
        tables = {key_of(e) for e in writes}
        s.expect(
            "binding.celery and binding_permanent.celery route celery → celery; the MainProcess "
            "wrote both",
            TASK_ROUTE in plain & pinned
            and {f"{names.BINDING_PREFIX}{QUEUE}", f"{PINNED}{QUEUE}"} <= tables,
        )
        about_an_hour = all(
            DEADLINE_S - DEADLINE_SLACK_S < left.get(x, 0) <= DEADLINE_S for x in (EVENTS, CONTROL)
        )
        s.expect(
            "events and control tables have a deadline about 1 h ahead; `celery` has none",
            QUEUE not in left and about_an_hour,
            ", ".join(f"{x}: {t:.0f} s" for x, t in left.items()),
        )


def step_5(s: Scenario) -> None:
    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "5. The consume loop: BRPOP, one second at a time",
        "The MainProcess blocks on `celery` and its priority lists (`\\x06\\x16` + 3, 6, 9) for "
        "at most 1 s, then asks again. Idle, the children send Redis nothing (a task's retry or "
        "chain link is theirs to publish: 06, 10).",
    ):
        loops = tl.wait_until(
            command="BRPOP", key=QUEUE, count=BRPOPS, timeout=SOON_S, what="BRPOP"
        )
        gaps = q.gaps(loops)
        s.show(
            ev.commands_table(loops, "BRPOP"),
            "seconds apart: " + ", ".join(f"{g:.3f}" for g in gaps),
        )
        sent = tl.select(event=names.REDIS_COMMAND)
        s.expect(
            "BRPOP names celery and its priority lists 3, 6, 9, with timeout 1",
            args_of(loops[0])[1:] == [*QUEUE_LISTS, str(BRPOP_TIMEOUT_S)],
            escape(" ".join(args_of(loops[0]))),
        )
        brpop_pids = {e["pid"] for e in q.select(sent, command="BRPOP", key=QUEUE)}
        from_kids = q.select(sent, ppid=worker.pid)
        s.expect(
            "every BRPOP on celery comes from the MainProcess; the children sent no command at all",
            brpop_pids == {worker.pid} and not from_kids,
            f"{len(from_kids)} from children",
        )
        s.expect("on an empty queue each BRPOP waits its full second", min(gaps) >= FULL_WAIT_S)


def step_6(s: Scenario) -> None:
    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        "6. The heartbeat",
        "The MainProcess PUBLISHes a `worker-heartbeat` event every 2 s, with or without `-E` "
        "(which only adds task events: 12); monitors such as Flower call a worker offline "
        "after 2 × freq without one.",
    ):
        beats = tl.wait_until(
            command="PUBLISH", key_suffix=HEARTBEAT, count=BEATS, timeout=SOON_S, what="beats"
        )
        online = tl.select(command="PUBLISH", key_suffix=names.ONLINE_SUFFIX, pid=worker.pid)
        signals = tl.wait_until(
            event="worker.heartbeat", pid=worker.pid, count=SIGNALS, timeout=SOON_S, what="hops"
        )
        bodies = [decode_event_body(args_of(e)[2])[0] for e in [*online, *beats]]
        s.show(
            ev.commands_table([*online, *beats], "worker events on the celeryev channels"),
            ", ".join(f"{b['type']}: pid={b['pid']} freq={b['freq']}" for b in bodies),
        )
        gap = q.gaps(beats)[0]
        order = [signals[0], *online, signals[1], beats[0], signals[2], beats[1]]
        named = all(b["pid"] == worker.pid and b["freq"] == FREQ_S for b in bodies)
        s.expect(
            "PUBLISHed by the MainProcess; each event names its pid and freq 2.0",
            {e["pid"] for e in beats} == {worker.pid} and named,
            key_of(beats[0]),
        )
        low, high = ABOUT_FREQ_S
        s.expect("about every 2 s", low <= gap <= high, f"{gap:.3f} s apart")
        s.expect(
            "heartbeat_sent also fires for worker-online: signal, online, signal, beat, …",
            len(online) == 1 and [e["ts"] for e in order] == sorted(e["ts"] for e in order),
        )
        s.show(s.flower(f"worker/{worker.nodename}"))


def step_7(s: Scenario) -> None:
    with s.step(
        "7. Without -c: one child per CPU",
        "With neither `-c` nor `worker_concurrency`, Celery sizes the pool with "
        "`billiard.cpu_count()`, which is `os.cpu_count()`: every CPU the OS reports, whatever "
        "a container's CPU quota. A second worker, started with no `-c`, shows it.",
    ):
        cpus = os.cpu_count()
        default = s.start_worker(DEFAULT)
        chosen = s.timeline.wait_for(
            event="worker.init", pid=default.pid, timeout=SOON_S, what="init"
        )
        forked = default.children()
        s.show(ev.process_table(default.pid))
        s.expect(
            "Celery chose os.cpu_count() as its concurrency (worker_init says so)",
            chosen.get("concurrency") == cpus,
            f"concurrency={chosen.get('concurrency')}, os.cpu_count()={cpus}",
        )
        s.expect("the OS shows that many children", len(forked) == cpus, f"{forked}")


def story(s: Scenario) -> None:
    import envoi_mails  # noqa: F401  # this process is the app's client: it records its commands

    for step in (step_1, step_2, step_3, step_4, step_5, step_6, step_7):
        step(s)


if __name__ == "__main__":
    sys.exit(run("01 · a worker boots", story, __doc__ or ""))
