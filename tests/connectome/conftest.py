"""Builders for the connectome tests: planted non-negative CP tensors."""

from __future__ import annotations

import numpy as np
import pytest


def planted_cp(shape=(60, 40, 12), rank=4, noise=0.1, seed=1):
    """Non-negative rank-``rank`` tensor plus Gaussian noise of relative norm ``noise`` (clipped at 0)."""
    rng = np.random.default_rng(seed)
    factors = [rng.random((n, rank)) for n in shape]
    clean = np.einsum("ir,jr,kr->ijk", *factors)
    eps = rng.normal(size=clean.shape)
    noisy = np.clip(clean + noise * np.linalg.norm(clean) / np.linalg.norm(eps) * eps, 0, None)
    return noisy, factors


@pytest.fixture(scope="module")
def planted():
    return planted_cp()


@pytest.fixture(scope="session")
def make_planted():
    return planted_cp
