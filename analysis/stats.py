"""Intervals over seeds: Student's t for the few seeds a grid has, a percentile bootstrap only for many.

With 2 or 3 seeds a bootstrap has a handful of distinct resampled means and its interval is far too narrow
(it cannot be wider than the range of the values), so below BOOTSTRAP_MIN_N values the interval is the
textbook t-interval mean ± t_{(1+level)/2, n-1} · sd / √n, exact for normal values and honest about how
little 3 seeds say. From BOOTSTRAP_MIN_N values on, the percentile bootstrap (seeded, so two reports over the
same files are byte-identical) no longer leans on normality. One value gives no interval at all.

The t quantile is computed here (scipy is not a dependency of almabench): the t distribution's CDF has a
closed form for integer degrees of freedom (Abramowitz & Stegun 26.7.3-4), inverted by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

LEVEL = 0.95
N_BOOT = 2000
BOOT_SEED = 0
BOOTSTRAP_MIN_N = 20  # below this many values the t-interval; from it on the bootstrap
LARGE_DF = 1000  # beyond this many degrees of freedom an expansion around the normal quantile (A&S 26.7.5)


def _clean(values: Iterable[float]) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    return x[~np.isnan(x)]


def t_central_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer df >= 1 (A&S 26.7.3 for odd df, 26.7.4 for even df)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 0:  # sin θ · (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ... up to cos^(df-2)θ)
        term = total = 1.0
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * c2
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    # 2/π · (θ + sin θ cos θ · (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + ... up to cos^(df-3)θ))
    term = total = 1.0
    for k in range(1, (df - 1) // 2):
        term *= (2 * k) / (2 * k + 1) * c2
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def t_quantile(p: float, df: int) -> float:
    """The p quantile of Student's t with df degrees of freedom (p in (0, 1), df a positive integer).

    Bisection on θ = atan(t/√df) in (0, π/2), where the central mass is monotone; 100 halvings reach double
    precision. Past LARGE_DF degrees of freedom (where the sum only gets long) the Cornish-Fisher expansion
    around the normal quantile z (A&S 26.7.5), whose next term is below 1e-12 there.
    """
    if not 0 < p < 1 or df < 1 or int(df) != df:
        raise ValueError(f"t_quantile needs 0 < p < 1 and a positive integer df, got p={p}, df={df}")
    if df > LARGE_DF:
        z = NormalDist().inv_cdf(p)
        return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
                + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))
    if p < 0.5:
        return -t_quantile(1 - p, df)
    mass = 2 * p - 1  # P(|T| <= t) for the upper p quantile t
    lo, hi = 0.0, math.pi / 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_central_mass(math.sqrt(df) * math.tan(mid), int(df)) < mass else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


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
