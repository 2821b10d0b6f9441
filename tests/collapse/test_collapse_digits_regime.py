"""run_experiment in the UFM's regime (feature decay, full batch) and against_theory's checks."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.collapse import against_theory, imbalanced_geometry, run_experiment

SMALL = dict(n_per_class=[12, 12, 24, 24, 36, 36, 48, 48, 60, 60], hidden=(16,), n_linear=2, progress=False,
             device="cpu")


def test_full_batch_is_one_batch_of_every_sample():
    full = run_experiment(epochs=3, record_every=3, batch_size=None, **SMALL)
    one = run_experiment(epochs=3, record_every=3, batch_size=360, **SMALL)
    assert full.attrs["batch_size"] == 360
    np.testing.assert_allclose(full.nc1.values, one.nc1.values, rtol=1e-4)
    np.testing.assert_allclose(full.train_loss.values, one.train_loss.values, rtol=1e-5)


def test_the_network_s_ufm_objective_never_beats_the_closed_form():
    # the features and head of the network are one feasible point of the UFM: its objective is >= the optimum
    ds = run_experiment(epochs=40, record_every=10, batch_size=None, lr=0.2, weight_decay=1e-3, feature_decay=1e-3,
                        mlp_decay=0.0, **SMALL)
    optimum = float(imbalanced_geometry(ds.attrs["n_per_class"], 1e-3, 1e-3, depth=2).objective)
    assert (ds.ufm_objective.values >= optimum).all()
    fit = against_theory(ds)
    assert float(fit.objective_gap) == pytest.approx(float(ds.ufm_objective[-1]) / optimum - 1, rel=1e-12)
    assert fit.attrs["depth"] == 2 and fit.attrs["lambda_H"] == 1e-3
    # with no penalty on the features the UFM objective is just the data term plus the head's decay
    plain = run_experiment(epochs=2, record_every=2, weight_decay=0.0, **SMALL)
    np.testing.assert_allclose(plain.ufm_objective, plain.train_loss, rtol=1e-12)


def test_ufm_objective_from_the_recorded_geometry():
    # M = 1: ||W||_F^2 is the sum of the classifier norms, and sum_i ||h_i||^2 = sum_k n_k ||mu_k||^2 + N tr(Sigma_W)
    ds = run_experiment(epochs=6, record_every=3, batch_size=None, weight_decay=2e-3, feature_decay=1e-3,
                        **{**SMALL, "n_linear": 1})
    at = ds.sel(layer="relu1")
    n = np.asarray(ds.attrs["n_per_class"])
    features = (n * at.mean_norm**2).sum("class") + n.sum() * at.sigma_w_trace
    expected = at.train_loss + 1e-3 * (at.classifier_norm**2).sum("class") + 0.5e-3 * features
    np.testing.assert_allclose(at.ufm_objective, expected, rtol=1e-5)


def test_against_theory_reads_the_run_s_layer_and_counts():
    ds = run_experiment(epochs=2, record_every=2, batch_size=None, feature_decay=5e-4, **SMALL)
    fit = against_theory(ds)
    at = ds.isel(epoch=-1).sel(layer="relu1")
    np.testing.assert_array_equal(fit.measured.sel(quantity="feature_norm"), at.mean_norm)
    theory = imbalanced_geometry(SMALL["n_per_class"], 5e-4, 5e-4, depth=2)
    np.testing.assert_array_equal(fit.theory.sel(quantity="classifier_norm"), theory.classifier_norm)
    assert np.isnan(float(against_theory(ds, lambda_H=1e-3).objective_gap))  # another penalty than the run's


def test_regime_bad_input():
    with pytest.raises(ValueError, match="feature_decay: expected a finite number >= 0"):
        run_experiment(feature_decay=-1.0, epochs=1, **SMALL)
    with pytest.raises(ValueError, match="mlp_decay: expected None or a finite number >= 0"):
        run_experiment(mlp_decay=float("nan"), epochs=1, **SMALL)
    with pytest.raises(ValueError, match="schedule: expected one of"):
        run_experiment(schedule="cosine", epochs=1, **SMALL)
    no_penalty = run_experiment(epochs=1, record_every=1, **SMALL)
    with pytest.raises(ValueError, match="lambda_H: the run has no feature_decay"):
        against_theory(no_penalty)
    ce = run_experiment(epochs=1, record_every=1, loss="ce", **SMALL)
    with pytest.raises(ValueError, match="loss 'mse'"):
        against_theory(ce, lambda_H=1e-3)
