"""Cases the mutation run of the connectome core found untested (scripts/mutants.py), each against independent truth.

The factor match score is checked against a brute force written from its
definition: cosines of the raw columns by loops, and the best matching found by
trying every assignment (no Hungarian algorithm), on signed factors of unequal
ranks with unequal weights.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.connectome.fms import congruence, factor_match_score, pairwise_scores, worst_matched


def _congruence_by_hand(a, b, consider_weights=True):
    ra, rb = a[0].shape[1], b[0].shape[1]
    out = np.ones((ra, rb))
    for r in range(ra):
        for s in range(rb):
            wa = wb = 1.0
            for fa, fb in zip(a, b):
                x, y = fa[:, r], fb[:, s]
                nx, ny = np.sqrt(np.sum(x * x)), np.sqrt(np.sum(y * y))
                wa, wb = wa * nx, wb * ny
                out[r, s] *= abs(np.sum(x * y)) / (nx * ny) if nx > 0 and ny > 0 else 0.0
            if consider_weights:
                out[r, s] *= 1 - abs(wa - wb) / max(wa, wb) if max(wa, wb) > 0 else 1.0
    return out


def _best_by_brute_force(c):
    """(mean, min, perm) of the matching with the largest total congruence, by trying every assignment."""
    ra, rb = c.shape
    best = None
    if ra <= rb:
        for cols in itertools.permutations(range(rb), ra):
            vals = c[np.arange(ra), list(cols)]
            if best is None or vals.sum() > best[0].sum():
                best = (vals, list(cols))
        return best[0].mean(), best[0].min(), best[1]
    for rows in itertools.permutations(range(ra), rb):
        vals = c[list(rows), np.arange(rb)]
        if best is None or vals.sum() > best[0].sum():
            perm = [-1] * ra
            for s, r in enumerate(rows):
                perm[r] = s
            best = (vals, perm)
    return best[0].mean(), best[0].min(), best[1]


def _signed_models(seed, ra, rb, shapes=(5, 4, 3)):
    rng = np.random.default_rng(seed)
    a = [rng.normal(size=(n, ra)) * rng.uniform(0.5, 3, size=ra) for n in shapes]
    b = [rng.normal(size=(n, rb)) for n in shapes]
    b[0][:, : min(ra, rb)] += 2 * a[0][:, : min(ra, rb)]  # partly matching terms, so the matching matters
    return a, b


@pytest.mark.parametrize("ra, rb", [(3, 3), (3, 4), (4, 2)])
@pytest.mark.parametrize("consider_weights", [True, False])
def test_fms_matches_brute_force_on_signed_factors(ra, rb, consider_weights):
    for seed in range(4):
        a, b = _signed_models(seed, ra, rb)
        if seed == 3:  # weights below 1
            a, b = [a[0] * 1e-3, *a[1:]], [b[0] * 3e-3, *b[1:]]
        truth = _congruence_by_hand(a, b, consider_weights)
        np.testing.assert_allclose(congruence(a, b, consider_weights=consider_weights), truth, rtol=1e-12)
        mean, worst, perm = _best_by_brute_force(truth)
        score, got_perm = factor_match_score(a, b, consider_weights=consider_weights, return_permutation=True)
        assert score == pytest.approx(mean, rel=1e-12)
        assert got_perm.tolist() == perm
        assert factor_match_score(a, b, consider_weights=consider_weights) == pytest.approx(mean, rel=1e-12)
        assert worst_matched(a, b, consider_weights=consider_weights) == pytest.approx(worst, rel=1e-12)
        if consider_weights:  # the default
            np.testing.assert_allclose(congruence(a, b), truth, rtol=1e-12)
            assert factor_match_score(a, b) == pytest.approx(mean, rel=1e-12)
            assert worst_matched(a, b) == pytest.approx(worst, rel=1e-12)


def test_fms_reads_ntf_results_dataarrays_and_tensors():
    """An NTFResult-like model's weights scale its first mode; DataArrays and torch tensors read as arrays."""
    a, b = _signed_models(5, 3, 3)
    w = np.array([2.0, 0.5, 3.0])
    scaled = [a[0] * w, a[1], a[2]]
    result_like = SimpleNamespace(weights=w, factors=[xr.DataArray(f) for f in a])
    truth = _congruence_by_hand(scaled, b)
    np.testing.assert_allclose(congruence(result_like, b), truth, rtol=1e-12)
    np.testing.assert_allclose(congruence(b, result_like), truth.T, rtol=1e-12)
    np.testing.assert_allclose(congruence([torch.from_numpy(f) for f in scaled], b), truth, rtol=1e-12)
    # tensors that need grad (np.asarray refuses them) and a result whose factors are plain arrays
    np.testing.assert_allclose(congruence([torch.tensor(f, requires_grad=True) for f in scaled], b), truth, rtol=1e-12)
    plain = SimpleNamespace(weights=list(w), factors=a)
    np.testing.assert_allclose(congruence(plain, b), truth, rtol=1e-12)


