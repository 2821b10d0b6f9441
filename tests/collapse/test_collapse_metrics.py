"""nc_metrics against constructed geometry, Papyan's definitions, invariances and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from collapse_helpers import etf_features, papyan_reference, random_rotation
from workbench.collapse import nc_metrics

SCALARS = ["nc1", "nc2_equinorm_h", "nc2_equinorm_w", "nc2_equiangle", "nc2_max_angle", "nc2_etf", "nc2_of",
           "nc3", "nc4"]


def _scalars(ds: xr.Dataset) -> np.ndarray:
    return np.array([float(ds[name]) for name in SCALARS])


@pytest.mark.parametrize("global_mean", ["class_means", "samples"])
def test_etf_oracle(rng, global_mean):
    k, d, r, sigma = 5, 12, 3.0, 0.5
    x, y, centred, offset = etf_features(k, d, r, sigma, rng)
    W = 0.7 * centred
    ds = nc_metrics(x, y, W, -W @ offset, global_mean=global_mean, device="cpu")
    assert float(ds.nc1) == pytest.approx(sigma**2 * (k - 1) ** 2 / (k * r**2), rel=1e-10)
    for name in ["nc2_equinorm_h", "nc2_equinorm_w", "nc2_equiangle", "nc2_max_angle", "nc2_etf", "nc3"]:
        assert abs(float(ds[name])) < 1e-10, name
    assert float(ds.nc4) == 0.0
    np.testing.assert_allclose(ds.centred_mean_norm, r, rtol=1e-12)
    zhu = nc_metrics(x, y, W, nc3="zhu_etf", device="cpu")
    assert float(zhu.nc3) < 1e-10


def test_orthogonal_frame_oracle(rng):
    k, d = 4, 6
    means = random_rotation(d, rng)[:k] * 2.0
    x = np.repeat(means, 3, axis=0) + rng.normal(scale=1e-3, size=(3 * k, d))
    y = np.repeat(np.arange(k), 3)
    ds = nc_metrics(np.repeat(means, 3, axis=0), y, W=means, nc3="dang_of", device="cpu")
    assert float(ds.nc2_of) < 1e-12 and float(ds.nc3) < 1e-12
    assert float(nc_metrics(x, y, device="cpu").nc2_of) < 1e-2


@pytest.mark.parametrize("global_mean", ["class_means", "samples"])
def test_matches_direct_papyan_definitions_on_imbalanced_data(rng, global_mean):
    k, d = 6, 20
    counts = [40, 7, 25, 1, 60, 13]  # class 3 has one sample: no within-class scatter
    y = np.repeat(np.arange(k), counts)
    x = rng.normal(size=(len(y), d)) + 3.0 * rng.normal(size=(k, d))[y]
    W, b = rng.normal(size=(k, d)), rng.normal(size=k)
    ds = nc_metrics(x, y, W, b, global_mean=global_mean, device="cpu")
    for name, value in papyan_reference(x, y, W, b, global_mean).items():
        assert float(ds[name]) == pytest.approx(value, rel=1e-10, abs=1e-13), name
    np.testing.assert_array_equal(ds.counts, counts)


def test_rotation_and_class_permutation_invariance(rng):
    k, d = 5, 9
    y = rng.integers(0, k, size=300)
    x = rng.normal(size=(300, d)) + 2.0 * rng.normal(size=(k, d))[y]
    W, b = rng.normal(size=(k, d)), rng.normal(size=k)
    base = nc_metrics(x, y, W, b, device="cpu")
    rot = random_rotation(d, rng)
    rotated = nc_metrics(x @ rot.T, y, W @ rot.T, b, device="cpu")
    np.testing.assert_allclose(_scalars(rotated), _scalars(base), rtol=1e-10, atol=1e-13)
    perm = rng.permutation(k)  # class c becomes class perm[c]
    inverse = np.argsort(perm)
    permuted = nc_metrics(x, perm[y], W[inverse], b[inverse], device="cpu")
    np.testing.assert_allclose(_scalars(permuted), _scalars(base), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(permuted.gram.values[np.ix_(perm, perm)], base.gram.values, rtol=1e-10)


def test_input_types_agree(rng):
    y = np.arange(90) % 3
    x = rng.normal(size=(90, 4)) + np.eye(3, 4)[y] * 4
    ref = _scalars(nc_metrics(x, y, device="cpu"))
    as_xr = xr.DataArray(x, dims=("sample", "dim"))
    for feats, labels in [(torch.from_numpy(x), torch.from_numpy(y)), (as_xr, xr.DataArray(y, dims="sample")),
                          (x.tolist(), y.astype(np.int32))]:
        np.testing.assert_allclose(_scalars(nc_metrics(feats, labels, device="cpu")), ref, rtol=1e-12,
                                   equal_nan=True)


def test_nc1_non_negative_when_sigma_b_nearly_singular(rng):
    k, d = 4, 8
    means = rng.normal(size=(k, d)) * 5
    means[1] = means[0] + 1e-9  # two classes almost on top of each other
    y = np.repeat(np.arange(k), 50)
    x = means[y] + rng.normal(size=(len(y), d))
    ds = nc_metrics(x, y, device="cpu")
    assert np.isfinite(float(ds.nc1)) and float(ds.nc1) >= 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(labels=np.zeros(9, dtype=int)), ValueError, "labels: expected one label per feature row"),
        (dict(labels=np.zeros(10, dtype=int)), ValueError, "labels: expected at least 2 classes"),
        (dict(labels=np.arange(10) % 5, features=np.ones((10, 3))), ValueError, "features: expected dim >= "),
        (dict(features=np.full((10, 4), np.nan)), ValueError, "features: expected finite values"),
        (dict(labels=np.arange(10) % 2 * 1.0), TypeError, "labels: expected integer"),
        (dict(labels=np.array([0, 2] * 5)), ValueError, r"got none for classes \[1\]"),
        (dict(features=np.ones(10)), ValueError, r"features: expected a 2-D array"),
        (dict(W=np.ones((3, 4))), ValueError, r"W: expected shape \(n_classes, dim\) = \(2, 4\)"),
        (dict(nc3="zhu"), ValueError, "nc3: expected one of"),
        (dict(global_mean="median"), ValueError, "global_mean: expected one of"),
        (dict(features="abc"), TypeError, "features: expected"),
    ],
)
def test_bad_input_names_argument(kwargs, error, match):
    args = dict(features=np.random.default_rng(0).normal(size=(10, 4)), labels=np.arange(10) % 2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        nc_metrics(args.pop("features"), args.pop("labels"), device="cpu", **args)
