"""The statistics behind the tables and ``bench compare``: mean ± std over seeds, and a paired bootstrap.

Pure functions on numbers (no tracking, no files), so that each can be checked by hand.

**Over seeds.** :func:`summarise` gives the mean and the sample standard deviation (n - 1 in the denominator) of
one value per seed. One seed has no spread to estimate: its std is ``None``, never 0.

**Two methods on the same queries.** The uncertainty of a difference between two methods has two sources: which
test queries were drawn, and which seeds trained the models. :func:`paired_bootstrap` takes per-query values of
both methods, ``a[p, q]`` and ``b[p, q]`` for seed pair ``p`` and query ``q`` (a 0/1 hit, an IoU, a discounted
hit), and resamples the *queries* with replacement, keeping every seed pair and the pairing of A and B on a query
together: the paired design cancels the query difficulty that both methods share. The statistic is the mean
difference over all seed pairs and queries; since every pair has the same queries, a resample's statistic is the
mean over the drawn queries of ``d_q = mean_p (a[p, q] - b[p, q])``. The interval is the percentile interval of
``resamples`` such means: with ``k = round((1 - level) / 2 * resamples)``, the ``k``-th and the
``(resamples - 1 - k)``-th of the sorted means (0-based; 250 and 9,749 of 10,000 at 95 %). Taking order statistics
at mirrored ranks makes the interval exactly antisymmetric: swapping A and B negates it, bit for bit. The seed
pairs themselves are not resampled (with 3 seeds there is too little to resample); their spread is what the
mean ± std over seeds shows beside the interval. The generator is numpy's PCG64 with a fixed seed, so the same
inputs always give the same interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
BOOTSTRAP_SEED = 0
_CHUNK_ELEMENTS = 2**22
"""Resampled indices drawn at once (32 MiB of int64), so that 10,000 resamples of 17,000 queries fit in memory."""


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation of one value per seed; ``std`` is ``None`` for a single seed."""

    mean: float
    std: float | None
    n: int


def summarise(values: Sequence[float]) -> Summary:
    """Mean ± sample std (n - 1) of ``values``, one per seed; at least one value."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarise: at least one seed is needed")
    std = statistics.stdev(values) if len(values) > 1 else None
    return Summary(statistics.fmean(values), std, len(values))


@dataclass(frozen=True)
class PairedDifference:
    """The mean paired difference A - B and its bootstrap interval (same units as the inputs)."""

    mean: float
    low: float
    high: float
    n_queries: int
    n_pairs: int
    resamples: int
    level: float
    seed: int

    @property
    def inside_noise(self) -> bool:
        """True when the interval contains 0: the data cannot tell the two methods apart."""
        return self.low <= 0.0 <= self.high


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> PairedDifference:
    """Mean of ``a - b`` and its ``level`` percentile bootstrap interval, resampling queries (module docstring).

    ``a`` and ``b`` are ``[pairs, queries]`` (or ``[queries]`` for one pair) of per-query values, row ``p`` of both
    from the same seed pair and column ``q`` the same query.
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"a and b must be non-empty [pairs, queries] of one shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-query values must be finite")
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples} and {level}")
    per_query = (a - b).mean(axis=0)  # d_q: the seed pairs of one query stay together
    n_query = per_query.shape[0]
    rng = np.random.Generator(np.random.PCG64(seed))
    means = np.empty(resamples, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // n_query)
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        drawn = rng.integers(0, n_query, size=(rows, n_query))
        means[start : start + rows] = per_query[drawn].mean(axis=1)
    means.sort()
    k = min(int(round((1.0 - level) / 2.0 * resamples)), (resamples - 1) // 2)
    return PairedDifference(
        mean=float(per_query.mean()),
        low=float(means[k]),
        high=float(means[resamples - 1 - k]),
        n_queries=n_query,
        n_pairs=a.shape[0],
        resamples=resamples,
        level=level,
        seed=seed,
    )


@dataclass(frozen=True)
class SeedInterval:
    """The mean of the per-seed-pair differences and its Student-t interval: the noise of training seeds."""

    differences: tuple[float, ...]  # one per seed pair: run A's mean over the shared queries minus run B's
    mean: float
    low: float
    high: float
    level: float

    @property
    def inside_noise(self) -> bool:
        return self.low <= 0.0 <= self.high


def seed_interval(differences: Sequence[float], level: float = LEVEL) -> SeedInterval | None:
    """Student-t interval ``mean ± t_{n-1} * sd / sqrt(n)`` of per-seed-pair differences; None below two pairs.

    The query bootstrap holds each run fixed, so it says whether these runs differ on these queries; a seed that
    trains a better or worse model is the other source of noise. With n seed pairs the t interval is the textbook
    answer (n = 3: t = 4.30), and it is wide: that is what three seeds can tell.
    """
    from scipy import stats as scipy_stats

    values = [float(v) for v in differences]
    if len(values) < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(values) - 1)) * sd / math.sqrt(len(values))
    return SeedInterval(tuple(values), mean, mean - half, mean + half, level)


def normal_half_width(values: np.ndarray, level: float = LEVEL) -> float:
    """The normal-approximation half width ``z * sd / sqrt(n)`` of the mean of ``values`` (a cross-check of the
    bootstrap in the tests and a quick estimate of a test split's sampling error)."""
    values = np.asarray(values, dtype=np.float64)
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    return float(z * values.std(ddof=1) / math.sqrt(len(values)))
