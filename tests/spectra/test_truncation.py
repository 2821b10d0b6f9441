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


def _pca_curve(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    lam = np.zeros(min(W.shape))
    sv = np.linalg.svd(W @ X.T, compute_uv=False)[: lam.size]
    lam[: sv.size] = sv ** 2
    return np.concatenate([np.cumsum(lam[::-1])[::-1], [0.0]])


def test_afm_factors_project_the_outputs_onto_their_top_principal_directions(layer):
    W, X = layer
    stats = ActivationStats.from_samples(X)
    curve = truncation_curve(W, X, method="afm").values
    U = np.linalg.svd(W @ X.T, full_matrices=False)[0]          # output principal directions, from numpy
    for k in (1, 7, 24):
        A, B = low_rank_factors(torch.from_numpy(W), k, method="afm", stats=stats)
        assert A.shape == (24, k) and B.shape == (k, 40)
        np.testing.assert_allclose((A @ B).numpy(), U[:, :k] @ U[:, :k].T @ W, atol=1e-9)
        direct = np.linalg.norm((W - (A @ B).numpy()) @ X.T) ** 2
        assert abs(direct - curve[k]) / curve[0] < 1e-10


def test_whitening_with_fewer_samples_than_channels(layer):
    # X^T X is singular: the Cholesky takes a tiny ridge and the curve still is the output PCA one.
    W, X = layer
    X = X[:10]
    white, pca = truncation_curve(W, X, method="whitened").values, _pca_curve(W, X)
    np.testing.assert_allclose(white, pca, rtol=0, atol=1e-11 * pca[0])   # the ridge is 1e-12 relative
    stats = ActivationStats.from_samples(X)
    for k in (3, 10):
        A, B = low_rank_factors(torch.from_numpy(W), k, method="whitened", stats=stats)
        direct = np.linalg.norm((W - (A @ B).numpy()) @ X.T) ** 2
        assert abs(direct - pca[k]) <= 1e-8 * pca[0]


def test_curve_attributes_and_shape():
    W = np.diag([3.0, 2.0, 1.0])[:, :2]                          # 3 x 2: rank 0..2
    weight = truncation_curve(W)
    assert weight.dims == ("rank",) and weight["rank"].values.tolist() == [0, 1, 2] and weight.name == "loss"
    assert "rank" in weight.coords
    assert weight.attrs == {"method": "svd", "total": 13.0, "kind": "weight"}
    X = np.array([[1.0, 0.0], [0.0, 2.0]])
    act = truncation_curve(W, X, method="asvd")
    assert act.attrs["kind"] == "activation" and act.attrs["method"] == "asvd"
    assert act.attrs["total"] == pytest.approx(float(np.linalg.norm(W @ X.T) ** 2)) == act.values[0]


def test_activation_stats_stream_equals_one_batch():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3, 5, 4))                            # every leading axis is a sample
    whole = ActivationStats.from_samples(X)
    parts = ActivationStats(4)
    for chunk in X:
        parts.update(torch.from_numpy(chunk))
    flat = X.reshape(-1, 4)
    for stats in (whole, parts):
        assert stats.n == 15 and stats.d_in == 4
        np.testing.assert_allclose(stats.gram.numpy(), flat.T @ flat, rtol=1e-12)
        np.testing.assert_allclose(stats.mean_abs.numpy(), np.abs(flat).mean(0), rtol=1e-12)
    assert ActivationStats(3).mean_abs.tolist() == [0.0, 0.0, 0.0]  # no samples yet: zeros, not NaN


@pytest.mark.parametrize("X, exc, words", [
    (np.ones((0, 3)), ValueError, "X: expected samples"),
    (np.array([[1.0, np.nan, 0.0]]), ValueError, "X: expected finite"),
])
def test_activation_stats_refuse_bad_samples(X, exc, words):
    with pytest.raises(exc, match=words):
        ActivationStats.from_samples(X)


