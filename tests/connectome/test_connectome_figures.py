"""Figure builders return paper-styled figures with the expected traces."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from workbench.connectome import dynamic_connectome, ntf, rank_sweep, synthetic
from workbench.figures.connectome import community_graph, component_panel, rank_sweep_plot, restart_similarity_plot
from workbench.figures.template import TEMPLATE_NAME


@pytest.fixture(scope="module")
def result():
    return dynamic_connectome(synthetic(16, 3, 240, 2, seed=0), rank=2, n_restarts=3, device="cpu")


def test_component_panel(result):
    fig = component_panel(result, 1)
    assert isinstance(fig, go.Figure) and fig.layout.template.layout.font.size == 9
    assert [t.type for t in fig.data] == ["heatmap", "scatter", "bar"]
    assert len(fig.layout.shapes) == 2  # one shaded window per stimulus
    with pytest.raises(ValueError, match="component"):
        component_panel(result, 5)


def test_graph_sweep_similarity(result):
    assert community_graph(result, 0).data[1].marker.color is not None
    assert restart_similarity_plot(result).data[0].z.shape == (3, 3)
    x = result["pair_factor"].values[:, :, None] * result["time_factor"].values.T[None]
    sweep = rank_sweep(x, [1, 2], n_restarts=2, progress=False, device="cpu")
    fig = rank_sweep_plot(sweep)
    assert len(fig.data) == 2 and fig.layout.template is not None
    with pytest.raises(TypeError, match="sweep"):
        rank_sweep_plot(result)
    with pytest.raises(TypeError, match="result"):
        component_panel(ntf(x, 1, n_restarts=1, device="cpu"), 0)
    assert TEMPLATE_NAME
