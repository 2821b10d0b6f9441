"""Affinity invariances, pair <-> matrix round trip, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from workbench.connectome import affinity, matrix_to_pairs, pairs_to_matrix, synthetic


@pytest.fixture(scope="module")
def traces():
    return synthetic(12, 2, 200, 2, seed=3).traces


@pytest.mark.parametrize("method", ["differential", "correlation"])
def test_non_negative_and_affine_invariant(traces, method):
    base = affinity(traces, method=method)
    assert (base.values >= 0).all()
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.1, 10, (traces.sizes["animal"], traces.sizes["neuron"], 1))
    shift = rng.normal(0, 100, scale.shape)
    moved = affinity(traces * scale + shift, method=method)
    np.testing.assert_allclose(moved.values, base.values, rtol=1e-7, atol=1e-9)


def test_symmetric_by_hand(traces):
    """Swapping the two traces of a pair gives the same value (computed for both orders)."""
    two = traces.isel(neuron=[0, 1])
    swapped = traces.isel(neuron=[1, 0])
    np.testing.assert_allclose(affinity(two).values, affinity(swapped).values)
    matrix = pairs_to_matrix(affinity(traces).isel(time=0, animal=0))
    np.testing.assert_array_equal(matrix.values, matrix.values.T)


def test_correlation_matches_numpy(traces):
    out = affinity(traces, method="correlation", window=50, smooth=0)
    x = traces.values[0, :2, :50]
    assert out.isel(pair=0, time=0, animal=0).item() == pytest.approx(max(np.corrcoef(x)[0, 1], 0), abs=1e-12)


def test_permuting_neurons_permutes_pairs(traces):
    perm = np.random.default_rng(1).permutation(traces.sizes["neuron"])
    base = affinity(traces).isel(time=3, animal=0)
    permuted = affinity(traces.isel(neuron=perm)).isel(time=3, animal=0)
    m0 = pairs_to_matrix(base).values
    m1 = pairs_to_matrix(permuted).values
    np.testing.assert_allclose(m1, m0[np.ix_(perm, perm)])
    assert list(permuted["neuron_a"].values[:3]) == [traces["neuron"].values[perm[0]]] * 3


def test_pair_matrix_round_trip():
    rng = np.random.default_rng(2)
    pairs = xr.DataArray(rng.random(21), dims="pair")
    matrix = pairs_to_matrix(pairs)
    assert matrix.shape == (7, 7)
    np.testing.assert_array_equal(matrix_to_pairs(matrix).values, pairs.values)
    named = matrix_to_pairs(matrix.assign_coords(neuron=list("abcdefg"), neuron_=list("abcdefg")))
    np.testing.assert_array_equal(pairs_to_matrix(named)["neuron"].values, list("abcdefg"))
    with pytest.raises(ValueError, match="triangular"):
        pairs_to_matrix(np.ones(5))


def test_missing_neuron_gives_nan_pairs(traces):
    values = traces.values.copy()
    values[1, 4] = np.nan
    out = affinity(traces.copy(data=values))
    involved = (out["neuron_a"] == traces["neuron"].values[4]) | (out["neuron_b"] == traces["neuron"].values[4])
    assert out.isel(animal=1).where(involved, drop=True).isnull().all()
    assert not out.isel(animal=0).isnull().any()


def test_bad_input(traces):
    values = traces.values.copy()
    values[:, 2] = np.nan
    with pytest.raises(ValueError, match="NaN in every animal"):
        affinity(traces.copy(data=values))
    values = traces.values.copy()
    values[0, 3] = 1.0
    with pytest.raises(ValueError, match="constant"):
        affinity(traces.copy(data=values))
    with pytest.raises(ValueError, match="too short"):
        affinity(traces.isel(time=slice(0, 5)), window=4)
    with pytest.raises(ValueError, match="method"):
        affinity(traces, method="granger")
    with pytest.raises(TypeError, match="traces"):
        affinity(traces.values)
