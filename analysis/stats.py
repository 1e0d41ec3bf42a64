"""Intervals over seeds: Student's t for the few seeds a grid has, a percentile bootstrap only for many.

With 2 or 3 seeds a bootstrap has a handful of distinct resampled means and its interval is far too narrow
(it cannot be wider than the range of the values), so below BOOTSTRAP_MIN_N values the interval is the
textbook t-interval mean ± t_{(1+level)/2, n-1} · sd / √n, exact for normal values and honest about how
little 3 seeds say. From BOOTSTRAP_MIN_N values on, the percentile bootstrap (seeded, so two reports over the
same files are byte-identical) no longer leans on normality. One value gives no interval at all.

The t quantile is scipy.stats.t.ppf.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

LEVEL = 0.95
N_BOOT = 2000
BOOT_SEED = 0
BOOTSTRAP_MIN_N = 20  # below this many values the t-interval; from it on the bootstrap


def _clean(values: Iterable[float]) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    return x[~np.isnan(x)]


def t_quantile(p: float, df: int) -> float:
    """The p quantile of Student's t with df degrees of freedom (p in (0, 1), df a positive integer):
    scipy.stats.t.ppf, with the arguments checked so that a bad call raises instead of returning nan."""
    if not 0 < p < 1 or df < 1 or int(df) != df:
        raise ValueError(f"t_quantile needs 0 < p < 1 and a positive integer df, got p={p}, df={df}")
    return _t_ppf(float(p), int(df))


@functools.lru_cache(maxsize=256)
def _t_ppf(p: float, df: int) -> float:
    """scipy's t.ppf, remembered: a sweep's report asks for the same few (p, df) thousands of times, and each
    scipy call costs about a millisecond."""
    return float(scipy_stats.t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """A confidence interval of a mean: its ends (nan where none exists), n values and how it was made."""

    low: float
    high: float
    n: int
    kind: str  # "t", "bootstrap", or "" where n < 2 leaves no interval


def t_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """mean ± t_{(1+level)/2, n-1} · sd / √n (sd with ddof 1); no interval below two values."""
    x = _clean(values)
    if len(x) < 2:
        return Interval(math.nan, math.nan, len(x), "")
    half = t_quantile((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return Interval(float(x.mean() - half), float(x.mean() + half), len(x), "t")


def bootstrap_ci(values: Iterable[float], level: float = LEVEL, n_boot: int = N_BOOT,
                 seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (nan, nan) below two values, where resampling says nothing."""
    x = _clean(values)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def mean_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """The interval the tables report: t below BOOTSTRAP_MIN_N values, percentile bootstrap from there on."""
    x = _clean(values)
    if len(x) < BOOTSTRAP_MIN_N:
        return t_interval(x, level)
    low, high = bootstrap_ci(x, level)
    return Interval(low, high, len(x), "bootstrap")


def paired_differences(a: pd.Series, b: pd.Series) -> pd.Series:
    """a - b per seed (both Series indexed by seed), over the seeds both have a value for: a seed that only
    one method ran has no partner and is left out (index alignment makes it nan, dropna removes it)."""
    return a.sub(b).dropna()
