"""Bootstrap confidence intervals over pieces (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13:
percentile intervals), seeded so a report is reproducible.

Per-piece metrics resample the piece values; corpus-level metrics (BLEU, KL of summed histograms) resample the pieces
and recompute the statistic from per-piece parts, so every resample is as cheap as a sum.

    point, lo, hi = bootstrap_ci(values)                           # mean and its 95% interval, 1,000 resamples
    lo, hi = percentile_interval([stat(idx) for idx in resample_indices(n)])

Tests: `.venv/bin/python -m pytest tests/eval/test_bootstrap.py -q`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95


def resample_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(n_resamples, n) indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(stats: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """(lo, hi) percentiles of the bootstrap distribution at (1 - level) / 2 and (1 + level) / 2; NaNs ignored."""
    s = np.asarray(stats, np.float64)
    s = s[~np.isnan(s)]
    if not len(s):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def bootstrap_ci(values: Sequence[float], stat: Callable[[np.ndarray], float] = np.mean,
                 n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL) -> tuple[float, float, float]:
    """(stat of the values, lo, hi); NaN values are dropped first, an empty set gives NaNs."""
    x = np.asarray(values, np.float64)
    x = x[~np.isnan(x)]
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    idx = resample_indices(len(x), n_resamples, seed)
    # np.mean: vectorised fast path
    stats = x[idx].mean(axis=1) if stat is np.mean else np.asarray([stat(x[i]) for i in idx])
    lo, hi = percentile_interval(stats, level)
    return float(stat(x)), lo, hi


def ci_of(point: float, stats: Sequence[float], level: float = LEVEL) -> dict:
    lo, hi = percentile_interval(stats, level)
    return {"value": point, "lo": lo, "hi": hi}
