"""demo.scenes.processes.scale_ups reads an autoscaler's decisions off a worker's trace: the
`Scaling up N processes.` lines of celery/worker/autoscale.py, with the tasks held then."""

from __future__ import annotations

from demo import names
from demo.scenes.processes import scale_ups
from demo.trace.event import TraceEvent, normalise

MAIN, CHILD = 100, 101


def _event(ts: float, event: str, pid: int = MAIN, **fields: object) -> TraceEvent:
    built = normalise({"ts": ts, "event": event, "role": "x", "pid": pid, "ppid": 1, **fields})
    assert built is not None
    return built


def _log(ts: float, message: str, pid: int = MAIN) -> TraceEvent:
    return _event(ts, names.LOG, pid, message=message)


def test_each_scale_up_with_the_processes_before_and_the_tasks_held() -> None:
    events = [
        _event(1.0, "task.received", task_id="a"),
        _log(1.0, "Task slow[a] received"),
        _event(1.1, "task.received", task_id="b"),
        _log(1.1, "Task slow[b] received"),
        _log(1.2, "Scaling up 1 processes."),
        _event(1.3, "task.postrun", CHILD, ppid=MAIN, task_id="a"),
        _event(1.4, "task.received", task_id="c"),
        _log(1.4, "Task slow[c] received"),
        _log(1.5, "Scaling up 2 processes."),
        _log(1.6, "Scaling up 9 processes.", pid=CHILD),  # not this worker's MainProcess
    ]
    ups = scale_ups(events, MAIN, boot=1)
    assert [(u.grew, u.before, u.held) for u in ups] == [(1, 1, 2), (2, 2, 2)]
    assert [u.after for u in ups] == ["Task slow[b] received", "Task slow[c] received"]
