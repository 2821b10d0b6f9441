"""Singular values and rank metrics against random-matrix theory and hand-computed cases."""

from __future__ import annotations

import numpy as np
import torch

from workbench.spectra import rank_metrics, spectrum


def test_planted_spikes_match_random_matrix_prediction(spiked):
    W, _, theta = spiked
    N, M = W.shape
    s = spectrum(W).values
    assert int((s > 1.02 * (np.sqrt(N) + np.sqrt(M))).sum()) == 16
    predicted = np.sqrt((theta ** 2 + N) * (theta ** 2 + M)) / theta
    # The strongest spikes sit within 0.5% of the prediction; weaker ones
    # fluctuate more (O(1) in sigma around a smaller value).
    assert np.all(np.abs(s[:4] / predicted[:4] - 1) < 0.005)
    assert np.all(np.abs(s[:16] / predicted - 1) < 0.02)
    assert int(rank_metrics(spectrum(W)).num_spikes) == 16


def test_gaussian_stable_rank_and_bulk_edge(spiked):
    _, G, _ = spiked
    N, M = G.shape
    m = rank_metrics(G)
    theory = N * M / (np.sqrt(N) + np.sqrt(M)) ** 2  # E sum sigma^2 / sigma_max^2
    assert abs(float(m.stable_rank) / theory - 1) < 0.03
    assert abs(float(m.mp_softrank) - 1) < 0.03
    assert int(m.num_spikes) == 0
    assert int(m.numerical_rank) == N


def test_exact_rank16_float32_has_numerical_rank_16():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(768, 16, generator=gen) @ torch.randn(16, 3072, generator=gen)
    assert W.dtype == torch.float32
    m = rank_metrics(W)
    assert int(m.numerical_rank) == 16
    assert m.attrs["precision"] == "float32"


def test_hand_computed_metrics():
    s = np.array([4.0, 2.0, 1.0, 1.0])           # lambda = 16, 4, 1, 1 (sum 22)
    m = rank_metrics(s, shape=(4, 10))
    assert float(m.stable_rank) == 22 / 16
    assert float(m.log_norm) == np.log10(22) and float(m.log_spectral_norm) == np.log10(16)
    p = s / s.sum()
    assert np.isclose(float(m.effective_rank), np.exp(-(p * np.log(p)).sum()))
    assert (int(m.energy_rank_50), int(m.energy_rank_90), int(m.energy_rank_99)) == (1, 2, 4)
    assert int(rank_metrics(np.eye(10)).energy_rank_90) == 9   # exactly 90%: reached, not missed by rounding


def test_stacks_and_dtypes():
    rng = np.random.default_rng(1)
    stack = rng.standard_normal((3, 20, 7))
    s = spectrum(stack)
    assert s.dims == ("matrix", "index") and s.shape == (3, 7)
    np.testing.assert_allclose(s.values, np.linalg.svd(stack, compute_uv=False), rtol=1e-10)
    assert rank_metrics(s).stable_rank.dims == ("matrix",)
    assert spectrum(stack[0].astype(np.float32)).dtype == np.float32
    assert spectrum(stack[0].astype(np.float32), dtype="float64").dtype == np.float64
    # A rank-deficient float64 matrix takes the direct-SVD fallback and keeps its exact zeros out.
    low = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 20))
    assert int(rank_metrics(low).numerical_rank) == 3
