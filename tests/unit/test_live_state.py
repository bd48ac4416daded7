"""demo.live.state and demo.live.fold: the live picture folded from a recorded trace (scenario
02: one mail, one add), events out of order, a child killed and replaced, and the bounds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from demo import names
from demo.live import happenings as hap
from demo.live.model import PROCS_MAX, TASKS_MAX
from demo.live.state import LiveState
from demo.trace import capture
from demo.trace.event import TraceEvent, normalise
from demo.trace.timeline import read_jsonl

TRACE = Path(__file__).resolve().parents[1] / "fixtures" / "trace_send_one_mail.jsonl"
MAIL = "ab28f8df-c94b-4fcd-a034-427fbbae1376"
ADD = "aa1fffed-46c3-457a-9e34-2846383f60a1"
CLIENT, MAIN, CHILD, OTHER_CHILD = 7532, 7542, 7547, 7545
KILLED = "Process 'ForkPoolWorker-1' pid:7545 exited with 'signal 9 (SIGKILL)'"
NEW_CHILD = 7600


@pytest.fixture(scope="module")
def events() -> list[TraceEvent]:
    return read_jsonl(TRACE)


def ev(ts: float, event: str, role: str, pid: int, **fields: Any) -> TraceEvent:
    found = normalise({"ts": ts, "event": event, "role": role, "pid": pid, **fields})
    assert found is not None
    return found


def test_the_picture_after_one_mail_names_every_process_and_who_did_what(
    events: list[TraceEvent],
) -> None:
    state = LiveState()
    changes = state.fold(events)
    assert [p.pid for p in state.by_role(names.WORKER_MAIN)] == [MAIN]
    assert [p.pid for p in state.children_of(MAIN)] == [OTHER_CHILD, CHILD]
    assert state.procs[CLIENT].published == 2
    mail = state.tasks[MAIL]
    assert (mail.state, mail.client, mail.worker, mail.child) == ("SUCCESS", CLIENT, MAIN, CHILD)
    assert mail.writer == (names.POOL_CHILD, CHILD)
    assert mail.ttl == 86400
    assert mail.done is not None and mail.done > mail.first
    assert state.procs[CHILD].tasks_run == 2 and state.procs[CHILD].busy is None
    assert state.procs[MAIN].name == "MainProcess"
    assert state.procs[CHILD].name == "ForkPoolWorker-2"
    assert [row.task_id for row in state.recent(2)] == [ADD, MAIL]
    assert set(changes.done) == {MAIL, ADD}
    assert {h.kind for h in changes.happenings} >= {hap.CHILD_STARTED, hap.CLIENT_SEEN}


def test_the_brpop_that_took_a_task_joins_its_events_once_its_reply_names_it() -> None:
    """The timeline ties a BRPOP to its task when its reply comes (demo.trace.capture)."""
    ingest, state = capture.Ingest(), LiveState()
    brpop = ev(1.0, names.REDIS_COMMAND, names.WORKER_MAIN, MAIN, command=["BRPOP", "celery", "1"])
    reply = ev(
        1.1,
        names.REDIS_REPLY,
        names.WORKER_MAIN,
        MAIN,
        reply_to="BRPOP",
        key="celery",
        task_id=MAIL,
        delivery_tag="tag",
    )
    for e in (brpop, reply):
        ingest.add(e)
        state.fold([e])
    assert brpop in state.tasks[MAIL].events


def test_batches_out_of_order_across_processes_give_the_same_picture(
    events: list[TraceEvent],
) -> None:
    """Each process ships its own events: a child's batch may land before its parent's."""
    by_pid: dict[int | None, list[TraceEvent]] = {}
    for e in events:
        by_pid.setdefault(e["pid"], []).append(e)
    order = list(by_pid)
    random.Random(12).shuffle(order)
    state = LiveState()
    for pid in order:
        state.fold(by_pid[pid])
    mail = state.tasks[MAIL]
    assert (mail.state, mail.child, mail.worker) == ("SUCCESS", CHILD, MAIN)


@pytest.mark.parametrize("death_first", [True, False])
def test_a_killed_child_is_seen_exiting_with_its_signal_and_replaced(
    events: list[TraceEvent], death_first: bool
) -> None:
    state = LiveState()
    state.fold(events)
    t = events[-1]["ts"] + 1
    death = ev(t, names.LOG, names.WORKER_MAIN, MAIN, message=KILLED, level="error")
    birth = ev(t + 0.05, "child.init", names.POOL_CHILD, NEW_CHILD, ppid=MAIN)
    changes = state.fold([death, birth] if death_first else [birth, death])
    gone, new = state.procs[OTHER_CHILD], state.procs[NEW_CHILD]
    assert gone.left == t and gone.exit_status == "signal 9 (SIGKILL)"
    assert (gone.replaced_by, new.replaces) == (NEW_CHILD, OTHER_CHILD)
    kinds = [h.kind for h in changes.happenings]
    assert hap.CHILD_EXITED in kinds and hap.CHILD_REPLACED in kinds
    exited = next(h for h in changes.happenings if h.kind == hap.CHILD_EXITED)
    assert exited.alarming and "SIGKILL" in exited.text and "ForkPoolWorker-1" in exited.text


def test_the_worker_losing_redis_and_coming_back_are_happenings() -> None:
    state = LiveState()
    lost = "consumer: Connection to broker lost. Trying to re-establish the connection..."
    said = [
        *state.fold([ev(1.0, names.LOG, names.WORKER_MAIN, MAIN, message=lost)]).happenings,
        *state.fold(
            [ev(2.0, names.LOG, names.WORKER_MAIN, MAIN, message="Connected to redis://x:1/0")]
        ).happenings,
    ]
    assert [h.kind for h in said] == [hap.BROKER_LOST, hap.BROKER_BACK]
    # At boot, `Connected to` is no reconnection.
    boot = LiveState().fold([ev(1.0, names.LOG, names.WORKER_MAIN, MAIN, message="Connected to x")])
    assert boot.happenings == []


def test_a_task_state_only_moves_forward() -> None:
    state = LiveState()
    state.fold([ev(2.0, "result.stored", names.POOL_CHILD, CHILD, task_id=MAIL, status="SUCCESS")])
    state.fold([ev(1.0, "task.received", names.WORKER_MAIN, MAIN, task_id=MAIL)])
    assert state.tasks[MAIL].state == "SUCCESS" and state.tasks[MAIL].worker == MAIN


def test_the_picture_stays_bounded_however_many_tasks_and_clients() -> None:
    state = LiveState()
    for i in range(TASKS_MAX * 4):
        task_id = f"task-{i}"
        state.fold(
            [
                ev(i, "task.published", names.CLIENT, 10_000 + i, task_id=task_id, task="t"),
                ev(i + 0.1, "task.prerun", names.POOL_CHILD, CHILD, task_id=task_id, ppid=MAIN),
                ev(i + 0.2, "task.postrun", names.POOL_CHILD, CHILD, task_id=task_id),
            ]
        )
    assert len(state.tasks) == TASKS_MAX
    assert state.tasks_seen == TASKS_MAX * 4
    assert len(state.procs) <= PROCS_MAX
    assert CHILD in state.procs and state.procs[CHILD].tasks_run == TASKS_MAX * 4
