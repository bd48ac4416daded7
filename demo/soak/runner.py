"""`python -m demo soak`: many mails through a real stack, with SMTP outages and pool children
killed along the way; then every mail counted by its Message-ID in the SMTP sink.

Half the mails go through `envoi_mail` (acked early: at most once), half through
`envoi_mail_late` (acked late, requeued if its child dies: at least once), alternating. The
soak starts its own Redis, SMTP sink and `-c N` worker (never a Redis the user named), keeps
at most WINDOW mails in flight (a steady load, not one huge queue), and disrupts the run when
a share of the mails is finished: the SMTP server stops for `outage_s` (OUTAGES_AT) and a busy
pool child is SIGKILLed (KILLS_AT, never during an outage). The sink takes SMTP_LATENCY_S per
mail, as a real server does. The worker retries SMTP every 0.5 to 2 s, up to 60 times: it
rides out outages of about two minutes. Each killed child's task is read from the trace.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import redis

from demo import names
from demo.config import KitConfig
from demo.soak.report import Disruption, SoakReport
from demo.stack.client import release
from demo.stack.stack import Stack
from demo.stack.worker import Worker
from demo.trace import query
from demo.trace.event import TraceEvent, normalise
from envoi_mails.xray import emitter, wire

OUTAGES_AT = (0.25, 0.65)  # share of the mails finished when the SMTP server goes down
KILLS_AT = (0.45, 0.85)  # … when a busy pool child is SIGKILLed
# How long a due kill waits for a child that runs a task, SMTP up: then any child. Short,
# because a small soak can finish its mails within a few seconds of the kill coming due.
BUSY_WAIT_S = 1.5
# A real SMTP server takes tens of ms to accept a mail; the local sink none. Without it a
# small soak is over in a second, with children idle most of the time, and a kill finds
# no child running a task.
SMTP_LATENCY_S = 0.02
WINDOW = 1000  # mails in flight, at most
POLL_S = 0.25
PROGRESS_EVERY_S = 5.0
READ_CHUNK = 1000  # result keys per MGET
TRACE_LOOKBACK = 500  # stream entries read to find what a killed child was running
FINAL = {"SUCCESS", "FAILURE", "REVOKED"}
WORKER_ENV = {
    "MAIL_RETRY_BACKOFF": "0.5",
    "MAIL_RETRY_BACKOFF_MAX": "2",
    "MAIL_MAX_RETRIES": "60",
    "SMTP_TIMEOUT": "2",
}
# Inherited, these would send the soak's results or mails elsewhere: the soak uses its own.
NOT_INHERITED = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SMTP_HOST", "SMTP_PORT")
ERROR_CHARS = 200


def default_deadline_s(mails: int) -> float:
    """Generous: a slow shared machine delivers 30 mails a second; outages and kills add."""
    return 120.0 + mails / 30


def run_soak(
    mails: int = 10_000,
    *,
    concurrency: int = 2,
    outage_s: float = 5.0,
    deadline_s: float | None = None,
    progress: Callable[[str], None] = print,
) -> SoakReport:
    config = KitConfig.from_env()
    run_dir = config.state_dir / time.strftime("soak-%Y%m%d-%H%M%S")
    own = dataclasses.replace(
        config, broker_url=None, result_backend=None, smtp_host=None, state_dir=run_dir
    )
    for variable in NOT_INHERITED:
        os.environ.pop(variable, None)
    report = SoakReport(mails, concurrency, run_dir=str(run_dir))
    started = time.monotonic()
    with Stack(own, smtp_latency_s=SMTP_LATENCY_S) as stack:
        stack.apply_env()  # this process is the client: envoi_mails is imported after this
        worker = stack.start_worker("soak", extra=["-c", str(concurrency)], env=WORKER_ENV)
        # The soak's own reads (results, the trace, sizes): named as the kit's, so the
        # client's command capture leaves them out of the trace they measure.
        store = redis.Redis.from_url(
            stack.broker_url, decode_responses=True, client_name=f"{names.KIT_PREFIX}-soak"
        )
        try:
            _drive(stack, worker, store, report, outage_s, deadline_s, progress)
            report.redis_peak_bytes = int(store.info("memory")["used_memory_peak"])
        finally:
            store.close()
        for mail in sorted(stack.mails(), key=lambda m: m.received):
            report.first_received.setdefault(_task_id(mail.message_id), mail.received)
            report.delivered[_task_id(mail.message_id)] += 1
    report.duration_s = time.monotonic() - started
    return report


def _drive(
    stack: Stack,
    worker: Worker,
    store: redis.Redis,
    report: SoakReport,
    outage_s: float,
    deadline_s: float | None,
    progress: Callable[[str], None],
) -> None:
    from envoi_mails import envoi_mail, envoi_mail_late

    started = time.monotonic()
    end = started + (deadline_s or default_deadline_s(report.mails))
    plan = _Disruptions(stack, worker, store, report, outage_s)
    pending: set[str] = set()
    said = started
    try:
        while (len(report.sent) < report.mails or pending) and time.monotonic() < end:
            while len(report.sent) < report.mails and len(pending) < WINDOW:
                task = envoi_mail if len(report.sent) % 2 == 0 else envoi_mail_late
                result = task.apply_async(args=[f"soak-{len(report.sent)}@example.com"])
                release(result)  # no pub/sub per mail: the soak reads result keys itself
                report.sent[result.id] = task.name
                pending.add(result.id)
            _collect(store, pending, report)
            now = time.monotonic() - started
            plan.tick(now, len(report.states) / report.mails)
            _sample(store, report)
            if time.monotonic() - said > PROGRESS_EVERY_S:
                said = time.monotonic()
                progress(f"  {now:6.1f} s  sent {len(report.sent)}  finished {len(report.states)}")
            time.sleep(POLL_S)
    finally:
        plan.finish(time.monotonic() - started)


class _Disruptions:
    """The outages and kills, started when their share of the mails is finished."""

    def __init__(
        self, stack: Stack, worker: Worker, store: redis.Redis, report: SoakReport, outage: float
    ) -> None:
        self.stack, self.worker, self.store, self.report = stack, worker, store, report
        self.outage_s = outage
        self.outages, self.kills = list(OUTAGES_AT), list(KILLS_AT)
        self.down_since: float | None = None
        self.kill_due: float | None = None  # when the next kill came due

    def tick(self, now: float, finished: float) -> None:
        sink = self.stack.smtp
        if sink is None:
            return
        if self.down_since is None and self.outages and finished >= self.outages[0]:
            self.outages.pop(0)
            sink.stop()
            self.down_since = now
            self.report.disruptions.append(Disruption(now, time.time(), "SMTP server down"))
        elif self.down_since is not None and now - self.down_since >= self.outage_s:
            self.finish(now)
        # Never while SMTP is down: every task then waits for its retry and no child is busy.
        if self.kills and finished >= self.kills[0] and self.down_since is None:
            self.kill_due = now if self.kill_due is None else self.kill_due
            if self._kill_a_busy_child(now, idle_too=now - self.kill_due > BUSY_WAIT_S):
                self.kills.pop(0)
                self.kill_due = None

    def finish(self, now: float) -> None:
        if self.down_since is not None and self.stack.smtp is not None:
            self.stack.smtp.start()
            self.down_since = None
            self.report.disruptions.append(Disruption(now, time.time(), "SMTP server up"))

    def _kill_a_busy_child(self, now: float, *, idle_too: bool) -> bool:
        """SIGKILL a child that runs a task (any child if `idle_too`); True if one was."""
        events = _recent(self.store)
        running = {pid: running_in(events, pid) for pid in self.worker.children()}
        busy = [pid for pid, task in running.items() if task is not None]
        if not busy and not (idle_too and running):
            return False
        pid = (busy or list(running))[0]
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        # The child's own last hops die with it (its buffer): ask the MainProcess's.
        task = handed_to(_recent(self.store), pid, killed_at)
        name = str(task.get("task")) if task else None
        tid = str(task.get("task_id")) if task else None
        killed = Disruption(now, killed_at, f"killed pool child {pid}", tid, name)
        self.report.disruptions.append(killed)
        return True


def handed_to(events: list[TraceEvent], pid: int, before: float) -> TraceEvent | None:
    """The MainProcess's task.accepted of the last task child `pid` took before `before`."""
    return query.last(events, event="task.accepted", child_pid=pid, until=before)


