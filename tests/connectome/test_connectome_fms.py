"""Factor match score against hand-computed cases."""

from __future__ import annotations

import numpy as np

from workbench.connectome import factor_match_score
from workbench.connectome.fms import congruence


def test_invariant_to_permutation_and_scale():
    rng = np.random.default_rng(0)
    f = [rng.random((6, 3)), rng.random((5, 3)), rng.random((4, 3))]
    perm = [2, 0, 1]
    g = [3 * f[0][:, perm], f[1][:, perm] / 3, f[2][:, perm]]
    score, p = factor_match_score(f, g, return_permutation=True)
    assert abs(score - 1) < 1e-12
    assert [perm[i] for i in p] == [0, 1, 2]


def test_hand_computed_cosines():
    # one component; cosines 1/sqrt(2) and 1 -> congruence 1/sqrt(2); weights equal (norms 1)
    a = [np.array([[1.0], [0.0]]), np.array([[1.0], [0.0]])]
    b = [np.array([[1.0], [1.0]]) / np.sqrt(2), np.array([[1.0], [0.0]])]
    assert abs(factor_match_score(a, b) - 1 / np.sqrt(2)) < 1e-12
    # weight penalty: weights 1 and 2 -> 1 - 1/2
    c = [2 * a[0], a[1]]
    assert abs(factor_match_score(a, c) - 0.5) < 1e-12
    assert abs(factor_match_score(a, c, consider_weights=False) - 1.0) < 1e-12


def test_orthogonal_components_score_zero():
    a = [np.eye(3)[:, :1], np.eye(3)[:, :1]]
    b = [np.eye(3)[:, 1:2], np.eye(3)[:, :1]]
    assert factor_match_score(a, b) == 0.0
    assert congruence(a, b).shape == (1, 1)


def test_sign_flips_do_not_matter():
    """Cosines enter as |cos| (documented): a term negated in one mode still matches with congruence 1."""
    rng = np.random.default_rng(1)
    f = [rng.normal(size=(6, 3)), rng.normal(size=(5, 3)), rng.normal(size=(4, 3))]
    g = [f[0] * [1, -1, 1], f[1], f[2] * [-1, 1, 1]]  # terms 0 and 1 each flipped in a single mode
    score, perm = factor_match_score(f, g, return_permutation=True)
    assert abs(score - 1) < 1e-12 and perm.tolist() == [0, 1, 2]
    a = [np.array([[1.0], [1.0]]), np.array([[1.0], [0.0]])]
    b = [np.array([[-1.0], [-1.0]]), np.array([[1.0], [0.0]])]
    assert abs(congruence(a, b)[0, 0] - 1) < 1e-12
