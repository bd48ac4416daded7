"""Two workers, one queue: competing consumers, a broadcast, and a warm stop.

Two worker nodes, `a@%h` and `b@%h`, both consume `celery`. Nobody deals the messages out:
each MainProcess BRPOPs and Redis hands each message to one of them. A control command is
the opposite, a broadcast every worker answers. Then one worker is stopped while it works,
and a third, stopped while it holds reserved messages, puts them back for the others.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time

from celery.result import AsyncResult

from demo import names
from demo.inspectors import pool_processes, unacked
from demo.render import tables as ev
from demo.scenes import pools
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run
from demo.stack import control
from demo.stack.procs import log_lines
from demo.stack.worker import Worker
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import TraceEvent, args_of, at, key_of, pid_of

ADDS, LATE_ADDS, SLOW_S = 20, 6, 5.0
LATE_OFFSET = 100  # the late adds are add(n, 100)
NODES, FLAGS, QUEUE = ("a", "b"), ["-c", "2"], names.DEFAULT_QUEUE
ADD, SLOW = "envoi_mails.add", "envoi_mails.slow"
RESULT_S, HOP_S = 30, 15  # how long to wait for a result, a hop (and a worker to stop)
HOLDER, PARKED = "c", "parked"  # step 7's worker and its own queue
HELD_SLOW_S, HELD_ADDS = 2.0, 3  # step 7: slow(2) runs, three adds wait reserved behind it
ADD_LABELS = [f"add #{n}" for n in range(1, HELD_ADDS + 1)]
HOLDS = (PARKED, names.UNACKED, names.UNACKED_INDEX)  # where a restore reads and writes
RESTORING = f"Restoring {HELD_ADDS} unacknowledged message(s)"  # kombu's log line as it does


def workers(s: Scenario) -> dict[str, Worker]:
    """Node name -> its worker, as step 1 started them."""
    return {w.nodename: w for w in map(s.worker, NODES)}


def running_slow(s: Scenario) -> tuple[TraceEvent, Worker, Worker]:
    """slow's task.prerun, the worker whose child runs it, and the other one."""
    (slow_id,) = s.published(SLOW)
    return pools.busy_and_idle(s.timeline, slow_id, workers(s).values(), timeout=HOP_S)


def two_workers(s: Scenario) -> None:
    with s.step(
        "1. Two workers on the same queue",
        "`celery -A envoi_mails worker -n a@%h -c 2` and the same with `-n b@%h`: two nodes, "
        "each a MainProcess with two children, both blocking on the list `celery`.",
    ):
        started = [s.start_worker(n, FLAGS) for n in NODES]
        asks = [
            s.timeline.wait_for(command="BRPOP", key=QUEUE, pid=w.pid, timeout=HOP_S, what="BRPOP")
            for w in started
        ]
        s.show(ev.commands_table(asks, "each MainProcess asks Redis for the next message"))
        s.expect(
            "both MainProcesses BRPOP the same lists", args_of(asks[0])[1:] == args_of(asks[1])[1:]
        )


def competing_consumers(s: Scenario) -> None:
    from envoi_mails import add

    mains = {node: w.pid for node, w in workers(s).items()}
    with s.step(
        f"2. {ADDS} adds: competing consumers",
        f"{ADDS} × `add.delay(n, n)`. Celery has no dispatcher: Redis gives each message to the "
        "client blocked longest in BRPOP, and a worker BRPOPs again as soon as it has taken "
        "one, while its prefetch window (2 × 4) has room.",
    ):
        sent = [add.delay(n, n) for n in range(ADDS)]
        values = [x.get(timeout=RESULT_S) for x in sent]
        ids = [x.id for x in sent]
        # The MainProcesses' task.received hops may land after their children's.
        runs = {
            life.task_id: life["task.prerun"]
            for life in s.timeline.wait_lives(ids, timeout=RESULT_S)
        }
        events = s.timeline.events()
        got = {
            t: [e["pid"] for e in q.select(events, event="task.received", task_id=t)] for t in ids
        }
        s.show(pools.share_table(events, mains, ids, f"who took the {ADDS} messages"))
        per = {p: sum(p in pids for pids in got.values()) for p in mains.values()}
        s.expect(
            "each message was received exactly once overall, by one of the two",
            all(len(pids) == 1 and pids[0] in per for pids in got.values()),
        )
        s.expect("both workers got some", min(per.values()) > 0, f"{per}")
        s.expect(
            "each ran in a child of the worker that received it, and returned n + n",
            all(run is not None and run.get("ppid") == got[t][0] for t, run in runs.items())
            and values == [2 * n for n in range(ADDS)],
        )
        s.show(s.flower("tasks"))


