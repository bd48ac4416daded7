"""Two workers, one queue: competing consumers, a broadcast, and a warm stop.

Two worker nodes, `a@%h` and `b@%h`, both consume `celery`. Nobody deals the messages out:
each MainProcess BRPOPs and Redis hands each message to one of them. A control command is
the opposite, a broadcast every worker answers. Then one worker is stopped while it works.
"""

from __future__ import annotations

import os
import sys
import threading

import redis

from demo.inspectors import pool_processes
from demo.render import tables as ev
from demo.scenes import pools
from demo.scenes import processes as proc
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run
from demo.trace.event import pid_of

ADDS, LATE_ADDS, SLOW = 20, 6, 5.0


def story(s: Scenario) -> None:
    from envoi_mails import add, slow

    tl, me, r = s.timeline, os.getpid(), redis.Redis.from_url(s.stack.broker_url)
    with s.step(
        "1. Two workers on the same queue",
        "`celery -A envoi_mails worker -n a@%h -c 2` and the same with `-n b@%h`: two nodes, "
        "each a MainProcess with two children, both blocking on the list `celery`.",
    ):
        w = {n: s.start_worker(n, ["-c", "2"]) for n in ("a", "b")}
        mains = {wk.nodename: wk.pid for wk in w.values()}
        asks = [pools.wait_brpop(tl, wk.pid, "celery") for wk in w.values()]
        s.show(ev.commands_table(asks, "each MainProcess asks Redis for the next message"))
        s.expect(
            "both MainProcesses BRPOP the same lists",
            asks[0]["command"][1:] == asks[1]["command"][1:],
        )

    with s.step(
        f"2. {ADDS} adds: competing consumers",
        f"{ADDS} × `add.delay(n, n)`. Celery has no dispatcher: Redis gives each message to the "
        "client blocked longest in BRPOP, and a worker BRPOPs again as soon as it has taken "
        "one, while its prefetch window (2 × 4) has room.",
    ):
        sent = [add.delay(n, n) for n in range(ADDS)]
        values = [x.get(timeout=30) for x in sent]
        ids = [x.id for x in sent]
        ran = proc.wait_ran(tl, ids)
        for t in ids:  # the MainProcesses' hops may land after their children's
            tl.wait_for(res.is_hop("task.received", t), timeout=10, what="the task.received hop")
        events = tl.events()
        got, ppid = pools.received_by(events, ids), pools.parents(events)
        s.show(pools.share_table(mains, got, ran, ppid, f"who took the {ADDS} messages"))
        per = {p: sum(p in pids for pids in got.values()) for p in mains.values()}
        s.expect(
            "each message was received exactly once overall, by one of the two",
            all(len(pids) == 1 and pids[0] in per for pids in got.values()),
        )
        s.expect("both workers got some", min(per.values()) > 0, f"{per}")
        s.expect(
            "each ran in a child of the worker that received it, and returned n + n",
            all(ppid.get(ran[t]) == got[t][0] for t in ids)
            and values == [2 * n for n in range(ADDS)],
        )
        s.show(s.flower("tasks"))

    with s.step(
        "3. A broadcast: `inspect().ping()`",
        "A control command is PUBLISHed on the pub/sub channel `/0.celery.pidbox`, which every "
        "worker's MainProcess PSUBSCRIBEd. Each answers by LPUSHing onto the caller's own list, "
        "`<oid>.reply.celery.pidbox`, that the caller BRPOPs. `limit=2`: without it, a broadcast "
        "waits its whole timeout, since it cannot know how many workers will answer.",
    ):
        pongs, cast = pools.inspect(tl, r, s.stack.env, "ping", len(w))
        seen = sorted([cast.publish, *cast.replies, *cast.reads], key=pools.ts)
        body = {k: cast.body.get(k) for k in ("method", "destination", "reply_to")}
        s.show(ev.commands_table(seen, "the broadcast"), f"the command it carried: {body}")
        listening = {
            e["pid"] for e in tl.events() if proc.is_command(e, "PSUBSCRIBE", pools.PIDBOX)
        }
        s.expect(
            "both MainProcesses PSUBSCRIBEd /0.celery.pidbox when they started",
            set(mains.values()) <= listening,
        )
        s.expect("both nodes answered pong", pongs == {n: {"ok": "pong"} for n in mains})
        s.expect(
            "this process PUBLISHed the command, to everyone (no destination)",
            cast.publish["pid"] == me and cast.body.get("destination") is None,
        )
        s.expect(
            "each MainProcess LPUSHed one reply onto <oid>.reply.celery.pidbox",
            sorted(e["pid"] or 0 for e in cast.replies) == sorted(mains.values()),
        )
        s.expect(
            "this process read the replies from that list (BRPOP)",
            bool(cast.reads) and {e["pid"] for e in cast.reads} == {me},
        )

    with s.step(
        f"4. `inspect().active()` while slow({SLOW:g}) runs",
        "The MainProcess answers control commands itself, even while its child is busy: "
        "`active` lists the task and the pid of the child running it.",
    ):
        job = slow.delay(SLOW)
        pre = tl.wait_for(res.is_hop("task.prerun", job.id), timeout=15, what="slow starting")
        busy = next(n for n, wk in w.items() if wk.pid == pre["ppid"])
        other = "b" if busy == "a" else "a"
        active, cast = pools.inspect(tl, r, s.stack.env, "active", len(w))
        listed = {n: [(t["id"], t["worker_pid"]) for t in tasks] for n, tasks in active.items()}
        s.show(ev.commands_table([cast.publish, *cast.replies], "active"), f"active: {listed}")
        s.expect(
            "the busy worker lists the task and the pid of the child running it",
            listed.get(w[busy].nodename) == [(job.id, pre["pid"])],
            f"{w[busy].nodename}: child {pre['pid']}",
        )
        s.expect("the idle worker lists nothing", listed.get(w[other].nodename) == [])
        s.expect(
            "both MainProcesses answered, the busy one included",
            sorted(e["pid"] or 0 for e in cast.replies) == sorted(mains.values()),
        )

    with s.step(
        "5. Stop the busy worker warm (SIGTERM) while slow runs",
        f"`worker.stop()` sends SIGTERM to {busy}@'s MainProcess: a warm shutdown. It stops "
        "consuming (cancels its task consumer), sends `worker-offline`, lets its busy child "
        "finish, then exits. Monitors such as Flower call it offline from that moment on.",
    ):
        stopping, kids = w[busy], pool_processes(w[busy].pid).child_pids
        stopper = threading.Thread(target=stopping.stop, daemon=True)
        stopper.start()
        offline = tl.wait_for(
            pools.offline_of(stopping.pid), timeout=15, what=f"{busy}@ going offline"
        )
        last = res.wait_quiet(tl, r, stopping.pid, "celery")  # its last BRPOP has expired
        late = [add.delay(n, 100) for n in range(LATE_ADDS)]  # for step 6
        outcome, late_values = job.get(timeout=30), [x.get(timeout=30) for x in late]
        stopper.join(30)
        tl.settle()
        events = tl.events()
        stop, wrote = pools.WarmStop.read(events, offline, job.id), pools.setex(events, job.id)
        said = pools.log_lines(stopping.log, "Warm shutdown")
        s.show(stop.table(), f"its log file: {said}")
        s.expect(
            "it went offline (PUBLISH worker-offline) while its child still ran slow",
            offline["ts"] < pools.ts(stop.postrun),
        )
        s.expect(
            "… and it sent no BRPOP after that: it took no more messages", last < offline["ts"]
        )
        s.expect(
            "slow finished: SUCCESS, written by the child that ran it",
            job.state == "SUCCESS" and outcome["pid"] == pid_of(wrote) == pre["pid"],
        )
        s.expect(
            "task.postrun came before the worker's shutdown hop; it exited with code 0",
            0 < pools.ts(stop.postrun) < pools.ts(stop.shutdown)
            and stopping.proc is not None
            and stopping.proc.returncode == 0,
        )
        idle = [k for k in kids if k != pre["pid"]]
        s.expect(
            "its idle child left at once, the busy one only after slow ended",
            all(stop.exits.get(k, 1e18) < pools.ts(stop.postrun) for k in idle)
            and stop.exits.get(pre["pid"] or 0, 0) > pools.ts(stop.postrun),
        )
        s.expect("it printed `worker: Warm shutdown (MainProcess)`", bool(said))

    with s.step(
        "6. The other worker keeps consuming",
        f"{LATE_ADDS} adds were published once {busy}@ had stopped asking: only {other}@ BRPOPs "
        "`celery` now, so it takes them all, while the other still finishes its task.",
    ):
        ids = [x.id for x in late]
        rows = pools.wait_runs(tl, {t: f"add #{n}" for n, t in enumerate(ids, 1)}, 30)
        events = tl.events()
        got, ppid = pools.received_by(events, ids), pools.parents(events)
        s.show(pools.runs_table(rows.values(), offline["ts"], "seconds after worker-offline"))
        s.expect(
            "each was received once, by the other worker's MainProcess, and ran in its children",
            all(pids == [w[other].pid] for pids in got.values())
            and all(ppid.get(row.ran_in) == w[other].pid for row in rows.values()),
        )
        s.expect("they returned n + 100", late_values == [n + 100 for n in range(LATE_ADDS)])
        s.expect(
            "they ran while the stopped worker was still finishing slow",
            max(row.ended for row in rows.values()) < pools.ts(stop.postrun),
        )
        s.show(s.flower(f"worker/{w[other].nodename}"))


if __name__ == "__main__":
    sys.exit(run("09 · two workers", story, __doc__ or ""))
