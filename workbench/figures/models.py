"""Figures of the model zoo and cached activations.

Examples
--------
>>> import numpy as np, xarray as xr
>>> scores = xr.DataArray(np.eye(2), dims=("layer", "head"), coords={"layer": [0, 1], "head": [0, 1]})
>>> induction_heatmap(scores).data[0].type
'heatmap'
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import xarray as xr

from workbench.figures.template import SEQUENTIAL, SINGLE_COLUMN_PX, new_figure


def induction_heatmap(scores: xr.DataArray, *, title: str = "Induction score") -> go.Figure:
    """Layer x head heatmap of induction scores (from :func:`workbench.models.induction_scores`)."""
    if not isinstance(scores, xr.DataArray) or set(scores.dims) != {"layer", "head"}:
        raise ValueError("scores: expected an xr.DataArray with dims ('layer', 'head')")
    scores = scores.transpose("layer", "head")
    fig = new_figure(title=title, width=SINGLE_COLUMN_PX, height=220)
    fig.add_heatmap(z=scores.values, x=[f"H{h}" for h in scores["head"].values],
                    y=[f"L{layer}" for layer in scores["layer"].values], colorscale=SEQUENTIAL, zmin=0, zmax=1,
                    texttemplate="%{z:.2f}", colorbar=dict(title="induction<br>score"))
    fig.update_yaxes(title_text="layer", autorange="reversed", showgrid=False)
    fig.update_xaxes(title_text="head", showgrid=False)
    return fig


def head_norms(z: xr.DataArray, *, title: str = "Mean |z| per head") -> go.Figure:
    """Bar chart of the mean L2 norm of ``hook_z`` per head, one trace per layer.

    ``z`` has dims (``layer``, ``seq``, ``pos``, ``head``, ``d_head``) or lacks
    ``layer``.
    """
    if not isinstance(z, xr.DataArray) or not {"head", "d_head"} <= set(z.dims):
        raise ValueError("z: expected an xr.DataArray with dims including 'head' and 'd_head'")
    norms = np.sqrt((z.astype("float64") ** 2).sum("d_head")).mean([d for d in ("seq", "pos") if d in z.dims])
    if "layer" not in norms.dims:
        norms = norms.expand_dims(layer=[0])
    fig = new_figure(title=title, width=SINGLE_COLUMN_PX, height=220, barmode="group")
    for layer in norms["layer"].values:
        values = norms.sel(layer=layer)
        fig.add_bar(x=[f"H{h}" for h in values["head"].values], y=values.values, name=f"layer {layer}")
    fig.update_yaxes(title="mean |z| (L2 norm per token)")
    fig.update_xaxes(title="head")
    return fig
