"""Figure builders return paper-styled figures with the expected traces."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from workbench.connectome import dynamic_connectome, ntf, rank_sweep, synthetic
from workbench.figures.connectome import (community_graph, component_panel, rank_sweep_plot, restart_similarity_plot,
                                          top_pairs_plot)
from workbench.figures.template import FONT_PX, TEMPLATE_NAME


@pytest.fixture(scope="module")
def result():
    return dynamic_connectome(synthetic(16, 3, 240, 2, seed=0), rank=2, n_restarts=3, device="cpu")


def test_component_panel(result):
    fig = component_panel(result, 1)
    assert isinstance(fig, go.Figure) and fig.layout.template.layout.font.size == FONT_PX
    assert [t.type for t in fig.data] == ["heatmap", "scatter", "bar"]
    assert len(fig.layout.shapes) == 2  # one shaded window per stimulus
    with pytest.raises(ValueError, match="component"):
        component_panel(result, 5)


def test_top_pairs_names_the_strongest_pairs_in_order(result):
    import numpy as np

    factor = result["pair_factor"][:, 1].values
    fig = top_pairs_plot(result, 1, k=4)
    order = np.argsort(-factor)[:4]
    neurons = result["community"]["neuron"].values
    ia, ib = np.triu_indices(neurons.size, k=1)  # the pair order of the pair dim, independently of its coords
    assert list(fig.data[0].y) == [f"{neurons[ia[i]]}–{neurons[ib[i]]}" for i in order]
    np.testing.assert_allclose(fig.data[0].x, factor[order])
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="k: expected a positive integer"):
            top_pairs_plot(result, 1, k=bad)
    with pytest.raises(ValueError, match="component"):
        top_pairs_plot(result, 2)


def test_graph_sweep_similarity(result):
    """Each figure draws the numbers it is given: colours = communities, heatmap = FMS, curves = the sweep."""
    import numpy as np

    from workbench.connectome.pairs import pairs_to_matrix
    from workbench.figures.template import PALETTE

    graph = community_graph(result, 0, top_fraction=0.1)
    labels = result["community"][0].values
    assert list(graph.data[1].marker.color) == [PALETTE[int(lab) % len(PALETTE)] for lab in labels]
    matrix = pairs_to_matrix(result["pair_factor"][:, 0]).values
    weights = matrix[np.triu_indices(labels.size, k=1)]
    n_edges = max(1, int(0.1 * weights.size))
    assert len(graph.data[0].x) == 3 * n_edges  # each edge is (start, end, None)
    np.testing.assert_array_equal(restart_similarity_plot(result).data[0].z, result["restart_similarity"].values)
    x = result["pair_factor"].values[:, :, None] * result["time_factor"].values.T[None]
    sweep = rank_sweep(x, [1, 2, 3], n_restarts=3, progress=False, device="cpu")
    fig = rank_sweep_plot(sweep)
    by_name = {t.name: t for t in fig.data}
    np.testing.assert_allclose(by_name["training error"].y, sweep["error"].values)
    np.testing.assert_allclose(by_name["held-out error"].y, sweep["heldout_error"].values)
    np.testing.assert_allclose(by_name["stability"].y, sweep["stability"].values)
    chosen = sweep.attrs["suggested_rank"]
    assert chosen == 2  # x is an exact rank-2 tensor
    assert {s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1} == {chosen}
    assert fig.layout.annotations[-1].text.strip() == f"chosen: {chosen}"
    with pytest.raises(TypeError, match="sweep"):
        rank_sweep_plot(result)  # no sweep was run for this result
    with pytest.raises(TypeError, match="result"):
        component_panel(ntf(x, 1, n_restarts=1, device="cpu"), 0)
    assert TEMPLATE_NAME


def test_component_panel_overlays_a_covariate_and_marks_chance():
    import numpy as np

    import xarray as xr

    ds = synthetic(12, 2, 160, 2, seed=0)
    speed = xr.DataArray(np.random.default_rng(0).normal(size=(2, 160)), dims=("animal", "time"),
                         attrs={"units": "mm/s"})  # per animal: each component sees its own animal-weighted mean
    out = dynamic_connectome(ds, rank=2, n_restarts=1, max_iter=40, n_surrogates=3, community_method="leiden",
                             alpha=0.5, covariates={"speed": speed}, device="cpu")
    binned = out["covariate_binned"].sel(covariate="speed")
    assert not np.allclose(binned[0], binned[1])
    for c in range(2):
        fig = component_panel(out, c, covariate="speed")
        overlay = next(t for t in fig.data if t.name == "speed")
        np.testing.assert_allclose(overlay.y, binned[c].values)
        assert overlay.yaxis == "y3" and fig.layout.yaxis3.title.text == "speed (mm/s)"  # the time panel's 2nd axis
        r = float(out["covariate_correlation"][0, c])
        assert f"r = {r:.2f}" in fig.layout.annotations[1].text
        verdict = "more than chance" if bool(out["significant"][c]) else "not above chance at 0.5"
        assert verdict in fig.layout.title.text and "3 surrogates" in fig.layout.title.text
        time_line = next(t for t in fig.data if t.name == "time")
        assert (time_line.line.color == "#999999") != bool(out["significant"][c])
    assert "surrogates" not in component_panel(out, 0, mark_significant=False).layout.title.text
    with pytest.raises(ValueError, match="covariate: expected one of"):
        component_panel(out, 0, covariate="velocity")


def test_traces_heatmap_bins_a_long_recording_for_display_and_says_so():
    """200 x 40,000 frames must not reach the browser: at most one column per pixel, each the mean of its frames."""
    import warnings

    import numpy as np
    import xarray as xr

    from workbench.figures.traces import traces_heatmap

    rng = np.random.default_rng(0)
    n_neurons, n_time, fps = 200, 40_000, 4.0
    values = rng.random((1, n_neurons, n_time))
    values[0, 3, 100:168] = np.nan  # bin 2 (frames 112..167) is all NaN and stays NaN; bin 1 ignores its 12 NaNs
    traces = xr.DataArray(values, dims=("animal", "neuron", "time"),
                          coords={"animal": ["big"], "neuron": np.arange(n_neurons), "time": np.arange(n_time) / fps})
    fig = traces_heatmap(traces, max_columns=720)
    z, x = np.asarray(fig.data[0].z, dtype=float), np.asarray(fig.data[0].x)
    frames = 56  # ceil(40,000 / 720)
    assert z.shape == (n_neurons, -(-n_time // frames)) and z.shape[1] <= 720
    padded = np.pad(values[0], ((0, 0), (0, z.shape[1] * frames - n_time)), constant_values=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN bin
        truth = np.nanmean(padded.reshape(n_neurons, -1, frames), axis=2)
    np.testing.assert_allclose(z, truth, rtol=1e-12)
    assert np.isnan(z[3, 2]) and np.isfinite(z[3, 1])
    np.testing.assert_allclose(x[:2], [np.arange(56).mean() / fps, np.arange(56, 112).mean() / fps])
    np.testing.assert_allclose(x[-1], np.arange(frames * (z.shape[1] - 1), n_time).mean() / fps)
    assert "mean over 56-frame bins" in fig.layout.title.text and "(14 s)" in fig.layout.xaxis.title.text
    short = traces.isel(time=slice(0, 700))
    small = traces_heatmap(short, max_columns=720)  # fits: every frame shown, nothing said about bins
    np.testing.assert_array_equal(np.asarray(small.data[0].z, dtype=float), values[0, :, :700])
    assert small.layout.title.text == "traces of big" and small.layout.xaxis.title.text == "time (s)"


def test_only_identity_names_are_called_neuropal_labels():
    """Synthetic ``N000`` and Suite2p ``roi3`` number neurons; the bundled worm's NeuroPAL names are identities."""
    from pathlib import Path

    import numpy as np

    from workbench.connectome import load_traces
    from workbench.figures.traces import _is_named, traces_heatmap

    data = Path(__file__).resolve().parents[2] / "data" / "connectome"
    synth = synthetic(12, 1, 120, 2).traces
    worm = load_traces(data / "atanas2023_worm")
    suite2p = load_traces(data / "suite2p_plane0")
    assert str(synth["neuron"].values[0]) == "N000" and str(suite2p["neuron"].values[0]).startswith("roi")
    for traces, named in ((synth, False), (suite2p, False), (worm, True)):
        fig = traces_heatmap(traces)
        assert fig.layout.yaxis.title.text == ("neuron (NeuroPAL label)" if named else "neuron (index)")
    ticks = traces_heatmap(worm).layout.yaxis
    assert "AVAL" in ticks.ticktext and ticks.showticklabels  # all 98 names label the rows
    assert not _is_named(np.array(["N000", "roi3", "12", "cell_4"]))
    assert _is_named(np.array(["N000", "AVAL"])) and _is_named(np.array(["VB02", "DA01"]))
    # a recording's metadata decides when it says which the names are
    assert _is_named(np.array(["N000"]), {"neuron_labels": "identity"})
    assert not _is_named(np.array(["AVAL"]), {"neuron_labels": "index"})


def test_component_panel_with_too_few_surrogates_says_so_and_greys_nothing():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the warning itself: test_connectome_surrogates
        out = dynamic_connectome(synthetic(12, 2, 160, 2, seed=0), rank=2, n_restarts=1, max_iter=30, n_surrogates=2,
                                 community_method="leiden", device="cpu")
    assert not out["significant"].values.any()  # p >= 1/3 everywhere: 'not significant' means nothing here
    for c in range(2):
        fig = component_panel(out, c)
        assert "vs 2 surrogates (too few to test at 0.05: need 19)" in fig.layout.title.text
        assert "chance" not in fig.layout.title.text
        assert next(t for t in fig.data if t.name == "time").line.color != "#999999"
