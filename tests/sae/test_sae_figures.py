"""Figure builders run on real SAE results and refuse the wrong input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from sae_helpers import z_cat
from workbench.figures.sae import (feature_dashboard, feature_examples_html, firing_histogram, head_family_matrix,
                                   l0_ce_frontier)
from workbench.sae import (AttentionSAE, CELossRecoveredWarning, SAEConfig, dfa, evaluate, feature_families,
                           head_attribution, top_activations)


@pytest.fixture(scope="module")
def results(random_model):
    tokens = torch.randint(1, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=24, k=4), seed=1)
    with warnings.catch_warnings():  # layer 0 of the random model moves the loss < 0.01 nats: NaN, drawn as a gap
        warnings.simplefilter("ignore", CELossRecoveredWarning)
        evals = xr.concat([xr.concat([evaluate(sae, random_model, tokens, layer)[["l0", "ce_loss_recovered"]]
                                      for _ in range(2)], dim="k") for layer in (0, 1)], dim="layer")
    return {"top": top_activations(sae, random_model, tokens, 1, [2, 5], k=4),
            "share": head_attribution(sae, 2), "dfa": dfa(sae, random_model, tokens[:1], 1, [2, 5]),
            "evals": evals.assign_coords(layer=[0, 1], k=[4, 8]),
            "ev": evaluate(sae, random_model, tokens, 1),
            "families": feature_families({1: sae}, random_model, tokens)}


def test_builders(results):
    fig = feature_dashboard(results["top"], 2, head_share=results["share"], dfa=results["dfa"])
    assert [t.type for t in fig.data] == ["histogram", "heatmap", "bar", "bar"]
    page = feature_examples_html(results["top"], 5)
    assert page.count("<u>") == int((results["top"]["kind"].sel(feature=5) != "").sum())
    assert len(l0_ce_frontier(results["evals"]).data) == 2
    assert sum(firing_histogram(results["ev"]).data[0].y) == int((results["ev"]["firing_frequency"] > 0).sum())
    assert head_family_matrix(results["families"], 1).data[0].z.sum() == 24


def test_builders_refuse_wrong_input(results):
    with pytest.raises(TypeError, match="top: expected the xr.Dataset of top_activations"):
        feature_dashboard(results["ev"], 2, head_share=results["share"])
    with pytest.raises(TypeError, match="head_share: expected the \\(feature, head\\) DataArray"):
        feature_dashboard(results["top"], 2, head_share=results["dfa"])
    with pytest.raises(ValueError, match=r"layer: expected one of \[1\], got 0"):
        head_family_matrix(results["families"], 0)


def test_dashboard_shows_the_chosen_sequence_else_where_the_feature_peaks(random_model):
    tokens = torch.randint(1, 64, (4, 16), generator=torch.Generator().manual_seed(1))
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=24, architecture="standard"), seed=2)  # activation = relu(pre)
    with torch.no_grad():
        acts = sae.encode(z_cat(random_model, tokens, 1)).numpy()  # (seq, pos, feature), read directly
    peak_seq = acts.max(axis=1).argmax(axis=0)  # per feature
    feature = int(np.flatnonzero((peak_seq != 0) & (acts.max(axis=(0, 1)) > 0))[0])  # the old default was wrong
    attribution = dfa(sae, random_model, tokens, 1, [feature])
    top = top_activations(sae, random_model, tokens, 1, [feature], k=4)
    share = head_attribution(sae, 2)

    def shown(**kwargs):
        fig = feature_dashboard(top, feature, head_share=share, dfa=attribution, **kwargs)
        return np.asarray(fig.data[1].z), fig.layout.xaxis2.title.text

    for seq, want in ((None, int(peak_seq[feature])), (0, 0), (3, 3)):
        z, title = shown(seq=seq)
        np.testing.assert_array_equal(z, attribution.sel(feature=feature).values[want])
        assert title == f"source position (sequence {want})"
    for bad in (4, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"seq: expected a sequence index in \[0, 4\) .*got {bad!r}"):
            shown(seq=bad)
    with pytest.raises(ValueError, match="seq: expected None when no dfa is given, got 2"):
        feature_dashboard(top, feature, head_share=share, seq=2)


def test_frontier_shows_undefined_ce_recovered_as_gaps():
    """evaluate gives NaN where ablating the layer barely moves the loss: a gap, and the legend says n/a."""
    ev = xr.Dataset({"l0": (("layer", "k"), [[4.0, 8.0, 16.0], [4.0, 8.0, 16.0]]),
                     "ce_loss_recovered": (("layer", "k"), [[np.nan] * 3, [0.7, np.nan, 0.9]])},
                    coords={"layer": [0, 1], "k": [4, 8, 16]})
    fig = l0_ce_frontier(ev)
    assert [t.name for t in fig.data] == ["layer 0 (n/a)", "layer 1"]
    assert np.isnan(fig.data[1].y[1]) and list(fig.data[1].y[::2]) == [0.7, 0.9] and not fig.data[1].connectgaps