def test_low_rank_factors_arguments():
    W = np.eye(3)
    with pytest.raises(ValueError, match="stats: method='asvd' needs activation statistics"):
        low_rank_factors(W, 1, method="asvd")
    with pytest.raises(ValueError, match="method"):
        low_rank_factors(W, 1, method="qr")
    with pytest.raises(ValueError, match="k: expected an int >= 0"):
        low_rank_factors(W, -1)
    with pytest.raises(ValueError, match="W: expected one matrix"):
        low_rank_factors(np.ones((2, 3, 3)), 1)
    A, B = low_rank_factors(W, 0)
    assert A.shape == (3, 0) and B.shape == (0, 3)


def test_fresh_and_float32_statistics_are_float64():
    fresh = ActivationStats(3)
    assert fresh.gram.dtype == fresh.abs_sum.dtype == fresh.mean_abs.dtype == torch.float64
    assert fresh.gram.shape == (3, 3) and fresh.abs_sum.shape == (3,)
    x = torch.tensor([[1 / 3, 2 / 3, 1.0], [0.1, 0.2, 0.7]], dtype=torch.float32)
    fresh.update(x)
    x64 = x.numpy().astype(np.float64)                # the same float32 values, multiplied in float64
    np.testing.assert_allclose(fresh.gram.numpy(), x64.T @ x64, rtol=1e-15)
    one = ActivationStats.from_samples(np.array([1.0, -2.0, 3.0]))   # a single sample [d_in]
    assert one.n == 1 and one.d_in == 3 and one.mean_abs.tolist() == [1.0, 2.0, 3.0]


def test_factors_of_a_float32_matrix_are_float64():
    A, B = low_rank_factors(torch.tensor([[3.0, 0.1], [0.2, 1.0 / 3]]), 1)
    assert A.dtype == B.dtype == torch.float64


def test_asvd_exponent_and_dead_channels_follow_the_definition(layer):
    W, X = layer
    X = X[:, :8] * 0.05                                 # mean|x_j| well below 1
    X[:, 3] = 0.0                                        # a dead channel
    W = W[:, :8]
    for alpha in (0.5, 1.0):
        s = np.abs(X).mean(axis=0) ** alpha
        s[s == 0] = max(s.max(), 1.0)                    # a dead channel takes max(scale, 1): any positive works
        curve = truncation_curve(W, X, method="asvd", alpha=alpha).values
        assert np.all(np.isfinite(curve))
        stats = ActivationStats.from_samples(X)
        for k in (2, 5):
            U, sig, Vt = np.linalg.svd(W * s, full_matrices=False)
            W_k = (U[:, :k] * sig[:k]) @ Vt[:k] / s
            assert abs(np.linalg.norm((W - W_k) @ X.T) ** 2 - curve[k]) <= 1e-10 * curve[0]
            A, B = low_rank_factors(W, k, method="asvd", stats=stats, alpha=alpha)
            np.testing.assert_allclose((A @ B).numpy(), W_k, rtol=0, atol=1e-10 * np.abs(W).max())


def test_output_pca_of_a_small_map_keeps_eigenvalues_below_one(layer):
    W, X = layer
    W = W * 1e-6                                          # every output eigenvalue below 1
    afm = truncation_curve(W, X, method="afm").values
    pca = _pca_curve(W, X)
    assert pca[0] < 1
    np.testing.assert_allclose(afm, pca, rtol=0, atol=1e-10 * pca[0])


@pytest.mark.parametrize("call, message", [
    (lambda: truncation_curve(np.eye(2), method="qr"),
     "method: expected one of ('svd', 'whitened', 'asvd', 'afm'), got 'qr'"),
    (lambda: low_rank_factors(np.eye(2), 1, method="qr"),
     "method: expected one of ('svd', 'whitened', 'asvd', 'afm'), got 'qr'"),
    (lambda: ActivationStats.from_samples("x"),
     "X: expected a numpy array, torch tensor or xarray.DataArray, got str"),
    (lambda: ActivationStats.from_samples(np.ones((0, 3))), "X: expected samples [..., d_in], got shape (0, 3)"),
])
def test_truncation_error_messages_in_full(call, message):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value) == message
