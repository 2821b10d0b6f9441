"""Truncation identities in float64, each checked against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.spectra import low_rank_factors, truncation_curve
from workbench.spectra.truncation import ActivationStats


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((24, 40))
    # Anisotropic, correlated inputs: channel scales over two decades.
    X = rng.standard_normal((600, 40)) @ rng.standard_normal((40, 40)) * np.logspace(-1, 1, 40)
    return W, X


def test_whitened_equals_output_pca_and_direct_loss(layer):
    W, X = layer
    white = truncation_curve(W, X, method="whitened").values
    afm = truncation_curve(W, X, method="afm").values
    # Oracle: the uncentred output PCA spectrum, from the outputs themselves.
    lam = np.linalg.svd(W @ X.T, compute_uv=False) ** 2
    pca = np.concatenate([np.cumsum(lam[::-1])[::-1], [0.0]])
    scale = pca[0]
    assert np.max(np.abs(white - pca)) / scale < 1e-10
    assert np.max(np.abs(afm - pca)) / scale < 1e-10
    stats = ActivationStats.from_samples(X)
    for k in (1, 5, 12, 23):
        A, B = low_rank_factors(torch.from_numpy(W), k, method="whitened", stats=stats)
        direct = np.linalg.norm((W - (A @ B).numpy()) @ X.T) ** 2
        assert abs(direct - white[k]) / scale < 1e-10


def _direct_truncation(W: np.ndarray, X: np.ndarray, k: int, method: str) -> np.ndarray:
    """The rank-``k`` map of ``method`` from its definition, with numpy only (no project code).

    svd: the top-``k`` singular triplets of ``W``. asvd: scale input channel ``j`` by
    ``s_j = mean_n |X_nj|^0.5``, keep the top ``k`` triplets of ``W diag(s)``, undo the scaling.
    """
    s = np.abs(X).mean(axis=0) ** 0.5 if method == "asvd" else np.ones(W.shape[1])
    U, sig, Vt = np.linalg.svd(W * s, full_matrices=False)
    return (U[:, :k] * sig[:k]) @ Vt[:k] / s


def test_svd_and_asvd_curves_match_direct_truncation(layer):
    W, X = layer
    stats = ActivationStats.from_samples(X)
    for method in ("svd", "asvd"):
        curve = truncation_curve(W, stats, method=method).values
        for k in (0, 3, 10, 24):
            W_k = _direct_truncation(W, X, k, method)
            direct = np.linalg.norm((W - W_k) @ X.T) ** 2
            assert abs(direct - curve[k]) / curve[0] < 1e-10
            A, B = low_rank_factors(torch.from_numpy(W), k, method=method, stats=stats)
            np.testing.assert_allclose((A @ B).numpy(), W_k, rtol=0, atol=1e-10 * np.abs(W).max())


def test_ordering_monotone_and_zero_at_full_rank(layer):
    W, X = layer
    curves = {m: truncation_curve(W, X, method=m).values for m in ("whitened", "asvd", "svd")}
    tol = 1e-10 * curves["svd"][0]
    assert np.all(curves["whitened"] <= curves["asvd"] + tol)
    assert np.all(curves["asvd"] <= curves["svd"] + tol)
    for c in curves.values():
        assert np.all(np.diff(c) <= tol) and c[-1] == 0.0
        assert c.size == min(W.shape) + 1


def test_weight_loss_without_activations():
    s = np.array([5.0, 3.0, 1.0])
    W = np.diag(s)
    assert truncation_curve(W).values.tolist() == [35.0, 10.0, 1.0, 0.0]
