"""Routing and priorities on Redis: which list a message goes to, and which list is read first.

`task_routes` sends the mail task to `mails` and everything else to `default` (the app reads
`MAIL_QUEUE=mails`, `CELERY_DEFAULT_QUEUE=default`); the client picks the list, the worker
only chooses which lists it reads (`-Q mails,default`), and kombu rotates between them. A
priority is one more list per queue (`default\\x06\\x163` …), and the order of the keys in the
worker's BRPOP decides which is served first. Prefetch can undo it all.
"""

from __future__ import annotations

import os
import sys
import time

from demo import inspectors as ins
from demo import names
from demo.render import tables as ev
from demo.render.inspect import render_queues
from demo.scenes import delivery as dv
from demo.scenes.frame import Scenario, run
from demo.trace import messages as msg
from demo.trace.event import TraceEvent, args_of, at, key_of

MAILS, DEFAULT = "mails", "default"
ROUTED = {"MAIL_QUEUE": MAILS, "CELERY_DEFAULT_QUEUE": DEFAULT}
FLAGS = ["-c", "1", "-Q", f"{MAILS},{DEFAULT}"]
MAIL, ADD, SLOW = "envoi_mails.envoi_mail", "envoi_mails.add", "envoi_mails.slow"
EACH = 3  # mails and adds waiting before the worker starts
PRIORITIES = (9, 5, 0)  # published in this order
STEPS = (0, 3, 6, 9)  # kombu's priority_steps: 5 goes to the list of 3
LOW, HIGH, PREFETCHED = 9, 0, 3  # step 4: three low-priority adds, then a high one
BUSY_S = 1.5  # slow(1.5) keeps the only child busy
HOP_S, RESULT_S, CONTROL_S = 15, 30, 5.0  # how long to wait for a hop, a result, a reply


def sub_queue(queue: str, priority: int) -> str:
    """The list kombu pushes a message of that priority onto (`Channel._q_for_pri`)."""
    step = max(s for s in STEPS if s <= priority)
    return f"{queue}{names.PRIORITY_SEP}{step}" if step else queue


def pushes_of(s: Scenario, ids: list[str]) -> list[msg.Pushed]:
    """The messages of these tasks, decoded from their LPUSHes, once all are on the timeline."""
    found = s.timeline.wait_until(
        lambda e: msg.is_task_push(e) and e.get("task_id") in ids,
        count=len(ids),
        timeout=HOP_S,
        what="their LPUSHes",
    )
    return msg.pushes(found)


def reading(e: TraceEvent) -> set[str]:
    """The queues a BRPOP names (its keys without their priority suffix)."""
    return {key.split(names.PRIORITY_SEP)[0] for key in args_of(e)[1:-1]}


def takes(s: Scenario) -> list[TraceEvent]:
    """The worker's BRPOPs on its task queues, in order (not those on reply lists)."""
    found = s.timeline.select(command="BRPOP", pid=s.worker().pid)
    return [e for e in found if reading(e) & {MAILS, DEFAULT}]


def the_client_routes(s: Scenario) -> None:
    from envoi_mails import add, envoi_mail

    with s.step(
        "1. task_routes: the client picks the queue",
        "With no worker running, the client sends three mails and three adds. `task_routes` "
        "is applied in the client (`celery/app/routes.py` `Router.route`): the mails are "
        f"`LPUSH`ed onto `{MAILS}`, the adds onto `{DEFAULT}`.",
    ):
        ids = []
        for n in range(EACH):
            ids += [envoi_mail.delay(f"client{n}@example.com").id, add.delay(n, n).id]
        pushes = pushes_of(s, ids)
        views = ins.queues(s.redis, (MAILS, DEFAULT))
        s.show(render_queues(views))
        where = {(p.envelope.task, key_of(p.event)) for p in pushes}
        s.expect(
            "mails onto 'mails', adds onto 'default'", where == {(MAIL, MAILS), (ADD, DEFAULT)}
        )
        s.expect("sent by the client", {p.pid for p in pushes} == {os.getpid()})
        s.expect("three wait in each list", [v.length for v in views] == [EACH, EACH])


def the_worker_rotates(s: Scenario) -> None:
    tl = s.timeline
    with s.step(
        f"2. -Q {MAILS},{DEFAULT}: kombu takes from each list in turn",
        f"`celery -A envoi_mails worker -Q {MAILS},{DEFAULT} -c 1`. Its BRPOP names both "
        "lists; Redis serves the first non-empty one, and kombu then moves that queue to the "
        "end of the next BRPOP (`Channel._brpop_read` → `_queue_cycle.rotate`). Neither queue "
        "goes first for long: there is no order between queues.",
    ):
        worker = s.start_worker(extra=FLAGS, env=ROUTED)
        ids = s.published(MAIL, count=EACH) + s.published(ADD, count=EACH)
        tl.wait_lives(ids, timeout=RESULT_S)
        tl.settle()
        got = sorted(tl.select(event="task.received", pid=worker.pid), key=lambda e: e["ts"])
        delivered = [e for e in takes(s) if e.get("task_id") in ids]
        s.show(ev.commands_table(delivered, "the BRPOPs that delivered, in order", width=90))
        order = [e.get("task") for e in got]
        alternate = [MAIL, ADD] * EACH
        ok = order in (alternate, alternate[1:] + alternate[:1])
        s.expect("the worker took mail, add, mail, add…", ok, " ".join(t or "" for t in order))
        firsts = [args_of(e)[1] for e in delivered]
        served = [MAILS if t == MAIL else DEFAULT for t in order]
        ok = all(nxt != done for nxt, done in zip(firsts[1:], served, strict=False))
        s.expect("each BRPOP names first the queue not served last", ok, f"{firsts}")


