"""The event stream, and what Flower shows of it.

A worker announces itself on Redis pub/sub channels: heartbeats always, task events only when
asked to (`-E`). Flower is a subscriber plus an `inspect` client: it knows what the events and
the replies say, and nothing else of what sits in Redis.
"""

from __future__ import annotations

import sys
from typing import Any

from demo import inspectors as ins
from demo import names
from demo.render import tables as ev
from demo.render.inspect import render_unacked
from demo.scenes import events_view as evs
from demo.scenes.frame import Scenario, run
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import pid_of, who

LIFE = ["task-received", "task-started", "task-succeeded"]
PLAIN, EVENTS = "plain", "events"  # the two workers; `plain` is also the first one's queue
CONCURRENCY = 2
BEATS = 2  # heartbeats to see from a worker
BEAT_FREQ, WAKE_FREQ = 2.0, 5  # the Heart's own beat (s); the one a `heartbeat` command asks
BEAT_GAP_S = (1.0, 4.0)  # two beats of the Heart are about BEAT_FREQ apart
TEN = 10  # adds sent at once
SLOWS, SLOW_S = 4, 4  # slow(4) × 4 on 2 children: two run, two wait reserved
RESULT_S = 30.0  # how long the client waits for a result
TRACE_S = 15.0  # how long to wait for a batch of task events on the timeline
BEAT_S = 10.0  # how long to wait for heartbeats or a worker's log line
FLOWER_S = 20.0  # how long to wait for Flower (its broadcasts, its view of a task)
NOT_FOUND = 404
TASK_INFO = ["uuid", "state", "worker", "args", "runtime", "received", "started", "succeeded"]
FLOWER_ASKS = {"stats", "active_queues", "registered", "conf"}  # its inspect broadcasts


def without_events(s: Scenario) -> None:
    from envoi_mails import add

    tl = s.timeline
    plain = s.stack.start_worker(PLAIN, extra=["-c", str(CONCURRENCY), "-Q", PLAIN])
    evs.wait_all([add.apply_async((2, 3), queue=PLAIN)], timeout=RESULT_S)
    beats = evs.wait_heartbeats(tl, plain.pid, count=BEATS, timeout=BEAT_S)
    tl.settle()  # every command sent so far is on the timeline: absence is sound
    events = tl.events()
    told = q.select(events, event="task.event")
    s.show(ev.commands_table(beats, "heartbeats of the worker started without -E"))
    s.expect(
        "no task event goes out: no PUBLISH on /0.celeryev/task.multi, no task.event hop",
        not msg.event_batches(events) and not told,
        f"{len(told)} task.event hops",
    )
    s.expect(
        "yet its MainProcess PUBLISHes worker-heartbeat on /0.celeryev/worker.heartbeat",
        {msg.event_batch(b).first.get("type") for b in beats} == {"worker-heartbeat"},
        f"pid {plain.pid}",
    )


def with_events(s: Scenario) -> None:
    from envoi_mails import add

    tl = s.timeline
    worker = s.start_worker(EVENTS, extra=["-c", str(CONCURRENCY)])
    evs.wait_all([one := add.delay(2, 3)], timeout=RESULT_S)
    sent = evs.wait_task_events(tl, {one.id}, each=len(LIFE), timeout=TRACE_S)
    mine = msg.task_events(sent, one.id)
    child = pid_of(q.first(tl.for_task(one.id), command="SETEX"))  # who stored the result
    labels = {one.id: one.id[: evs.ID_CHARS]}
    s.show(evs.batches_table(sent, labels, "task.multi PUBLISHes, add(2, 3)"))
    s.expect(
        "task-received, task-started, task-succeeded, PUBLISHed by the MainProcess",
        [e["type"] for e in mine] == LIFE and {b.pid for b in sent} == {worker.pid},
    )
    s.expect(
        "every event's pid field names the MainProcess, not the child that ran the task",
        {e["pid"] for e in mine} == {worker.pid} and child in worker.children(),
        f"pid field {worker.pid}; the result's SETEX came from child {child}",
    )
    beats = evs.wait_heartbeats(tl, worker.pid, count=BEATS, timeout=BEAT_S)
    gap, freq = q.gaps(beats)[0], msg.event_batch(beats[0]).first.get("freq")
    low, high = BEAT_GAP_S
    s.expect(
        "heartbeats every ~2 s (freq 2.0)", freq == BEAT_FREQ and low < gap < high, f"{gap:.2f} s"
    )


