"""Weighted SBM and Leiden on planted block graphs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from workbench.connectome import communities, matrix_to_pairs
from workbench.connectome.wsbm import description_length, log_likelihood


def block_graph(n=60, ratio=3.0, seed=0):
    """Complete graph, exponential weights: mean ``ratio`` inside blocks, 1 between."""
    rng = np.random.default_rng(seed)
    truth = np.repeat([0, 1], n // 2)
    means = np.where(truth[:, None] == truth[None, :], ratio, 1.0)
    w = np.triu(rng.exponential(means), 1)
    return w + w.T, truth


@pytest.mark.parametrize("seed", [0, 1])
def test_wsbm_two_blocks(seed):
    W, truth = block_graph(seed=seed)
    labels = communities(W, seed=0)
    assert adjusted_rand_score(truth, labels.values) >= 0.9
    assert labels.attrs["n_blocks"] == 2
    dl = labels.attrs["description_length_per_blocks"]
    assert dl[1] < dl[0]  # two blocks describe the graph more briefly than one


def test_permuting_neurons_keeps_ari():
    W, truth = block_graph(seed=2)
    perm = np.random.default_rng(0).permutation(len(truth))
    base = communities(W).values
    permuted = communities(W[np.ix_(perm, perm)]).values
    assert adjusted_rand_score(truth[perm], permuted) == pytest.approx(adjusted_rand_score(truth, base))


def test_log_likelihood_hand_computed():
    # two blocks, one edge inside each (weights 1 and 3) and one between (weight 2)
    edges = np.array([[2.0, 1.0], [1.0, 2.0]])
    weights = np.array([[2.0, 2.0], [2.0, 6.0]])
    k = 3.0
    edge_part = 0.5 * (2 * 2 * np.log(2 / k**2) + 2 * 1 * np.log(1 / k**2))
    weight_part = (np.log(1 / 1) - 1) + (np.log(1 / 3) - 1) + (np.log(1 / 2) - 1)
    assert log_likelihood(edges, weights) == pytest.approx(edge_part + weight_part)
    assert description_length(0.0, 4, 2, 3) == pytest.approx(4 * np.log(2) + 3 * np.log(3))


def test_leiden_baseline_and_pair_input():
    W, truth = block_graph(ratio=6.0, seed=3)
    labels = communities(matrix_to_pairs(W), method="leiden", seed=0)
    assert labels.dims == ("neuron",)
    assert adjusted_rand_score(truth, labels.values) >= 0.9


def test_bad_input():
    W, _ = block_graph(n=10)
    with pytest.raises(ValueError, match="non-negative"):
        communities(W - 5)
    with pytest.raises(ValueError, match="symmetric"):
        communities(np.triu(W))
    with pytest.raises(ValueError, match="method"):
        communities(W, method="louvain")
    with pytest.raises(TypeError, match="weights"):
        communities("graph")
