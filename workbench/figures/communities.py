"""Figure of consensus communities: co-assignment heatmap and per-neuron confidence."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import xarray as xr
from plotly.subplots import make_subplots

from workbench.figures.template import FULL_WIDTH_PX, PALETTE, SEQUENTIAL, apply_paper_style

_NEEDED = ("co_assignment", "community", "confidence")


def consensus_order(consensus: xr.Dataset) -> np.ndarray:
    """Neuron order: by consensus community, then by decreasing confidence (stable).

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"community": ("neuron", [1, 0, 1]), "confidence": ("neuron", [0.5, 1.0, 0.9])})
    >>> consensus_order(ds).tolist()
    [1, 2, 0]
    """
    labels, confidence = consensus["community"].values, consensus["confidence"].values
    return np.lexsort((np.arange(labels.size), -confidence, labels))


def coassignment_plot(consensus: xr.Dataset) -> go.Figure:
    """Co-assignment heatmap ordered by consensus community, with each neuron's confidence beside it.

    Parameters
    ----------
    consensus : xr.Dataset
        The output of :func:`workbench.connectome.consensus.consensus_communities`.

    Examples
    --------
    >>> import numpy as np
    >>> from workbench.connectome.consensus import consensus_communities
    >>> w = np.kron(np.eye(2), np.ones((4, 4))) + 0.1
    >>> fig = coassignment_plot(consensus_communities(w, seeds=[0, 1]))
    >>> fig.data[0].type, fig.data[0].colorbar.title.text
    ('heatmap', 'co-assignment<br>(fraction of runs)')
    """
    if not isinstance(consensus, xr.Dataset) or any(v not in consensus for v in _NEEDED):
        raise TypeError(f"consensus: expected the xr.Dataset of consensus_communities (with {list(_NEEDED)}), "
                        f"got {type(consensus).__name__}")
    order = consensus_order(consensus)
    names = consensus["neuron"].values.astype(str)[order]
    labels = consensus["community"].values[order]
    confidence = consensus["confidence"].values[order]
    co = consensus["co_assignment"].values[np.ix_(order, order)]
    n = names.size
    fig = make_subplots(rows=1, cols=2, column_widths=[0.8, 0.2], shared_yaxes=True, horizontal_spacing=0.03)
    pos = np.arange(n)  # positions, not names: numeric neuron names would otherwise be placed by value
    fig.add_trace(go.Heatmap(z=co, x=pos, y=pos, customdata=np.stack(np.broadcast_arrays(names[None, :], names[:, None]), -1),
                             zmin=0, zmax=1, colorscale=SEQUENTIAL,
                             colorbar=dict(title="co-assignment<br>(fraction of runs)", x=1.02),
                             hovertemplate="%{customdata[1]} with %{customdata[0]}: %{z:.2f}<extra></extra>"),
                  row=1, col=1)
    colors = [PALETTE[int(lab) % len(PALETTE)] for lab in labels]
    fig.add_trace(go.Bar(x=confidence, y=pos, orientation="h", marker=dict(color=colors), showlegend=False,
                         customdata=names, hovertemplate="%{customdata}: confidence %{x:.2f}<extra></extra>"),
                  row=1, col=2)
    bounds = np.flatnonzero(np.diff(labels)) + 0.5  # community boundaries in the ordered matrix
    for b in bounds:
        fig.add_shape(type="line", x0=b, x1=b, y0=-0.5, y1=n - 0.5, line=dict(color="white", width=1), row=1, col=1)
        fig.add_shape(type="line", x0=-0.5, x1=n - 0.5, y0=b, y1=b, line=dict(color="white", width=1), row=1, col=1)
    # Names are shown only where one fits each row at the template's font (else: hover for them).
    ticks = dict(tickvals=pos.tolist(), ticktext=names.tolist(), showticklabels=n <= 32)
    fig.update_xaxes(title_text="neuron (ordered by consensus community)", range=[-0.5, n - 0.5], **ticks,
                     row=1, col=1)
    fig.update_yaxes(title_text="neuron", range=[n - 0.5, -0.5], **ticks, row=1, col=1)
    fig.update_xaxes(title_text="confidence (fraction)", range=[0, 1.02], row=1, col=2)
    runs = consensus.attrs.get("n_graphs", 1) * consensus.attrs.get("n_seeds", 1)
    fig.update_layout(title=f"consensus of {runs} runs: {int(labels.max()) + 1} communities", bargap=0.1)
    return apply_paper_style(fig, width=FULL_WIDTH_PX, height=560)
