"""bench/stats.py: mean ± std over seeds and the paired bootstrap, by hand and by their properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import stats


def test_summarise_by_hand() -> None:
    s = stats.summarise([0.2, 0.3, 0.4])
    assert (s.mean, s.n) == (pytest.approx(0.3), 3)
    assert s.std == pytest.approx(0.1)  # sqrt(((-0.1)^2 + 0 + 0.1^2) / (3 - 1))
    one = stats.summarise([0.25])
    assert (one.mean, one.std, one.n) == (0.25, None, 1)  # one seed has no spread: None, never 0
    with pytest.raises(ValueError, match="at least one seed"):
        stats.summarise([])


def test_paired_bootstrap_by_hand() -> None:
    # Two seed pairs, two queries. d = a - b = [[1, 0], [0, 1]], so d_q = [0.5, 0.5]: every resample of the queries
    # has mean 0.5, and the interval is [0.5, 0.5], outside noise.
    a, b = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 0.0]])
    d = stats.paired_bootstrap(a, b)
    assert (d.mean, d.low, d.high, d.n_queries, d.n_pairs) == (0.5, 0.5, 0.5, 2, 2)
    assert not d.inside_noise and (d.resamples, d.level, d.seed) == (10_000, 0.95, 0)
    # One pair, d_q = [1, -1]: a resample's mean is 1, 0 or -1 with probabilities 1/4, 1/2, 1/4, so with 10,000
    # resamples the 250th smallest is -1 and the 250th largest is 1: the interval [-1, 1] contains 0.
    d = stats.paired_bootstrap(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert (d.mean, d.low, d.high) == (0.0, -1.0, 1.0) and d.inside_noise
    # d_q = [0, 1] (one query won, one tied): means 0, 0.5, 1; the interval [0, 1] touches 0: inside noise.
    d = stats.paired_bootstrap(np.array([1.0, 1.0]), np.array([1.0, 0.0]))
    assert (d.mean, d.low, d.high) == (0.5, 0.0, 1.0) and d.inside_noise


def test_paired_bootstrap_width_matches_the_normal_approximation() -> None:
    # 2,000 queries of 0/1 differences with mean 0.1: the percentile interval's half width is the normal one
    # (1.96 sd / sqrt(n)) within a few percent, and it is centred on the mean.
    rng = np.random.default_rng(7)
    a = (rng.random(2000) < 0.4).astype(float)
    b = np.where(rng.random(2000) < 0.75, a, 1 - a)  # paired: b mostly agrees with a
    d = stats.paired_bootstrap(a, b)
    half = stats.normal_half_width(a - b)
    assert (d.high - d.low) / 2 == pytest.approx(half, rel=0.05)
    assert (d.high + d.low) / 2 == pytest.approx(d.mean, abs=0.1 * half)


def test_paired_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one shape"):
        stats.paired_bootstrap(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        stats.paired_bootstrap(np.array([np.nan]), np.array([0.0]))
    with pytest.raises(ValueError, match="resamples"):
        stats.paired_bootstrap(np.zeros(3), np.zeros(3), resamples=0)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), pairs=st.integers(1, 3), seed=st.integers(0, 5))
def test_paired_bootstrap_properties(data, pairs: int, seed: int) -> None:
    n_query = data.draw(st.integers(1, 40))
    row = st.lists(st.sampled_from([0.0, 1.0, 0.25, 0.5, 0.9]), min_size=n_query, max_size=n_query)
    a = np.array([data.draw(row) for _ in range(pairs)])
    b = np.array([data.draw(row) for _ in range(pairs)])
    ab = stats.paired_bootstrap(a, b, resamples=500, seed=seed)
    # A against itself: no difference, in every resample
    same = stats.paired_bootstrap(a, a, resamples=500, seed=seed)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0) and same.inside_noise
    # swapping A and B negates the estimate and mirrors the interval, exactly
    ba = stats.paired_bootstrap(b, a, resamples=500, seed=seed)
    assert (ba.mean, ba.low, ba.high) == (-ab.mean, -ab.high, -ab.low)
    # the interval lies within the range of the per-query differences, and a fixed seed repeats it
    per_query = (a - b).mean(axis=0)
    assert per_query.min() - 1e-12 <= ab.low <= ab.high <= per_query.max() + 1e-12
    assert stats.paired_bootstrap(a, b, resamples=500, seed=seed) == ab


def test_seed_interval_is_students_t_over_the_pairs_by_hand():
    """differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half width 4.302653 / sqrt(3) = 2.484138."""
    s = stats.seed_interval([1.0, 2.0, 3.0])
    assert s.mean == pytest.approx(2.0)
    assert (s.low, s.high) == (pytest.approx(2.0 - 2.484138, abs=1e-6), pytest.approx(2.0 + 2.484138, abs=1e-6))
    assert s.inside_noise and not stats.seed_interval([1.0, 1.1, 0.9]).inside_noise
    assert stats.seed_interval([0.5]) is None  # one pair says nothing about seeds
