"""Covariates: binned like the affinity, correlated with time factors, shift p-values calibrated, bad input refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import gaussian_filter1d
from scipy.stats import pearsonr

from workbench.connectome import dynamic_connectome, synthetic
from workbench.connectome.covariates import as_covariates, covariate_correlation, find_covariates


def _factors(tf, af):
    return (xr.DataArray(tf, dims=("time", "component"), coords={"time": np.arange(tf.shape[0])}),
            xr.DataArray(af, dims=("animal", "component")))


def test_correlation_matches_scipy_on_hand_binned_covariates():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(2, 200))
    raw[1, 10:30] = np.nan  # not recorded for a while in animal 1
    tf = rng.random((50, 2))
    af = np.array([[1.0, 0.0], [1.0, 2.0]])  # component 0 lives in both animals, component 1 in animal 1 only
    out = covariate_correlation(*_factors(tf, af), {"x": xr.DataArray(raw, dims=("animal", "time"))}, 4,
                                n_shifts=19)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the bins animal 1 did not record
        binned = np.nanmean(raw.reshape(2, 50, 4), -1)  # reference binning: 4 frames per bin
    present = ~np.isnan(binned)
    for c in range(2):
        with np.errstate(invalid="ignore"):
            expected = (np.where(present, binned, 0) * af[:, c:c + 1]).sum(0) / (present * af[:, c:c + 1]).sum(0)
        np.testing.assert_allclose(out["covariate_binned"][0, c], expected)
        ok = ~np.isnan(expected)
        assert out["covariate_correlation"][0, c] == pytest.approx(pearsonr(expected[ok], tf[ok, c])[0])


def test_shift_p_values_are_calibrated_on_unrelated_covariates():
    """An autocorrelated covariate independent of the time factor: p <= 0.05 about 5% of the time, not more."""
    rng = np.random.default_rng(1)
    tf, af = _factors(gaussian_filter1d(rng.normal(size=(60, 1)), 3, axis=0) ** 2, np.ones((1, 1)))
    p = []
    for _ in range(200):
        cov = gaussian_filter1d(rng.normal(size=240), 8)  # slow, like behaviour
        out = covariate_correlation(tf, af, {"v": xr.DataArray(cov[None], dims=("animal", "time"))}, 4,
                                    n_shifts=99, seed=int(rng.integers(1 << 30)))
        p.append(float(out["covariate_p"][0, 0]))
    p = np.array(p)
    assert (p <= 0.05).mean() <= 0.09, (p <= 0.05).mean()  # binomial(200, 0.05): P(> 0.09) < 1%
    assert 0.4 < p.mean() < 0.6


@pytest.mark.parametrize("seed", [0, 1])
def test_a_motif_driven_by_a_planted_covariate_follows_it(seed):
    ds = synthetic(16, 3, 240, 2, seed=seed, driven_motif=1)
    out = dynamic_connectome(ds, rank=2, n_restarts=3, seed=seed, device="cpu")  # `drive` travels in the Dataset
    assert out["covariate"].values.tolist() == ["drive"]
    member = ds["community"].values[1] > 0
    ia = np.searchsorted(ds["neuron"].values, out["neuron_a"].values)
    ib = np.searchsorted(ds["neuron"].values, out["neuron_b"].values)
    pairs = member[ia] & member[ib]
    driven = int(np.argmax([np.corrcoef(pairs, out["pair_factor"][:, c])[0, 1] for c in range(2)]))
    r, p = out["covariate_correlation"].sel(covariate="drive"), out["covariate_p"].sel(covariate="drive")
    assert r[driven] > 0.4 and p[driven] <= 0.05
    assert p[1 - driven] > 0.05  # the epoch motif does not follow the drive


def test_covariates_travel_with_traces():
    ds = synthetic(8, 2, 80, 1, seed=0, driven_motif=0)
    assert list(find_covariates(ds)) == ["drive"]
    traces = ds["traces"].assign_coords(speed=(("animal", "time"), np.ones((2, 80))))
    assert list(find_covariates(traces)) == ["speed"]
    out = dynamic_connectome(traces, rank=1, n_restarts=1, max_iter=20, device="cpu",
                             covariates={"odor": np.r_[np.zeros(40), np.ones(40)]})  # replaces what travels
    assert out["covariate"].values.tolist() == ["odor"] and out["covariate_binned"].sizes["time"] == 20
    assert out["covariate_binned"]["time"].equals(out["time_factor"]["time"])


def test_bad_covariates_and_surrogate_counts_are_refused():
    traces = synthetic(8, 2, 80, 1, seed=0).traces
    with pytest.raises(ValueError, match="covariates: expected 'v' to have 80 time points"):
        as_covariates({"v": np.zeros(79)}, traces)
    with pytest.raises(ValueError, match="covariates: expected 'v' to have 80"):
        as_covariates({"v": np.zeros((3, 80))}, traces)  # 3 rows for 2 animals
    with pytest.raises(ValueError, match="covariates: 'v' is NaN everywhere"):
        as_covariates({"v": np.full(80, np.nan)}, traces)
    with pytest.raises(ValueError, match="covariates: expected finite"):
        as_covariates({"v": np.r_[np.inf, np.zeros(79)]}, traces)
    with pytest.raises(TypeError, match="covariates: expected numbers"):
        as_covariates({"v": np.array(["a"] * 80)}, traces)
    with pytest.raises(TypeError, match="covariates: expected a dict"):
        as_covariates([np.zeros(80)], traces)
    with pytest.raises(ValueError, match="covariates: expected 'v' on dims"):
        as_covariates({"v": xr.DataArray(np.zeros(8), dims=("neuron",))}, traces)
    with pytest.raises(ValueError, match="covariates: expected 'v' to have 80"):
        dynamic_connectome(traces, rank=1, covariates={"v": np.zeros(81)}, device="cpu")
    for bad in (0, -1, 2.5, True, "19"):
        with pytest.raises(ValueError, match="n_surrogates: expected an integer >= 1"):
            dynamic_connectome(traces, rank=1, n_surrogates=bad, device="cpu")
    with pytest.raises(ValueError, match="surrogate_method: expected one of"):
        dynamic_connectome(traces, rank=1, n_surrogates=2, surrogate_method="shuffle", device="cpu")
    with pytest.raises(ValueError, match="alpha: expected a number in"):
        dynamic_connectome(traces, rank=1, n_surrogates=2, alpha=1.5, device="cpu")
    with pytest.raises(ValueError, match="community_edges: 'above_chance' needs"):
        dynamic_connectome(traces, rank=1, community_edges="above_chance", device="cpu")
    with pytest.raises(ValueError, match="n_shifts: expected an integer >= 1"):
        covariate_correlation(*_factors(np.ones((20, 1)), np.ones((2, 1))), {}, 4, n_shifts=0)
