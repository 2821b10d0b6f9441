"""Builders shared by the spectra tests: planted-spike matrices and WeightWatcher runs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch


def planted_spikes(N: int = 768, M: int = 3072, k: int = 16, seed: int = 0):
    """W = U diag(theta) V^T + G with k spikes between 2 and 5 times the detection threshold."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((N, M))
    U, _ = np.linalg.qr(rng.standard_normal((N, k)))
    V, _ = np.linalg.qr(rng.standard_normal((M, k)))
    theta = (N * M) ** 0.25 * np.linspace(2.0, 5.0, k)[::-1]
    return U @ np.diag(theta) @ V.T + G, G, theta


def weightwatcher_details(matrices: list[np.ndarray], **analyze):
    """WeightWatcher's analyze(**analyze) on exactly these matrices (one nn.Linear each, nothing filtered)."""
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    layers = []
    for W in matrices:
        lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=torch.float64)
        lin.weight.data = torch.as_tensor(W, dtype=torch.float64)
        layers.append(lin)
    details = ww.WeightWatcher(model=torch.nn.Sequential(*layers)).analyze(min_evals=1, max_N=10**9, **analyze)
    assert len(details) == len(matrices)
    return details
