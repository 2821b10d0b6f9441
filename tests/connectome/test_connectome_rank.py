"""Rank selection recovers the planted rank exactly: worst-component stability plus held-out error."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.connectome import rank_sweep, suggest_rank
from workbench.connectome.rank import holdout_mask

from conftest import planted_cp

# (shape, planted rank, noise, seed, factor density): several shapes (one animal included), noise levels, ranks.
CASES = [
    ((40, 30, 10), 4, 0.1, 0, 1.0),
    ((200, 100, 1), 4, 0.05, 2, 0.5),
    ((40, 30, 10), 9, 0.2, 4, 1.0),
    ((200, 120, 1), 9, 0.05, 6, 0.4),
    ((30, 24, 8), 15, 0.05, 7, 0.4),
]


@pytest.mark.parametrize("shape, rank, noise, seed, density", CASES)
def test_suggestion_is_the_planted_rank(shape, rank, noise, seed, density):
    x, _ = planted_cp(shape=shape, rank=rank, noise=noise, seed=seed, density=density)
    sweep = rank_sweep(x, [rank - 1, rank, rank + 1], n_restarts=4, progress=False, device="cpu")
    assert sweep.attrs["suggested_rank"] == rank, sweep.attrs["reason"]
    assert sweep.attrs["rule"] == "heldout_plateau"
    assert sweep["stability"].sel(rank=rank) >= 0.9 > sweep["stability"].sel(rank=rank + 1)
    # held-out error falls to the planted rank and not beyond it; training error always falls
    held = sweep["heldout_error"].values
    assert held[1] < held[0] and held[2] > held[1]
    assert (np.diff(sweep["error"].values) < 0).all()


def test_time_block_holdout_also_recovers_the_rank():
    x, _ = planted_cp(shape=(40, 30, 10), rank=9, noise=0.2, seed=4)
    sweep = rank_sweep(x, [8, 9, 10], n_restarts=4, holdout=0.2, holdout_block=5, progress=False, device="cpu")
    assert sweep.attrs["suggested_rank"] == 9, sweep.attrs["reason"]
    assert sweep.attrs["holdout_block"] == 5


def test_one_irreproducible_component_is_not_hidden_by_the_mean():
    """15 identical terms plus one random one: the old mean score said ~0.94; the worst term says it."""
    from workbench.connectome.fms import factor_match_score, worst_matched

    rng = np.random.default_rng(0)
    a = [rng.random((30, 16)), rng.random((20, 16))]
    b = [f.copy() for f in a]
    b[0][:, -1], b[1][:, -1] = rng.random(30) * (rng.random(30) < 0.2), rng.random(20) * (rng.random(20) < 0.2)
    assert factor_match_score(a, b, consider_weights=False) > 0.9
    assert worst_matched(a, b, consider_weights=False) < 0.7


def test_rule_on_hand_made_curves():
    ranks = [2, 3, 4, 5]
    # held-out error plateaus after 3; rank 3 stable -> 3
    assert suggest_rank(ranks, [1, 1, 1, 0.2], [0.5, 0.3, 0.2995, 0.301], [1e-3] * 4) == 3
    # the gain 3 -> 4 exceeds rank 4's spread -> 4
    assert suggest_rank(ranks, [1, 1, 1, 0.2], [0.5, 0.3, 0.28, 0.281], [1e-3] * 4) == 4
    # ... unless rank 4's restarts disagree on it by more than the gain
    assert suggest_rank(ranks, [1, 1, 1, 0.2], [0.5, 0.3, 0.28, 0.305], [1e-3, 1e-3, 0.05, 1e-3]) == 3
    # unstable ranks are never suggested: 3 unstable, 4 stable and a plateau -> 4
    assert suggest_rank(ranks, [1, 0.5, 1, 0.2], [0.5, 0.3, 0.2995, 0.301], [1e-3] * 4) == 4
    # held-out error still falling at the largest stable rank -> that rank
    assert suggest_rank(ranks, [1, 1, 0.3, 0.2], [0.5, 0.4, 0.3, 0.2], [1e-3] * 4) == 3


def test_no_stable_rank_warns_and_says_why():
    x = np.random.default_rng(0).random((12, 10, 6))
    with pytest.warns(UserWarning, match="no rank reached stability"):
        sweep = rank_sweep(x, [3, 4], n_restarts=4, threshold=0.999, progress=False, device="cpu")
    assert sweep.attrs["rule"] == "no_stable_rank" and sweep.attrs["stable"] == 0
    assert sweep.attrs["suggested_rank"] == 3 and "stability 0.999" in sweep.attrs["reason"]


def test_holdout_mask_blocks_and_missing_entries():
    x = np.ones((20, 30, 2))
    x[0] = np.nan
    held = holdout_mask(x, 0.3, block=6, seed=0)
    assert not held[0].any()  # never a missing entry
    blocks = held[1:].reshape(19, 5, 6, 2)
    assert (blocks.all(2) == blocks.any(2)).all()  # whole blocks of 6 time bins
    assert 0.2 < held[1:].mean() < 0.4


@pytest.mark.parametrize("holdout", [0, -0.1, 0.51, 1.0, float("nan"), True])
def test_holdout_fraction_outside_range_is_refused(holdout):
    with pytest.raises(ValueError, match=r"holdout: expected a fraction in \(0, 0.5\]"):
        rank_sweep(np.ones((4, 4, 4)), [1], n_restarts=2, holdout=holdout, progress=False, device="cpu")
    with pytest.raises(ValueError, match="holdout"):
        holdout_mask(np.ones((4, 4, 4)), holdout)


def test_holdout_block_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="holdout_block"):
        rank_sweep(np.ones((4, 4, 4)), [1], n_restarts=2, holdout_block=0, progress=False, device="cpu")
