"""No process per task: pool children are reused, and replaced only when told to.

Twenty tasks on a `-c 2` worker run in the two children forked at start. A second worker,
with `--max-tasks-per-child 3`, retires each child after its third task and forks a new one.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from demo.render import tables as ev
from demo.scenes import processes as proc
from demo.scenes.frame import Scenario, run
from demo.trace import query as q

RUNS, BATCH, MAX_TASKS, QUEUE = 20, 12, 3, "recycle"


def story(s: Scenario) -> None:
    from envoi_mails import slow, whoami

    tl = s.timeline
    with s.step(
        "1. A worker with two children",
        "`celery -A envoi_mails worker --loglevel=info -c 2`: the MainProcess forks its two "
        "children now, before any task exists.",
    ):
        worker = s.start_worker(extra=["-c", "2"])
        boot = worker.children()
        for pid in boot:
            proc.wait_hop(tl, "child.init", pid)
        s.show(ev.process_table(worker.pid))
        s.expect("the OS shows 2 children under the worker", len(boot) == 2, f"{boot}")

    with s.step(
        f"2. {RUNS} tasks, the same two processes",
        f"{RUNS} × `whoami.delay()`. A prefork child runs one task after another in a loop "
        "(billiard's `Worker.workloop`): nothing is forked for a task. `whoami` also counts "
        "its calls in a module global, and each child has its own copy of it.",
    ):
        since = time.time()
        results = [whoami.delay() for _ in range(RUNS)]
        said = {r.id: r.get(timeout=30) for r in results}
        ran = proc.wait_ran(tl, list(said))
        events = tl.events()
        children = proc.lives(events, worker.pid)
        s.show(proc.lives_table(children, since, time.time(), worker.children(), "tasks per child"))
        s.expect(
            "every task ran in one of the 2 boot children",
            set(ran.values()) <= set(boot),
            f"{dict(Counter(ran.values()))}",
        )
        s.expect(
            "each task says so itself: its pid is its task.prerun's, its parent the worker",
            all(said[t]["pid"] == ran[t] and said[t]["ppid"] == worker.pid for t in said),
        )
        forked = [e for e in proc.child_hops(events, worker.pid) if e["ts"] > since]
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

    with s.step(
        f"3. A worker that retires children after {MAX_TASKS} tasks",
        f"`… -c 2 --max-tasks-per-child {MAX_TASKS} -Q {QUEUE}`: billiard's child loop returns "
        f"after {MAX_TASKS} tasks and the process exits; the MainProcess reaps it and forks a "
        f"replacement (`maintain_pool`). {BATCH} × `slow(0.2)` on `{QUEUE}` keep both busy.",
    ):
        extra = ["-c", "2", "--max-tasks-per-child", str(MAX_TASKS), "-Q", QUEUE]
        recycler = s.start_worker("recycler", extra=extra)
        first = recycler.children()
        for pid in first:
            proc.wait_hop(tl, "child.init", pid)
        since = time.time()
        results = [slow.apply_async(args=[0.2], queue=QUEUE) for _ in range(BATCH)]
        said = {r.id: r.get(timeout=30)["pid"] for r in results}
        ran = proc.wait_ran(tl, list(said))
        counts = Counter(ran.values())
        retired = sorted(pid for pid, n in counts.items() if n == MAX_TASKS)
        # Each retired child is reaped, then replaced: wait for that many new children.
        replaced = proc.hop_is("child.init", ppid=recycler.pid, since=since)
        proc.wait_for_each(tl, replaced, len(retired), 15, "a replacement child")
        events = tl.events()
        inits = {e["pid"]: e["ts"] for e in proc.child_hops(events, recycler.pid)}
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
        first_run = {
            pid: min(e["ts"] for e in events if e.get("event") == "task.prerun" and e["pid"] == pid)
            for pid in new
        }
        s.expect(
            "new children ran tasks, each announced by its own child.init first",
            bool(new) and all(since < inits[p] < first_run[p] for p in new),
            f"new: {new}",
        )

    with s.step(
        "4. The children over time",
        "Each child's `child.init` (worker_process_init) and `child.shutdown` "
        "(worker_process_shutdown, sent as it exits), and what the OS says now.",
    ):
        events, now, alive = tl.events(), time.time(), recycler.children()
        lives = proc.lives(events, recycler.pid)
        s.show(proc.lives_table(lives, since, now, alive))
        born = [c.pid for c in lives if c.forked and c.forked > since]
        gone = {c.pid for c in lives if c.exited is not None}
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
            not set(first) & set(alive) and len(alive) == 2 and set(alive) <= set(born),
            f"OS now: {alive}",
        )
        told = [
            e["message"]
            for e in q.select(events, event="log")
            if e["ts"] > since
            and e["pid"] == recycler.pid
            and not e["message"].endswith(" received")
        ]
        s.expect("at INFO the worker's log says nothing of it", not told, f"{told[:2]}")
        s.show(s.flower(f"worker/{recycler.nodename}"))


if __name__ == "__main__":
    sys.exit(run("05 · child reuse and recycling", story, __doc__ or ""))