def ten_at_once(s: Scenario) -> None:
    from envoi_mails import add

    tl = s.timeline
    evs.wait_all(ten := [add.delay(i, i) for i in range(TEN)], timeout=RESULT_S)
    ids = {x.id: f"#{i}" for i, x in enumerate(ten)}
    sent = evs.wait_task_events(tl, ids, each=len(LIFE), timeout=TRACE_S)
    n = sum(len(msg.task_events(sent, i)) for i in ids)
    most = max(len(b.events) for b in sent)
    s.show(evs.batches_table(sent, ids, "task.multi PUBLISHes for the ten adds"))
    s.expect(
        "30 events (3 a task) in fewer than 30 PUBLISHes, up to several in one",
        n == TEN * len(LIFE) and len(sent) < TEN * len(LIFE) and most > 1,
        f"{n} events in {len(sent)} PUBLISHes, at most {most} in one",
    )


def flower_task(s: Scenario) -> None:
    from envoi_mails import add

    tl, plain, worker = s.timeline, s.worker(PLAIN), s.worker(EVENTS)
    s.stack.start_flower()
    flower, fpid = evs.running_flower(s.stack)
    wake = evs.wait_broadcast(tl, fpid, "heartbeat", timeout=FLOWER_S)
    woken = evs.wait_answers(
        tl, [plain.pid, worker.pid], freq=WAKE_FREQ, since=wake["ts"], timeout=BEAT_S
    )
    s.show(ev.commands_table([wake, *woken.values()], "the wake-up call"))
    s.expect(
        "Flower's process broadcast `heartbeat`; both workers answered with a freq-5 beat",
        set(woken) == {plain.pid, worker.pid},
        f"Flower pid {fpid}",
    )
    evs.wait_all([task := add.delay(20, 22)], timeout=RESULT_S)
    info = evs.wait_task_state(flower.url, task.id, "SUCCESS", timeout=FLOWER_S)
    tl.settle()
    setex = tl.wait_for(command="SETEX", task_id=task.id, timeout=BEAT_S, what="the result's SETEX")
    said = msg.task_events(msg.event_batches(tl.events(), task_ids={task.id}), task.id)
    s.show(evs.fields_table(info, TASK_INFO, "GET /api/task/info/<id>"))
    s.expect(
        "Flower shows SUCCESS on events@…, with the args and runtime the events carried",
        (info["worker"], info["args"], info["runtime"])
        == (worker.nodename, said[0]["args"], said[-1]["runtime"]),
        f"args {info['args']}, runtime {info['runtime']:.4f} s",
    )
    s.expect(
        "no field says which process wrote the result; the trace does (the SETEX, recorded "
        "by the pool child that sent it)",
        not [k for k in info if "pid" in k] and setex["pid"] in worker.children(),
        f"SETEX by {setex['role']} {setex['pid']}",
    )
    # Step 2's add(2, 3): the first task the events worker received, before Flower subscribed.
    early = q.select(tl.events(), event="task.received", pid=worker.pid)[0].get("task_id")
    status, _ = evs.http(flower.url, f"api/task/info/{early}")
    s.expect("step 2's task, sent before Flower subscribed, is unknown to it", status == NOT_FOUND)
    s.show(s.flower(f"task/{task.id}"))


def flower_broker_page(s: Scenario) -> list[Any]:
    from envoi_mails import slow

    tl, r, worker = s.timeline, s.redis, s.worker(EVENTS)
    flower, fpid = evs.running_flower(s.stack)
    slows = [slow.delay(SLOW_S) for _ in range(SLOWS)]
    held = evs.wait_reserved(tl, r, [x.id for x in slows], running=CONCURRENCY, timeout=FLOWER_S)
    pages, still = evs.queue_pages(flower.url, tl), ins.unacked(r)  # still reserved?
    counts = {queue["name"]: queue["messages"] for queue in pages.lengths["active_queues"]}
    s.show(ev.commands_table(pages.counted, "what the two pages asked Redis"))
    s.show(f"Flower: {pages.lengths}", render_unacked(held))
    s.expect(
        "per page one LLEN per list (celery, …\\x06\\x163/6/9) on a connection of its own, "
        "recorded by Flower's process",
        len(pages.counted) == len(evs.QUEUE_PAGES) * len(evs.QUEUE_LISTS)
        and pages.own_connections
        and {e["pid"] for e in pages.counted} == {fpid},
        f"sent by {', '.join(sorted({who(e) for e in pages.counted}))}",
    )
    s.expect(
        "Flower: 0 messages; Redis: the 2 reserved ones, args and all, in `unacked`",
        counts.get(names.DEFAULT_QUEUE) == 0
        and len(evs.reserved_ids(still)) == SLOWS - CONCURRENCY,
    )
    methods = evs.control_methods(tl.events(), fpid)
    s.show(evs.census(tl.events(), fpid, f"Flower (pid {fpid}): its own commands"))
    s.expect(
        "Flower broadcasts inspect stats, active_queues, registered, conf on the pidbox",
        set(methods) >= FLOWER_ASKS,
        ", ".join(f"{m} ×{n}" for m, n in methods.items()),
    )
    s.expect(
        "it never read a message or a result (no HGET, LRANGE, GET …)",
        not evs.content_reads(tl.events(), fpid),
    )
    s.show(s.flower("broker"), s.flower(f"worker/{worker.nodename}"))
    return slows


