"""What `demo bench` measured, and what it adds up to: the figures, the table, the verdict.

Paired by round: in each round every mode runs once, back to back, so a slow spell of the
machine (other VMs, thermal, caches) hits the modes of one round alike. A mode's ratio is
the median over rounds of (its tasks/s / plain's tasks/s in the same round); the ratio of
the medians is shown beside it. The bar: traced (hops, logs and every process recording its
own Redis commands, the default) >= 0.97 of plain throughput, and at most +3% CPU per task.
MONITOR's cost is reported, not judged: it is the opt-in cross-check.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

PLAIN, TRACED, SPY = "plain", "traced", "traced+monitor"
MODES = (PLAIN, TRACED, SPY)
PASS_RATIO = 0.97
MAX_CPU_EXTRA = 0.03
CONFIDENCE = 0.95  # of the interval around each median: what the verdict may claim
NOISY_FOREIGN_CPU = 0.10  # above this share taken by others, the verdict warns of noise


def _rank(n: int, confidence: float) -> int:
    """k for `median_interval`: the largest rank whose binomial tail (n, 1/2) stays within
    the error allowed on each side; 1 when even the extremes do not."""
    tail, k, below = (1 - confidence) / 2, 1, 0.0
    while k < (n + 1) // 2:
        below += math.comb(n, k - 1) / 2**n  # P(fewer than k values below the median)
        if below + math.comb(n, k) / 2**n > tail:
            break
        k += 1
    return k


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of `values`: the k-th smallest
    and k-th largest (`_rank`). No assumption on the noise's shape, which on a shared VM is
    not normal (a round runs at 0.8 or 1.2 of its neighbour's speed). With few values it is
    (min, max), whose confidence is then lower than asked: more rounds narrow it."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return (0.0, 0.0)
    k = _rank(n, confidence)
    return ordered[k - 1], ordered[n - k]


def interval_confidence(n: int, confidence: float = CONFIDENCE) -> float:
    """How sure `median_interval` really is for n values: below `confidence` for n < 6."""
    if n == 0:
        return 0.0
    k = _rank(n, confidence)
    return float(1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n)


def mode_order(round_index: int, modes: tuple[str, ...] = MODES) -> list[str]:
    """Round r starts with mode r mod len(modes): each mode takes each position in turn."""
    shift = round_index % len(modes)
    return [*modes[shift:], *modes[:shift]]


@dataclass(frozen=True)
class Measurement:
    """One client run against one freshly started, idle worker."""

    mode: str
    round: int
    position: int  # 0 = first mode of its round
    tasks: int
    received: int  # results that came back before the client's deadline
    wrong: int  # failed tasks or wrong sums
    elapsed_s: float  # first timed publish -> last result
    tasks_per_s: float
    # Payload bytes the xray:trace stream of this mode's own Redis gained during the run
    # (its offset key, stream.py): 0 when plain, more when traced; the check that each mode
    # really ran as it says.
    trace_bytes: int
    spy_events: int | None  # what the spy saw during the client run (spy mode only)
    worker_was_idle: bool  # False: the worker still used CPU when the client started
    worker_log: str
    # CPU µs per task, by part: client, worker (MainProcess and pool), redis, and this
    # process (where the spy's thread runs). Other load on the machine barely moves these,
    # so they show the cost of tracing when wall-clock throughput is too noisy to.
    cpu_us: dict[str, float] = field(default_factory=dict)
    # Share of the machine's CPU that other processes took during the client run: the
    # noise in tasks/s. 0.0 on a quiet machine.
    foreign_cpu: float = 0.0
    # Of cpu_us's client and worker: their threads other than the main ones (the emitters'
    # threads when traced), µs per task.
    threads_us: float = 0.0

    @property
    def cpu_us_per_task(self) -> float:
        return sum(self.cpu_us.values())

    @property
    def complete(self) -> bool:
        return self.received == self.tasks and self.wrong == 0

    def line(self) -> str:
        spy = f", MONITOR saw {self.spy_events} commands" if self.spy_events is not None else ""
        flag = "" if self.complete else f"  INCOMPLETE: {self.received}/{self.tasks} results"
        if not self.worker_was_idle:
            flag += "  (the worker was still busy when the client started)"
        return (
            f"round {self.round + 1} #{self.position + 1} {self.mode:<10} "
            f"{self.tasks_per_s:8.1f} tasks/s ({self.elapsed_s:.2f} s), "
            f"{self.cpu_us_per_task:.0f} µs CPU/task{spy}{flag}"
        )


def setting(env: Mapping[str, str]) -> str:
    """A variant's environment as its report shows it: `VAR=VALUE, …`."""
    return ", ".join(f"{var}={value}" for var, value in env.items())


