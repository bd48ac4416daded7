"""Three pools, one workload: prefork, threads and solo side by side.

The same tasks on `--pool prefork -c 2`, `--pool threads -c 2` and `--pool solo`, each worker
with its own name and queue: where the task runs, who writes its result, and what a slow
task does to the task published right after it.
"""

from __future__ import annotations

import importlib
import os
import sys
import time

from demo import names
from demo.render import tables as ev
from demo.scenes import pools
from demo.scenes.frame import Scenario, run
from demo.stack import control
from demo.trace import query as q
from demo.trace.event import at, who

CONCURRENCY = 2
POOLS = {"prefork": ["-c", str(CONCURRENCY)], "threads": ["-c", str(CONCURRENCY)], "solo": []}
WHOAMI, SLOW, ADD = "envoi_mails.whoami", "envoi_mails.slow", "envoi_mails.add"
SLOW_S = 3.0
ADD_ARGS = (2, 3)
RESULT_S, HOP_S, RUN_S = 30, 15, SLOW_S + 30  # how long to wait: a result, a hop, the runs
PING_S = 1.0  # step 4's pings, sent while slow runs: well within its SLOW_S


def pool(kind: str) -> str:
    """Each pool's worker is named after it, and consumes a queue of the same name."""
    return f"pool-{kind}"


def three_workers(s: Scenario) -> None:
    with s.step(
        "1. Three workers, three pools",
        "`celery -A envoi_mails worker --pool P … -n pool-P@%h -Q pool-P` for P in prefork "
        "(`-c 2`), threads (`-c 2`) and solo. Only prefork forks; threads runs tasks in a "
        "`ThreadPoolExecutor` inside the MainProcess; solo runs them inline, in its event loop.",
    ):
        w = {k: s.start_worker(pool(k), ["--pool", k, *f, "-Q", pool(k)]) for k, f in POOLS.items()}
        seen = {k: pools.look(s.timeline, k, wk, s.stack.env) for k, wk in w.items()}
        kids, stats = {k: v.children for k, v in seen.items()}, seen["threads"].stats
        s.show(pools.pools_table(seen.values()), s.flower("workers"))
        s.expect(
            "prefork: 2 OS children, and each sent child.init (worker_process_init)",
            len(kids["prefork"]) == CONCURRENCY and seen["prefork"].inits == kids["prefork"],
        )
        s.expect(
            "threads: no OS child, no child.init; stats: 2 threads at most, none started yet",
            not kids["threads"]
            and not seen["threads"].inits
            and (stats["max-concurrency"], stats.get("threads")) == (CONCURRENCY, 0),
            f"threads={stats.get('threads')}: the executor starts them at the first tasks",
        )
        s.expect(
            "solo: no OS child; stats name the MainProcess as the pool's only process",
            not kids["solo"] and seen["solo"].stats.get("processes") == [w["solo"].pid],
        )
        s.expect(
            "solo fires worker_process_init in the MainProcess itself (solo.py, TaskPool)",
            seen["solo"].inits == [w["solo"].pid],
        )


def where_a_task_runs(s: Scenario) -> None:
    from envoi_mails import whoami

    w, me = {k: s.worker(pool(k)) for k in POOLS}, os.getpid()
    with s.step(
        "2. Where a task runs: `whoami` on each pool",
        "`whoami` returns `os.getpid()` and `os.getppid()` of the process that ran it. Its "
        "`task.prerun` hop names a pid too, and so does the MainProcess when it is told the job "
        "started (`Request.on_accepted(pid)`: the kit's `task.accepted` hop).",
    ):
        asked = {k: whoami.apply_async(queue=pool(k)) for k in w}
        said = {k: a.get(timeout=RESULT_S) for k, a in asked.items()}
        # prefork: the MainProcess's task.accepted may land after the child's hops.
        hops = ("task.prerun", "task.accepted")
        found = s.timeline.wait_lives([a.id for a in asked.values()], timeout=RESULT_S, hops=hops)
        life = dict(zip(asked, found, strict=True))
        s.show(pools.whoami_table({k: (w[k].pid, said[k], life[k]) for k in w}))
        s.expect(
            "prefork: a pool child ran it; its parent is the MainProcess",
            said["prefork"]["pid"] in w["prefork"].children()
            and said["prefork"]["ppid"] == w["prefork"].pid,
        )
        for k in ("threads", "solo"):
            s.expect(
                f"{k}: the MainProcess's own pid ran it (its parent: this scenario)",
                (said[k]["pid"], said[k]["ppid"]) == (w[k].pid, me),
                f"pid {said[k]['pid']}, thread {said[k]['thread']!r}, this scenario: {me}",
            )
        s.expect(
            "in all three, the task.prerun hop and the accepted pid are the pid it returned",
            all(
                (p := life[k]["task.prerun"]) is not None
                and (a := life[k]["task.accepted"]) is not None
                and p["pid"] == a.get("child_pid") == said[k]["pid"]
                for k in w
            ),
        )