def a_broadcast(s: Scenario) -> None:
    mains, me = {node: w.pid for node, w in workers(s).items()}, os.getpid()
    with s.step(
        "3. A broadcast: `inspect().ping()`",
        "A control command is PUBLISHed on the pub/sub channel `/0.celery.pidbox`, which every "
        "worker's MainProcess PSUBSCRIBEd. Each answers by LPUSHing onto the caller's own list, "
        "`<oid>.reply.celery.pidbox`, that the caller BRPOPs. `limit=2`: without it, a broadcast "
        "waits its whole timeout, since it cannot know how many workers will answer.",
    ):
        pongs, cast = pools.inspect(s.timeline, s.stack.env, "ping", workers=len(mains))
        seen = sorted([cast.event, *cast.replies, *cast.reads], key=lambda e: e["ts"])
        body = {k: cast.body.get(k) for k in ("method", "destination", "reply_to")}
        s.show(ev.commands_table(seen, "the broadcast"), f"the command it carried: {body}")
        subscribed = s.timeline.select(command="PSUBSCRIBE", key=names.pidbox_channel())
        s.expect(
            "both MainProcesses PSUBSCRIBEd /0.celery.pidbox when they started",
            set(mains.values()) <= {e["pid"] for e in subscribed},
        )
        s.expect("both nodes answered pong", pongs == {n: {"ok": "pong"} for n in mains})
        s.expect(
            "this process PUBLISHed the command, to everyone (no destination)",
            cast.pid == me and cast.body.get("destination") is None,
        )
        s.expect(
            "each MainProcess LPUSHed one reply onto <oid>.reply.celery.pidbox",
            sorted(e["pid"] or 0 for e in cast.replies) == sorted(mains.values()),
        )
        s.expect(
            "this process read the replies from that list (BRPOP)",
            bool(cast.reads) and {e["pid"] for e in cast.reads} == {me},
        )


def active_while_slow(s: Scenario) -> AsyncResult:
    from envoi_mails import slow

    mains = {node: w.pid for node, w in workers(s).items()}
    with s.step(
        f"4. `inspect().active()` while slow({SLOW_S:g}) runs",
        "The MainProcess answers control commands itself, even while its child is busy: "
        "`active` lists the task and the pid of the child running it.",
    ):
        job = slow.delay(SLOW_S)
        pre, busy, idle = running_slow(s)
        active, cast = pools.inspect(s.timeline, s.stack.env, "active", workers=len(mains))
        listed = {n: [(t["id"], t["worker_pid"]) for t in tasks] for n, tasks in active.items()}
        s.show(ev.commands_table([cast.event, *cast.replies], "active"), f"active: {listed}")
        s.expect(
            "the busy worker lists the task and the pid of the child running it",
            listed.get(busy.nodename) == [(job.id, pre["pid"])],
            f"{busy.nodename}: child {pre['pid']}",
        )
        s.expect("the idle worker lists nothing", listed.get(idle.nodename) == [])
        s.expect(
            "both MainProcesses answered, the busy one included",
            sorted(e["pid"] or 0 for e in cast.replies) == sorted(mains.values()),
        )
    return job