def test_fms_computes_in_float64_whatever_the_input_dtype():
    """float32 factors are read as float64: the score matches the by-hand float64 value to 1e-12, not 1e-7."""
    a, b = _signed_models(7, 3, 3)
    a32, b32 = [f.astype(np.float32) for f in a], [f.astype(np.float32) for f in b]
    truth = _congruence_by_hand([f.astype(np.float64) for f in a32], [f.astype(np.float64) for f in b32])
    np.testing.assert_allclose(congruence(a32, b32), truth, rtol=1e-12)
    np.testing.assert_allclose(congruence([torch.from_numpy(f) for f in a32], b32), truth, rtol=1e-12)
    result_like = SimpleNamespace(weights=np.ones(3, dtype=np.float32), factors=[xr.DataArray(f) for f in a32])
    np.testing.assert_allclose(congruence(result_like, b32), truth, rtol=1e-12)


def test_a_one_mode_model_is_a_set_of_columns():
    rng = np.random.default_rng(9)
    f = rng.normal(size=(6, 3))
    assert factor_match_score([f], [-2 * f[:, [2, 0, 1]]], consider_weights=False) == pytest.approx(1.0, rel=1e-12)


def test_zero_columns_score_zero_and_equal_zero_weights_cost_nothing():
    a = [np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 0.0]])]  # term 1 is all zero
    c = congruence(a, a)
    np.testing.assert_array_equal(c, [[1.0, 0.0], [0.0, 0.0]])
    assert np.isfinite(c).all()


@pytest.mark.parametrize("consider_weights", [True, False, None])
def test_pairwise_scores_is_the_symmetric_matrix_of_fms(consider_weights):
    """Off the diagonal the brute-force FMS; on it exactly 1 (model 1 scores 1 + 2e-16 against itself)."""
    models = [_signed_models(s, 3, 3)[0] for s in range(3)]
    weighted = consider_weights is not False
    out = pairwise_scores(models) if consider_weights is None else pairwise_scores(models,
                                                                                   consider_weights=consider_weights)
    for i, j in itertools.product(range(3), repeat=2):
        if i == j:
            assert out[i, j] == 1.0
        else:
            want = _best_by_brute_force(_congruence_by_hand(models[i], models[j], weighted))[0]
            assert out[i, j] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("bad, error, match", [
    ("not a model", TypeError, "b: expected an NTFResult or a sequence of factor matrices, got str"),
    (SimpleNamespace(factors=[np.ones((5, 2))]), TypeError, "b: expected an NTFResult"),  # no weights
    ([], TypeError, "b: expected an NTFResult"),
    ([np.ones((5, 2)), np.ones((4, 3)), np.ones((3, 2))], ValueError, r"b: expected 2-D factors \(n_m, rank\) of one rank"),
    ([np.ones((5, 2)), np.ones(4), np.ones((3, 2))], ValueError, "b: expected 2-D factors"),
    ([np.ones((5, 2)), np.ones((4, 2)), np.full((3, 2), np.inf)], ValueError, "b: expected finite factors"),
    ([np.ones((5, 2)), np.ones((4, 2)), np.ones((2, 2))], ValueError, r"b: expected factors with mode sizes \[5, 4, 3\] like a, got \[5, 4, 2\]"),
])
def test_fms_refuses_bad_models_naming_the_argument(bad, error, match):
    a = [np.ones((5, 2)), np.ones((4, 2)), np.ones((3, 2))]
    with pytest.raises(error, match=match):
        factor_match_score(a, bad)
    if error is TypeError:
        with pytest.raises(error, match="a: expected"):
            congruence(bad, a)
