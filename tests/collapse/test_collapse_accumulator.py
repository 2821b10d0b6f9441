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


@pytest.mark.parametrize("scatter", ["full", "projected"])
@pytest.mark.parametrize("n_splits", [1, 3, 17, 500])
def test_any_batch_split_equals_batch(rng, n_splits, scatter):
    x, y, W, b = _data(rng)
    batch = nc_metrics(x, y, W, b, device="cpu")
    cuts = np.sort(rng.choice(np.arange(1, len(y)), size=n_splits - 1, replace=False))
    acc = NCAccumulator(4, 7, scatter=scatter, device="cpu")
    acc.update(x[:0], y[:0])  # an empty batch changes nothing
    for rows in np.split(np.arange(len(y)), cuts):
        acc.update(x[rows], y[rows])
    for rows in np.array_split(np.arange(len(y)), 5):
        acc.second_pass(x[rows], y[rows], W, b)
    stream = acc.result(W, b)
    for name in SCALARS:
        assert float(stream[name]) == pytest.approx(float(batch[name]), rel=1e-10, abs=1e-12), name
    np.testing.assert_allclose(stream.class_means, batch.class_means, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scatter", ["full", "projected"])
@pytest.mark.parametrize("global_mean", ["class_means", "samples"])
def test_batches_missing_classes_and_large_offset(rng, scatter, global_mean):
    # features far from the origin: a raw-moment (sum h h^T) update would lose ~8 digits here
    x, y, W, b = _data(rng, offset=1e4)
    order = np.argsort(y, kind="stable")  # every batch holds one or two classes only
    acc = NCAccumulator(4, 7, scatter=scatter, device="cpu")
    for rows in np.array_split(order, 9):
        acc.update(x[rows], y[rows])
    acc.second_pass(x, y, W, b)
    ds = acc.result(W, b, global_mean=global_mean)
    for name, value in papyan_reference(x, y, W, b, global_mean=global_mean).items():
        assert float(ds[name]) == pytest.approx(value, rel=1e-8, abs=1e-10), name


def test_state_errors(rng):
    x, y, W, b = _data(rng)
    acc = NCAccumulator(4, 7, device="cpu").update(x, y)
    with pytest.raises(ValueError, match="features: expected 7 columns"):
        acc.update(x[:, :3], y)
    with pytest.raises(ValueError, match="labels: expected class indices < n_classes=4"):
        acc.update(x, y + 1)
    with pytest.raises(ValueError, match="W: expected a classifier .* only serves NC4"):
        acc.second_pass(x, y)
    acc.second_pass(x, y, W, b)
    with pytest.raises(RuntimeError, match="second pass has started"):
        acc.update(x, y)
    with pytest.raises(ValueError, match="W, b: expected the classifier used in earlier second_pass calls"):
        acc.second_pass(x, y, W * 2, b)
    with pytest.raises(ValueError, match="W, b: expected the classifier given to second_pass"):
        acc.result(W * 2, b)
    with pytest.raises(ValueError, match="labels: expected every class"):
        NCAccumulator(3, 5, device="cpu").update(np.ones((4, 5)), [0, 0, 1, 1]).result()
    with pytest.raises(ValueError, match="dim: expected a feature dimension >= n_classes - 1"):
        NCAccumulator(10, 3)
    with pytest.raises(ValueError, match="n_classes: expected at least 2"):
        NCAccumulator(1, 3)


def test_projected_pass_state_errors(rng):
    x, y, W, b = _data(rng)
    with pytest.raises(ValueError, match=r"scatter: expected one of \('full', 'projected'\), got 'half'"):
        NCAccumulator(4, 7, scatter="half")
    acc = NCAccumulator(4, 7, scatter="projected", device="cpu").update(x, y)
    with pytest.raises(AttributeError, match="scatter_: a scatter='projected' accumulator keeps no d x d scatter"):
        acc.scatter_
    with pytest.raises(ValueError, match="second_pass: .* needs a second pass over the samples before result"):
        acc.result()
    acc.second_pass(x[:100], y[:100])
    with pytest.raises(ValueError, match="second_pass: expected the samples of the first pass once each "
                                         r"\(500 in all, counted per class\), got 100"):
        acc.result()
    with pytest.raises(ValueError, match="W, b: expected the classifier used in earlier second_pass calls"):
        acc.second_pass(x[100:], y[100:], W, b)
    acc.second_pass(x[100:], y[100:])
    assert float(acc.result().nc1) == pytest.approx(float(nc_metrics(x, y, device="cpu").nc1), rel=1e-12)
    assert np.isnan(float(acc.result().nc4))


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
        acc.second_pass(x, y, W, b)
    with pytest.raises(ValueError, match=r"features: expected finite values, got NaN or inf in rows \[3\]"):
        NCAccumulator(4, 7, device="cpu").update(x, y)


@pytest.mark.parametrize("scatter", ["full", "projected"])
def test_non_finite_rows_are_numbered_in_the_whole_batch(rng, scatter):
    # past the first block of the second pass (1024 rows) and past nc_metrics' first chunk
    from workbench.collapse import accumulator, metrics

    x, y = rng.normal(size=(3000, 5)), np.arange(3000) % 4
    W = rng.normal(size=(4, 5))
    acc = NCAccumulator(4, 5, scatter=scatter, device="cpu").update(x, y)
    x[2500, 1] = np.nan
    with pytest.raises(ValueError, match=r"features: .* rows \[2500\]"):
        acc.second_pass(x, y, W)
    with pytest.raises(ValueError, match=r"features: .* rows \[2500\]"):
        NCAccumulator(4, 5, scatter=scatter, device="cpu").update(x, y)
    assert accumulator.SECOND_PASS_ROWS < 2500
    original = metrics.CHUNK_ROWS
    metrics.CHUNK_ROWS = 1000
    try:
        with pytest.raises(ValueError, match=r"features: .* rows \[2500\]"):
            nc_metrics(x, y, W, device="cpu")
    finally:
        metrics.CHUNK_ROWS = original


@pytest.mark.parametrize("scatter", ["full", "projected"])
def test_a_failed_second_pass_leaves_the_totals_as_they_were(rng, scatter):
    x, y = rng.normal(size=(3000, 5)), np.arange(3000) % 4
    W = rng.normal(size=(4, 5))
    want = nc_metrics(x, y, W, device="cpu")
    acc = NCAccumulator(4, 5, scatter=scatter, device="cpu").update(x, y)
    bad = x.copy()
    bad[2500, 1] = np.inf  # in the third block: the first two were already added when it is found
    with pytest.raises(ValueError, match="expected finite values"):
        acc.second_pass(bad, y, W)  # the first call: the accumulator is as if it never started
    acc.update(x[:0], y[:0])  # still open for updates
    acc.second_pass(x[:1000], y[:1000], W)
    with pytest.raises(ValueError, match="expected finite values"):
        acc.second_pass(bad[1000:], y[1000:], W)  # a later call: the first 1000 samples stay counted once
    acc.second_pass(x[1000:], y[1000:], W)
    got = acc.result(W)
    for name in SCALARS:
        assert float(got[name]) == pytest.approx(float(want[name]), rel=1e-10, abs=1e-12), name


def test_finite_features_whose_sums_overflow_are_named_as_such():
    x = np.full((4, 3), 1e308)
    with pytest.raises(ValueError, match=r"features: expected values whose sums fit in float64, .*\(largest "
                                         r"magnitude 1e\+308\)"):
        nc_metrics(x, np.array([0, 0, 1, 1]), device="cpu")
