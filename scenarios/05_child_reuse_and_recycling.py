"""No process per task: pool children are reused, and replaced only when told to.

Twenty tasks on a `-c 2` worker run in the two children forked at start. A second worker,
with `--max-tasks-per-child 3`, retires each child after its third task and forks a new one.
A third, with `--autoscale 3,1`, starts with one child and forks two more for a backlog.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from demo import names
from demo.render import tables as ev
from demo.scenes import processes as proc
from demo.scenes.frame import Scenario, run
from demo.stack.worker import Worker
from demo.trace import query as q
from demo.trace.event import at

RUNS, BATCH, MAX_TASKS, QUEUE = 20, 12, 3, "recycle"
WORKER, RECYCLER, CHILDREN = "celery", "recycler", 2
BATCH_S = 0.2  # each task of step 3's batch: slow(0.2)
SOON_S = 10  # how long a hop that follows at once may take to be seen
TASK_S = 30  # how long a batch of tasks may take, from publish to result
REPLACED_S = 15  # how long the MainProcess may take to fork the replacements
SCALER, SCALE_QUEUE, SCALE_MAX, SCALE_MIN = "scaler", "scale", 3, 1
BACKLOG, BACKLOG_S = 9, 0.3  # step 5's backlog: 9 × slow(0.3)


def batch_start(s: Scenario) -> float:
    """When step 3 began publishing its batch: the first task.publishing on QUEUE."""
    first = s.timeline.wait_for(
        event="task.publishing", routing_key=QUEUE, timeout=SOON_S, what="the batch"
    )
    return first["ts"]


def started(s: Scenario, name: str, extra: list[str]) -> tuple[Worker, list[int]]:
    """Start worker `name`; it and its boot children, once each child has said child.init."""
    worker = s.start_worker(name, extra=extra)
    boot = worker.children()
    s.timeline.wait_until(
        event="child.init", ppid=worker.pid, count=len(boot), timeout=SOON_S, what="child.init"
    )
    return worker, boot


def slow_batch(s: Scenario, queue: str, count: int, seconds: float) -> dict[str, int]:
    """`count` × slow(seconds) on `queue`, all published before any result is awaited:
    task id -> the pid each task returned, once every task's life is on the timeline."""
    from envoi_mails import slow

    results = [slow.apply_async(args=[seconds], queue=queue) for _ in range(count)]
    said = {r.id: int(r.get(timeout=TASK_S)["pid"]) for r in results}
    s.timeline.wait_lives(said, timeout=TASK_S)
    return said


def step_1(s: Scenario) -> None:
    with s.step(
        "1. A worker with two children",
        "`celery -A envoi_mails worker --loglevel=info -c 2`: the MainProcess forks its two "
        "children now, before any task exists.",
    ):
        worker = s.start_worker(WORKER, extra=["-c", str(CHILDREN)])
        boot = worker.children()
        s.timeline.wait_until(
            event="child.init", ppid=worker.pid, count=len(boot), timeout=SOON_S, what="child.init"
        )
        s.show(ev.process_table(worker.pid))
        s.expect("the OS shows 2 children under the worker", len(boot) == CHILDREN, f"{boot}")


def step_2(s: Scenario) -> None:
    from envoi_mails import whoami

    tl, worker = s.timeline, s.worker(WORKER)
    with s.step(
        f"2. {RUNS} tasks, the same two processes",
        f"{RUNS} × `whoami.delay()`. A prefork child runs one task after another in a loop "
        "(billiard's `Worker.workloop`): nothing is forked for a task. `whoami` also counts "
        "its calls in a module global, and each child has its own copy of it.",
    ):
        boot = sorted(c.pid for c in q.children(tl.events(), worker.pid))  # forked in step 1
        since = time.time()
        results = [whoami.delay() for _ in range(RUNS)]
        said = {r.id: r.get(timeout=TASK_S) for r in results}
        tl.wait_lives(said, timeout=TASK_S)
        events = tl.events()
        ran = q.ran_by(events, said)
        children = q.children(events, worker.pid)
        s.show(
            proc.children_table(children, since, time.time(), worker.children(), "tasks per child")
        )
        s.expect(
            "every task ran in one of the 2 boot children",
            set(ran.values()) <= set(boot),
            f"{dict(Counter(ran.values()))}",
        )
        s.expect(
            "each task says so itself: its pid is its task.prerun's, its parent the worker",
            all(said[t]["pid"] == ran[t] and said[t]["ppid"] == worker.pid for t in said),
        )
        forked = q.select(events, event="child.init", ppid=worker.pid, since=since)
        s.expect(
            "no child.init during the run: no process was forked", not forked, f"{len(forked)}"
        )
        s.expect("the OS children are the same two", worker.children() == boot)
        nth: dict[int, list[int]] = {}
        for answer in said.values():
            nth.setdefault(int(answer["pid"]), []).append(int(answer["nth_here"]))
        s.expect(
            "each child counts its tasks in its own copy of a module global: 1, 2, … in each, "
            "never the other's numbers (no memory is shared)",
            all(sorted(n) == list(range(1, len(n) + 1)) for n in nth.values()),
            f"{ {pid: sorted(n) for pid, n in nth.items()} }",
        )


