"""Chain, group and chord on Redis: no coordinator, each next message is pushed by a process.

The client publishes what it can publish at once. A chain's next link and a chord's callback
are published later by the pool child that just finished the task before them; the chord
counts its finished parts in Redis keys that the children update in Lua scripts.
"""

from __future__ import annotations

import os
import sys
import time

from celery import chain, chord, group

from demo import names
from demo.protocol.envelope import decode_result
from demo.render import tables as ev
from demo.render.inspect import render_keys
from demo.scenes import canvas as cv
from demo.scenes.frame import Scenario, run
from demo.trace import messages as msg
from demo.trace import query as q
from demo.trace.event import args_of, at

CONCURRENCY = 2  # two children: the chord's first two parts run at once
WAIT = 3  # countdown of the last chord header task: time to read the keys half-way
RESULT_S = 30.0  # how long the client waits for a result
TRACE_S = 30.0  # how long to wait for a hop or a command to reach the timeline
EXPIRES_S = 86400  # result_expires: the TTL of a saved group and of the chord's keys
FRESH_S = 86000  # a key written moments ago still has about all of its EXPIRES_S
DONE_S = 300  # how long the chord leaves `.c = done` behind, against late duplicates
CHAIN = ("add(1, 2)", "add(·, 10)", "add(·, 100)")
CHORD_UNLOCK = "celery.chord_unlock"  # the polling task other backends use for a chord
RAN = ("task.prerun",)  # the hop that says which process ran a task


def chain_of_three(s: Scenario) -> None:
    from envoi_mails import add

    tl, me = s.timeline, os.getpid()
    worker = s.start_worker(extra=["-c", str(CONCURRENCY)])
    t0, result = time.time(), chain(add.s(1, 2), add.s(10), add.s(100)).apply_async()
    value = result.get(timeout=RESULT_S)
    ids = [result.parent.parent.id, result.parent.id, result.id]
    tl.settle()  # every command sent so far is on the timeline
    tl.wait_lives(ids, timeout=TRACE_S, hops=RAN)
    events = tl.events()
    ran, msgs = q.ran_by(events, ids), msg.pushes(events, ids)
    labels = dict(zip(ids, CHAIN, strict=True))
    s.show(cv.published_table(msgs, labels, t0, "the three messages, as pushed"))
    senders = [m.pid for m in msgs]
    s.expect(
        "the client pushed link 1; the pool child that ran link n pushed link n+1",
        senders == [me, ran[ids[0]], ran[ids[1]]] and set(senders[1:]) <= set(worker.children()),
        f"pushed by {senders}, ran by {[ran[i] for i in ids]}",
    )
    parents = cv.headers(msgs, "parent_id")
    s.expect(
        "root_id is link 1 on all three; parent_id is the link before",
        cv.headers(msgs, "root_id") == [ids[0]] * len(ids) and parents == [None, *ids[:2]],
    )
    args = [m.envelope.args for m in msgs]
    s.expect(
        "each link got the previous result first in its args: 1+2, 3+10, 13+100",
        args == [[1, 2], [3, 10], [13, 100]] and value == 113,
        f"{args}",
    )
    rest = [link["options"]["task_id"] for link in msgs[0].envelope.embed["chain"]]
    s.expect("the client chose every id: body 1 lists the rest, last first", rest == ids[:0:-1])
    stored_at = [at(q.first(events, command="SETEX", key=names.result_key(i))) for i in ids]
    raw = s.redis.get(names.result_key(ids[0]))
    stored = decode_result(str(raw)) if raw else {}
    s.expect(
        "link n+1 is pushed BEFORE link n's result is stored, which names it in `children`",
        all(msgs[n + 1].ts < stored_at[n] for n in (0, 1))
        and ids[1] in str(stored.get("children")),
    )


