"""bench-flush's split of a flush's cost into fixed and per event: a least-squares line."""

from __future__ import annotations

import pytest

from demo.bench.flush_cost import fit


def test_a_line_through_exact_points_gives_its_intercept_and_slope() -> None:
    intercept, slope = fit([(1, 60.5), (50, 85.0), (200, 160.0), (800, 460.0)])
    assert intercept == pytest.approx(60.0)
    assert slope == pytest.approx(0.5)


def test_noisy_points_give_the_least_squares_line() -> None:
    # y = 10 + 2x, off by +1, -1, -1, +1: deviations that sum to zero and are uncorrelated
    # with x, so the least-squares line is the true one.
    intercept, slope = fit([(0, 11.0), (1, 11.0), (2, 13.0), (3, 17.0)])
    assert intercept == pytest.approx(10.0)
    assert slope == pytest.approx(2.0)


def test_one_batch_size_cannot_split_fixed_from_per_event() -> None:
    with pytest.raises(ValueError, match="two different"):
        fit([(5, 1.0), (5, 2.0)])
