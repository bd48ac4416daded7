"""Rate limits on the mail task: a token bucket in each worker's MainProcess.

`envoi_mail` gets `rate_limit='1/s'` (the app reads `MAIL_RATE_LIMIT`). The limit is not in
Redis and not in the pool: the MainProcess takes messages as usual, reserves them, and holds
each one in a bucket until a token frees it for a child. So a limited task still fills the
prefetch window, and a second worker has its own bucket: twice the rate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from demo import names
from demo.render import tables as ev
from demo.scenes import delivery as dv
from demo.scenes.frame import Scenario, run
from demo.trace import query as q
from demo.trace.event import TraceEvent, at

MAIL = "envoi_mails.envoi_mail"
RATE = 1.0  # mails a second, per worker
LIMITED = {"MAIL_RATE_LIMIT": f"{RATE:g}/s"}
CHILDREN, MULTIPLIER = 2, 4  # -c 2, Celery's worker_prefetch_multiplier default
WINDOW = CHILDREN * MULTIPLIER  # the prefetch window: reserved, not yet acked
FLAGS = ["-c", str(CHILDREN)]
MAILS = 10  # more than the window: the rest waits in the list
MORE = 8  # step 3's mails, for two workers
FIRST, SECOND = "a", "b"
RATE_SLACK = 0.15  # the bucket's timer and the children's clocks, per second of rate
HOP_S, RESULT_S = 15, 60  # how long to wait for a hop, all the mails


def send(count: int) -> list[str]:
    """`count` × envoi_mail.delay(...), at once: their ids."""
    from envoi_mails import envoi_mail

    return [envoi_mail.delay(f"client{n}@example.com").id for n in range(count)]


def send_each_taken(s: Scenario, count: int) -> list[str]:
    """`count` mails, each sent once a worker has taken the one before (its task.received):
    Redis then hands each to the worker that has been waiting in BRPOP the longest."""
    from envoi_mails import envoi_mail

    ids: list[str] = []
    for n in range(count):
        ids.append(envoi_mail.delay(f"other{n}@example.com").id)
        s.timeline.wait_for(event="task.received", task_id=ids[-1], timeout=HOP_S, what="taken")
    return ids


def starts(s: Scenario, ids: Sequence[str]) -> list[TraceEvent]:
    """Each mail's task.prerun, in time order, once all are on the timeline; their lives shown."""
    lives = s.timeline.wait_lives(ids, timeout=RESULT_S)
    t0 = lives[0].at("task.published") or 0.0
    s.show(ev.task_lives_table(lives, t0, title="each mail, after the first publish"))
    return sorted((life["task.prerun"] for life in lives if life["task.prerun"]), key=at)


def together(per_worker: Sequence[Sequence[TraceEvent]]) -> float:
    """Starts per second of the workers together, if their runs overlap in time: each one's
    rate, summed (0.0 when one started fewer than two, or ended before another began)."""
    if any(len(found) < 2 for found in per_worker):
        return 0.0
    if max(found[0]["ts"] for found in per_worker) > min(found[-1]["ts"] for found in per_worker):
        return 0.0
    return sum(q.per_second(found) for found in per_worker)


def one_worker(s: Scenario) -> None:
    with s.step(
        f"1. rate_limit='{RATE:g}/s': taken at once, reserved, let through one a second",
        f"Worker `a` (`-c {CHILDREN}`) and {MAILS} mails at once. The MainProcess takes them "
        f"as usual, up to its prefetch window ({CHILDREN} × {MULTIPLIER}, "
        "`worker_prefetch_multiplier`) and reserves them in `unacked`; then its bucket "
        f"(`TokenBucket({RATE:g}, capacity=1)`) hands one to a child per token. Each ack (when "
        "a child starts a mail) makes room for one more from the list.",
    ):
        worker = s.start_worker(FIRST, FLAGS, env=LIMITED)
        send(MAILS)
        found = dv.wait_reserved(s.timeline, worker.pid, count=MAILS, timeout=HOP_S)
        s.show(dv.reservations_table(found, found[0].reserved["ts"], "a's reservations so far"))
        most = dv.most_held(found)
        s.expect(
            f"at most {WINDOW} reserved at once (-c {CHILDREN} × {MULTIPLIER}), and that many",
            most == WINDOW,
            f"{most}",
        )
        waiting = [r for r in found if r.released is None]
        ok = len(found) == MAILS and len(waiting) >= MAILS - WINDOW
        ok = ok and s.redis.llen(names.DEFAULT_QUEUE) == 0
        s.expect(
            "all taken off the list; most still reserved, waiting for a token",
            ok,
            f"{len(waiting)} waiting",
        )


def a_second_worker_gets_nothing(s: Scenario) -> None:
    first = s.worker(FIRST)
    with s.step(
        "2. A second worker started now takes none of them",
        "Worker `b` starts while `a`'s mails wait in its bucket. They are reserved by `a`, "
        "not in the list: `b` has nothing to take. `a` goes on, one a second, though its "
        "children need milliseconds per mail.",
    ):
        ids = s.published(MAIL, count=MAILS)
        second = s.start_worker(SECOND, FLAGS, env=LIMITED)
        ready = time.time()
        ran = starts(s, ids)
        lives = q.lives(s.timeline.events(), ids)
        took = s.timeline.select(event="task.received", pid=second.pid)
        ok = not took and ready < ran[-1]["ts"]
        s.expect("b was up while mails still waited, and took none", ok)
        rate = q.per_second(ran)
        ok = abs(rate - RATE) <= RATE * RATE_SLACK and {e.get("ppid") for e in ran} == {first.pid}
        s.expect(f"a's children started them at {RATE:g} a second", ok, f"{rate:.2f}/s")
        spans = [at(life["task.postrun"]) - at(life["task.prerun"]) for life in lives]
        s.expect("each took milliseconds: the children were not the limit", max(spans) < 1 / RATE)


def two_workers(s: Scenario) -> None:
    a, b = s.worker(FIRST), s.worker(SECOND)
    with s.step(
        "3. Two workers: twice the rate",
        f"{MORE} more mails, each sent once a worker has taken the previous one, so that both "
        "get some. Each MainProcess has its own "
        f"bucket: each starts {RATE:g} a second, together {2 * RATE:g}. `rate_limit` is per "
        "worker, not per task across the cluster.",
    ):
        ids = send_each_taken(s, MORE)
        ran = starts(s, ids)
        mine = {w.name: [e for e in ran if e.get("ppid") == w.pid] for w in (a, b)}
        rates = {name: round(q.per_second(found), 2) for name, found in mine.items()}
        ok = all(len(found) >= 2 for found in mine.values())
        ok = ok and all(rate <= RATE * (1 + RATE_SLACK) for rate in rates.values())
        s.expect(f"each worker started some, at most {RATE:g} a second", ok, f"{rates}")
        rate = together(list(mine.values()))
        ok = abs(rate - 2 * RATE) <= 2 * RATE * RATE_SLACK
        s.expect(f"while both had mails: {2 * RATE:g} a second together", ok, f"{rate:.2f}/s")
        mails = [m for m in s.stack.mails() if any(t in m.message_id for t in ids)]
        s.expect("every mail reached the SMTP sink", len(mails) == MORE, f"{len(mails)}")


def story(s: Scenario) -> None:
    one_worker(s)
    a_second_worker_gets_nothing(s)
    two_workers(s)


if __name__ == "__main__":
    sys.exit(run("14 · rate limits", story, __doc__ or ""))
