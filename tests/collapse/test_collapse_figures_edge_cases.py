"""Collapse figure builders on awkward input: a clear error naming the argument, never a garbage figure."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from workbench.collapse import imbalanced_geometry, nc_metrics
from workbench.figures.collapse import class_means_3d, gram_heatmap, nc_vs_epoch, nc_vs_layer


@pytest.fixture
def metrics():
    return nc_metrics(np.eye(3).repeat(2, axis=0), np.arange(6) // 2, device="cpu")


@pytest.fixture
def run():
    return xr.Dataset({"nc1": (("epoch", "layer"), [[1.0, 0.5], [0.1, 0.05]]),
                       "gram": (("epoch", "layer", "class"), np.ones((2, 2, 3)))},
                      coords={"epoch": [0, 10], "layer": ["a", "b"]})


def test_gram_heatmap_of_several_layers_asks_for_one(metrics):
    with pytest.raises(ValueError, match=r"ds: expected gram over \(class, other_class\)"):
        gram_heatmap(metrics.expand_dims(layer=["a", "b"]))


def test_gram_heatmap_against_a_theory_where_every_class_collapses(metrics):
    theory = imbalanced_geometry([1, 1, 1], 10.0, 10.0, depth=1)
    assert theory.collapsed.values.all()  # every mean is 0: there is no Gram shape to compare with
    with pytest.raises(ValueError, match="target: every class collapses"):
        gram_heatmap(metrics, target=theory)


def test_nc_vs_epoch_metrics_given_as_a_string(run):
    with pytest.raises(TypeError, match="metrics: expected a sequence of variable names"):
        nc_vs_epoch(run, metrics="nc1")


def test_nc_vs_epoch_unknown_layer(run):
    with pytest.raises(ValueError, match=r"layer: expected one of \['a', 'b'\], got 'z'"):
        nc_vs_epoch(run, metrics=["nc1"], layer="z")


def test_nc_vs_layer_unknown_epoch(run):
    with pytest.raises(ValueError, match=r"epoch: expected one of \[0, 10\], got 5"):
        nc_vs_layer(run, epoch=5)


def test_non_scalar_metrics_are_rejected(run):
    with pytest.raises(ValueError, match=r"metrics: expected variables over \('epoch',\)"):
        nc_vs_epoch(run, metrics=["gram"])
    with pytest.raises(ValueError, match=r"metric: expected a variable over \('layer',\)"):
        nc_vs_layer(run, "gram")


def test_single_epoch_and_layer_and_nan_metrics_draw_what_is_finite(run):
    one = run.isel(epoch=[0], layer=[1]).assign(nc1=(("epoch", "layer"), [[np.nan]]))
    assert len(nc_vs_epoch(one, metrics=["nc1"]).data) == 0
    assert np.isnan(nc_vs_layer(one).layout.meta["slope"])


@pytest.mark.parametrize("W", [np.full((3, 3), np.nan), np.zeros((3, 3))])
def test_class_means_3d_rejects_unusable_classifier_rows(metrics, W):
    with pytest.raises(ValueError, match="W: expected finite rows that are not all zero"):
        class_means_3d(metrics, W=W)
