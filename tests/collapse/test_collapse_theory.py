"""imbalanced_geometry against the explicit depth-1 formulas and a direct scalar minimisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from workbench.collapse import imbalanced_geometry

N_PER_CLASS = [200, 100, 50, 50]


def test_depth_one_matches_explicit_formulas():
    n, lam_w, lam_h = np.array(N_PER_CLASS, float), 5e-4, 5e-4
    total = n.sum()
    th = imbalanced_geometry(N_PER_CLASS, lam_w, lam_h, 1)
    p = np.clip(1 - total * np.sqrt(lam_w * lam_h / n), 0, None)
    np.testing.assert_allclose(th.mean_norm**2, p * np.sqrt(lam_w / (lam_h * n)), rtol=1e-12)
    np.testing.assert_allclose(th.classifier_norm**2, np.clip(np.sqrt(n * lam_h / lam_w) - total * lam_h, 0, None),
                               rtol=1e-12)
    np.testing.assert_allclose(th.classifier_mean_dot, p, rtol=1e-12)


def test_depth_one_minority_collapse_threshold():
    # n_k <= N^2 lW lH vanishes: N = 110, lW lH = 1e-3 gives a threshold of 12.1
    th = imbalanced_geometry([100, 8, 2], 0.1, 0.01, 1)
    assert th.collapsed.values.tolist() == [False, True, True]
    assert float(th.classifier_norm[1]) == 0.0 and float(th.mean_norm[2]) == 0.0


@pytest.mark.parametrize("depth", [2, 3, 6])
def test_deep_roots_minimise_the_per_class_objective(depth):
    n, lam_w, lam_h = np.array(N_PER_CLASS, float), 5e-4, 5e-4
    total = n.sum()
    th = imbalanced_geometry(N_PER_CLASS, lam_w, lam_h, depth)
    scale = (total * lam_h) ** (1 / depth)
    for k, n_k in enumerate(n):
        def g(x):
            return n_k / (2 * total * (x**depth + 1)) + 0.5 * depth * lam_w * scale * x
        grid = np.linspace(0, 200, 400001)
        x0 = grid[np.argmin(g(grid))]
        best = minimize_scalar(g, bracket=(max(x0 - 1e-3, 0), x0, x0 + 1e-3), tol=1e-14).x if x0 > 0 else 0.0
        assert float(th.x[k]) == pytest.approx(best, rel=1e-6, abs=1e-12)
    # the per-class optimum is the same problem written in s: recompute the objective from norms
    s2m = th.classifier_norm.values ** 2
    h = th.mean_norm.values
    obj = (n / (2 * total) * (np.sqrt(s2m) * h - 1) ** 2).sum() + 0.5 * lam_w * depth * (s2m ** (1 / depth)).sum() \
        + 0.5 * lam_h * (n * h**2).sum()
    assert obj == pytest.approx(float(th.objective), rel=1e-12)


def test_depth_makes_minority_collapse_happen_earlier():
    # depth 1: n_k = 10 > N^2 lW lH = 9.36 survives; at depth 2 the per-class objective
    # g_k is smallest at x = 0 (checked on a grid)
    n, lam = [1000, 10, 10], 3e-3
    assert imbalanced_geometry(n, lam, lam, 1).collapsed.values.tolist() == [False, False, False]
    th = imbalanced_geometry(n, lam, lam, 2)
    assert th.collapsed.values.tolist() == [False, True, True]
    total, scale = 1020, (1020 * lam) ** 0.5
    grid = np.linspace(0, 50, 200001)
    g = 10 / (2 * total * (grid**2 + 1)) + lam * scale * grid
    assert np.argmin(g) == 0


def test_zero_root_check_rejects_a_stationary_point_above_zero():
    # n = (1000, 20), depth 2: g_2 has a local minimum near x = 0.93, but g_2(0) is lower
    lam, total = 3e-3, 1020
    th = imbalanced_geometry([1000, 20], lam, lam, 2)
    grid = np.linspace(0, 50, 200001)
    g = 20 / (2 * total * (grid**2 + 1)) + lam * (total * lam) ** 0.5 * grid
    interior_minima = np.nonzero(np.diff(np.sign(np.diff(g))) > 0)[0]
    assert len(interior_minima) == 1 and g[interior_minima[0] + 1] > g[0]
    assert bool(th.collapsed[1]) and float(th.x[1]) == 0.0


@pytest.mark.parametrize(
    "args, error, match",
    [
        (([5], 1e-3, 1e-3, 1), ValueError, "n_per_class: expected a 1-D sequence of >= 2"),
        (([5, 0], 1e-3, 1e-3, 1), ValueError, "n_per_class: expected counts >= 1"),
        (([5.5, 2], 1e-3, 1e-3, 1), TypeError, "n_per_class: expected integer counts"),
        (([5, 2], -1.0, 1e-3, 1), ValueError, "lambda_W: expected a positive"),
        (([5, 2], 1e-3, 0.0, 1), ValueError, "lambda_H: expected a positive"),
        (([5, 2], 1e-3, 1e-3, 0), ValueError, "depth: expected an int >= 1"),
        (([5, 2], 1e-3, 1e-3, 1.5), TypeError, "depth: expected an int"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        imbalanced_geometry(*args)
