"""Correlation traps against WeightWatcher's ``analyze(randomize=True)`` and against planted truth.

WeightWatcher shuffles with NumPy's global legacy generator: seeding it
before analysing a one-layer model makes its shuffles ours, so every number
is compared to 1e-6. Planted truth: a Gaussian matrix has no trap, one huge
entry makes exactly one (a shuffled matrix with one entry ``c`` much larger
than the bulk scale has one singular value near ``|c|``).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from workbench.spectra.traps import correlation_traps, jensen_shannon_distance

COLUMNS = [("rand_distance", "rand_distance"), ("num_rand_spikes", "rand_num_spikes"),
           ("rand_bulk_max", "rand_bulk_max"), ("rand_mp_softrank", "rand_mp_softrank"),
           ("rand_sigma_mp", "rand_sigma_mp"), ("max_rand_eval", "max_rand_eval"), ("ww_softrank", "ww_softrank")]


def _weightwatcher_randomized(W: np.ndarray, seed: int):
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    lin.weight.data = torch.from_numpy(W)
    np.random.seed(seed)
    return ww.WeightWatcher(model=torch.nn.Sequential(lin)).analyze(min_evals=1, max_N=10**9, randomize=True,
                                                                     mp_fit=True).iloc[0]


@pytest.mark.parametrize("shape, trap", [((240, 100), 60.0), ((40, 120), None)])   # one shuffle; five pooled
def test_matches_weightwatcher_randomized(shape, trap):
    rng = np.random.default_rng(sum(shape))
    W = rng.standard_normal(shape).astype(np.float32)                  # Gaussian: no trap unless planted
    if trap is not None:
        W[5, 9] = trap
    row = _weightwatcher_randomized(W, seed=42)
    ours = correlation_traps(W, seed=42, device="cpu")
    for mine, theirs in COLUMNS:
        np.testing.assert_allclose(float(ours[mine]), float(row[theirs]), rtol=1e-6, atol=0, err_msg=mine)
    assert ours["has_traps"] == (trap is not None)


def test_planted_traps_and_a_clean_gaussian():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((400, 200))
    for seed in range(3):
        clean = correlation_traps(G, seed=seed, mp_fit="median", device="cpu")
        assert clean["num_rand_spikes"] == 0 and not clean["has_traps"]
    trapped = G.copy()
    trapped[11, 17], trapped[200, 3] = 150.0, -120.0                     # two entries far above sqrt(N) + sqrt(M)
    for method in ("median", "weightwatcher"):
        out = correlation_traps(trapped, seed=1, mp_fit=method, device="cpu")
        assert out["num_rand_spikes"] == 2 and out["has_traps"]
        assert np.sqrt(out["max_rand_eval"]) == pytest.approx(150.0, rel=0.02)


def test_jensen_shannon_distance_matches_scipy():
    from scipy.spatial.distance import jensenshannon

    p, q = np.random.default_rng(4).random((2, 50))
    assert jensen_shannon_distance(p, q) == pytest.approx(float(jensenshannon(p, q)), rel=1e-12)
    assert jensen_shannon_distance(p, p) == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="W: expected one matrix"):
        correlation_traps(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="mp_fit: expected one of"):
        correlation_traps(np.eye(3), mp_fit="kde")
    with pytest.raises(ValueError, match="replicas: expected an int >= 1"):
        correlation_traps(np.eye(3), replicas=0)