def group_of_three(s: Scenario) -> None:
    from envoi_mails import add

    tl, me = s.timeline, os.getpid()
    t0, g = time.time(), group(add.s(n, n) for n in (1, 2, 3)).apply_async()
    values, members = g.get(timeout=RESULT_S), [x.id for x in g.results]
    tl.settle()
    msgs, touched = msg.pushes(tl.events(), members), tl.select(key=names.group_key(g.id))
    s.show(cv.published_table(msgs, {}, t0, f"group {g.id[: cv.ID_CHARS]}: one message per task"))
    tags = list(zip(cv.headers(msgs, "group"), cv.headers(msgs, "group_index"), strict=True))
    s.expect(
        "three LPUSH, all from the client, same `group`, group_index 0, 1, 2",
        [m.pid for m in msgs] == [me] * len(members)
        and tags == [(g.id, n) for n in range(len(members))],
    )
    s.expect("each member is its own root_id", cv.headers(msgs, "root_id") == members)
    s.expect(
        "no celery-taskset-meta-<gid> key exists, no command touched one",
        not cv.group_keys(s.redis, g.id) and not touched and values == [2, 4, 6],
    )
    g.save()
    saved = tl.wait_for(
        command="SETEX", key=names.group_key(g.id), timeout=TRACE_S, what="g.save()'s SETEX"
    )
    s.show(ev.commands_table([saved], "g.save()"))
    s.expect(
        "save(): the client itself writes celery-taskset-meta-<gid>, for 86400 s",
        saved["pid"] == me and args_of(saved)[2] == str(EXPIRES_S),
    )


def chord_half_way(s: Scenario) -> None:
    from envoi_mails import add, tsum

    tl, me = s.timeline, os.getpid()
    header = [add.s(1, 1), add.s(2, 2), add.s(3, 3).set(countdown=WAIT)]
    t0, result = time.time(), chord(header, tsum.s()).apply_async()
    gid, members = result.parent.id, [x.id for x in result.parent.results]
    # Each child runs Celery's chord script (EVALSHA, its KEYS[1] the .j key); the ZADD
    # happens inside Redis, where only MONITOR (--monitor) would show it, as `lua`. A child's
    # first call may be sent twice: NOSCRIPT, SCRIPT LOAD, EVALSHA again (redis-py's Script).
    tl.wait_lives(members[:2], timeout=TRACE_S, hops=RAN)  # the last part waits WAIT s
    tl.settle()
    counted = tl.select(command=("EVALSHA", "EVAL"), key=names.group_key(gid, ".j"))
    mid, size = cv.group_keys(s.redis, gid), s.redis.get(names.group_key(gid, ".s"))
    events = tl.events()
    early = q.first(events, event="task.prerun", task_id=members[2])
    ran = q.ran_by(events, members[:2])
    msgs = msg.pushes(events, members)
    sized = q.first(events, command="SET", key=names.group_key(gid, ".s"))
    took = f"+{time.time() - t0:.1f} s"
    s.show(
        cv.published_table(msgs, {}, t0, "the header, as pushed"),
        render_keys(f"the chord's keys with 2 of 3 parts done ({took})", [*mid.values()]),
    )
    unlock = [p for p in msg.pushes(events) if p.envelope.task == CHORD_UNLOCK]
    s.expect(
        "each header message carries the callback, its id fixed; no chord_unlock task is sent",
        cv.callbacks(msgs) == {result.id} and not unlock,
    )
    s.expect(
        "the client sets the size (SET .s 3 EX 86400) just before the LAST header push",
        cv.sent(sized, me, str(len(header)), "EX", str(EXPIRES_S))
        and max(m.ts for m in msgs[:2]) < at(sized) < msgs[2].ts,
    )
    s.expect(
        "parts 1 and 2 were counted (ZADD .j, in Lua) by the children that ran them",
        # Two children run parts 1 and 2 at once: either may be counted first.
        {e["pid"] for e in counted} == {ran.get(m) for m in members[:2]},
    )
    kinds = {k: (v.type, v.size) for k, v in mid.items()}
    ttl = min((v.ttl_s or 0 for v in mid.values()), default=0)
    s.expect(
        "half-way: .j (zset) and .d (set) hold 2, .s = 3, all ~86400 s; no .t, no plain key",
        early is None
        and size == str(len(header))
        and ttl > FRESH_S
        and kinds == {".j": ("zset", 2), ".d": ("set", 2), ".s": ("string", 1)},
        f"{kinds}, ttl ≥ {ttl}",
    )


