"""The bench's arithmetic: chunks, paired ratios, the verdict (pure functions, made-up figures)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from demo.bench.report import (
    MODES,
    PLAIN,
    SPY,
    TRACED,
    BenchReport,
    Measurement,
    median_interval,
    mode_order,
)
from demo.bench.runner import chunk_sizes


def measurement(mode: str, round_: int, tasks_per_s: float, cpu: float = 1000.0) -> Measurement:
    return Measurement(
        mode=mode,
        round=round_,
        position=0,
        tasks=100,
        received=100,
        wrong=0,
        elapsed_s=100 / tasks_per_s,
        tasks_per_s=tasks_per_s,
        trace_bytes=0 if mode == PLAIN else 5,
        spy_events=10 if mode == SPY else None,
        worker_was_idle=True,
        worker_log="",
        cpu_us={"worker": cpu},
    )


def report(speeds: dict[str, list[float]]) -> BenchReport:
    r = BenchReport(
        tasks=100,
        rounds=len(speeds[PLAIN]),
        concurrency=2,
        run_dir=Path("."),
        modes=tuple(speeds),
    )
    r.measurements = [
        measurement(mode, i, speed) for mode, row in speeds.items() for i, speed in enumerate(row)
    ]
    return r


def test_chunks_split_a_round_evenly_and_never_exceed_the_chunk() -> None:
    assert chunk_sizes(1500, 300) == [300] * 5
    assert chunk_sizes(1000, 300) == [250] * 4
    assert chunk_sizes(1001, 300) == [251, 250, 250, 250]
    assert chunk_sizes(30, 300) == [30]


def test_every_mode_takes_every_position_in_turn() -> None:
    assert [mode_order(r)[0] for r in range(3)] == list(MODES)
    assert all(sorted(mode_order(r)) == sorted(MODES) for r in range(6))


def test_without_the_monitor_lane_two_modes_alternate_and_nothing_speaks_of_monitor() -> None:
    assert [mode_order(r, (PLAIN, TRACED)) for r in range(2)] == [
        [PLAIN, TRACED],
        [TRACED, PLAIN],
    ]
    r = report({PLAIN: [500.0] * 6, TRACED: [495.0] * 6})
    assert r.verdict().startswith("PASS: traced / plain = 0.990")
    assert "MONITOR" not in r.verdict()
    assert [row["mode"] for row in r.to_dict()["summary"]] == [PLAIN, TRACED]
    assert r.table().row_count == 2


def test_the_ratio_is_the_median_of_same_round_ratios_not_of_speeds() -> None:
    # The machine slows down by half in round 3; tracing costs 2 % in every round.
    r = report(
        {
            PLAIN: [500.0, 500.0, 250.0] * 2,
            TRACED: [490.0, 490.0, 245.0] * 2,
            SPY: [300.0, 300.0, 150.0] * 2,
        }
    )
    traced = r.summary(TRACED)
    assert traced.round_ratios == [0.98, 0.98, 0.98] * 2
    assert abs(traced.ratio - 0.98) < 1e-9
    assert r.passed
    assert r.verdict().startswith("PASS: traced / plain = 0.980 (bar: >= 0.97")


def test_below_the_bar_is_a_fail_and_a_lost_result_invalidates_the_run() -> None:
    slow = report({PLAIN: [500.0] * 6, TRACED: [480.0] * 6, SPY: [300.0] * 6})
    assert not slow.passed and slow.verdict().startswith("FAIL: traced / plain = 0.960")
    lost = report({PLAIN: [500.0], TRACED: [500.0], SPY: [300.0]})
    lost.measurements[1] = dataclasses.replace(lost.measurements[1], received=99)
    assert not lost.complete and not lost.passed
    assert lost.verdict().startswith("INVALID")


def test_more_than_three_percent_cpu_per_task_fails_even_at_full_speed() -> None:
    costly = report({PLAIN: [500.0] * 6, TRACED: [500.0] * 6, SPY: [300.0] * 6})
    costly.measurements = [
        measurement(m.mode, m.round, m.tasks_per_s, cpu=1040.0 if m.mode == TRACED else 1000.0)
        for m in costly.measurements
    ]
    assert costly.summary(TRACED).ratio == 1.0 and costly.outcome == "FAIL"
    assert "adds +4.0% CPU per task (bar: <= +3%; interval +4.0% to +4.0%)" in costly.verdict()


def test_the_interval_of_a_median_is_the_order_statistics_a_binomial_tail_allows() -> None:
    ranks = [float(n) for n in range(1, 31)]
    # The textbook 95 % ranks: n=10 -> 2nd and 9th, n=20 -> 6th and 15th, n=30 -> 10th and 21st.
    assert median_interval(ranks[:10]) == (2.0, 9.0)
    assert median_interval(ranks[:20]) == (6.0, 15.0)
    assert median_interval(ranks) == (10.0, 21.0)
    assert median_interval(ranks[:5]) == (1.0, 5.0), "too few rounds: min to max, and wider"
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0), "sorted first"


def test_a_median_above_the_bar_with_an_interval_across_it_is_inconclusive() -> None:
    # Noise of +-10 % per round around a 2 % cost: the median passes, its interval does not.
    plain = [500.0] * 10
    traced = [490.0 * f for f in (0.88, 0.9, 1.1, 1.12, 1.0, 1.0, 1.0, 0.95, 1.05, 1.0)]
    noisy = report({PLAIN: plain, TRACED: traced, SPY: [300.0] * 10})
    assert noisy.summary(TRACED).ratio >= 0.97
    assert noisy.outcome == "INCONCLUSIVE" and not noisy.passed
    assert noisy.verdict().startswith("INCONCLUSIVE: traced / plain = 0.980")
    assert "more rounds (--rounds) narrow the interval" in noisy.verdict()


def test_a_whole_interval_below_the_bar_is_a_fail() -> None:
    slow = report({PLAIN: [500.0] * 10, TRACED: [440.0 + n for n in range(10)], SPY: [300.0] * 10})
    assert slow.summary(TRACED).ratio_interval[1] < 0.97 and slow.outcome == "FAIL"


def test_fewer_than_six_rounds_cannot_give_a_95_percent_interval() -> None:
    few = report({PLAIN: [500.0] * 5, TRACED: [500.0] * 5, SPY: [300.0] * 5})
    assert few.summary(TRACED).ratio == 1.0 and few.outcome == "INCONCLUSIVE"
    assert "5 rounds give a 94% interval: at least 6 are needed" in few.verdict()


def test_the_extra_cpu_is_split_by_part_round_by_round() -> None:
    r = report({PLAIN: [500.0] * 6, TRACED: [490.0] * 6, SPY: [300.0] * 6})
    r.measurements = [
        dataclasses.replace(
            m,
            cpu_us={
                "client": 100.0 + 10 * (m.mode == TRACED) + m.round,
                "worker": 1000.0 + m.round,
                "redis": 50.0 + 5 * (m.mode == TRACED),
            },
            threads_us=30.0 if m.mode == TRACED else 0.0,
        )
        for m in r.measurements
    ]
    assert r.extra_by_part(TRACED) == {"client": 10.0, "worker": 0.0, "redis": 5.0, "threads": 30.0}
    assert "client +10 µs, worker +0 µs, Redis +5 µs" in r.verdict()


def test_the_verdict_gives_each_variant_its_ratio_and_cpu_beside_traced() -> None:
    r = report({PLAIN: [100.0] * 6, TRACED: [95.0] * 6, "hops": [98.0] * 6})
    r.variants = {"hops": {"XRAY_COMMANDS": "0"}}
    lines = r.verdict().splitlines()
    assert lines[0].startswith("FAIL: traced / plain = 0.950")  # the verdict stays traced's
    assert any(
        line.startswith("variant hops (XRAY_COMMANDS=0): hops / plain = 0.980") for line in lines
    )
    assert r.to_dict()["variants"] == {"hops": {"XRAY_COMMANDS": "0"}}
