"""The one paper template every figure builder uses.

Sizes follow a two-column paper: a single column is 3.5 in (252 pt) wide, a
full width figure 7.2 in (518 pt). Text is 8-9 pt in a font every PDF viewer
has. Colours are the Okabe-Ito palette, which stays distinguishable under the
common colour-vision deficiencies.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

#: Okabe & Ito (2008) colour-blind-safe qualitative palette.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
#: Sequential and diverging colour scales that are colour-blind safe.
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"

SINGLE_COLUMN_PX = 350
FULL_WIDTH_PX = 720
DEFAULT_HEIGHT_PX = 260
FONT_FAMILY = "Helvetica, Arial, DejaVu Sans, sans-serif"

TEMPLATE_NAME = "workbench_paper"


def _build_template() -> go.layout.Template:
    axis = dict(
        showline=True,
        linecolor="black",
        linewidth=0.8,
        mirror=False,
        ticks="outside",
        ticklen=3,
        tickwidth=0.8,
        showgrid=True,
        gridcolor="#E5E5E5",
        gridwidth=0.5,
        zeroline=False,
        title=dict(font=dict(size=10)),
        tickfont=dict(size=9),
    )
    return go.layout.Template(
        layout=go.Layout(
            font=dict(family=FONT_FAMILY, size=9, color="black"),
            colorway=list(PALETTE),
            paper_bgcolor="white",
            plot_bgcolor="white",
            margin=dict(l=50, r=12, t=30, b=40),
            xaxis=axis,
            yaxis=axis,
            legend=dict(font=dict(size=8), bgcolor="rgba(255,255,255,0.6)"),
            title=dict(font=dict(size=11), x=0.02, xanchor="left"),
            coloraxis=dict(colorscale=SEQUENTIAL, colorbar=dict(thickness=10, tickfont=dict(size=8))),
            hoverlabel=dict(font=dict(size=10)),
        )
    )


pio.templates[TEMPLATE_NAME] = _build_template()


def apply_paper_style(fig: go.Figure, *, width: int | None = None, height: int | None = None) -> go.Figure:
    """Apply the paper template (and an optional size) to ``fig`` in place.

    Examples
    --------
    >>> import plotly.graph_objects as go
    >>> fig = apply_paper_style(go.Figure(go.Scatter(y=[1, 2])), width=350)
    >>> fig.layout.width
    350
    """
    fig.update_layout(template=TEMPLATE_NAME)
    if width is not None:
        fig.update_layout(width=width)
    if height is not None:
        fig.update_layout(height=height)
    return fig


def new_figure(**layout) -> go.Figure:
    """A blank figure in the paper template; ``layout`` keywords are applied.

    Examples
    --------
    >>> new_figure(title="loss").layout.template.layout.font.size
    9
    """
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE_NAME, **layout)
    return fig
