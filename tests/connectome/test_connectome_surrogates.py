"""Null models: surrogates keep each neuron's dynamics, planted components beat them, chance data do not."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from workbench.connectome import dynamic_connectome, synthetic
from workbench.connectome.surrogates import (
    concentration,
    empirical_p,
    explained_variance,
    roll_rows,
    surrogate_traces,
)


@pytest.fixture(scope="module")
def traces():
    values = synthetic(6, 2, 120, 1, seed=3).traces.values.copy()
    values[1, 2] = np.nan  # a neuron not identified in animal 1
    return xr.DataArray(values, dims=("animal", "neuron", "time"))


def _circular_autocorrelation(x):
    x = x - x.mean(-1, keepdims=True)
    return np.fft.irfft(np.abs(np.fft.rfft(x)) ** 2, n=x.shape[-1])


def test_shift_surrogate_is_a_circular_shift_of_every_trace(traces):
    out = surrogate_traces(traces, method="shift", seed=1).values
    original = traces.values
    assert np.isnan(out[1, 2]).all() and not np.isnan(np.delete(out[1], 2, 0)).any()
    shifts = []
    for a in range(2):
        for n in range(6):
            if n == 2 and a == 1:
                continue
            # the one offset that maps the original onto the surrogate (np.roll is the reference)
            match = [s for s in range(120) if np.array_equal(np.roll(original[a, n], s), out[a, n])]
            assert len(match) == 1
            shifts.append(match[0])
            np.testing.assert_allclose(_circular_autocorrelation(out[a, n]), _circular_autocorrelation(original[a, n]))
    assert len(set(shifts)) > 6  # each trace gets its own offset
    np.testing.assert_array_equal(surrogate_traces(traces, seed=1).values, out, strict=True)  # seeded
    np.testing.assert_array_equal(roll_rows(original[0], np.arange(6)), np.stack([np.roll(r, s) for s, r in
                                                                                    enumerate(original[0])]))


def test_phase_surrogate_keeps_values_and_spectrum_and_not_the_timing(traces):
    out = surrogate_traces(traces, method="phase", seed=2).values
    assert np.isnan(out[1, 2]).all()
    x, y = traces.values[0], out[0]
    np.testing.assert_array_equal(np.sort(y, -1), np.sort(x, -1))  # IAAFT: exactly the trace's values...
    spectrum_x, spectrum_y = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
    assert np.linalg.norm(spectrum_y - spectrum_x) < 0.1 * np.linalg.norm(spectrum_x)  # ... and nearly its spectrum
    acf_x, acf_y = _circular_autocorrelation(x), _circular_autocorrelation(y)
    assert np.linalg.norm(acf_y - acf_x) < 0.15 * np.linalg.norm(acf_x)
    assert not np.allclose(y, x)
    # two traces with the same timing lose it: their correlation drops from 1
    same = xr.DataArray(np.repeat(x[:1], 2, 0)[None], dims=("animal", "neuron", "time"))
    shuffled = surrogate_traces(same, method="phase", seed=0).values[0]
    assert abs(np.corrcoef(shuffled)[0, 1]) < 0.5


def test_statistics_match_their_definitions():
    rng = np.random.default_rng(0)
    factors = [rng.random((15, 3)), rng.random((12, 3)), rng.random((2, 3))]
    weights = np.array([2.0, 1.0, 0.5])
    X = np.einsum("ir,jr,kr,r->ijk", *factors, weights) + 0.3 * rng.random((15, 12, 2))
    X[3, 4, 1] = np.nan
    observed = ~np.isnan(X)
    for r in range(3):  # reference: numpy's corrcoef over the observed entries
        Xr = weights[r] * np.einsum("i,j,k->ijk", factors[0][:, r], factors[1][:, r], factors[2][:, r])
        expected = max(np.corrcoef(X[observed], Xr[observed])[0, 1], 0) ** 2
        assert explained_variance(X, weights, factors)[r] == pytest.approx(expected, rel=1e-10)
    a = rng.random((40, 2))
    np.testing.assert_allclose(concentration(a), [np.sum(a[:, i] ** 4) / np.sum(a[:, i] ** 2) ** 2 for i in range(2)])
    assert concentration(np.ones((40, 1)))[0] == pytest.approx(1 / 40)
    assert empirical_p(np.array([3.0]), np.array([1.0, 3.0, 5.0]))[0] == pytest.approx(3 / 4)  # ties count


@pytest.fixture(scope="module")
def planted():
    """Two planted motifs (one community each), fitted at rank 3: one component has nothing real to fit."""
    ds = synthetic(20, 1, 400, 2, communities_per_motif=1, seed=1)
    out = dynamic_connectome(ds, rank=3, n_restarts=3, n_surrogates=19, community_edges="above_chance",
                             seed=1, device="cpu", tol=1e-4)
    return ds, out


def _motif_pairs(ds, out, motif):
    member = ds["community"].values[motif] > 0
    ia = np.searchsorted(ds["neuron"].values, out["neuron_a"].values)
    ib = np.searchsorted(ds["neuron"].values, out["neuron_b"].values)
    return member, member[ia] & member[ib]


def test_planted_components_are_significant_and_the_extra_one_is_not(planted):
    ds, out = planted
    matched = []
    for motif in range(2):
        member, pairs = _motif_pairs(ds, out, motif)
        corr = [np.corrcoef(pairs, out["pair_factor"][:, c])[0, 1] for c in range(3)]
        c = int(np.argmax(corr))
        matched.append(c)
        assert corr[c] > 0.8
        assert out["explained_variance_p"][c] <= 0.05 and out["significant"][c]
        assert out["explained_variance"][c] > out["surrogate_explained_variance"][:, 0].max()
        # pairs: the motif's own pairs beat chance, almost no other pair does
        above = out["pair_above_chance"][:, c].values
        assert above[pairs].mean() >= 0.6 and above[~pairs].mean() <= 0.02
        # the community graph built from above-chance pairs keeps the planted community together, alone
        labels = out["community"][c].values
        top = np.bincount(labels[member]).argmax()
        assert (labels[member] == top).mean() >= 0.8 and not (labels[~member] == top).any()
    (extra,) = set(range(3)) - set(matched)
    assert out["explained_variance_p"][extra] > 0.05 and not out["significant"][extra]
    assert out.attrs["n_surrogates"] == 19 and out["community"].attrs["edges"] == "above_chance"
    assert out["pair_threshold"].dims == ("pair",) and "neuron_a" in out["pair_threshold"].coords


def test_chance_data_are_not_significant_more_often_than_alpha():
    """Shifted recordings have no coupling: over seeds, min p is about uniform and <= 0.05 at most ~5% of the time.

    The benchmark (benchmarks/bench_surrogates.py) runs the same check over many more seeds.
    """
    min_p = []
    for seed in range(10):
        planted = synthetic(8, 1, 96, 1, seed=seed).traces
        rng = np.random.default_rng(100 + seed)  # uncoupled by np.roll, independently of the code under test
        chance = planted.copy(data=np.stack([[np.roll(t, rng.integers(96)) for t in a] for a in planted.values]))
        out = dynamic_connectome(chance, rank=2, n_restarts=1, max_iter=30, tol=1e-4, n_surrogates=19,
                                 covariates={}, community_method="leiden", seed=seed, device="cpu")
        min_p.append(float(out["explained_variance_p"].min()))
    min_p = np.array(min_p)
    assert (min_p <= 0.05).sum() <= 2, min_p  # P(>= 3 of 10 | rate 0.05) = 1.2%
    assert min_p.mean() > 0.3, min_p  # uniform on {0.05, ..., 1} has mean 0.525 (sd of a 10-mean: 0.09)


def test_too_few_surrogates_to_reach_alpha_is_said_not_silently_all_chance():
    """p = (1 + #) / (n + 1) >= 1 / (n + 1): below 19 surrogates no p-value reaches 0.05, whatever the data."""
    from workbench.connectome.surrogates import min_surrogates, significance

    for alpha in (0.05, 0.01, 0.1, 0.3, 0.5):  # independent truth: the smallest n with 1 / (n + 1) <= alpha
        n = min_surrogates(alpha)
        assert 1 / (n + 1) <= alpha + 1e-12 and 1 / n > alpha, alpha
    assert min_surrogates(0.05) == 19
    pf = xr.DataArray(np.array([[1.0], [0.0], [0.0]]), dims=("pair", "component"))

    def null(n):  # the observed component beats every surrogate: p is as small as n allows
        return {"explained_variance": np.full((n, 1), 0.1), "concentration": np.full((n, 1), 0.1),
                "pair_factor": np.ones((n, 3, 1)) / np.sqrt(3)}

    with pytest.warns(UserWarning, match=r"n_surrogates: 2 surrogates cannot reach p <= 0.05 .* use at least 19"):
        out = significance(np.array([0.9]), np.array([1.0]), pf, null(2))
    assert out["explained_variance_p"].values[0] == pytest.approx(1 / 3) and out["significant"].attrs["min_p"] == 1 / 3
    with pytest.warns(UserWarning, match="use at least 99"):
        significance(np.array([0.9]), np.array([1.0]), pf, null(19), alpha=0.01)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough surrogates: no warning, and the best component is significant
        assert bool(significance(np.array([0.9]), np.array([1.0]), pf, null(19))["significant"][0])
