"""The benchmark runs end to end on real processes: every mode, every result back.

Not a timing test: throughput depends on the machine, so only its sign is checked here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.bench.report import MODES, PLAIN, SPY, TRACED
from demo.bench.runner import run_bench
from demo.bench.variants import Variant


@pytest.mark.timeout(420)  # five worker starts and stops, on a busy machine
def test_bench_measures_every_mode_with_all_results_back(tmp_path: Path) -> None:
    variants = [Variant("aa", {"XRAY_TRACE": "0"}), Variant("hops", {"XRAY_COMMANDS": "0"})]
    report = run_bench(tasks=30, rounds=1, run_dir=tmp_path, variants=variants)

    assert sorted({m.mode for m in report.measurements}) == sorted([*MODES, "aa", "hops"])
    assert all(m.received == m.tasks == 30 and m.wrong == 0 for m in report.measurements)
    assert report.complete
    for mode in MODES:
        assert report.summary(mode).median > 0
    by_mode = {m.mode: m for m in report.measurements}
    assert by_mode[PLAIN].trace_bytes == 0, "XRAY_TRACE=0 must write no trace at all"
    assert all(m.trace_bytes > 0 for m in report.measurements if m.mode in (TRACED, SPY))
    assert by_mode[SPY].spy_events, "MONITOR watched the traced+monitor run"
    assert by_mode[PLAIN].spy_events is None
    # Each variant's environment reached its lane's processes, and only that lane's.
    assert by_mode["aa"].trace_bytes == 0, "the A/A variant runs plain Celery"
    assert 0 < by_mode["hops"].trace_bytes < by_mode[TRACED].trace_bytes, (
        "XRAY_COMMANDS=0 ships the hops without the commands"
    )
    assert "variant hops (XRAY_COMMANDS=0)" in report.verdict()


def test_bench_flush_splits_a_flush_into_fixed_and_per_event_costs() -> None:
    """On a real redis-server: each event adds to a flush's cost (not a timing test)."""
    from demo.bench.flush_cost import measure

    cost = measure(flushes=50)
    # The slopes only: a batch of 800 costs far more than one of 1, whatever else this busy
    # process does; the fixed parts are small next to its other threads' noise.
    assert cost.process_per_event_us > 0 and cost.redis_per_event_us > 0
    assert "per event" in cost.line()
