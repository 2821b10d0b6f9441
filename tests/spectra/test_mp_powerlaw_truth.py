"""Marchenko-Pastur bulk and power-law fits against independent computations.

The MP median comes from scipy quadrature of the density; the bulk edge from
eigenvalues placed at the exact MP quantiles; the power-law fit from a plain
loop over every candidate ``xmin`` that follows the written definition
(Clauset et al. 2009 with WeightWatcher's conventions), not the vectorised
suffix sums of :mod:`workbench.spectra.powerlaw`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import integrate, optimize

from workbench.spectra.mp import mp_fit, mp_median
from workbench.spectra.powerlaw import power_law_fit


def _mp_edges(y: float) -> tuple[float, float]:
    return (1 - np.sqrt(y)) ** 2, (1 + np.sqrt(y)) ** 2


def _mp_cdf(x: float, y: float) -> float:
    a, b = _mp_edges(y)
    density = lambda t: np.sqrt(max((b - t) * (t - a), 0.0)) / (2 * np.pi * y * t)  # noqa: E731
    return integrate.quad(density, a, x, limit=200)[0] if x > a else 0.0


def _mp_quantile(p: float, y: float) -> float:
    a, b = _mp_edges(y)
    return optimize.brentq(lambda x: _mp_cdf(x, y) - p, max(a, 1e-12), b, xtol=1e-13)


@pytest.mark.parametrize("y", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_mp_median_matches_quadrature(y):
    assert mp_median(y) == pytest.approx(_mp_quantile(0.5, y), rel=2e-5)


@pytest.mark.parametrize("y", [0.0, -0.5, 1.5])
def test_mp_median_rejects_ratios_outside_the_unit_interval(y):
    with pytest.raises(ValueError, match="y: expected a ratio"):
        mp_median(y)


def _mp_bulk(n: int, y: float) -> np.ndarray:
    """``n`` eigenvalues at the MP quantiles (i - 1/2) / n: a bulk with no sampling noise."""
    return np.array([_mp_quantile((i + 0.5) / n, y) for i in range(n)])


@pytest.fixture(scope="module")
def bulk():
    return _mp_bulk(201, 0.25)                      # shape (804, 201): Q = 4, y = 1/4


@pytest.mark.parametrize("shape, units", [((804, 201), 7.0), ((201, 804), 7.0), ((804, 201), 0.1)])
def test_mp_fit_finds_the_edge_of_an_exact_bulk(bulk, shape, units):
    fit = mp_fit(units * bulk, shape=shape)
    mean = bulk.mean()                               # ~1: the unit MP law has mean 1
    assert fit["sigma_mp"] == pytest.approx(np.sqrt(1 / mean), rel=2e-3)
    assert fit["bulk_max"] == pytest.approx(units * _mp_edges(0.25)[1], rel=3e-3)
    assert fit["mp_softrank"] == pytest.approx(fit["bulk_max"] / (units * bulk.max()), rel=1e-12)
    assert fit["mp_softrank"] == pytest.approx(_mp_edges(0.25)[1] / bulk.max(), rel=3e-3)
    assert fit["num_spikes"] == 0


@pytest.mark.parametrize("inside, beyond", [(0.5, 1.5), (0.97, 1.03)])
def test_mp_fit_counts_spikes_beyond_the_tracy_widom_margin(bulk, inside, beyond):
    N, M = 804, 201
    Q = N / M
    # Two probes above the median, so the median eigenvalue is fixed: one inside the margin, one beyond
    # (0.97 / 1.03 of it: the margin's exponents matter to a few percent).
    lo = hi = 10.0
    for _ in range(100):                             # the mean-1 rescaling depends on the probes: fixed point
        lam = np.r_[bulk, lo, hi]
        scale = lam.size / lam.sum()
        edge = np.median(lam * scale) / mp_median(1 / Q) * (1 + 1 / np.sqrt(Q)) ** 2
        tw = np.sqrt(edge ** (2 / 3) * M ** (-2 / 3) / np.sqrt(Q))
        lo, hi = (edge + inside * tw) / scale, (edge + beyond * tw) / scale
    fit = mp_fit(np.r_[bulk, lo, hi], shape=(N, M))
    assert fit["bulk_max"] == pytest.approx(edge / scale, rel=1e-9)
    assert fit["num_spikes"] == 1
    assert mp_fit(np.r_[bulk, lo, 3 * hi], shape=(N, M))["num_spikes"] == 1
    assert mp_fit(np.r_[bulk, 50 * hi, 60 * hi], shape=(N, M))["num_spikes"] == 2


def test_mp_fit_computes_in_float64(bulk):
    lam32 = (bulk * 3).astype(np.float32)
    fit32, fit64 = mp_fit(lam32, shape=(804, 201)), mp_fit(lam32.astype(np.float64), shape=(804, 201))
    for key in ("bulk_max", "sigma_mp", "mp_softrank"):
        assert fit32[key] == pytest.approx(fit64[key], rel=1e-14), key


def test_mp_fit_of_nothing():
    for lam in (np.array([]), np.zeros(3), np.array([np.nan, np.nan])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")           # refused up front, no 0/0 on the way
            fit = mp_fit(lam, shape=(4, 3))
        # no bulk, no spike count either (NaN, not a confident 0), and the reason
        assert np.isnan(fit["num_spikes"]) and np.isnan(fit["bulk_max"]) and np.isnan(fit["mp_softrank"])
        assert np.isnan(fit["sigma_mp"]) and fit["mp_reason"] == "no nonzero eigenvalue: no bulk to fit"


def _power_law_by_definition(values) -> dict:
    """Every candidate xmin in a plain loop, exactly as the module docstring states the rules."""
    lam = np.sort([v for v in np.asarray(values, dtype=float).ravel() if np.isfinite(v) and v > 1e-5])
    n = lam.size
    small = n < 20
    best = None
    for i in range(n - 1):                            # every eigenvalue but the largest
        xmin, tail = lam[i], lam[i:]
        spread = float(np.sum(np.log(tail / xmin)))
        if spread == 0:
            continue
        alpha = 1 + (tail.size - 1 if small else tail.size) / spread
        if alpha <= 1 or (small and (tail.size < 8 or spread <= 1e-12)):
            continue
        j = np.arange(tail.size)
        with np.errstate(over="ignore"):
            D = float(np.max(np.abs(1 - (tail / xmin) ** (1 - alpha) - j / tail.size)))
        if best is None or D < best["ks_distance"]:  # ties: the smallest xmin (the first)
            best = {"alpha": alpha, "xmin": xmin, "ks_distance": D, "n_tail": tail.size,
                    "sigma": (alpha - 1) / np.sqrt(tail.size)}
    return best


@pytest.mark.parametrize("n, seed", [(300, 0), (1500, 1), (19, 2), (12, 3), (25, 4), (20, 5)])
def test_power_law_fit_matches_the_definition(n, seed):
    rng = np.random.default_rng(seed)
    lam = (rng.pareto(1.5, n) + 1.0) * 0.01 * (1 + rng.random(n))
    lam = np.r_[lam, 1e-5, 1e-6, 0.0, np.nan]        # at or below 1e-5 and NaN: ignored
    fit, truth = power_law_fit(lam), _power_law_by_definition(lam)
    assert fit["n_tail"] == truth["n_tail"] and fit["xmin"] == truth["xmin"]
    for key in ("alpha", "ks_distance", "sigma"):
        assert fit[key] == pytest.approx(truth[key], rel=1e-10), key


def test_power_law_fit_small_sample_needs_eight_tail_points():
    # 10 eigenvalues: the small-sample rules apply; the tail of 8 is the shortest allowed.
    lam = np.geomspace(1.0, 1e3, 10)
    fit, truth = power_law_fit(lam), _power_law_by_definition(lam)
    assert fit["n_tail"] >= 8 and fit["n_tail"] == truth["n_tail"]
    assert fit["alpha"] == pytest.approx(truth["alpha"], rel=1e-12)


@pytest.mark.parametrize("lam", [[5.0], [2.0, 2.0, 2.0, 2.0], [2.0] * 25, [1e-6, 1e-7, 3.0], [np.nan, 4.0]])
def test_power_law_fit_without_a_tail_is_nan(lam):
    fit = power_law_fit(lam)
    assert fit["n_tail"] == 0 and all(np.isnan(fit[k]) for k in ("alpha", "xmin", "ks_distance", "sigma"))


def test_power_law_fit_with_a_single_admissible_tail():
    # 8 eigenvalues: only xmin = the smallest leaves a tail of 8; its KS distance is still computed.
    lam = np.geomspace(1.0, 1e3, 8) * np.r_[1.0, 1.3, 0.9, 1.1, 1.0, 1.2, 0.8, 1.0]
    fit, truth = power_law_fit(lam), _power_law_by_definition(lam)
    assert fit["n_tail"] == truth["n_tail"] == 8
    assert fit["ks_distance"] == pytest.approx(truth["ks_distance"], rel=1e-12) and fit["ks_distance"] < 1


@pytest.mark.parametrize("n_low, n_cluster", [(10, 25), (3, 12)])
def test_power_law_fit_of_a_tight_cluster_above_a_spread_bulk_warns_nothing(n_low, n_cluster):
    # A nearly flat tail gives alpha ~ 1e9; the fitted CDF below xmin overflows and is masked, silently.
    rng = np.random.default_rng(0)
    lam = np.r_[np.geomspace(1e-3, 0.5, n_low), 1 + rng.random(n_cluster) * 1e-9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = power_law_fit(lam)
    truth = _power_law_by_definition(lam)
    assert fit["n_tail"] == truth["n_tail"] and fit["alpha"] == pytest.approx(truth["alpha"], rel=1e-9)


def test_power_law_fit_computes_in_float64():
    lam32 = (np.random.default_rng(7).pareto(1.5, 200) + 1).astype(np.float32)
    fit32, fit64 = power_law_fit(lam32), power_law_fit(lam32.astype(np.float64))
    assert fit32["xmin"] == fit64["xmin"]
    for key in ("alpha", "ks_distance", "sigma"):
        assert fit32[key] == pytest.approx(fit64[key], rel=1e-14), key


def test_power_law_fit_with_tied_largest_eigenvalues_warns_nothing():
    # The last candidates' tails are flat (zero spread): alpha = n / 0 is skipped, silently.
    lam = np.r_[np.geomspace(1.0, 10.0, 30), 10.0, 10.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = power_law_fit(lam)
    with np.errstate(divide="ignore"):
        truth = _power_law_by_definition(lam)
    assert fit["n_tail"] == truth["n_tail"] and fit["alpha"] == pytest.approx(truth["alpha"], rel=1e-12)


def test_power_law_fit_finds_a_tail_that_starts_past_two_blocks():
    # A flat bulk of 2500 then a Pareto tail of 500: the best xmin sits past row 2048 (the third block of 1024).
    rng = np.random.default_rng(8)
    lam = np.r_[rng.uniform(1.0, 2.0, 2500), 2.0 * (rng.pareto(2.0, 500) + 1.0)]
    fit, truth = power_law_fit(lam), _power_law_by_definition(lam)
    assert np.searchsorted(np.sort(lam), truth["xmin"]) > 2048
    assert fit["n_tail"] == truth["n_tail"] and fit["xmin"] == truth["xmin"]
    assert fit["ks_distance"] == pytest.approx(truth["ks_distance"], rel=1e-12)
