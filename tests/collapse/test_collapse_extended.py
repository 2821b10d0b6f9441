"""CDNV, GNC2, UNC3 and NC5 on constructed cases whose value is known, and against brute force (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import special_ortho_group

from workbench.collapse import cdnv, hyperspherical_uniformity, ood_orthogonality, uniform_duality


def _isotropic_classes(means, sigma):
    """Samples mu_k +- sigma sqrt(d) e_j: class covariance exactly sigma^2 I, variance sigma^2 d."""
    d = means.shape[1]
    spread = np.vstack([np.eye(d), -np.eye(d)]) * sigma * np.sqrt(d)
    x = np.vstack([m + spread for m in means])
    return x, np.repeat(np.arange(len(means)), 2 * d)


def test_cdnv_closed_form_for_equal_variance_classes():
    means = np.array([[0.0, 0, 0], [3, 0, 0], [0, 4, 0]])
    sigma, d = 0.2, 3
    x, y = _isotropic_classes(means, sigma)
    ds = cdnv(x, y, device="cpu")
    np.testing.assert_allclose(ds.class_variance, sigma**2 * d, rtol=1e-12)
    dist2 = pdist(means) ** 2  # pairs (0,1), (0,2), (1,2): 9, 16, 25
    expected = sigma**2 * d / dist2  # (Var + Var) / (2 ||mu_i - mu_j||^2)
    assert float(ds.cdnv) == pytest.approx(expected.mean(), rel=1e-12)
    assert float(ds.cdnv_var) == pytest.approx(expected.var(), rel=1e-9)


def test_cdnv_matches_brute_force_on_random_classes(rng):
    x = rng.normal(size=(300, 5)) + np.repeat(rng.normal(scale=3, size=(6, 5)), 50, axis=0)
    y = np.repeat(np.arange(6), 50)
    means = np.stack([x[y == k].mean(0) for k in range(6)])
    var = np.array([((x[y == k] - means[k]) ** 2).sum(1).mean() for k in range(6)])
    brute = [(var[i] + var[j]) / (2 * np.sum((means[i] - means[j]) ** 2)) for i in range(6) for j in range(i + 1, 6)]
    for tile in (1, 4, 1024):  # tiles change nothing
        assert float(cdnv(x, y, tile=tile, device="cpu").cdnv) == pytest.approx(np.mean(brute), rel=1e-12)


@pytest.mark.parametrize("k, d", [(4, 3), (5, 6), (10, 12)])
def test_gnc2_simplex_etf_is_the_minimum(k, d):
    rot = special_ortho_group.rvs(d, random_state=k)
    simplex = np.eye(k) - 1.0 / k  # rank k - 1: written in k - 1 coordinates, padded to d
    etf = np.zeros((k, d))
    etf[:, :k - 1] = simplex @ np.linalg.svd(simplex)[2][:k - 1].T
    means = 7.0 * etf @ rot.T + rng_offset(d)  # scale, rotation and a global offset change nothing
    dist = np.sqrt(2 * k / (k - 1))
    log = hyperspherical_uniformity(means, kernel="log", device="cpu")
    assert float(log.gnc2) == pytest.approx(-np.log(dist), rel=1e-12) and float(log.gnc2_var) < 1e-14
    riesz = hyperspherical_uniformity(means, kernel="riesz", device="cpu")
    assert float(riesz.gnc2) == pytest.approx(dist ** -(d - 2), rel=1e-12) and riesz.attrs["riesz_s"] == d - 2
    # any other spread has a higher energy
    other = np.random.default_rng(k).normal(size=(k, d))
    assert float(hyperspherical_uniformity(other, device="cpu").gnc2) > float(log.gnc2) + 1e-3


def rng_offset(d):
    return np.linspace(-1, 2, d)


def test_gnc2_matches_scipy_pdist_in_tiles(rng):
    means = rng.normal(size=(700, 16))
    u = means - means.mean(0)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    dist = pdist(u)
    for kernel, values in (("log", -np.log(dist)), ("riesz", dist ** -14.0)):
        ds = hyperspherical_uniformity(means, kernel=kernel, tile=64, device="cpu")
        assert float(ds.gnc2) == pytest.approx(values.mean(), rel=1e-10)
        assert float(ds.gnc2_var) == pytest.approx(values.var(), rel=1e-6)


def test_unc3_is_the_coefficient_of_variation_of_alignment():
    means = np.array([[1.0, 0.0], [-1.0, 0.0]])  # centred already
    W = np.array([[2.0, 0.0], [-0.5, -np.sqrt(3) / 2]])  # cosines 1 and 0.5
    ds = uniform_duality(means, W, device="cpu")
    np.testing.assert_allclose(ds.cosine, [1.0, 0.5], rtol=1e-12)
    assert float(ds.duality) == pytest.approx(0.75) and float(ds.unc3) == pytest.approx(0.25 / 0.75, rel=1e-12)


def test_nc5_mean_absolute_cosine_with_the_ood_mean():
    means = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-3.0, 0.0, 0.0]])
    ood = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])  # mean at 45 degrees from class 0, orthogonal to class 1
    ds = ood_orthogonality(means, ood, device="cpu")
    np.testing.assert_allclose(ds.cosine, [np.sqrt(0.5), 0.0, -np.sqrt(0.5)], atol=1e-12)
    assert float(ds.nc5) == pytest.approx(2 * np.sqrt(0.5) / 3, rel=1e-12)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: hyperspherical_uniformity(np.eye(3), kernel="gauss"), ValueError, "kernel: expected one of"),
        (lambda: hyperspherical_uniformity(np.eye(3), tile=0), ValueError, "tile: expected an int >= 1"),
        (lambda: uniform_duality(np.eye(3), np.eye(2)), ValueError, r"W: expected shape \(class, dim\) = \(3, 3\)"),
        (lambda: ood_orthogonality(np.eye(3), np.ones((2, 2))), ValueError, r"ood_features: expected \(sample, 3\)"),
        (lambda: cdnv(np.ones((4, 2)), np.zeros(4, int)), ValueError, "labels: expected at least 2 classes"),
        (lambda: cdnv(np.ones((4, 2)), np.array([0, 0, 2, 2])), ValueError, "each with a sample"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_nc_metrics_reports_the_same_gnc2_and_unc3(rng):
    from workbench.collapse import nc_metrics

    x = rng.normal(size=(240, 6)) + np.repeat(rng.normal(scale=2, size=(4, 6)), 60, axis=0)
    y = np.repeat(np.arange(4), 60)
    W = rng.normal(size=(4, 6))
    for global_mean in ("class_means", "samples"):
        nc = nc_metrics(x, y, W, global_mean=global_mean, device="cpu")
        mu_g = nc.class_means.values.mean(0) if global_mean == "class_means" else x.mean(0)
        gnc2 = hyperspherical_uniformity(nc.class_means, global_mean=mu_g, device="cpu")
        unc3 = uniform_duality(nc.class_means, W, global_mean=mu_g, device="cpu")
        assert float(nc.gnc2_log) == pytest.approx(float(gnc2.gnc2), rel=1e-10)
        assert float(nc.unc3) == pytest.approx(float(unc3.unc3), rel=1e-10)
    assert np.isnan(float(nc_metrics(x, y, device="cpu").unc3))