def priorities(s: Scenario) -> None:
    from envoi_mails import add, app

    worker = s.worker()
    with s.step(
        "3. Priorities are separate lists; on Redis, 0 goes first",
        f"The worker stops reading `{DEFAULT}` (`celery control cancel_consumer`); the client "
        f"sends `add` with priority {', '.join(map(str, PRIORITIES))}, in that order; the worker "
        "reads it again (`add_consumer`). kombu pushes each onto the list of its priority step "
        "(`_q_for_pri`: steps 0, 3, 6, 9) and BRPOPs the lists in step order, 0 first "
        "(`_brpop_start`): the reverse of AMQP, where 9 is the most urgent.",
    ):
        dest, reply = {"destination": [worker.nodename], "reply": True}, {"timeout": CONTROL_S}
        cancelled = time.time()
        app.control.cancel_consumer(DEFAULT, **dest, **reply)
        # A BRPOP already sent still names `default` and could take a message (kombu puts it
        # back): send only once the worker's BRPOPs name `mails` alone.
        s.timeline.wait_for(
            lambda e: reading(e) == {MAILS},
            command="BRPOP",
            pid=worker.pid,
            since=cancelled,
            timeout=HOP_S,
            what=f"a BRPOP without {DEFAULT}",
        )
        sent = [add.apply_async((p, 0), priority=p).id for p in PRIORITIES]
        pushes = pushes_of(s, sent)
        view = ins.queue_view(s.redis, DEFAULT)
        s.show(render_queues([view]))
        app.control.add_consumer(DEFAULT, **dest, **reply)
        lives = s.timeline.wait_lives(sent, timeout=RESULT_S)
        keys = [key_of(p.event) for p in pushes]
        ok = keys == [sub_queue(DEFAULT, p) for p in PRIORITIES]
        s.expect("each LPUSH went to its priority's list (5 to the list of 3)", ok, f"{keys}")
        order = sorted(lives, key=lambda life: life.at("task.received") or 0.0)
        ok = [life.task_id for life in order] == sent[::-1]
        s.expect("taken lowest number first: 0, then 5, then 9", ok)
        lists = args_of(takes(s)[-1])[1:-1]
        ok = [k for k in lists if k.startswith(DEFAULT)] == [sub_queue(DEFAULT, p) for p in STEPS]
        s.expect("the BRPOP names default before default\\x06\\x163 … \\x06\\x169", ok)
        steps = [
            int(k.split(names.PRIORITY_SEP)[1]) if names.PRIORITY_SEP in k else 0 for k in lists
        ]
        ok = steps == sorted(steps) and reading(takes(s)[-1]) == {MAILS, DEFAULT}
        s.expect("… and both queues' 0 lists before any 3: priority first, then queue", ok)


def prefetch_defeats_priorities(s: Scenario) -> None:
    from envoi_mails import add, slow

    with s.step(
        "4. Prefetch defeats priorities",
        f"`slow({BUSY_S:g})` keeps the only child busy; three adds of priority {LOW} arrive, "
        f"then one of priority {HIGH}. The worker has already taken the {LOW}s (its window is "
        "1 × 4): they wait in its memory, in arrival order, and the urgent one waits behind "
        "them.",
    ):
        busy = slow.delay(BUSY_S)
        s.timeline.wait_for(event="task.prerun", task_id=busy.id, timeout=HOP_S, what="slow")
        sent = time.time()
        low = [add.apply_async((n, LOW), priority=LOW).id for n in range(PREFETCHED)]
        dv.wait_reserved(s.timeline, s.worker().pid, count=PREFETCHED, since=sent, timeout=HOP_S)
        high = add.apply_async((HIGH, HIGH), priority=HIGH).id
        lives = s.timeline.wait_lives([*low, high], timeout=RESULT_S)
        (urgent,) = pushes_of(s, [high])
        s.show(ev.task_lives_table(lives, urgent.ts, title="after the urgent one was sent"))
        got = [at(life["task.received"]) for life in lives]
        runs = [at(life["task.prerun"]) for life in lives]
        ok = max(got[:-1]) < urgent.ts and key_of(urgent.event) == sub_queue(DEFAULT, HIGH)
        s.expect(f"the {LOW}s were taken before the urgent one was sent to '{DEFAULT}'", ok)
        s.expect(f"priority {HIGH} ran last, after the three {LOW}s", runs[-1] > max(runs[:-1]))


def story(s: Scenario) -> None:
    # The client routes: it must read MAIL_QUEUE and CELERY_DEFAULT_QUEUE as the worker does,
    # before the app is built.
    os.environ.update(ROUTED)
    the_client_routes(s)
    the_worker_rotates(s)
    priorities(s)
    prefetch_defeats_priorities(s)


if __name__ == "__main__":
    sys.exit(run("15 · routing and priorities", story, __doc__ or ""))