def running_in(events: list[TraceEvent], pid: int) -> TraceEvent | None:
    """The task.prerun of the task `pid` was running at the end of `events`, if any (as
    far as its own hops tell: they reach the stream every FLUSH_INTERVAL_S)."""
    began = query.last(events, event="task.prerun", pid=pid)
    ended = query.last(events, event="task.postrun", pid=pid)
    if began is None or (ended is not None and ended["ts"] >= began["ts"]):
        return None
    return began


def _recent(store: redis.Redis) -> list[TraceEvent]:
    time.sleep(2 * emitter.FLUSH_INTERVAL_S)  # the children's latest hops, shipped
    entries: Any = store.xrevrange(names.TRACE_STREAM, count=TRACE_LOOKBACK)
    events = [e for _, fields in reversed(entries) for e in wire.decode(fields) or []]
    normalised = [n for n in map(normalise, events) if n is not None]
    return sorted(normalised, key=lambda e: e["ts"])


def _collect(store: redis.Redis, pending: set[str], report: SoakReport) -> None:
    """Move the finished tasks out of `pending`, with their final state (and error)."""
    ids = list(pending)
    for start in range(0, len(ids), READ_CHUNK):
        chunk = ids[start : start + READ_CHUNK]
        values: Any = store.mget([names.result_key(task_id) for task_id in chunk])
        for task_id, raw in zip(chunk, values, strict=True):
            meta = json.loads(raw) if raw else {}
            if meta.get("status") in FINAL:
                report.states[task_id] = meta["status"]
                if meta["status"] != "SUCCESS":
                    report.errors[task_id] = _error(meta.get("result"))
                pending.discard(task_id)


def _error(result: Any) -> str:
    if isinstance(result, dict):
        text = f"{result.get('exc_type')}: {' '.join(map(str, result.get('exc_message', [])))}"
    else:
        text = str(result)
    return text[:ERROR_CHARS]


def _sample(store: redis.Redis, report: SoakReport) -> None:
    # SAMPLES 0: every node counted. The default estimate samples 5 of them and multiplies:
    # a flush is one entry of 0.1 to 100 KB, so it once said 15 MB for a stream in a Redis
    # that used 9 MB in all.
    trace = int(store.memory_usage(names.TRACE_STREAM, samples=0) or 0)
    report.peak_trace_bytes = max(report.peak_trace_bytes, trace)
    report.peak_trace_entries = max(report.peak_trace_entries, int(store.xlen(names.TRACE_STREAM)))
    used = int(store.info("memory")["used_memory"])
    report.peak_redis_bytes = max(report.peak_redis_bytes, used)


def _task_id(message_id: str) -> str:
    """`<task id@envoi-mails>` -> task id (tasks.py builds it so)."""
    return message_id.strip("<>").split("@", 1)[0]
