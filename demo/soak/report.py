"""What a soak found: every mail sent, counted by Message-ID in the SMTP sink, each loss and
duplicate explained, and the peak sizes of the trace stream and of Redis."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

EARLY = "envoi_mails.envoi_mail"  # acked when a child starts it: at most once
LATE = "envoi_mails.envoi_mail_late"  # acked when it ends, requeued if its child dies

# Why a mail is missing or twice, as far as the run can tell.
KILLED_EARLY = "acked early and running in a killed child: lost by design (at most once)"
KILLED_LATE = (
    "acked late and in a killed child: its message went back to the queue and ran again, "
    "after its mail (or its retry) had gone out (at least once)"
)
GAVE_UP = "retries exhausted while the SMTP server was down"
SMTP_CUT = (
    "the SMTP server stopped after keeping the mail, before its 250 reached the task: "
    "the task retried (at least once, at the SMTP level)"
)
CUT_WINDOW_S = 1.0  # a mail kept this long before an outage began may have lost its 250
NOT_FINISHED = "not finished when the soak's deadline came"


@dataclass
class Disruption:
    at_s: float  # since the start
    at: float  # epoch s
    what: str  # "SMTP down", "SMTP up", "killed child 1234"
    task_id: str | None = None  # the task the killed child was running, if any
    task: str | None = None


@dataclass
class SoakReport:
    mails: int
    concurrency: int
    sent: dict[str, str] = field(default_factory=dict)  # task id -> task name
    states: dict[str, str] = field(default_factory=dict)  # task id -> final state
    errors: dict[str, str] = field(default_factory=dict)  # task id -> its error, cut
    delivered: Counter[str] = field(default_factory=Counter)  # task id -> mails received
    first_received: dict[str, float] = field(default_factory=dict)  # task id -> epoch s
    disruptions: list[Disruption] = field(default_factory=list)
    peak_trace_bytes: int = 0
    peak_trace_entries: int = 0
    peak_redis_bytes: int = 0
    redis_peak_bytes: int = 0  # Redis's own used_memory_peak, at the end
    duration_s: float = 0.0
    run_dir: str = ""

    def killed_tasks(self) -> dict[str, str]:
        return {d.task_id: d.task or "" for d in self.disruptions if d.task_id}

    def lost(self) -> dict[str, str]:
        """Task id -> why, for every mail sent that never arrived."""
        return {tid: self._why_lost(tid) for tid in self.sent if not self.delivered[tid]}

    def duplicated(self) -> dict[str, str]:
        """Task id -> why, for every mail that arrived more than once."""
        return {tid: self._why_twice(tid) for tid, count in self.delivered.items() if count > 1}

    def _why_twice(self, task_id: str) -> str:
        if task_id in self.killed_tasks():
            return KILLED_LATE
        first = self.first_received.get(task_id, 0.0)
        outages = [d.at for d in self.disruptions if d.what == "SMTP server down"]
        if any(0 <= at - first <= CUT_WINDOW_S for at in outages):
            return SMTP_CUT
        return "unexplained"

    def _why_lost(self, task_id: str) -> str:
        state, error = self.states.get(task_id, "PENDING"), self.errors.get(task_id, "")
        killed = task_id in self.killed_tasks() or "WorkerLostError" in error
        if killed and self.sent[task_id] == EARLY:
            return KILLED_EARLY
        if state == "FAILURE" and "gave up after" in error:
            return GAVE_UP
        if state not in {"SUCCESS", "FAILURE", "REVOKED"}:
            return NOT_FINISHED
        return f"unexplained ({state}: {error})"

    def delivered_yet_failed(self) -> list[str]:
        """Tasks whose mail arrived though their result says FAILURE: a child killed after
        the SMTP server took the mail, before the task could store its success."""
        return [
            tid for tid, state in self.states.items() if state != "SUCCESS" and self.delivered[tid]
        ]

    def by_kind(self, task: str) -> dict[str, int]:
        ids = [tid for tid, name in self.sent.items() if name == task]
        lost, duplicated = self.lost(), self.duplicated()
        return {
            "sent": len(ids),
            "delivered": sum(1 for tid in ids if self.delivered[tid]),
            "lost": sum(1 for tid in ids if tid in lost),
            "duplicated": sum(1 for tid in ids if tid in duplicated),
        }

    @property
    def goal_met(self) -> bool:
        """0 lost and 0 duplicated among the late-acked, every early-acked loss explained."""
        late = self.by_kind(LATE)
        explained = all(why == KILLED_EARLY for why in self.lost().values())
        return late["lost"] == 0 and late["duplicated"] == 0 and explained

    @property
    def explained(self) -> bool:
        """Every loss and duplicate has a known cause (a late-acked duplicate is one)."""
        whys = [*self.lost().values(), *self.duplicated().values()]
        return all(not why.startswith(("unexplained", NOT_FINISHED)) for why in whys)

    def lines(self) -> list[str]:
        mb = 2**20
        out = [f"soak: {len(self.sent)} mails in {self.duration_s:.1f} s, -c {self.concurrency}"]
        for task in (EARLY, LATE):
            kind = self.by_kind(task)
            out.append(
                f"  {task:<28} sent {kind['sent']:>6}  delivered {kind['delivered']:>6}  "
                f"lost {kind['lost']:>4}  duplicated {kind['duplicated']:>4}"
            )
        out += [f"  {d.at_s:7.1f} s  {d.what}" + _running(d) for d in self.disruptions]
        reasons = Counter([*self.lost().values(), *self.duplicated().values()])
        out += [f"  {count} × {why}" for why, count in sorted(reasons.items())]
        if self.delivered_yet_failed():
            out.append(
                f"  {len(self.delivered_yet_failed())} × delivered, yet its result says "
                "FAILURE: its child was killed after the SMTP server took the mail"
            )
        out += [
            f"  peak xray:trace {self.peak_trace_bytes / mb:.1f} MB "
            f"({self.peak_trace_entries} entries); peak Redis used_memory "
            f"{self.peak_redis_bytes / mb:.1f} MB (Redis's own peak "
            f"{self.redis_peak_bytes / mb:.1f} MB)",
            "  goal (late-acked: 0 lost, 0 duplicated; early-acked losses explained): "
            + ("met" if self.goal_met else "NOT met"),
            f"  logs and mails: {self.run_dir}",
        ]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "mails": self.mails,
            "concurrency": self.concurrency,
            "duration_s": self.duration_s,
            "by_kind": {task: self.by_kind(task) for task in (EARLY, LATE)},
            "lost": self.lost(),
            "duplicated": self.duplicated(),
            "delivered_yet_failed": self.delivered_yet_failed(),
            "disruptions": [asdict(d) for d in self.disruptions],
            "peak_trace_bytes": self.peak_trace_bytes,
            "peak_trace_entries": self.peak_trace_entries,
            "peak_redis_bytes": self.peak_redis_bytes,
            "redis_peak_bytes": self.redis_peak_bytes,
            "goal_met": self.goal_met,
            "explained": self.explained,
            "run_dir": self.run_dir,
        }


def _running(d: Disruption) -> str:
    if d.what.startswith("killed"):
        return f": the last task it took was {d.task} {d.task_id}" if d.task_id else ": idle"
    return ""