def _by_part(parts: dict[str, float]) -> str:
    return (
        f"client {parts['client']:+.0f} µs, worker {parts['worker']:+.0f} µs, Redis "
        f"{parts['redis']:+.0f} µs; of the client's and worker's, their side threads (the "
        f"emitters) {parts['threads']:.0f} µs"
    )


@dataclass(frozen=True)
class ModeSummary:
    mode: str
    median: float
    low: float
    high: float
    ratio: float  # median over rounds of (this mode / plain of the same round): the verdict
    ratio_of_medians: float  # this mode's median / plain's median
    round_ratios: list[float]  # per round: this mode / plain of the same round
    cpu_us: float  # median CPU µs per task, all parts together
    cpu_extra: float  # median over rounds of (CPU per task / plain's), minus 1
    # CONFIDENCE intervals of the two medians above (median_interval)
    ratio_interval: tuple[float, float] = (0.0, 0.0)
    cpu_extra_interval: tuple[float, float] = (0.0, 0.0)


@dataclass
class BenchReport:
    """All measurements of a run, and what they add up to."""

    tasks: int
    rounds: int
    concurrency: int
    run_dir: Path
    measurements: list[Measurement] = field(default_factory=list)
    duration_s: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    modes: tuple[str, ...] = MODES  # without SPY: --no-monitor; then the variants' names
    variants: dict[str, dict[str, str]] = field(default_factory=dict)  # name: its environment

    def of(self, mode: str) -> list[Measurement]:
        return sorted((m for m in self.measurements if m.mode == mode), key=lambda m: m.round)

    def summary(self, mode: str) -> ModeSummary:
        runs = self.of(mode)
        plain = {m.round: m for m in self.of(PLAIN)}
        speeds = [m.tasks_per_s for m in runs]
        round_ratios = [m.tasks_per_s / plain[m.round].tasks_per_s for m in runs]
        cpu_ratios = [
            m.cpu_us_per_task / plain[m.round].cpu_us_per_task
            for m in runs
            if plain[m.round].cpu_us_per_task
        ]
        cpu_low, cpu_high = median_interval(cpu_ratios)
        return ModeSummary(
            mode=mode,
            median=statistics.median(speeds),
            low=min(speeds),
            high=max(speeds),
            ratio=statistics.median(round_ratios),
            ratio_of_medians=statistics.median(speeds)
            / statistics.median(m.tasks_per_s for m in plain.values()),
            round_ratios=round_ratios,
            cpu_us=statistics.median(m.cpu_us_per_task for m in runs),
            cpu_extra=statistics.median(cpu_ratios) - 1 if cpu_ratios else 0.0,
            ratio_interval=median_interval(round_ratios),
            cpu_extra_interval=(cpu_low - 1, cpu_high - 1) if cpu_ratios else (0.0, 0.0),
        )

    def extra_by_part(self, mode: str) -> dict[str, float]:
        """Median over rounds of the CPU µs per task `mode` used more than plain in the same
        round, by part; and `threads`, the median µs per task of its side threads."""
        plain = {m.round: m for m in self.of(PLAIN)}
        runs = [m for m in self.of(mode) if m.round in plain]
        if not runs:
            return {}
        extra = {
            part: statistics.median(m.cpu_us[part] - plain[m.round].cpu_us[part] for m in runs)
            for part in ("client", "worker", "redis")
            if all(part in m.cpu_us and part in plain[m.round].cpu_us for m in runs)
        }
        extra["threads"] = statistics.median(m.threads_us for m in runs)
        return extra

    @property
    def complete(self) -> bool:
        """Every client got all its results back, right: otherwise the figures mean nothing."""
        return all(m.complete for m in self.measurements)

    @property
    def outcome(self) -> str:
        """PASS when both bars hold over the whole confidence interval of each median, FAIL
        when either is missed over its whole interval, else INCONCLUSIVE: the machine's noise
        is larger than the margin, and only more rounds (or a quieter machine) can tell."""
        if not self.complete:
            return "INVALID"
        traced = self.summary(TRACED)
        if interval_confidence(len(traced.round_ratios)) < CONFIDENCE:
            return "INCONCLUSIVE"  # too few rounds for an interval that sure
        (ratio_low, ratio_high), (cpu_low, cpu_high) = (
            traced.ratio_interval,
            traced.cpu_extra_interval,
        )
        if ratio_low >= PASS_RATIO and cpu_high <= MAX_CPU_EXTRA:
            return "PASS"
        if ratio_high < PASS_RATIO or cpu_low > MAX_CPU_EXTRA:
            return "FAIL"
        return "INCONCLUSIVE"

    @property
    def passed(self) -> bool:
        return self.outcome == "PASS"

    def verdict(self) -> str:
        if not self.complete:
            lost = [m.line() for m in self.measurements if not m.complete]
            return "INVALID: some results never came back:\n  " + "\n  ".join(lost)
        traced = self.summary(TRACED)
        (ratio_low, ratio_high), (cpu_low, cpu_high) = (
            traced.ratio_interval,
            traced.cpu_extra_interval,
        )
        lines = [
            f"{self.outcome}: traced / plain = {traced.ratio:.3f} (bar: >= {PASS_RATIO}; median "
            f"of {len(traced.round_ratios)} paired rounds, {CONFIDENCE:.0%} interval "
            f"{ratio_low:.3f}–{ratio_high:.3f}; ratio of the medians "
            f"{traced.ratio_of_medians:.3f}); tracing, commands included, adds "
            f"{traced.cpu_extra:+.1%} CPU per task (bar: <= {MAX_CPU_EXTRA:+.0%}; interval "
            f"{cpu_low:+.1%} to {cpu_high:+.1%})",
        ]
        if SPY in self.modes:
            spy = self.summary(SPY)
            lines.append(
                f"MONITOR: traced+monitor / plain = {spy.ratio:.3f}, throughput cost "
                f"{1 - spy.ratio:.0%} (adds {spy.cpu_extra:+.1%} CPU per task)"
            )
        parts = self.extra_by_part(TRACED)
        if {"client", "worker", "redis"} <= parts.keys():
            lines.append(f"traced's extra CPU per task (medians): {_by_part(parts)}")
        for name, env in self.variants.items():
            variant = self.summary(name)
            low, high = variant.cpu_extra_interval
            lines.append(
                f"variant {name} ({setting(env)}): {name} / plain = {variant.ratio:.3f}, adds "
                f"{variant.cpu_extra:+.1%} CPU per task (interval {low:+.1%} to {high:+.1%})"
            )
            by_part = self.extra_by_part(name)
            if {"client", "worker", "redis"} <= by_part.keys():
                lines.append(f"  {name}'s extra CPU per task (medians): {_by_part(by_part)}")
        if self.outcome == "INCONCLUSIVE":
            rounds = len(traced.round_ratios)
            sure = interval_confidence(rounds)
            lines.append(
                f"{rounds} rounds give a {sure:.0%} interval: at least 6 are needed"
                if sure < CONFIDENCE
                else "the interval straddles a bar: this machine's noise hides the answer; "
                "more rounds (--rounds) narrow the interval"
            )
        foreign = statistics.median(m.foreign_cpu for m in self.measurements)
        if foreign > NOISY_FOREIGN_CPU:
            lines.append(
                f"note: other processes took {foreign:.0%} of the machine's CPU during the "
                "measurements (median): tasks/s are noisy, the CPU columns are steadier"
            )
        return "\n".join(lines)

    def table(self) -> Table:
        table = Table(
            title=f"{self.tasks} add tasks, -c {self.concurrency}, {self.rounds} rounds "
            f"({self.duration_s:.0f} s, load {self.load_before[0]:.1f} -> {self.load_after[0]:.1f})"
        )
        columns = ("mode", "median tasks/s", "min–max", "ratio vs plain", "per round")
        for name in (*columns, "ratio of medians", "CPU µs/task", "CPU vs plain"):
            table.add_column(name, justify="left" if name == "mode" else "right")
        for mode in self.modes:
            s = self.summary(mode)
            table.add_row(
                mode,
                f"{s.median:.1f}",
                f"{s.low:.1f}–{s.high:.1f}",
                f"{s.ratio:.3f}",
                f"{min(s.round_ratios):.3f}–{max(s.round_ratios):.3f}",
                f"{s.ratio_of_medians:.3f}",
                f"{s.cpu_us:.0f}",
                f"{s.cpu_extra:+.1%}",
            )
        return table

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "rounds": self.rounds,
            "concurrency": self.concurrency,
            "duration_s": self.duration_s,
            "load_before": self.load_before,
            "load_after": self.load_after,
            "run_dir": str(self.run_dir),
            "measurements": [asdict(m) for m in self.measurements],
            "modes": list(self.modes),
            "variants": self.variants,
            "summary": [asdict(self.summary(m)) for m in self.modes] if self.measurements else [],
            "passed": self.passed,
            "outcome": self.outcome,
        }
