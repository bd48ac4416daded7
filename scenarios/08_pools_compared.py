"""Three pools, one workload: prefork, threads and solo side by side.

The same tasks on `--pool prefork -c 2`, `--pool threads -c 2` and `--pool solo`, each worker
with its own name and queue: where the task runs, who writes its result, and what a slow
task does to the task published right after it.
"""

from __future__ import annotations

import os
import sys
import time

import redis

from demo.render import tables as ev
from demo.scenes import pools
from demo.scenes import processes as proc
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run
from demo.trace.event import who

POOLS = {"prefork": ["-c", "2"], "threads": ["-c", "2"], "solo": []}
SLOW = 3.0


def story(s: Scenario) -> None:
    from envoi_mails import add, slow, whoami

    tl, me, r = s.timeline, os.getpid(), redis.Redis.from_url(s.stack.broker_url)
    with s.step(
        "1. Three workers, three pools",
        "`celery -A envoi_mails worker --pool P … -n pool-P@%h -Q pool-P` for P in prefork "
        "(`-c 2`), threads (`-c 2`) and solo. Only prefork forks; threads runs tasks in a "
        "`ThreadPoolExecutor` inside the MainProcess; solo runs them inline, in its event loop.",
    ):
        w = {
            k: s.start_worker(f"pool-{k}", ["--pool", k, *flags, "-Q", f"pool-{k}"])
            for k, flags in POOLS.items()
        }
        seen = {k: pools.look(tl, k, wk, s.stack.env) for k, wk in w.items()}
        kids, stats = {k: v.children for k, v in seen.items()}, seen["threads"].stats
        s.show(pools.pools_table(seen.values()), s.flower("workers"))
        s.expect(
            "prefork: 2 OS children, and each sent child.init (worker_process_init)",
            len(kids["prefork"]) == 2 and seen["prefork"].inits == kids["prefork"],
        )
        s.expect(
            "threads: no OS child, no child.init; stats: 2 threads at most, none started yet",
            not kids["threads"]
            and not seen["threads"].inits
            and (stats["max-concurrency"], stats.get("threads")) == (2, 0),
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

    with s.step(
        "2. Where a task runs: `whoami` on each pool",
        "`whoami` returns `os.getpid()` and `os.getppid()` of the process that ran it. Its "
        "`task.prerun` hop names a pid too, and so does the MainProcess when it is told the job "
        "started (`Request.on_accepted(pid)`: the kit's `task.accepted` hop).",
    ):
        asked = {k: whoami.apply_async(queue=f"pool-{k}") for k in w}
        said = {k: a.get(timeout=30) for k, a in asked.items()}
        proc.wait_ran(tl, [a.id for a in asked.values()])
        for a in asked.values():  # prefork: the MainProcess's hop may land after the child's
            tl.wait_for(res.is_hop("task.accepted", a.id), timeout=10, what="the task.accepted hop")
        events = tl.events()
        pre = {k: pools.hop(events, "task.prerun", a.id) for k, a in asked.items()}
        acc = {k: pools.hop(events, "task.accepted", a.id) for k, a in asked.items()}
        s.show(pools.whoami_table({k: (w[k].pid, said[k], pre[k], acc[k]) for k in w}))
        s.expect(
            "prefork: a pool child ran it; its parent is the MainProcess",
            said["prefork"]["pid"] in kids["prefork"]
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
                (p := pre[k]) is not None
                and (a := acc[k]) is not None
                and p["pid"] == a.get("child_pid") == said[k]["pid"]
                for k in w
            ),
        )

    with s.step(
        "3. Who writes the result",
        "The process that runs the task stores its result (`mark_as_done`: `SETEX` + "
        "`PUBLISH`). The spy names each SETEX's sender from the OS's socket table and the "
        "sender's command line, whatever the process says about itself.",
    ):
        tl.settle()
        events = tl.events()
        wrote = {k: pools.setex(events, a.id) for k, a in asked.items()}
        setexes = sorted((e for e in wrote.values() if e is not None), key=lambda e: e["ts"])
        s.show(ev.commands_table(setexes, "SETEX"))
        s.expect(
            "prefork: a pool child sent the SETEX (role pool-child, its parent the MainProcess)",
            pools.who(wrote["prefork"]) == ("pool-child", said["prefork"]["pid"], w["prefork"].pid),
        )
        for k in ("threads", "solo"):
            s.expect(
                f"{k}: the MainProcess sent it; the trace's role for it: worker-main",
                pools.who(wrote[k])[:2] == ("worker-main", w[k].pid),
                who(e) if (e := wrote[k]) is not None else "no SETEX seen",
            )
        roles = {k: pools.hop_roles(events, w[k].pid) for k in w}
        s.show(f"roles the MainProcesses give themselves in their hops: {roles}")
        s.expect(
            "threads: every hop of its MainProcess says worker-main (there is no pool child)",
            roles["threads"] == ["worker-main"],
        )
        s.show(pools.solo_role_note(roles["solo"]))

    with s.step(
        f"4. A slow task's neighbour: slow({SLOW:g}) then add on each pool",
        f"`slow({SLOW:g})` then `add(2, 3)` on each queue, published back to back. prefork gives "
        "the add to its idle child, threads to its second thread. solo runs slow inside its "
        "event loop: it does not even take the add off Redis until slow has ended.",
    ):
        t0 = time.time()
        sent = {
            k: {
                "slow": slow.apply_async((SLOW,), queue=f"pool-{k}"),
                "add": add.apply_async((2, 3), queue=f"pool-{k}"),
            }
            for k in w
        }
        tl.wait_for(
            res.is_hop("task.prerun", sent["solo"]["slow"].id),
            timeout=15,
            what="solo starting slow",
        )
        waiting = int(r.llen("pool-solo"))
        labels = {t.id: f"{k}: {n}" for k, pair in sent.items() for n, t in pair.items()}
        runs = pools.wait_runs(tl, labels, SLOW + 30)
        tl.settle()
        sl, ad = runs["solo: slow"], runs["solo: add"]
        asks = pools.brpops(tl.events(), w["solo"].pid, "pool-solo", sl.started, sl.ended)
        threads = res.worker_stats(s.stack.env, w["threads"].nodename)["pool"].get("threads")
        s.show(
            pools.runs_table(runs.values(), t0, "seconds after publishing"),
            f"while solo ran slow: LLEN pool-solo = {waiting}, BRPOPs from it: {len(asks)}",
            s.flower(f"task/{ad.task_id}"),
        )
        s.expect(
            "solo: the add was received, and started, only after slow ended",
            sl.ended <= ad.received <= ad.started,
            f"+{ad.started - sl.ended:.3f} s after",
        )
        s.expect("… meanwhile it waited in the Redis list; no BRPOP", waiting == 1 and not asks)
        sl, ad = runs["threads: slow"], runs["threads: add"]
        s.expect(
            "threads: the add ran while slow ran, in the same process (a second thread)",
            ad.started < sl.ended and ad.ran_in == sl.ran_in == w["threads"].pid,
        )
        s.expect("… and inspect stats now counts 2 threads", threads == 2, f"threads={threads}")
        sl, ad = runs["prefork: slow"], runs["prefork: add"]
        s.expect(
            "prefork: the add ran while slow ran, in the other child",
            ad.started < sl.ended
            and ad.ran_in != sl.ran_in
            and {ad.ran_in, sl.ran_in} <= set(kids["prefork"]),
        )


if __name__ == "__main__":
    sys.exit(run("08 · pools compared", story, __doc__ or ""))
