"""Builders for the connectome tests: planted non-negative CP tensors."""

from __future__ import annotations

import numpy as np
import pytest


def planted_cp(shape=(60, 40, 12), rank=4, noise=0.1, seed=1, density=1.0):
    """Non-negative rank-``rank`` tensor plus Gaussian noise of relative norm ``noise`` (clipped at 0).

    Factor entries are uniform on [0, 1); with ``density < 1`` each entry of a mode longer than 1 is
    kept with that probability (sparse factors, as neural assemblies are), at least two per column,
    so that every planted component is present.
    """
    rng = np.random.default_rng(seed)
    factors = [rng.random((n, rank)) for n in shape]
    if density < 1:
        for f in factors:
            if f.shape[0] > 1:
                keep = rng.random(f.shape) < density
                for r in np.flatnonzero(keep.sum(0) < 2):
                    keep[rng.choice(f.shape[0], 2, replace=False), r] = True
                f *= keep
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
