"""Cases the mutation run of the collapse core found untested (scripts/mutants.py), each against independent truth.

NC1 is checked against tr(Sigma_W Sigma_B^+) / K with numpy's pseudo-inverse on
cases that stress the eigenvalue cut: class means on a plane (Sigma_B of rank 2
< K - 1), a far offset (translation invariance), a tiny scale (scale
invariance) and class means that all coincide (NC1 = inf, or NaN with no spread).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from workbench.collapse import nc_metrics
from workbench.collapse.geometry import _equinorm, _normalised_distance


def _nc1_truth(x, y, k, global_mean="class_means", traces=False):
    """tr(Sigma_W Sigma_B^+) / K from the samples, numpy's pinv with an explicit relative cut (and the traces)."""
    means = np.stack([x[y == c].mean(axis=0) for c in range(k)])
    mu = means.mean(axis=0) if global_mean == "class_means" else x.mean(axis=0)
    mt = means - mu
    sw = sum((x[y == c] - means[c]).T @ (x[y == c] - means[c]) for c in range(k)) / len(y)
    nc1 = np.trace(sw @ np.linalg.pinv(mt.T @ mt / k, rcond=1e-9, hermitian=True)) / k
    return (nc1, np.trace(sw), np.sum(mt**2) / k) if traces else nc1


