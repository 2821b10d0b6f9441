"""NCAccumulator: any batch split equals the batch computation; stable for offset features."""

from __future__ import annotations

import numpy as np
import pytest

from collapse_helpers import papyan_reference
from workbench.collapse import NCAccumulator, nc_metrics

SCALARS = ["nc1", "nc2_equinorm_h", "nc2_equinorm_w", "nc2_equiangle", "nc2_max_angle", "nc2_etf", "nc2_of",
           "nc3", "nc4"]


def _data(rng, n=500, k=4, d=7, offset=0.0):
    y = rng.integers(0, k, size=n)
    x = offset + rng.normal(size=(n, d)) + 3.0 * rng.normal(size=(k, d))[y]
    return x, y, rng.normal(size=(k, d)), rng.normal(size=k)


@pytest.mark.parametrize("n_splits", [1, 3, 17, 500])
def test_any_batch_split_equals_batch(rng, n_splits):
    x, y, W, b = _data(rng)
    batch = nc_metrics(x, y, W, b, device="cpu")
    cuts = np.sort(rng.choice(np.arange(1, len(y)), size=n_splits - 1, replace=False))
    acc = NCAccumulator(4, 7, device="cpu")
    acc.update(x[:0], y[:0])  # an empty batch changes nothing
    for rows in np.split(np.arange(len(y)), cuts):
        acc.update(x[rows], y[rows])
    for rows in np.array_split(np.arange(len(y)), 5):
        acc.add_nc4(x[rows], W, b)
    stream = acc.result(W, b)
    for name in SCALARS:
        assert float(stream[name]) == pytest.approx(float(batch[name]), rel=1e-10, abs=1e-12), name
    np.testing.assert_allclose(stream.class_means, batch.class_means, rtol=1e-10, atol=1e-12)


def test_batches_missing_classes_and_large_offset(rng):
    # features far from the origin: a raw-moment (sum h h^T) update would lose ~8 digits here
    x, y, W, b = _data(rng, offset=1e4)
    order = np.argsort(y, kind="stable")  # every batch holds one or two classes only
    acc = NCAccumulator(4, 7, device="cpu")
    for rows in np.array_split(order, 9):
        acc.update(x[rows], y[rows])
    acc.add_nc4(x, W, b)
    ds = acc.result(W, b)
    for name, value in papyan_reference(x, y, W, b).items():
        assert float(ds[name]) == pytest.approx(value, rel=1e-8, abs=1e-10), name


def test_state_errors(rng):
    x, y, W, b = _data(rng)
    acc = NCAccumulator(4, 7, device="cpu").update(x, y)
    with pytest.raises(ValueError, match="features: expected 7 columns"):
        acc.update(x[:, :3], y)
    with pytest.raises(ValueError, match="labels: expected class indices < n_classes=4"):
        acc.update(x, y + 1)
    acc.add_nc4(x, W, b)
    with pytest.raises(RuntimeError, match="NC4 pass has started"):
        acc.update(x, y)
    with pytest.raises(ValueError, match="W, b: expected the classifier given to add_nc4"):
        acc.result(W * 2, b)
    with pytest.raises(ValueError, match="labels: expected every class"):
        NCAccumulator(3, 5, device="cpu").update(np.ones((4, 5)), [0, 0, 1, 1]).result()
    with pytest.raises(ValueError, match="dim: expected a feature dimension >= n_classes - 1"):
        NCAccumulator(10, 3)
    with pytest.raises(ValueError, match="n_classes: expected at least 2"):
        NCAccumulator(1, 3)


def test_nc4_decisions_are_exact_at_near_ties(rng):
    # classifier rows 1e-9 apart and samples half-way between two means: float32 scores
    # cannot order these, so the float64 rescoring must decide
    k, d = 3, 16
    means = rng.normal(size=(k, d)) * 3
    y = np.repeat(np.arange(k), 40)
    x = means[y] + rng.normal(size=(len(y), d))
    x[:20] = (means[0] + means[1]) / 2 + 1e-10 * rng.normal(size=(20, d))
    W = np.repeat(rng.normal(size=(1, d)), k, axis=0) + 1e-9 * rng.normal(size=(k, d))
    want = papyan_reference(x, y, W)["nc4"]
    assert 0 < want < 1
    assert float(nc_metrics(x, y, W, device="cpu").nc4) == want


def test_nc4_pass_rejects_non_finite_features(rng):
    x, y, W, b = _data(rng)
    acc = NCAccumulator(4, 7, device="cpu").update(x, y)
    x[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"features: expected finite values, got NaN or inf in rows \[3\]"):
        acc.add_nc4(x, W, b)
    with pytest.raises(ValueError, match=r"features: expected finite values, got NaN or inf in rows \[3\]"):
        NCAccumulator(4, 7, device="cpu").update(x, y)
