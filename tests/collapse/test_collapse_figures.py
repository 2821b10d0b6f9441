"""Figure builders draw the numbers they are given and the closed-form targets."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import xarray as xr

from collapse_helpers import (assert_same_up_to_axis_signs, etf_features, hooked_class_means, random_rotation,
                              top3_projection)
from workbench.collapse import etf_gram, imbalanced_geometry, nc_metrics, run_experiment, track
from workbench.figures.collapse import class_means_3d, gram_heatmap, minority_collapse_plot, nc_vs_epoch, nc_vs_layer


def _epochs_layers():
    epochs, layers = [0, 10, 20], ["relu1", "linear1"]
    nc1 = np.array([[1.0, 0.5], [0.1, 0.05], [0.01, 0.0]])
    return xr.Dataset({"nc1": (("epoch", "layer"), nc1), "nc4": (("epoch", "layer"), np.full((3, 2), np.nan))},
                      coords={"epoch": epochs, "layer": layers})


def test_nc_vs_epoch_draws_finite_positive_points_of_the_chosen_layer():
    fig = nc_vs_epoch(_epochs_layers(), metrics=["nc1", "nc4"])
    assert isinstance(fig, go.Figure) and fig.layout.yaxis.type == "log"
    assert len(fig.data) == 1  # nc4 is all NaN
    assert list(fig.data[0].x) == [0, 10] and list(fig.data[0].y) == [0.5, 0.05]  # last layer, zero dropped
    assert list(nc_vs_epoch(_epochs_layers(), ["nc1"], layer="relu1").data[0].y) == [1.0, 0.1, 0.01]


def test_nc_vs_layer_fit_recovers_a_planted_geometric_decay():
    y = 3.0 * 10 ** (-0.4 * np.arange(1, 7))
    ds = xr.Dataset({"nc1": (("epoch", "layer"), np.vstack([y * 5, y]))},
                    coords={"epoch": [0, 1], "layer": [f"l{i}" for i in range(6)]})
    fig = nc_vs_layer(ds)
    assert fig.layout.meta["slope"] == pytest.approx(-0.4, rel=1e-12)
    np.testing.assert_allclose(fig.data[1].y, y, rtol=1e-12)


def test_gram_heatmap_targets(rng):
    x, y, centred, offset = etf_features(4, 6, 2.0, 0.1, rng)
    fig = gram_heatmap(nc_metrics(x, y, device="cpu"), "etf")
    np.testing.assert_allclose(fig.data[1].z, etf_gram(4), atol=1e-15)
    np.testing.assert_allclose(fig.data[0].z, etf_gram(4), atol=1e-10)  # the data is an exact ETF
    theory = imbalanced_geometry([200, 100, 50, 50], 5e-4, 5e-4, 1)
    want = np.diag(theory.mean_norm.values ** 2)
    np.testing.assert_allclose(gram_heatmap(nc_metrics(x, y, device="cpu"), theory).data[1].z,
                               want / np.linalg.norm(want), rtol=1e-12)
    with pytest.raises(ValueError, match="target: expected 'etf', 'of' or a Dataset"):
        gram_heatmap(nc_metrics(x, y, device="cpu"), "simplex")


def test_class_means_3d_overlay_sits_on_exact_geometry(rng):
    theory = imbalanced_geometry([200, 100, 50, 50], 5e-4, 5e-4, 1)
    means = random_rotation(6, rng)[:4] * theory.mean_norm.values[:, None]  # orthogonal, theoretical norms
    ds = nc_metrics(np.repeat(means, 2, axis=0), np.arange(8) // 2, device="cpu")
    fig = class_means_3d(ds, W=means, target=theory)
    observed, overlay = fig.data[0], fig.data[2]
    for axis in "xyz":
        np.testing.assert_allclose(getattr(overlay, axis), getattr(observed, axis), atol=1e-12)
    with pytest.raises(ValueError, match=r"W: expected shape \(4, 6\)"):
        class_means_3d(ds, W=np.ones((3, 6)))


def _drawn(fig):
    """The 3-D coordinates of every trace, stacked (n, 3)."""
    return np.vstack([np.column_stack([t.x, t.y, t.z]) for t in fig.data])


def _rescaled(rows, points):
    return rows / np.linalg.norm(rows, axis=1).mean() * np.linalg.norm(points, axis=1).mean()


def test_class_means_3d_of_a_tracked_layer_projects_the_hooked_means_and_heads():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.ReLU(), torch.nn.Linear(12, 7, bias=False),
                              torch.nn.Linear(7, 4, bias=False)).double()
    y = torch.arange(200) % 4
    x = torch.randn(200, 5, dtype=torch.float64) + 2.0 * torch.randn(4, 5, dtype=torch.float64)[y]
    heads = {"1": (net[3].weight @ net[2].weight).detach(), "2": net[3].weight.detach()}
    tracker = track(net, (x, y), ["1", "2"], classifiers=heads, device="cpu")
    for epoch in (0, 3):
        tracker(epoch)
    ds = tracker.result()
    truth = hooked_class_means(net, x, y, ["1", "2"])
    for name in ("1", "2"):  # 12 wide (the widest) and 7 wide (padded to 12)
        fig = class_means_3d(ds.sel(layer=name, epoch=3))
        assert [t.name for t in fig.data] == ["class means", "classifier rows"]
        points = truth[name] - truth[name].mean(axis=0)
        want = top3_projection(points, _rescaled(heads[name].numpy(), points))
        assert_same_up_to_axis_signs(_drawn(fig), want, atol=1e-9)
    one = ds.sel(layer="2", epoch=0)
    assert [t.name for t in class_means_3d(one, W=np.ones((4, 7))).data] == ["class means", "classifier rows"]
    with pytest.raises(ValueError, match=r"W: expected shape \(4, 7\)"):
        class_means_3d(one, W=np.ones((4, 12)))
    with pytest.raises(ValueError, match=r"select one, e.g. ds.sel\(layer=..., epoch=...\)"):
        class_means_3d(ds.sel(layer="2"))


def test_class_means_3d_of_an_experiment_slice():
    run = run_experiment(hidden=(16, 24), n_linear=2, epochs=2, record_every=2, progress=False, device="cpu")
    for layer, width, has_head in (("relu1", 16, False), ("relu2", 24, True), ("linear1", 24, True)):
        one = run.sel(layer=layer, epoch=2)
        fig = class_means_3d(one, target="of")
        names = ["class means"] + ["classifier rows"] * has_head + ["orthogonal frame"]
        assert [t.name for t in fig.data] == names
        points = one.class_means.values[:, :width]  # uncentred for the OF target
        rows = _rescaled(one.classifier.values[:, :width], points) if has_head else None
        n = len(points) * (1 + has_head)
        assert_same_up_to_axis_signs(_drawn(fig)[:n], top3_projection(points, rows), atol=1e-9)


def test_minority_collapse_plot():
    ds = xr.Dataset({"minority_cosine": ("ratio", [-1 / 3, 0.4, 0.8])}, coords={"ratio": [1.0, 16.0, 64.0]},
                    attrs={"k_majority": 2, "k_minority": 2})
    fig = minority_collapse_plot(ds)
    assert list(fig.data[0].y) == pytest.approx([-1 / 3, 0.4, 0.8]) and fig.layout.xaxis.type == "log"
    assert fig.layout.shapes[0].y0 == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="ds: expected variables"):
        minority_collapse_plot(xr.Dataset({"x": ("ratio", [1.0])}))