def step_3(s: Scenario) -> None:
    tl = s.timeline
    with s.step(
        f"3. A worker that retires children after {MAX_TASKS} tasks",
        f"`… -c 2 --max-tasks-per-child {MAX_TASKS} -Q {QUEUE}`: billiard's child loop returns "
        f"after {MAX_TASKS} tasks and the process exits; the MainProcess reaps it and forks a "
        f"replacement (`maintain_pool`). {BATCH} × `slow(0.2)` on `{QUEUE}` keep both busy.",
    ):
        extra = ["-c", str(CHILDREN), "--max-tasks-per-child", str(MAX_TASKS), "-Q", QUEUE]
        recycler, first = started(s, RECYCLER, extra)
        said = slow_batch(s, QUEUE, BATCH, BATCH_S)
        since, ran = batch_start(s), q.ran_by(tl.events(), said)
        counts = Counter(ran.values())
        retired = [pid for pid, n in counts.items() if n == MAX_TASKS]
        # Each retired child is reaped, then replaced: wait for that many new children.
        tl.wait_until(
            event="child.init",
            ppid=recycler.pid,
            since=since,
            count=len(retired),
            timeout=REPLACED_S,
            what="a replacement child",
        )
        events = tl.events()
        inits = {e["pid"]: e["ts"] for e in q.select(events, event="child.init", ppid=recycler.pid)}
        s.show(proc.tasks_table(list(said), events, said))
        s.expect(
            f"no child ran more than {MAX_TASKS} tasks",
            max(counts.values()) <= MAX_TASKS,
            f"{dict(counts)}",
        )
        s.expect(
            "each task ran in a child of this worker, and its own pid says which",
            all(said[t] == ran[t] and ran[t] in inits for t in said),
        )
        new = sorted(set(ran.values()) - set(first))
        first_run = {p: at(q.first(events, event="task.prerun", pid=p)) for p in new}
        s.expect(
            "new children ran tasks, each announced by its own child.init first",
            bool(new) and all(since < inits[p] < first_run[p] for p in new),
            f"new: {new}",
        )


def step_4(s: Scenario) -> None:
    tl, recycler = s.timeline, s.worker(RECYCLER)
    with s.step(
        "4. The children over time",
        "Each child's `child.init` (worker_process_init) and `child.shutdown` "
        "(worker_process_shutdown, sent as it exits), and what the OS says now.",
    ):
        since = batch_start(s)
        events, now, alive = tl.events(), time.time(), recycler.children()
        children = q.children(events, recycler.pid)
        s.show(proc.children_table(children, since, now, alive))
        first = [c.pid for c in children if c.born < since]
        retired = sorted(c.pid for c in children if len(c.tasks) == MAX_TASKS)
        born = [c.pid for c in children if c.born > since]
        gone = {c.pid for c in children if c.left is not None}
        s.expect(
            f"each child that ran {MAX_TASKS} tasks sent child.shutdown and is gone from the OS",
            all(p in gone and p not in alive for p in retired),
            f"retired: {retired}",
        )
        s.expect(
            "exactly one new child per retired child", len(born) == len(set(born)) == len(retired)
        )
        s.expect(
            "the boot children are gone; the pool is back to 2, all forked during the run",
            not set(first) & set(alive) and len(alive) == CHILDREN and set(alive) <= set(born),
            f"OS now: {alive}",
        )
        told = [
            e.get("message", "")
            for e in q.select(events, event=names.LOG, pid=recycler.pid, since=since)
            if not e.get("message", "").endswith(" received")
        ]
        s.expect("at INFO the worker's log says nothing of it", not told, f"{told[:2]}")
        s.show(s.flower(f"worker/{recycler.nodename}"))


