"""Weighted SBM and Leiden on planted block graphs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from workbench.connectome import communities, matrix_to_pairs
from workbench.connectome.wsbm import log_evidence


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


def test_log_evidence_one_block_is_the_integrated_likelihood():
    # one block: uniform-prior edge density and exponential-prior weight rate, integrated numerically
    from scipy.integrate import quad

    n, m, w, wbar = 5, 7, 9.5, 1.3  # 7 of the 10 pairs are edges, weight sum 9.5
    edge = quad(lambda p: p**m * (1 - p) ** (10 - m), 0, 1)[0]
    weight = quad(lambda lam: wbar * np.exp(-wbar * lam) * lam**m * np.exp(-lam * w), 0, np.inf)[0]
    expected = np.log(edge) + np.log(weight) - np.log(n)  # B = 1 has prior 1/n
    got = log_evidence(np.array([[2.0 * m]]), np.array([[2.0 * w]]), np.array([n]), wbar)
    assert got == pytest.approx(expected, rel=1e-9)


def test_partition_prior_sums_to_one_over_all_labelings():
    # without edges the evidence is the partition prior times the edge models' chance of no edge;
    # the prior summed over every labeling of 4 vertices that uses blocks 0..B-1 is 1
    import itertools

    n, total = 4, 0.0
    for labels in itertools.product(range(n), repeat=n):
        B = max(labels) + 1
        if len(set(labels)) != B:
            continue
        sizes = np.bincount(labels, minlength=B).astype(float)
        zeros = np.zeros((B, B))
        # no edges: the edge models give 1/(N+1) (one density) or prod 1/(N_rs+1) (per block pair)
        pairs = [sizes[r] * sizes[t] if r < t else sizes[r] * (sizes[r] - 1) / 2 for r in range(B) for t in range(r, B)]
        edges = 0.5 * (1 / (n * (n - 1) / 2 + 1) + np.prod([1 / (p + 1) for p in pairs]))
        total += np.exp(log_evidence(zeros, zeros, sizes, 1.0)) / edges
    assert total == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [100, 101])
def test_wsbm_finds_small_blocks(seed):
    # blocks 24/18/12/6, complete graph, exponential weights mean 5 inside, 1 between; with the BIC
    # penalty of log E per block-pair parameter the 6-neuron block was merged (3 blocks, ARI ~0.9)
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(4), [24, 18, 12, 6])
    w = np.triu(rng.exponential(np.where(truth[:, None] == truth[None, :], 5.0, 1.0)), 1)
    labels = communities(w + w.T, seed=seed)
    assert labels.attrs["n_blocks"] == 4
    assert adjusted_rand_score(truth, labels.values) == pytest.approx(1.0)


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