def chord_callback(s: Scenario) -> None:
    from envoi_mails import app

    tl, worker = s.timeline, s.worker()
    header = cv.chord_header(tl.events())  # step 3's chord, as the client pushed it
    members, gid = [m.task_id or "" for m in header], str(header[0].header("group"))
    (callback,) = cv.callbacks(header)
    value = app.AsyncResult(callback).get(timeout=RESULT_S)
    tl.settle()
    tl.wait_lives([*members, str(callback)], timeout=TRACE_S, hops=RAN)
    body = msg.pushed(
        tl.wait_for(msg.is_task_push, task_id=callback, timeout=TRACE_S, what="the LPUSH of tsum")
    )
    events = tl.events()
    ran = q.ran_by(events, members)
    # The claim is a script too (EVALSHA, KEYS[1] the .c key) in Celery 5.7.
    claim = q.first(events, command=("EVALSHA", "EVAL", "SET"), key=names.group_key(gid, ".c"))
    after, trail = cv.group_keys(s.redis, gid), [*cv.chord_trail(events, gid), body.event]
    s.show(
        cv.chord_table(trail, gid, f"the chord's keys (<gid> = {names.group_key(gid)})"),
        render_keys("the chord's keys after the callback", [*after.values()]),
    )
    last = ran[members[2]]
    stored_at = at(q.first(events, command="SETEX", key=names.result_key(members[2])))
    s.expect(
        "tsum was pushed by the pool child that ran the LAST header task",
        body.pid == last and body.event.get("ppid") == worker.pid,
        f"pid {body.pid}",
    )
    s.expect(
        "… after that child stored its own result and claimed .c",
        claim is not None and claim["pid"] == last and stored_at < claim["ts"] < body.ts,
    )
    s.expect(
        "tsum got the results in header order; its parent_id is that last header task",
        body.envelope.args == [[2, 4, 6]]
        and value == 12
        and body.header("parent_id") == members[2],
    )
    done = s.redis.get(names.group_key(gid, ".c")) == "done"
    s.expect(
        "afterwards only .c = 'done' remains, for at most 300 s",
        set(after) == {".c"} and done and 0 < (after[".c"].ttl_s or 0) <= DONE_S,
    )
    s.show(s.flower(f"task/{callback}"))


def story(s: Scenario) -> None:
    with s.step(
        "1. A chain of three adds",
        "`chain(add.s(1, 2), add.s(10), add.s(100))`. The client pushes the first message only; "
        "its body carries the rest of the chain. The pool child that ran a link pushes the next "
        "one itself, the link's result prepended to its arguments.",
    ):
        chain_of_three(s)
    with s.step(
        "2. A group of three adds",
        "`group(add.s(n, n) for n in (1, 2, 3))`: three messages, all pushed by the client, all "
        "tagged with the same `group` header. A plain group writes nothing of its own in Redis: "
        "each task has its result key, and that is all until `.save()`.",
    ):
        group_of_three(s)
    with s.step(
        "3. A chord: its counter lives in Redis",
        f"`chord([add.s(1, 1), add.s(2, 2), add.s(3, 3).set(countdown={WAIT})], tsum.s())`. No "
        "`chord_unlock` task on Redis: each header task, once its result is stored, runs a Lua "
        "script that adds it to `celery-taskset-meta-<gid>.j` (sorted set) and `.d` (set) and "
        f"compares the count with `.s`. The last one waits {WAIT} s: time to read the keys.",
    ):
        chord_half_way(s)
    with s.step(
        "4. Who publishes the callback",
        "The child whose script finds the count complete claims `.c` (SET NX), reads the results "
        "from `.j` in header order and pushes `tsum` itself; then it deletes the bookkeeping and "
        "leaves `.c = done` for 300 s, against late duplicates.",
    ):
        chord_callback(s)


if __name__ == "__main__":
    sys.exit(run("10 · chain, group, chord", story, __doc__ or ""))
