"""The deep UFM (depth 1..6) reaches Dang et al.'s closed-form optimum, and says so when it does not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from workbench.collapse import UFMOptimumWarning, imbalanced_geometry, minority_collapse, nc_metrics, train_ufm

# (counts, lambda_W, lambda_H, dim): which classes vanish depends on the depth (see the ids)
PATTERNS = {
    "third-vanishes-from-M2": ([20, 10, 2], 0.02, 0.02, 5),
    "steep-four-tight-dim": ([60, 15, 15, 3], 4e-3, 4e-3, 4),
    "two-vanish-asymmetric-decay": ([100, 8, 2], 0.1, 0.01, 4),
    "balanced": ([30, 30, 30], 1e-2, 1e-2, 3),
}


def assert_matches_closed_form(ufm, theory, rtol=1e-4):
    """Objective, norms, dots and cosines of the trained UFM against the closed form."""
    assert float(ufm.objective) == pytest.approx(float(theory.objective), rel=1e-8)
    nc = nc_metrics(ufm.features, ufm.label, ufm.classifier, device="cpu")
    on = ~theory.collapsed.values
    for name in ("mean_norm", "classifier_norm", "classifier_mean_dot"):
        np.testing.assert_allclose(nc[name].values[on], theory[name].values[on], rtol=rtol, err_msg=name)
        np.testing.assert_allclose(nc[name].values[~on], 0.0, atol=1e-6, err_msg=f"{name} of vanished classes")
    means = nc.class_means.values[on]
    rows = ufm.classifier.values[on]
    unit_h = means / np.linalg.norm(means, axis=1, keepdims=True)
    unit_w = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cos = unit_h @ unit_h.T
    np.testing.assert_allclose(cos, np.eye(on.sum()), atol=rtol, err_msg="class means are orthogonal")
    np.testing.assert_allclose(np.einsum("kd,kd->k", unit_w, unit_h), 1.0, atol=rtol, err_msg="w_k parallel to h_k")
    # NC1: every feature sits on its class mean (nc1 itself is ill-posed when several means vanish)
    spread = ufm.features.values - nc.class_means.values[ufm.label.values]
    assert np.abs(spread).max() <= 1e-6 * max(np.abs(nc.class_means.values).max(), 1.0)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_every_depth_reaches_the_closed_form(pattern, depth):
    counts, lam_w, lam_h, dim = PATTERNS[pattern]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UFMOptimumWarning)
        ufm = train_ufm(counts, dim, depth, lam_w, lam_h, device="cpu")
    theory = imbalanced_geometry(counts, lam_w, lam_h, depth)
    assert_matches_closed_form(ufm, theory)
    assert abs(float(ufm.objective_gap)) < 1e-10 and float(ufm.theory_objective) == float(theory.objective)


def test_issue_depth3_case_no_longer_ends_at_zero():
    # was objective 0.5 (everything zero) against 0.1833
    ufm = train_ufm([20, 10, 2], dim=5, depth=3, lambda_W=0.02, lambda_H=0.02, device="cpu")
    theory = imbalanced_geometry([20, 10, 2], 0.02, 0.02, 3)
    assert float(theory.objective) == pytest.approx(0.1833, abs=1e-4)
    assert_matches_closed_form(ufm, theory)


def test_issue_paper_setting_depth6():
    # was 0.5 against 0.0132 at dim = K
    n, lam = [200, 100, 50, 50], 5e-4
    ufm = train_ufm(n, dim=4, depth=6, lambda_W=lam, lambda_H=lam, device="cpu")
    theory = imbalanced_geometry(n, lam, lam, 6)
    assert float(theory.objective) == pytest.approx(0.0132, abs=1e-4)
    assert_matches_closed_form(ufm, theory)


@pytest.mark.slow
def test_issue_paper_setting_depth6_wide_has_no_fake_minority_collapse():
    # was 0.132 with two classes reported collapsed; no class vanishes at the optimum
    n, lam = [200, 100, 50, 50], 5e-4
    ufm = train_ufm(n, dim=64, depth=6, lambda_W=lam, lambda_H=lam, n_starts=1, device="cpu")
    theory = imbalanced_geometry(n, lam, lam, 6)
    assert not theory.collapsed.any()
    assert_matches_closed_form(ufm, theory)


@pytest.mark.parametrize("depth", [2, 3])
def test_gradient_descent_reaches_the_closed_form(depth):
    n, lam = [30, 15, 5], 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("error", UFMOptimumWarning)
        gd = train_ufm(n, 3, depth, lam, lam, optimizer="gd", lr=1.0, steps=2500, n_starts=1, device="cpu")
    assert_matches_closed_form(gd, imbalanced_geometry(n, lam, lam, depth))


def test_a_start_at_the_zero_basin_warns_naming_both_objectives():
    # the old behaviour: a tiny start, no restarts or escapes, ends at the zero point with a vanishing gradient
    with pytest.warns(UFMOptimumWarning, match=r"objective 0\.5 differs from the closed-form optimum 0\.18333"):
        ufm = train_ufm([20, 10, 2], 5, 3, 0.02, 0.02, init_scale=1e-3, n_starts=1, escape=False, device="cpu")
    assert float(ufm.grad_max) < 1e-8  # converged, yet wrong: only the closed form tells
    assert float(ufm.objective_gap) > 1.0


def test_too_few_steps_warn():
    with pytest.warns(UFMOptimumWarning, match="theory_rtol=1e-06"):
        train_ufm([20, 10, 2], 5, 2, 0.02, 0.02, steps=2, escape=False, device="cpu")


def test_theory_rtol_is_the_tolerance():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UFMOptimumWarning)
        ufm = train_ufm([20, 10, 2], 5, 2, 0.02, 0.02, steps=2, escape=False, theory_rtol=10.0, device="cpu")
    assert 1e-6 < float(ufm.objective_gap) < 10.0


@pytest.mark.parametrize("loss, bias", [("ce", False), ("mse", True)])
def test_settings_without_closed_form_say_so(loss, bias):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UFMOptimumWarning)
        ufm = train_ufm([12, 6], 3, 2, 1e-2, 1e-2, loss=loss, bias=bias, steps=200, device="cpu")
    assert ufm.attrs["theory"].startswith("none: no closed form for")
    assert np.isnan(float(ufm.theory_objective)) and np.isnan(float(ufm.objective_gap))


def test_minority_collapse_refuses_a_wrong_optimum():
    with pytest.raises(ValueError, match=r"minority_collapse: at ratio 4 the UFM objective .* differs from the "
                                         r"closed-form optimum"):
        minority_collapse([4], n_majority=16, loss="mse", depth=2, steps=2)


def test_minority_collapse_mse_deep_matches_theory():
    ds = minority_collapse([1, 4], n_majority=16, loss="mse", depth=2, lambda_W=1e-2, lambda_H=1e-2, device="cpu")
    np.testing.assert_allclose(ds.objective, ds.theory_objective, rtol=1e-8)
    assert ds.attrs["theory"].startswith("imbalanced_geometry")
    assert float(ds.minority_cosine.sel(ratio=1)) == pytest.approx(0.0, abs=1e-6)  # bias-free MSE: orthogonal
