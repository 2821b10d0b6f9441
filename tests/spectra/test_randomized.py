"""Randomized top-k spectra and the row-blocked Gram, against exact SVDs of planted spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.spectra import layer_spectra, rank_metrics
from workbench.spectra import svd as svd_module
from workbench.spectra.svd import frobenius_sq, singular_values, top_singular_values


def planted(m: int, n: int, sigma: np.ndarray, seed: int = 0) -> torch.Tensor:
    """U diag(sigma) V^T with random orthonormal U, V: singular values known exactly."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, sigma.size)))
    V, _ = np.linalg.qr(rng.standard_normal((n, sigma.size)))
    return torch.from_numpy(U @ np.diag(sigma) @ V.T)


DECAY = 10.0 * 0.9 ** np.arange(200)


def test_randomized_top_k_of_a_decaying_spectrum_within_1e_4():
    # Halko et al.: relative error of sigma_i ~ (sigma_{k+p+1} / sigma_i)^(2 n_iter + 1); for i <= 10,
    # k = 10, p = 10, n_iter = 4 that is at most 0.9^(11 * 9) = 3e-5.
    W = planted(400, 300, DECAY)
    top = top_singular_values(W, 10, device="cpu")
    np.testing.assert_allclose(top.numpy(), DECAY[:10], rtol=1e-4)
    assert not np.allclose(top_singular_values(W, 10, n_iter=0, oversample=0, device="cpu").numpy(), DECAY[:10],
                           rtol=1e-4)  # without power iterations and oversampling the tolerance is not met


def test_layer_spectra_randomized_metrics_equal_the_exact_ones():
    lin = torch.nn.Linear(300, 400, bias=False, dtype=torch.float64)
    lin.weight.data = planted(400, 300, DECAY)
    model = torch.nn.Sequential(lin)
    exact = layer_spectra(model, progress=False, device="cpu")
    fast = layer_spectra(model, method="randomized", top_k=10, progress=False, device="cpu")
    assert set(fast.data_vars) == {"singular_value", "stable_rank", "log_norm", "log_spectral_norm"}
    assert fast.sizes["index"] == 10 and fast.attrs["method"] == "randomized" and fast.attrs["top_k"] == 10
    np.testing.assert_allclose(fast.singular_value.values[0], DECAY[:10], rtol=1e-4)
    # stable rank and log norm use the exact Frobenius norm, not the top 10 values
    theory = (DECAY ** 2).sum() / DECAY[0] ** 2
    np.testing.assert_allclose(fast.stable_rank.values, theory, rtol=1e-6)
    for name in ("stable_rank", "log_norm", "log_spectral_norm"):
        np.testing.assert_allclose(fast[name].values, exact[name].values, rtol=1e-6)


def test_top_k_at_or_above_the_rank_is_exact():
    W = planted(30, 20, np.linspace(5, 1, 20))
    np.testing.assert_allclose(top_singular_values(W, 25, device="cpu").numpy(), np.linspace(5, 1, 20), rtol=1e-12)


def test_randomized_keeps_the_global_random_state():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    top_singular_values(planted(400, 300, DECAY), 4, device="cpu")  # randomized: 14 x 10 < 300
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("shape", [(300, 40), (40, 300)])
def test_row_blocked_gram_equals_the_direct_svd(monkeypatch, shape):
    monkeypatch.setattr(svd_module, "_BLOCK", 64)  # 64 entries a block: several blocks, a ragged last one
    sigma = np.geomspace(100.0, 0.1, 40)
    W = planted(*shape, sigma).to(torch.float16).to(torch.float64)
    expected = np.linalg.svd(W.numpy(), compute_uv=False)
    np.testing.assert_allclose(singular_values(W.half(), device="cpu", dtype=torch.float64).numpy(), expected,
                               rtol=1e-9)
    assert abs(float(frobenius_sq(W.half())) - (W.numpy() ** 2).sum()) < 1e-9 * (W.numpy() ** 2).sum()


def test_row_blocked_gram_of_a_stack(monkeypatch):
    monkeypatch.setattr(svd_module, "_BLOCK", 64)
    W = torch.stack([planted(300, 40, np.geomspace(50.0 * (s + 1), 0.5, 40), seed=s) for s in range(2)])
    expected = np.linalg.svd(W.numpy(), compute_uv=False)
    np.testing.assert_allclose(singular_values(W, device="cpu").numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(singular_values(W[:1].mT, device="cpu").numpy(), expected[:1], rtol=1e-9)
    np.testing.assert_allclose(frobenius_sq(W).numpy(), (W.numpy() ** 2).sum(axis=(1, 2)), rtol=1e-12)


def test_layer_spectra_of_a_checkpoint_takes_the_blocked_gram_for_large_matrices(monkeypatch, tmp_path):
    """The memory bound: a matrix above _BLOCK entries is never widened to float64 whole."""
    from safetensors.torch import save_file

    monkeypatch.setattr(svd_module, "_BLOCK", 1000)
    seen = []
    blocked = svd_module._blocked_gram
    monkeypatch.setattr(svd_module, "_blocked_gram", lambda X, scale: seen.append(tuple(X.shape)) or blocked(X, scale))
    W = planted(200, 30, np.geomspace(10.0, 1.0, 30)).half()
    save_file({"model.layers.0.mlp.down_proj.weight": W.contiguous(), "lm_head.weight": torch.randn(4, 5)},
              tmp_path / "model.safetensors")
    ds = layer_spectra(tmp_path, progress=False, device="cpu", dtype="float64")
    assert seen == [(1, 200, 30)]  # the 6000-entry matrix, not the 20-entry one
    sv = ds.singular_value.sel(matrix="blocks.0.mlp.W_out").values
    np.testing.assert_allclose(sv[np.isfinite(sv)], np.linalg.svd(W.double().numpy(), compute_uv=False), rtol=1e-9)


def test_rank_metrics_is_unchanged_by_blocking(monkeypatch):
    W = planted(120, 50, np.geomspace(10.0, 0.5, 50))
    before = rank_metrics(W)
    monkeypatch.setattr(svd_module, "_BLOCK", 100)
    after = rank_metrics(W)
    for name in ("stable_rank", "alpha", "numerical_rank", "effective_rank"):
        np.testing.assert_allclose(float(after[name]), float(before[name]), rtol=1e-10)