def warm_stop(s: Scenario, job: AsyncResult) -> None:
    from envoi_mails import add

    tl, (pre, busy, _) = s.timeline, running_slow(s)
    with s.step(
        "5. Stop the busy worker warm (SIGTERM) while slow runs",
        f"`worker.stop()` sends SIGTERM to {busy.name}@'s MainProcess: a warm shutdown. It stops "
        "consuming (cancels its task consumer), sends `worker-offline`, lets its busy child "
        "finish, then exits. Monitors such as Flower call it offline from that moment on.",
    ):
        kids = pool_processes(busy.pid).child_pids
        stopper = threading.Thread(target=busy.stop, daemon=True)
        stopper.start()
        offline = tl.wait_for(
            command="PUBLISH",
            key_suffix=names.OFFLINE_SUFFIX,
            pid=busy.pid,
            timeout=HOP_S,
            what=f"{busy.name}@ going offline",
        )
        last = res.wait_stops_asking(tl, busy.pid, queue=QUEUE, timeout=HOP_S)  # BRPOP expired
        late = [add.delay(n, LATE_OFFSET) for n in range(LATE_ADDS)]  # for step 6
        outcome = job.get(timeout=RESULT_S)
        for x in late:
            x.get(timeout=RESULT_S)
        stopper.join(timeout=RESULT_S)
        tl.settle()
        events = tl.events()
        stop = pools.WarmStop.read(events, offline, job.id)
        wrote = q.first(events, command="SETEX", key=names.result_key(job.id))
        said = log_lines(busy.log, "Warm shutdown")
        ended = stop.postrun["ts"] if stop.postrun else None
        s.show(stop.table(), f"its log file: {said}")
        s.expect(
            "it went offline (PUBLISH worker-offline) while its child still ran slow",
            ended is not None and offline["ts"] < ended,
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
            ended is not None
            and stop.shutdown is not None
            and ended < stop.shutdown["ts"]
            and busy.proc is not None
            and busy.proc.returncode == 0,
        )
        idle_kids = [k for k in kids if k != pre["pid"]]
        s.expect(
            "its idle child left at once, the busy one only after slow ended",
            ended is not None
            and all(stop.exits.get(k, float("inf")) < ended for k in idle_kids)
            and stop.exits.get(pre["pid"] or 0, float("-inf")) > ended,
        )
        s.expect("it printed `worker: Warm shutdown (MainProcess)`", bool(said))


def the_other_keeps_consuming(s: Scenario) -> None:
    tl, (pre, busy, idle) = s.timeline, running_slow(s)
    with s.step(
        "6. The other worker keeps consuming",
        f"{LATE_ADDS} adds were published once {busy.name}@ had stopped asking: only {idle.name}@ "
        "BRPOPs `celery` now, so it takes them all, while the other still finishes its task.",
    ):
        late = s.published(ADD, count=ADDS + LATE_ADDS)[ADDS:]
        lives = tl.wait_lives(late, timeout=RESULT_S)
        events = tl.events()
        offline = q.first(events, command="PUBLISH", key_suffix=names.OFFLINE_SUFFIX, pid=busy.pid)
        ended = q.first(events, event="task.postrun", task_id=pre.get("task_id"))
        rows = {f"add #{n}": life for n, life in enumerate(lives, 1)}
        s.show(pools.lives_table(rows, at(offline), "seconds after worker-offline"))
        got = [[e["pid"] for e in q.select(events, event="task.received", task_id=t)] for t in late]
        runs = [life["task.prerun"] for life in lives]
        s.expect(
            "each was received once, by the other worker's MainProcess, and ran in its children",
            all(pids == [idle.pid] for pids in got)
            and all(run is not None and run.get("ppid") == idle.pid for run in runs),
        )
        returned = [q.returned(events, t) for t in late]
        s.expect("they returned n + 100", returned == [n + LATE_OFFSET for n in range(LATE_ADDS)])
        s.expect(
            "they ran while the stopped worker was still finishing slow",
            ended is not None and max(at(life["task.postrun"]) for life in lives) < ended["ts"],
        )
        s.show(s.flower(f"worker/{idle.nodename}"))