def step_5(s: Scenario) -> None:
    with s.step(
        f"5. --autoscale {SCALE_MAX},{SCALE_MIN}: children forked for a backlog",
        f"`… --autoscale {SCALE_MAX},{SCALE_MIN} -Q {SCALE_QUEUE} --without-mingle`: the pool "
        f"starts with {SCALE_MIN} child and may grow to {SCALE_MAX}. On every task message, "
        "and every 30 s (`keepalive`), the autoscaler compares the tasks the worker holds "
        "(received, not yet finished) with its processes: more tasks, it forks up to "
        f"{SCALE_MAX} (`Autoscaler._maybe_scale`); fewer, it ends idle children, but only "
        f"after 30 s with no task received and no scale-up. {BACKLOG} × `slow({BACKLOG_S})` "
        f"on `{SCALE_QUEUE}` make a backlog. (`--without-mingle`: no start-up sync with "
        "the other workers, a second saved.)",
    ):
        extra = ["--autoscale", f"{SCALE_MAX},{SCALE_MIN}", "-Q", SCALE_QUEUE, "--without-mingle"]
        scaler, boot = started(s, SCALER, extra)
        since = time.time()
        said = slow_batch(s, SCALE_QUEUE, BACKLOG, BACKLOG_S)
        events, now, alive = s.timeline.events(), time.time(), scaler.children()
        children, ups = (
            q.children(events, scaler.pid),
            proc.scale_ups(events, scaler.pid, len(boot)),
        )
        s.show(proc.scale_table(ups, since), proc.children_table(children, since, now, alive))
        s.expect(
            f"the pool starts with {SCALE_MIN} child, the minimum",
            len(boot) == SCALE_MIN,
            f"{boot}",
        )
        s.expect(
            "each scale-up came on a task message, while the worker held more tasks (received, "
            "not finished) than it had processes",
            bool(ups) and all(u.after.endswith(" received") and u.held > u.before for u in ups),
            f"{[(u.held, u.before) for u in ups]}",
        )
        new = [c for c in children if c.pid not in boot]
        waiting = {c.pid: q.held(events, scaler.pid, c.born, "task.prerun") for c in new}
        s.expect(
            "each new child was forked while received tasks were still waiting to start",
            bool(new) and all(waiting.values()),
            f"tasks waiting at each fork: {waiting}",
        )
        peak = max(
            q.held(events, scaler.pid, e["ts"])
            for e in q.select(events, event="task.received", pid=scaler.pid)
        )
        s.expect(
            f"the pool grew to {SCALE_MAX} and no further ({SCALE_MAX} child.init in all, so "
            f"never more than {SCALE_MAX} alive), though the worker held more tasks than that",
            len(children) == SCALE_MIN + sum(u.grew for u in ups) == SCALE_MAX < peak,
            f"children: {[c.pid for c in children]}, tasks held at most: {peak}",
        )
        ran = q.ran_by(events, said)
        counts = Counter(ran.values())
        s.expect(
            f"{SCALE_MAX} processes for {BACKLOG} tasks: each child ran several, each task "
            "in a child of this worker, as its own pid says",
            all(said[t] == ran[t] for t in said)
            and set(counts) == {c.pid for c in children}
            and min(counts.values()) > 1,
            f"{dict(counts)}",
        )
        s.expect(
            f"after the backlog the {SCALE_MAX} children are still there: scaling down waits "
            "30 s with no task received (keepalive)",
            sorted(alive) == sorted(c.pid for c in children)
            and not q.select(events, event="child.shutdown", ppid=scaler.pid),
            f"OS now: {alive}",
        )


def story(s: Scenario) -> None:
    for step in (step_1, step_2, step_3, step_4, step_5):
        step(s)


if __name__ == "__main__":
    sys.exit(run("05 · child reuse and recycling", story, __doc__ or ""))
