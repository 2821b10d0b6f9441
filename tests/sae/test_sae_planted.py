"""Planted dictionary: a trained SAE recovers the planted directions and their heads."""

from __future__ import annotations

import pytest
import torch

from sae_helpers import best_cosines
from workbench.data.synthetic_sae import planted_dictionary
from workbench.sae import head_attribution, train


@pytest.fixture(scope="module")
def planted():
    return planted_dictionary(n_tokens=20_000, d_in=128, n_features=64, n_heads=4, localised_fraction=0.5,
                              active_per_token=4, max_cos=0.3, noise=0.01, seed=0)


def test_generator_plants_what_it_says(planted):
    directions = torch.from_numpy(planted["directions"].values).double()
    assert torch.allclose(directions.norm(dim=1), torch.ones(64, dtype=torch.float64), atol=1e-6)
    gram = (directions @ directions.T - torch.eye(64, dtype=torch.float64)).abs()
    assert float(gram.max()) <= 0.3
    for i, head in enumerate(planted["head"].values):
        if head >= 0:  # all weight inside the head's 32-wide block
            outside = torch.cat([directions[i, : 32 * head], directions[i, 32 * (head + 1):]])
            assert float(outside.abs().max()) == 0.0
    density = float((planted["coefficients"].values > 0).mean())
    assert density == pytest.approx(4 / 64, rel=0.05)


@pytest.mark.parametrize(("architecture", "kw"), [("topk", {"k": 4, "lr_decay": 0.3}),
                                                  ("standard", {"l1_coefficient": 0.3})])
def test_sae_recovers_planted_features_and_heads(planted, architecture, kw):
    acts = torch.from_numpy(planted["acts"].values)
    sae, history = train(acts, d_sae=128, architecture=architecture, lr=3e-3, batch_size=256,
                         n_tokens=120_000, seed=0, progress=False, **kw)
    truth = torch.from_numpy(planted["directions"].values)
    best, match = best_cosines(sae, truth)
    assert float(best.mean()) >= 0.9
    assert float((best > 0.9).float().mean()) >= 0.9
    assert float(history["fvu"][-20:].mean()) < 0.2
    # A TopK decoder row keeps some norm from the features it shares tokens with, and a share
    # sums per-head norms, so that spread costs it: with a constant learning rate the worst
    # local feature's share was 0.87; decaying the rate over the last 30% of steps cleans it (0.91).
    shares = head_attribution(sae, n_heads=4).values
    heads = planted["head"].values
    local = [i for i in range(64) if heads[i] >= 0 and best[i] > 0.9]
    assert len(local) >= 0.9 * (heads >= 0).sum()
    assert min(shares[match[i], heads[i]] for i in local) >= 0.9