def gives_back_what_it_reserved(s: Scenario) -> None:
    from envoi_mails import add, slow

    tl, (_, _, other) = s.timeline, running_slow(s)
    with s.step(
        "7. A warm stop puts its reserved messages back",
        f"A third worker, `{HOLDER}@%h -c 1 -Q {PARKED}`, runs `slow({HELD_SLOW_S:g})` and "
        f"reserves the {HELD_ADDS} `add` published behind it (`unacked`). {other.name}@ joins "
        f"`{PARKED}` (`add_consumer`); then SIGTERM reaches the holder. It finishes slow, and as "
        "it closes its broker connection kombu pushes every message it reserved but never "
        "started back onto the queue, marked `redelivered` (`QoS.restore_unacked_once`: Redis "
        "restores at shutdown). The other worker runs them.",
    ):
        holder = s.start_worker(HOLDER, ["-c", "1", "-Q", PARKED])
        long = slow.apply_async((HELD_SLOW_S,), queue=PARKED)
        held = [add.apply_async((n, n), queue=PARKED).id for n in range(HELD_ADDS)]
        tl.wait_for(event="task.prerun", task_id=long.id, timeout=HOP_S, what="slow starting")
        tl.wait_until(
            event="task.received",
            pid=holder.pid,
            count=1 + HELD_ADDS,
            timeout=HOP_S,
            what="the adds reserved",
        )
        reserved = {e.message.task_id for e in unacked(s.redis).entries} & set(held)
        listed = s.redis.llen(PARKED)
        control.add_consumer(s.stack.env, other.nodename, PARKED, timeout=HOP_S)
        since = time.time()
        holder.stop()  # SIGTERM to its MainProcess, then wait until it has exited
        tl.wait_lives(held, timeout=RESULT_S)
        tl.settle()
        events, left = tl.events(), {e.message.task_id for e in unacked(s.redis).entries}
        back = msg.pushes(events, set(held), pid=holder.pid, since=since)
        ended = q.life(events, long.id)["task.postrun"]
        # The lives that began once the messages were back on the queue.
        again = q.lives(q.since(events, min(p.ts for p in back)) if back else [], held)
        restore = [e for e in q.select(events, pid=holder.pid, since=since) if key_of(e) in HOLDS]
        said = q.first(events, event=names.LOG, pid=holder.pid, containing="Restoring")
        s.show(
            ev.commands_table(restore, "the holder's MainProcess, as it closed its connection"),
            pools.lives_table(
                dict(zip(ADD_LABELS, again, strict=False)),
                since,
                "after SIGTERM, once back on the queue",
            ),
            f"its log: {said.get('message') if said else 'nothing'}",
        )
        s.expect(
            f"at SIGTERM it held the {HELD_ADDS} adds reserved in `unacked`, none left in "
            f"`{PARKED}`, none started",
            reserved == set(held)
            and listed == 0
            and not q.ran_by(q.select(events, until=since), held),
        )
        s.expect(
            "once slow had ended, its MainProcess pushed each back onto the queue (RPUSH), "
            f"marked redelivered, and logged `{RESTORING}`",
            # Sets: a restore is a transaction WATCHing `unacked`; when the other worker's
            # reservation changes it before EXEC, Redis drops it and redis-py sends it again.
            {p.task_id for p in back} == set(held)
            and all(p.redelivered and p.ts > at(ended) for p in back)
            and said is not None
            and said.get("message") == RESTORING,
            f"{len(back)} pushes by pid {holder.pid}",
        )
        s.expect("`unacked` holds none of them afterwards", not left & set(held))
        s.expect(
            "the other worker's MainProcess received them then, and its children ran them",
            all(x.worker_pid == other.pid and x.child_pid in other.children() for x in again),
        )


def story(s: Scenario) -> None:
    # Build the app first, as any client does: from then on this process records its own
    # Redis commands, as a client.
    importlib.import_module("envoi_mails.instance")
    two_workers(s)
    competing_consumers(s)
    a_broadcast(s)
    # Only slow's result handle goes on: a dropped AsyncResult unsubscribes from its result
    # channel (AsyncResult.__del__), and the trace would show it.
    slow = active_while_slow(s)
    warm_stop(s, slow)
    the_other_keeps_consuming(s)
    gives_back_what_it_reserved(s)


if __name__ == "__main__":
    sys.exit(run("09 · two workers", story, __doc__ or ""))
