"""The numerical UFM optimum against closed-form theory (Dang et al.) and the balanced frames."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.collapse import imbalanced_geometry, minority_collapse, minority_cosine, nc_metrics, train_ufm

N_PER_CLASS = [200, 100, 50, 50]
LAMBDA = 5e-4


def _max_rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_imbalanced_optimum_matches_closed_form(depth):
    ufm = train_ufm(N_PER_CLASS, 8, depth, LAMBDA, LAMBDA, steps=3000, device="cpu")
    theory = imbalanced_geometry(N_PER_CLASS, LAMBDA, LAMBDA, depth)
    nc = nc_metrics(ufm.features, ufm.label, ufm.classifier, device="cpu")
    assert _max_rel(nc.mean_norm, theory.mean_norm) < 1e-3
    assert _max_rel(nc.classifier_norm, theory.classifier_norm) < 1e-3
    assert _max_rel(nc.classifier_mean_dot, theory.classifier_mean_dot) < 1e-3
    assert float(nc.nc1) < 1e-8
    gram = nc.gram_uncentred.values
    norms = np.sqrt(np.diag(gram))
    cos = gram / np.outer(norms, norms)
    assert np.abs(cos[~np.eye(4, dtype=bool)]).max() < 1e-5
    # theory is the global minimum: the numerical objective may not undercut it
    assert float(ufm.objective) >= float(theory.objective) - 1e-12
    assert float(ufm.objective) == pytest.approx(float(theory.objective), rel=1e-8)
    np.testing.assert_allclose(ufm.layer_weight_sq_norm, ufm.layer_weight_sq_norm[0], rtol=1e-4)  # balanced layers


def test_balanced_mse_bias_free_is_an_orthogonal_frame():
    ufm = train_ufm([40] * 4, 6, 1, LAMBDA, LAMBDA, device="cpu")
    nc = nc_metrics(ufm.features, ufm.label, ufm.classifier, nc3="dang_of", device="cpu")
    assert float(nc.nc2_of) < 1e-5 and float(nc.nc3) < 1e-5


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_balanced_with_bias_is_a_simplex_etf(loss):
    ufm = train_ufm([40] * 4, 6, 1, LAMBDA, LAMBDA, loss=loss, bias=True, device="cpu")
    nc = nc_metrics(ufm.features, ufm.label, ufm.classifier, ufm.bias, nc3="zhu_etf", device="cpu")
    assert float(nc.nc2_etf) < 1e-5 and float(nc.nc3) < 1e-5 and float(nc.nc4) == 0.0


def test_cross_entropy_minority_collapse_grows_with_imbalance():
    ds = minority_collapse([1, 4, 16, 64], device="cpu")
    cos = ds.minority_cosine.values
    assert cos[0] == pytest.approx(-1 / 3, abs=1e-6)  # balanced CE: simplex ETF
    assert np.all(np.diff(cos) > 0.1) and cos[-1] > 0.5


def test_gradient_descent_reaches_the_lbfgs_optimum():
    args = ([30] * 4, 6, 1, 1e-2, 1e-2)
    gd = train_ufm(*args, optimizer="gd", lr=2.0, steps=3000, device="cpu")
    assert float(gd.objective) == pytest.approx(float(train_ufm(*args, device="cpu").objective), rel=1e-9)
    assert np.all(np.diff(gd.objective_trace.values) <= 1e-15)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dim=3), ValueError, r"dim: expected an int >= the number of classes \(4\)"),
        (dict(loss="hinge"), ValueError, "loss: expected one of"),
        (dict(optimizer="adam"), ValueError, "optimizer: expected one of"),
        (dict(steps=0), ValueError, "steps: expected an int >= 1"),
        (dict(n_per_class=[3]), ValueError, "n_per_class"),
        (dict(lr=0.0), ValueError, "lr: expected a positive finite number, got 0.0"),
        (dict(lr=-1.0, optimizer="gd"), ValueError, "lr: expected a positive finite number"),
        # zero initialisation sits on a saddle (every gradient is 0); NaN would return NaN features
        (dict(init_scale=0.0), ValueError, "init_scale: expected a positive finite number"),
        (dict(init_scale=float("nan")), ValueError, "init_scale: expected a positive finite number"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = dict(n_per_class=[3, 3, 3, 3], dim=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        train_ufm(args.pop("n_per_class"), args.pop("dim"), device="cpu", **args)
    with pytest.raises(ValueError, match="minority: expected at least two"):
        minority_cosine(np.eye(3), [1])
