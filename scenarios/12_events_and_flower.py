"""The event stream, and what Flower shows of it.

A worker announces itself on Redis pub/sub channels: heartbeats always, task events only when
asked to (`-E`). Flower is a subscriber plus an `inspect` client: it knows what the events and
the replies say, and nothing else of what sits in Redis.
"""

from __future__ import annotations

import sys
import time

import redis

from demo import inspectors as ins
from demo.render import tables as ev
from demo.render.inspect import render_unacked
from demo.scenes import events_view as evs
from demo.scenes import processes as proc
from demo.scenes import results as res
from demo.scenes.frame import Scenario, run
from demo.trace import query as q

LIFE = ["task-received", "task-started", "task-succeeded"]


def story(s: Scenario) -> None:
    from envoi_mails import add, slow

    tl, r = s.timeline, redis.Redis.from_url(s.stack.broker_url)
    with s.step(
        "1. A worker without -E: heartbeats yes, task events no",
        "`celery -A envoi_mails worker -c 2 -Q plain`, no `-E` (queue `plain`: it takes no task "
        "of the later steps). Its Events bootstep still builds a dispatcher, for the group "
        "`worker` only (celery/worker/consumer/events.py): the Heart bootstep sends heartbeats "
        "through it; task events are dropped there (EventDispatcher.send), never published.",
    ):
        plain = s.stack.start_worker("plain", extra=["-c", "2", "-Q", "plain"])
        evs.wait_all([add.apply_async((2, 3), queue="plain")])
        beats = evs.wait_heartbeats(tl, plain.pid, 2)
        tl.settle()  # every command sent so far is on the timeline: absence is sound
        told = q.select(tl.events(), event="task.event")
        s.show(ev.commands_table(beats, "heartbeats of the worker started without -E"))
        s.expect(
            "no task event goes out: no PUBLISH on /0.celeryev/task.multi, no task.event hop",
            not evs.batches(tl.events()) and not told,
            f"{len(told)} task.event hops",
        )
        s.expect(
            "yet its MainProcess PUBLISHes worker-heartbeat on /0.celeryev/worker.heartbeat",
            {evs.first_event(b).get("type") for b in beats} == {"worker-heartbeat"},
            f"pid {plain.pid}",
        )

    with s.step(
        "2. A worker with -E: the MainProcess PUBLISHes task events",
        "`celery -A envoi_mails worker -c 2 -E`. Task events are buffered and PUBLISHed as a list "
        "on `/0.celeryev/task.multi` (EventDispatcher.flush). Each carries a `pid` field: the "
        "dispatcher's own, `os.getpid()` in the MainProcess (`EventDispatcher.__init__`).",
    ):
        worker = s.start_worker("events", extra=["-c", "2"])
        evs.wait_all([one := add.delay(2, 3)])
        sent = evs.wait_task_events(tl, {one.id})
        setex = q.first(tl.for_task(one.id), command="SETEX")
        mine, child = evs.task_events(sent, one.id), setex["pid"] if setex else None
        s.show(evs.batches_table(sent, {one.id: one.id[:8]}, "task.multi PUBLISHes, add(2, 3)"))
        s.expect(
            "task-received, task-started, task-succeeded, PUBLISHed by the MainProcess",
            [e["type"] for e in mine] == LIFE and {b.pid for b in sent} == {worker.pid},
        )
        s.expect(
            "every event's pid field names the MainProcess, not the child that ran the task",
            {e["pid"] for e in mine} == {worker.pid} and child in worker.children(),
            f"pid field {worker.pid}; the result's SETEX came from child {child}",
        )
        beats = evs.wait_heartbeats(tl, worker.pid, 2)
        gap, freq = proc.gaps(beats)[0], evs.first_event(beats[0]).get("freq")
        s.expect("heartbeats every ~2 s (freq 2.0)", freq == 2.0 and 1 < gap < 4, f"{gap:.2f} s")

    with s.step(
        "3. Ten adds at once: several events in one PUBLISH",
        "The dispatcher buffers task events and flushes them on the next turn of the worker's "
        "event loop (`hub.call_soon`), or at 24: when tasks come fast, one PUBLISH carries many.",
    ):
        evs.wait_all(ten := [add.delay(i, i) for i in range(10)])
        ids = {x.id: f"#{i}" for i, x in enumerate(ten)}
        sent = evs.wait_task_events(tl, ids)
        n = sum(len(evs.task_events(sent, i)) for i in ids)
        most = max(len(b.events) for b in sent)
        s.show(evs.batches_table(sent, ids, "task.multi PUBLISHes for the ten adds"))
        s.expect(
            "30 events (3 a task) in fewer than 30 PUBLISHes, up to several in one",
            n == 30 and len(sent) < 30 and most > 1,
            f"{n} events in {len(sent)} PUBLISHes, at most {most} in one",
        )

    with s.step(
        "4. Flower: what it knows about a task, and what it does not",
        "Flower PSUBSCRIBEs to `/0.celeryev/*`, then broadcasts `heartbeat` "
        "(EventReceiver.wakeup_workers): every worker answers at once with a worker-heartbeat "
        "of freq 5. Its state lives in memory, built from the events it hears from then on.",
    ):
        t_flower, flower = time.time(), s.stack.start_flower()
        fpid = evs.flower_pid(flower)
        wake = evs.wait_broadcast(tl, fpid, "heartbeat", t_flower, 20)
        woken = evs.answered(tl, [plain.pid, worker.pid], since=wake["ts"])
        s.show(ev.commands_table([wake, *filter(None, woken.values())], "the wake-up call"))
        s.expect(
            "Flower's process broadcast `heartbeat`; both workers answered with a freq-5 beat",
            all(woken.values()),
            f"Flower pid {fpid}",
        )
        evs.wait_all([task := add.delay(20, 22)])
        info = evs.wait_task_state(flower.url, task.id, "SUCCESS", 20)
        tl.settle()
        setex = tl.wait_for(res.is_command("SETEX", task.id), timeout=10, what="the result's SETEX")
        said = evs.task_events(evs.of_tasks(tl, {task.id}), task.id)
        keys = ["uuid", "state", "worker", "args", "runtime", "received", "started", "succeeded"]
        s.show(evs.fields_table(info, keys, "GET /api/task/info/<id>"))
        s.expect(
            "Flower shows SUCCESS on events@…, with the args and runtime the events carried",
            (info["worker"], info["args"], info["runtime"])
            == (worker.nodename, said[0]["args"], said[-1]["runtime"]),
            f"args {info['args']}, runtime {info['runtime']:.4f} s",
        )
        s.expect(
            "no field says which process wrote the result; the spy does (SETEX by a pool child)",
            not [k for k in info if "pid" in k] and setex["pid"] in worker.children(),
            f"SETEX by {setex['role']} {setex['pid']}",
        )
        status, _ = evs.http(flower.url, f"api/task/info/{one.id}")
        s.expect("step 2's task, sent before Flower subscribed, is unknown to it", status == 404)
        s.show(s.flower(f"task/{task.id}"))

    with s.step(
        "5. Flower's broker page, and what Redis holds",
        "Four `slow(4)` on 2 children: two run, two wait reserved in `unacked`. The broker page "
        "and /api/queues/length only count (flower/utils/broker.py RedisBase.queues).",
    ):
        slows = [slow.delay(4) for _ in range(4)]
        held = evs.wait_reserved(tl, r, [x.id for x in slows], running=2)
        pages, still = evs.queue_pages(flower.url, tl, r), ins.unacked(r)  # still reserved?
        counts = {q["name"]: q["messages"] for q in pages.lengths["active_queues"]}
        s.show(ev.commands_table(pages.counted, "what the two pages asked Redis"))
        s.show(f"Flower: {pages.lengths}", render_unacked(held))
        s.expect(
            "per page one LLEN per list (celery, …\\x06\\x163/6/9) on a connection of its own",
            len(pages.counted) == 8 and pages.own_connections,
            f"the spy says {', '.join({e['role'] for e in pages.counted})}: such a connection "
            "lives a few ms, often gone before the spy asks the OS who owned it",
        )
        s.expect(
            "Flower: 0 messages; Redis: the 2 reserved ones, args and all, in `unacked`",
            counts.get("celery") == 0 and len(evs.reserved_ids(still)) == 2,
        )
        methods = evs.control_methods(tl.events(), fpid, t_flower)
        s.show(evs.census(tl.events(), fpid, t_flower, f"Flower (pid {fpid}): its own commands"))
        s.expect(
            "Flower broadcasts inspect stats, active_queues, registered, conf on the pidbox",
            {"stats", "active_queues", "registered", "conf"} <= set(methods),
            ", ".join(f"{m} ×{n}" for m, n in methods.items()),
        )
        s.expect(
            "it never read a message or a result (no HGET, LRANGE, GET …)",
            not evs.content_reads(tl.events(), fpid, t_flower),
        )
        s.show(s.flower("broker"), s.flower(f"worker/{worker.nodename}"))

    with s.step(
        "6. Flower turns task events on, even for a worker started without -E",
        "Every 5 s Flower broadcasts `enable_events` (flower/events.py Events.on_enable_events): "
        "the worker adds `task` to its dispatcher's groups (celery/worker/control.py).",
    ):
        evs.wait_broadcast(tl, fpid, "enable_events", t_flower, 20)
        said_so = evs.wait_log(tl, plain.pid, "enabled by remote")
        evs.wait_all([later := add.apply_async((4, 4), queue="plain")])
        info = evs.wait_task_state(flower.url, later.id, "SUCCESS", 20)
        tl.settle()
        sent = evs.of_tasks(tl, {later.id})
        now = evs.task_events(sent, later.id)
        s.show(ev.logs_table([said_so]), evs.batches_table(sent, {later.id: "add(4, 4)"}, "now"))
        s.expect(
            "the worker started without -E now sends task events (their hostname and pid "
            "name it), and Flower shows its task",
            [e["type"] for e in now] == LIFE
            and {(e["hostname"], e["pid"]) for e in now} == {(plain.nodename, plain.pid)}
            and info["worker"] == plain.nodename,
        )
        evs.wait_all(slows)


if __name__ == "__main__":
    sys.exit(run("12 · events and Flower", story, __doc__ or ""))
