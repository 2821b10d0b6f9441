"""The CUDA code paths give the CPU / closed-form answers (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from collapse_helpers import papyan_reference
from workbench.collapse import NCAccumulator, imbalanced_geometry, layerwise, nc_metrics, train_ufm

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_streaming_on_cuda_matches_papyan(rng):
    k, d = 10, 64
    y = rng.integers(0, k, size=20000)
    x = (rng.normal(size=(k, d)) * 2)[y] + rng.normal(size=(len(y), d))
    W, b = rng.normal(size=(k, d)), rng.normal(size=k)
    x32 = x.astype(np.float32).astype(np.float64)
    want = papyan_reference(x32, y, W, b)
    for scatter in ("full", "projected"):
        acc = NCAccumulator(k, d, scatter=scatter, device="cuda")
        for rows in np.array_split(np.arange(len(y)), 7):
            acc.update(torch.from_numpy(x[rows]).float().cuda(), y[rows])
        for rows in np.array_split(np.arange(len(y)), 3):
            acc.second_pass(x[rows].astype(np.float32), y[rows], W, b)
        ds = acc.result(W, b)
        for name, value in want.items():
            assert float(ds[name]) == pytest.approx(value, rel=1e-9, abs=1e-12), (scatter, name)


def test_nc4_near_ties_on_cuda_with_tf32_allowed(rng):
    k, d = 3, 16
    means = rng.normal(size=(k, d)) * 3
    y = np.repeat(np.arange(k), 40)
    x = means[y] + rng.normal(size=(len(y), d))
    x[:20] = (means[0] + means[1]) / 2 + 1e-10 * rng.normal(size=(20, d))
    W = np.repeat(rng.normal(size=(1, d)), k, axis=0) + 1e-9 * rng.normal(size=(k, d))
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        assert float(nc_metrics(x, y, W, device="cuda").nc4) == papyan_reference(x, y, W)["nc4"]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_ufm_on_cuda_matches_theory():
    n = [200, 100, 50, 50]
    ufm = train_ufm(n, 8, 2, 5e-4, 5e-4, steps=3000, device="cuda")
    nc = nc_metrics(ufm.features, ufm.label, ufm.classifier, device="cuda")
    theory = imbalanced_geometry(n, 5e-4, 5e-4, 2)
    np.testing.assert_allclose(nc.mean_norm, theory.mean_norm, rtol=1e-3)
    np.testing.assert_allclose(nc.classifier_norm, theory.classifier_norm, rtol=1e-3)
    assert float(nc.nc1) < 1e-8


def test_layerwise_on_cuda_equals_cpu():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    x, y = torch.randn(300, 5), torch.arange(300) % 3
    cpu = layerwise(net, (x, y), device="cpu").nc1.values
    np.testing.assert_allclose(layerwise(net, (x, y), device="cuda").nc1.values, cpu, rtol=1e-4)