def flower_enables_events(s: Scenario) -> None:
    from envoi_mails import add

    tl, plain = s.timeline, s.worker(PLAIN)
    flower, fpid = evs.running_flower(s.stack)
    evs.wait_broadcast(tl, fpid, "enable_events", timeout=FLOWER_S)
    said_so = tl.wait_for(
        event=names.LOG,
        pid=plain.pid,
        containing="enabled by remote",
        timeout=BEAT_S,
        what=f"the log line 'enabled by remote' from pid {plain.pid}",
    )
    evs.wait_all([later := add.apply_async((4, 4), queue=PLAIN)], timeout=RESULT_S)
    info = evs.wait_task_state(flower.url, later.id, "SUCCESS", timeout=FLOWER_S)
    tl.settle()
    sent = msg.event_batches(tl.events(), task_ids={later.id})
    now = msg.task_events(sent, later.id)
    s.show(ev.logs_table([said_so]), evs.batches_table(sent, {later.id: "add(4, 4)"}, "now"))
    s.expect(
        "the worker started without -E now sends task events (their hostname and pid "
        "name it), and Flower shows its task",
        [e["type"] for e in now] == LIFE
        and {(e["hostname"], e["pid"]) for e in now} == {(plain.nodename, plain.pid)}
        and info["worker"] == plain.nodename,
    )


def story(s: Scenario) -> None:
    with s.step(
        "1. A worker without -E: heartbeats yes, task events no",
        "`celery -A envoi_mails worker -c 2 -Q plain`, no `-E` (queue `plain`: it takes no task "
        "of the later steps). Its Events bootstep still builds a dispatcher, for the group "
        "`worker` only (celery/worker/consumer/events.py): the Heart bootstep sends heartbeats "
        "through it; task events are dropped there (EventDispatcher.send), never published.",
    ):
        without_events(s)
    with s.step(
        "2. A worker with -E: the MainProcess PUBLISHes task events",
        "`celery -A envoi_mails worker -c 2 -E`. Task events are buffered and PUBLISHed as a list "
        "on `/0.celeryev/task.multi` (EventDispatcher.flush). Each carries a `pid` field: the "
        "dispatcher's own, `os.getpid()` in the MainProcess (`EventDispatcher.__init__`).",
    ):
        with_events(s)
    with s.step(
        "3. Ten adds at once: several events in one PUBLISH",
        "The dispatcher buffers task events and flushes them on the next turn of the worker's "
        "event loop (`hub.call_soon`), or at 24: when tasks come fast, one PUBLISH carries many.",
    ):
        ten_at_once(s)
    with s.step(
        "4. Flower: what it knows about a task, and what it does not",
        "Flower PSUBSCRIBEs to `/0.celeryev/*`, then broadcasts `heartbeat` "
        "(EventReceiver.wakeup_workers): every worker answers at once with a worker-heartbeat "
        "of freq 5. Its state lives in memory, built from the events it hears from then on.",
    ):
        flower_task(s)
    with s.step(
        "5. Flower's broker page, and what Redis holds",
        "Four `slow(4)` on 2 children: two run, two wait reserved in `unacked`. The broker page "
        "and /api/queues/length only count (flower/utils/broker.py RedisBase.queues).",
    ):
        # The one thing carried over: step 5's AsyncResults. While they live, this client
        # stays subscribed to their results, as a caller that will get() them does; dropped
        # here, they would UNSUBSCRIBE at once and step 6's client traffic would differ.
        slows = flower_broker_page(s)
    with s.step(
        "6. Flower turns task events on, even for a worker started without -E",
        "Every 5 s Flower broadcasts `enable_events` (flower/events.py Events.on_enable_events): "
        "the worker adds `task` to its dispatcher's groups (celery/worker/control.py).",
    ):
        flower_enables_events(s)
        evs.wait_all(slows, timeout=RESULT_S)


if __name__ == "__main__":
    sys.exit(run("12 · events and Flower", story, __doc__ or ""))