def who_writes_the_result(s: Scenario) -> None:
    w = {k: s.worker(pool(k)) for k in POOLS}
    with s.step(
        "3. Who writes the result",
        "The process that runs the task stores its result (`mark_as_done`: `SETEX` + "
        "`PUBLISH`). Each process records the commands it sends with its own pid: the SETEX "
        "names the process that ran the task.",
    ):
        asked = {k: s.published(WHOAMI, routing_key=pool(k))[0] for k in w}
        s.timeline.settle()
        events = s.timeline.events()
        wrote = {
            k: q.first(events, command="SETEX", key=names.result_key(t)) for k, t in asked.items()
        }
        said = {k: q.returned(events, t) or {} for k, t in asked.items()}  # what whoami returned
        setexes = sorted((e for e in wrote.values() if e is not None), key=lambda e: e["ts"])
        s.show(ev.commands_table(setexes, "SETEX"))
        prefork = wrote["prefork"]
        s.expect(
            "prefork: a pool child sent the SETEX (role pool-child, its parent the MainProcess)",
            prefork is not None
            and (prefork["role"], prefork["pid"], prefork.get("ppid"))
            == (names.POOL_CHILD, said["prefork"].get("pid"), w["prefork"].pid),
        )
        for k in ("threads", "solo"):
            e = wrote[k]
            s.expect(
                f"{k}: the MainProcess sent it; the trace's role for it: worker-main",
                e is not None and (e["role"], e["pid"]) == (names.WORKER_MAIN, w[k].pid),
                who(e) if e is not None else "no SETEX seen",
            )
        roles = {k: pools.hop_roles(events, w[k].pid) for k in w}
        s.show(f"roles the MainProcesses give themselves in their hops: {roles}")
        s.expect(
            "threads: every hop of its MainProcess says worker-main (there is no pool child)",
            roles["threads"] == [names.WORKER_MAIN],
        )
        s.show(pools.solo_role_note(roles["solo"]))


def a_slow_tasks_neighbour(s: Scenario) -> None:
    from envoi_mails import add, slow

    tl, w = s.timeline, {k: s.worker(pool(k)) for k in POOLS}
    with s.step(
        f"4. A slow task's neighbour: slow({SLOW_S:g}) then add on each pool",
        f"`slow({SLOW_S:g})` then `add(2, 3)` on each queue, published back to back. prefork gives "
        "the add to its idle child, threads to its second thread. solo runs slow inside its "
        "event loop: it does not even take the add off Redis until slow has ended, nor ack "
        "slow's message, nor answer a ping.",
    ):
        t0 = time.time()
        sent = {
            k: {
                "slow": slow.apply_async((SLOW_S,), queue=pool(k)),
                "add": add.apply_async(ADD_ARGS, queue=pool(k)),
            }
            for k in w
        }
        solo_slow = sent["solo"]["slow"].id
        tl.wait_for(
            event="task.prerun", task_id=solo_slow, timeout=HOP_S, what="solo starting slow"
        )
        waiting = int(s.redis.llen(pool("solo")))
        answered = {k: control.pings(s.stack.env, w[k].nodename, timeout=PING_S) for k in w}
        pinged = time.time()
        labels = {f"{k}: {n}": t.id for k, pair in sent.items() for n, t in pair.items()}
        found = tl.wait_lives(labels.values(), timeout=RUN_S, what="the six tasks to end")
        lives = dict(zip(labels, found, strict=True))
        tl.settle()
        sl, ad = lives["solo: slow"], lives["solo: add"]
        asks = q.select(
            tl.events(),
            command="BRPOP",
            key=pool("solo"),
            pid=w["solo"].pid,
            since=at(sl["task.prerun"]),
            until=at(sl["task.postrun"]),
        )
        stats = control.inspect_stats(s.stack.env, w["threads"].nodename, timeout=pools.STATS_S)
        threads = stats["pool"].get("threads")
        s.show(
            pools.lives_table(lives, t0, "seconds after publishing"),
            f"while solo ran slow: LLEN pool-solo = {waiting}, BRPOPs from it: {len(asks)}",
            s.flower(f"task/{ad.task_id}"),
        )
        ended, received, started = (
            at(x) for x in (sl["task.postrun"], ad["task.received"], ad["task.prerun"])
        )
        s.expect(
            "solo: the add was received, and started, only after slow ended",
            ended <= received <= started,
            f"+{started - ended:.3f} s after",
        )
        s.expect("… meanwhile it waited in the Redis list; no BRPOP", waiting == 1 and not asks)
        acked = q.first(
            tl.events(), command="HDEL", key=names.UNACKED, task_id=solo_slow, pid=w["solo"].pid
        )
        s.expect(
            "… and slow's own ack (HDEL unacked) came only after slow ended: the loop that "
            "sends it was running the task",
            at(sl["task.postrun"]) < at(acked) < float("inf"),
        )
        s.expect(
            f"solo: a ping sent while slow ran got no answer within {PING_S:g} s; the prefork "
            "and threads workers, running slow too, answered",
            answered == {"prefork": True, "threads": True, "solo": False}
            and pinged < at(sl["task.postrun"]),
            f"{answered}",
        )
        sl, ad = lives["threads: slow"], lives["threads: add"]
        s.expect(
            "threads: the add ran while slow ran, in the same process (a second thread)",
            at(ad["task.prerun"]) < at(sl["task.postrun"])
            and ad.child_pid == sl.child_pid == w["threads"].pid,
        )
        s.expect(
            "… and inspect stats now counts 2 threads", threads == CONCURRENCY, f"threads={threads}"
        )
        sl, ad = lives["prefork: slow"], lives["prefork: add"]
        s.expect(
            "prefork: the add ran while slow ran, in the other child",
            at(ad["task.prerun"]) < at(sl["task.postrun"])
            and ad.child_pid != sl.child_pid
            and {ad.child_pid, sl.child_pid} <= set(w["prefork"].children()),
        )


def story(s: Scenario) -> None:
    # Build the app first, as any client does: from then on this process records its own
    # Redis commands, as a client.
    importlib.import_module("envoi_mails.instance")
    three_workers(s)
    where_a_task_runs(s)
    who_writes_the_result(s)
    a_slow_tasks_neighbour(s)


if __name__ == "__main__":
    sys.exit(run("08 · pools compared", story, __doc__ or ""))
