"""Means and shares with confidence intervals, and paired differences, for repeated measurements (a few seeds).

Student's t intervals: with R = 3 repeats the 95 % half-width is 4.3 standard errors, so only large differences are
called; a difference whose interval reaches 0 is a **tie**. Shares of hits (how often a test succeeds) get Wilson's
score interval.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats


def mean_interval(values, level: float = 0.95,
                  bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float, float]:
    """``(mean, low, high)`` of ``values`` with a Student's t interval at ``level``, cut to ``bounds``, the range the
    quantity cannot leave (seconds >= 0, accuracy in [0, 1]): the cut interval covers the mean whenever the uncut one
    does, and never shows a negative time. ``(value, nan, nan)`` for a single value (no spread to measure), all
    ``nan`` for none."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(data.mean())
    if data.size == 1:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + level) / 2, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)


def paired_difference(first, second, level: float = 0.95) -> dict:
    """The paired difference ``first - second`` (same seeds, in the same order): ``{mean, low, high, n, verdict}``
    with verdict ``"higher"`` / ``"lower"`` when the interval excludes 0, ``"tie"`` when it reaches 0, ``"not
    measured"`` with fewer than 2 pairs."""
    pairs = [(a, b) for a, b in zip(first, second) if a is not None and b is not None]
    mean, low, high = mean_interval([a - b for a, b in pairs], level)
    if len(pairs) < 2:
        verdict = "not measured"
    elif low > 0:
        verdict = "higher"
    elif high < 0:
        verdict = "lower"
    else:
        verdict = "tie"
    return dict(mean=mean, low=low, high=high, n=len(pairs), verdict=verdict)


def proportion_interval(hits: int, cases: int, level: float = 0.95) -> tuple[float, float, float]:
    """``(hits / cases, low, high)`` with Wilson's score interval at ``level`` (it stays inside [0, 1] and is not
    empty at 0 or ``cases`` hits, unlike the normal approximation); all ``nan`` for no case. It assumes independent
    cases: for cases that share a network (two replicates of one target) it is too narrow, a lower bound on the
    uncertainty."""
    if cases <= 0:
        return math.nan, math.nan, math.nan
    z = float(stats.norm.ppf((1 + level) / 2))
    share = hits / cases
    centre = (share + z * z / (2 * cases)) / (1 + z * z / cases)
    half = z * math.sqrt(share * (1 - share) / cases + z * z / (4 * cases * cases)) / (1 + z * z / cases)
    return share, max(0.0, centre - half), min(1.0, centre + half)


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equal-length vectors (ties share their mean rank); ``nan`` when either is
    constant (no order to compare)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def centred_interval(per_seed, resamples, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` interval of an estimate, the mean of ``per_seed [S]``, from the seeds' values and their bootstrap
    resamples ``[S, R]`` (``R`` may be 0): the estimate plus the percentiles of each resample's deviation from it,
    ``(m_s - mean) + (r - median_s)``. A resampled Fisher is noisier, so resampled distances sit above their seed's
    value; centring each seed's resamples on their median removes that bias and keeps their spread, so the interval
    describes the estimate (a percentile interval of the raw resamples can miss it). Without resamples: the
    percentiles of the seeds' deviations."""
    per_seed, resamples = np.asarray(per_seed, dtype=float), np.asarray(resamples, dtype=float)
    estimate = float(per_seed.mean())
    if resamples.size:
        deviations = (per_seed - estimate)[:, None] + resamples - np.median(resamples, axis=1, keepdims=True)
    else:
        deviations = per_seed - estimate
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(deviations, [tail, 100 - tail])
    return estimate + float(low), estimate + float(high)


def resampling_range(sizes: list[int], figures: Callable[[list[np.ndarray]], dict[str, float]],
                     resamples: int = 400, level: float = 0.95, seed: int = 0) -> dict[str, list[float] | None]:
    """``{name: [low, high]}``: the central ``level`` percentiles of each figure over ``resamples`` draws with
    replacement of positions ``0..n-1`` for every ``n`` of ``sizes`` (one draw per group, e.g. per architecture's
    seeds); ``figures(positions)`` computes the figures of one draw. A figure that is ``nan`` in any draw, or every
    figure when no group has two positions (nothing to resample), gets ``None``."""
    if all(size < 2 for size in sizes):
        return dict.fromkeys(figures([np.arange(size) for size in sizes]))
    rng, draws = np.random.default_rng(seed), {}
    for _ in range(resamples):
        for name, value in figures([rng.integers(size, size=size) for size in sizes]).items():
            draws.setdefault(name, []).append(np.nan if value is None else value)
    tail = (1 - level) / 2 * 100
    return {name: None if np.isnan(values).any() else [float(np.percentile(values, tail)),
                                                       float(np.percentile(values, 100 - tail))]
            for name, values in draws.items()}