def _clusters(rng, k, d, n, spread=3.0):
    mu = rng.normal(size=(k, d)) * spread
    return rng.normal(size=(k * n, d)) + np.repeat(mu, n, axis=0), np.repeat(np.arange(k), n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nc1_with_class_means_on_a_plane(seed):
    """Sigma_B of rank 2 (< K - 1): the rounding-level eigenvalues must be cut, not inverted."""
    rng = np.random.default_rng(seed)
    k, d = 6, 8
    plane = np.linalg.qr(rng.normal(size=(d, 2)))[0]
    x, y = _clusters(rng, k, 2, 20)
    noise = rng.normal(size=(k, 20, d)) * 0.5
    noise -= noise.mean(axis=1, keepdims=True)  # zero mean per class: the class means stay on the plane
    x = x @ plane.T + noise.reshape(k * 20, d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ordinary input: no warning of any kind (deprecated calls included)
        got = nc_metrics(x, y, device="cpu")
    nc1, sigma_w_trace, sigma_b_trace = _nc1_truth(x, y, k, traces=True)
    np.testing.assert_allclose(float(got["nc1"]), nc1, rtol=1e-9)
    np.testing.assert_allclose(float(got["sigma_w_trace"]), sigma_w_trace, rtol=1e-12)
    np.testing.assert_allclose(float(got["sigma_b_trace"]), sigma_b_trace, rtol=1e-12)


@pytest.mark.parametrize("global_mean", ["class_means", "samples"])
def test_nc1_is_translation_and_scale_invariant(global_mean):
    """An offset of 1e9 leaves rounding noise of ~1e-7 in the centred means: its null direction must stay cut."""
    rng = np.random.default_rng(3)
    x, y = _clusters(rng, 5, 8, 40, spread=2.0)
    keep = np.r_[0:40, 40:60, 80:200]  # unequal counts: the two global means differ
    x, y = x[keep], y[keep]
    truth = _nc1_truth(x, y, 5, global_mean)
    for shifted in (x + 1e9, x * 1e-3, x * 1e-3 + 1e4):
        got = float(nc_metrics(shifted, y, global_mean=global_mean, device="cpu")["nc1"])
        np.testing.assert_allclose(got, truth, rtol=1e-6)


def test_nc1_when_every_class_mean_coincides():
    """All class means at the origin: Sigma_B = 0, so NC1 = inf with within-class spread and NaN without."""
    x = np.concatenate([np.eye(3), -np.eye(3)] * 4) / 2  # each class: +-e_j / 2, mean exactly 0
    y = np.repeat(np.arange(4), 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the cosines of zero vectors are 0/0
        out = nc_metrics(x, y, device="cpu")
        assert float(out["sigma_b_trace"]) == 0.0 and float(out["sigma_w_trace"]) == 0.25
        assert float(out["nc1"]) == np.inf
        assert np.isnan(float(nc_metrics(np.zeros((8, 3)), np.repeat(np.arange(4), 2), device="cpu")["nc1"]))


def test_distance_and_equinorm_of_zero_vectors_are_nan_without_dividing():
    target = (np.eye(3) - 1 / 3) / np.sqrt(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 would warn
        assert np.isnan(_normalised_distance(np.zeros((3, 3)), target))
        assert np.isnan(_equinorm(np.zeros(3)))
    np.testing.assert_allclose(_normalised_distance(2 * target, target), 0.0, atol=1e-15)


@pytest.mark.parametrize("k, close", [(2, False), (5, False), (5, True)])
def test_gnc2_log_unc3_and_classifier_products_by_hand(k, close):
    """GNC2 (log kernel) and UNC3 from their definitions, loops over the centred class means
    (with ``close``, two classes nearly coincide: a cosine near 1, a distance below 1)."""
    rng = np.random.default_rng(k)
    x, y = _clusters(rng, k, 6, 15)
    if close:
        x[y == 1] += x[y == 0].mean(axis=0) - x[y == 1].mean(axis=0) + 0.1
    W = rng.normal(size=(k, 6))
    out = nc_metrics(x, y, W, device="cpu")
    means = np.stack([x[y == c].mean(axis=0) for c in range(k)])
    mt = means - means.mean(axis=0)
    u = mt / np.linalg.norm(mt, axis=1, keepdims=True)
    gnc2 = np.mean([-0.5 * np.log(np.sum((u[i] - u[j]) ** 2)) for i in range(k) for j in range(k) if i != j])
    cos = [W[c] @ mt[c] / (np.linalg.norm(W[c]) * np.linalg.norm(mt[c])) for c in range(k)]
    np.testing.assert_allclose(float(out["gnc2_log"]), gnc2, rtol=1e-10)
    np.testing.assert_allclose(float(out["unc3"]), np.std(cos) / abs(np.mean(cos)), rtol=1e-10)
    np.testing.assert_allclose(out["classifier_mean_dot"].values, [W[c] @ means[c] for c in range(k)], rtol=1e-12)
    np.testing.assert_allclose(out["classifier_norm"].values, np.linalg.norm(W, axis=1), rtol=1e-12)
    np.testing.assert_allclose(out["mean_norm"].values, np.linalg.norm(means, axis=1), rtol=1e-12)


def test_without_a_classifier_its_metrics_are_present_and_nan():
    rng = np.random.default_rng(4)
    x, y = _clusters(rng, 4, 5, 10)
    out = nc_metrics(x, y, device="cpu")
    for name in ("nc2_equinorm_w", "nc3", "nc4", "unc3", "classifier_norm", "classifier_mean_dot"):
        assert np.isnan(out[name].values).all(), name
    assert np.isfinite(float(out["gnc2_log"])) and np.isfinite(float(out["sigma_w_trace"]))


def test_unc3_at_exact_self_duality_and_exact_cancellation():
    """Two classes at +-e_1: W = centred means gives cosines (1, 1), so UNC3 = 0; W rows both e_1 give (1, -1),
    whose mean is 0, so UNC3 = std / |mean| is undefined: NaN, with no warning."""
    x = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(nc_metrics(x, y, np.array([[1.0, 0.0], [-1.0, 0.0]]), device="cpu")["unc3"]) == 0.0
        assert np.isnan(float(nc_metrics(x, y, np.array([[1.0, 0.0], [1.0, 0.0]]), device="cpu")["unc3"]))


def test_a_vanished_classifier_row_gives_nan_duality_without_warnings():
    """A zero row has no direction: its duality cosine is 0/0, so UNC3 is NaN, silently."""
    rng = np.random.default_rng(6)
    x, y = _clusters(rng, 4, 5, 10)
    W = rng.normal(size=(4, 5))
    W[1] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = nc_metrics(x, y, W, device="cpu")
    assert np.isnan(float(out["unc3"]))
    assert float(out["classifier_norm"][1]) == 0.0


@pytest.mark.parametrize("global_mean", ["class_means", "samples"])
def test_dataset_layout_and_per_class_values_by_hand(global_mean):
    """Every per-class and per-pair variable: its dims, coordinates, dtype and values; the attributes."""
    import workbench

    rng = np.random.default_rng(8)
    k, d = 3, 4
    x, y = _clusters(rng, k, d, 6)
    x, y = x[:-2], y[:-2]  # unequal counts
    W = rng.normal(size=(k, d))
    out = nc_metrics(x, y, W, global_mean=global_mean, nc3="zhu_etf", device="cpu")
    means = np.stack([x[y == c].mean(axis=0) for c in range(k)])
    mt = means - (means.mean(axis=0) if global_mean == "class_means" else x.mean(axis=0))
    per_class = {"counts": np.bincount(y), "mean_norm": np.linalg.norm(means, axis=1),
                 "centred_mean_norm": np.linalg.norm(mt, axis=1), "classifier_norm": np.linalg.norm(W, axis=1),
                 "classifier_mean_dot": np.sum(W * means, axis=1)}
    for name, want in per_class.items():
        assert out[name].dims == ("class",), name
        np.testing.assert_allclose(out[name].values, want, rtol=1e-12, err_msg=name)
    assert out["counts"].dtype == np.int64
    assert out["class_means"].dims == ("class", "dim")
    np.testing.assert_allclose(out["class_means"].values, means, rtol=1e-12)
    for name, want in (("gram", mt @ mt.T), ("gram_uncentred", means @ means.T)):
        assert out[name].dims == ("class", "other_class"), name
        np.testing.assert_allclose(out[name].values, want, rtol=1e-10, atol=1e-12, err_msg=name)
    assert set(out.coords) == {"class", "other_class", "dim"} and set(out.dims) == {"class", "other_class", "dim"}
    for name in ("class", "other_class"):
        assert out.coords[name].values.tolist() == list(range(k))
    assert out.coords["dim"].values.tolist() == list(range(d))
    assert {n: out[n].dims for n in out.data_vars if out[n].ndim == 0} == {
        n: () for n in ("nc1", "nc2_equinorm_h", "nc2_equinorm_w", "nc2_equiangle", "nc2_max_angle", "nc2_etf",
                        "nc2_of", "nc3", "nc4", "gnc2_log", "unc3", "sigma_w_trace", "sigma_b_trace")}
    assert out.attrs == {"n_samples": len(y), "n_classes": k, "dim": d, "global_mean": global_mean,
                         "nc3_form": "zhu_etf", "workbench_version": workbench.__version__}
