"""Summary statistics over seeds: mean, sample std, n and a seeded percentile-bootstrap 95 % interval.

Seeds are few (often 3), so the interval is wide and crude; it is reported so nobody mistakes one lucky seed
for an effect. The bootstrap uses a fixed seed so that two reports over the same files are byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

LEVEL = 0.95
N_BOOT = 2000
BOOT_SEED = 0


def _clean(values: Iterable[float]) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    return x[~np.isnan(x)]


def _interval(means: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(values: Iterable[float], level: float = LEVEL, n_boot: int = N_BOOT,
                 seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (nan, nan) below two values, where resampling says nothing."""
    x = _clean(values)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    return _interval(x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1), level)


def bootstrap_diff_ci(a: Iterable[float], b: Iterable[float], level: float = LEVEL, n_boot: int = N_BOOT,
                      seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), resampling the two groups independently;
    (nan, nan) unless both groups have two values or more."""
    x, y = _clean(a), _clean(b)
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mx = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
    my = y[rng.integers(0, len(y), (n_boot, len(y)))].mean(axis=1)
    return _interval(mx - my, level)


def ci_low(values: Iterable[float]) -> float:
    """Lower end of bootstrap_ci (for pandas agg)."""
    return bootstrap_ci(values)[0]


def ci_high(values: Iterable[float]) -> float:
    """Upper end of bootstrap_ci (for pandas agg)."""
    return bootstrap_ci(values)[1]
