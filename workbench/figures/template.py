"""The one paper template every figure builder uses.

Sizes follow a two-column paper: a single column is 3.5 in (252 pt) wide, a
full width figure 7.2 in (518 pt). Export maps one CSS pixel to 0.75 pt, so a
figure of :data:`SINGLE_COLUMN_PX` or :data:`FULL_WIDTH_PX` prints at exactly
those widths and an 11 px font prints at 8.25 pt: no text is smaller than
:data:`MIN_FONT_PT` (:func:`paper_points`). The font is one every PDF viewer
has. Colours are the Okabe-Ito palette, which stays distinguishable under the
common colour-vision deficiencies.
"""

from __future__ import annotations

import math

import numpy as np
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

#: Column widths of a two-column paper in pt, and in CSS px at export's 0.75 pt per px.
SINGLE_COLUMN_PT = 252
FULL_WIDTH_PT = 518
PT_PER_PX = 0.75
SINGLE_COLUMN_PX = round(SINGLE_COLUMN_PT / PT_PER_PX)  # 336
FULL_WIDTH_PX = round(FULL_WIDTH_PT / PT_PER_PX)  # 691
DEFAULT_HEIGHT_PX = 260
#: The smallest text a printed figure may carry.
MIN_FONT_PT = 8.0
#: A fitted curve is drawn only over at least this many points.
MIN_FIT_POINTS = 3
#: Font sizes (px) of the template: every one prints at >= MIN_FONT_PT at column width.
FONT_PX = 11
TITLE_FONT_PX = 12
#: Top margin (px) that holds a figure title above subplot titles: the title is centred in the margin.
TOP_MARGIN_WITH_TITLE = 2 * TITLE_FONT_PX + 3 * FONT_PX  # 57
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
        automargin=True,  # long or rotated tick labels push the margin out, never clip or cover the title
        title=dict(font=dict(size=FONT_PX)),
        tickfont=dict(size=FONT_PX),
    )
    return go.layout.Template(
        layout=go.Layout(
            font=dict(family=FONT_FAMILY, size=FONT_PX, color="black"),
            colorway=list(PALETTE),
            paper_bgcolor="white",
            plot_bgcolor="white",
            margin=dict(l=56, r=12, t=30, b=44),
            xaxis=axis,
            yaxis=axis,
            legend=dict(font=dict(size=FONT_PX), bgcolor="rgba(255,255,255,0.6)"),
            title=dict(font=dict(size=TITLE_FONT_PX), x=0.02, xanchor="left"),
            annotationdefaults=dict(font=dict(size=FONT_PX)),
            coloraxis=dict(colorscale=SEQUENTIAL, colorbar=dict(thickness=10, tickfont=dict(size=FONT_PX))),
            hoverlabel=dict(font=dict(size=FONT_PX)),
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
    11
    """
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE_NAME, **layout)
    return fig


def paper_points(size_px: float, width_px: float | None = None) -> float:
    """Printed size in pt of ``size_px`` text in a figure ``width_px`` wide placed in a paper.

    A figure up to the full text width prints at its own size (0.75 pt per
    px); a wider one is shrunk to the full width, and its text with it.

    Examples
    --------
    >>> paper_points(11, SINGLE_COLUMN_PX), round(paper_points(11, 2 * FULL_WIDTH_PX), 2)
    (8.25, 4.12)
    """
    width_px = width_px or FULL_WIDTH_PX
    return float(size_px) * PT_PER_PX * min(1.0, FULL_WIDTH_PT / (PT_PER_PX * float(width_px)))


def log_ticks(values) -> dict:
    """Tick settings of a log axis over ``values``: decades as powers of ten, or round values within a few.

    Plotly's own log ticks label the minor ticks with bare digits ("2, 5, 2,
    0.1"); these label only decades when the data span three or more, and
    otherwise round values inside the data's range: 1, 2 and 5 times a power
    of ten, or finer (1, 2, 3, 5; then steps of one significant digit) where
    that leaves fewer than two ticks.

    Examples
    --------
    >>> log_ticks([0.001, 1.0])
    {'dtick': 1, 'exponentformat': 'power', 'showexponent': 'all'}
    >>> log_ticks([0.1, 0.9])["ticktext"]
    ['0.1', '0.2', '0.5']
    >>> log_ticks([1.9, 3.9])["ticktext"]
    ['2', '3']
    """
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return {"dtick": 1, "exponentformat": "power", "showexponent": "all"}
    lo, hi = math.floor(math.log10(x.min())), math.ceil(math.log10(x.max()))
    if hi - lo >= 3:
        return {"dtick": 1, "exponentformat": "power", "showexponent": "all"}
    low, high = x.min() / 1.05, x.max() * 1.05  # about the padding of plotly's autorange
    for mantissas in ((1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
        inside = [round(m * 10.0 ** e, 12) for e in range(lo, hi + 1) for m in mantissas if low <= m * 10.0 ** e <= high]
        if len(inside) >= 2:
            break
    else:  # a range narrower than 8 to 6: its two ends, rounded
        inside = sorted({float(f"{x.min():.2g}"), float(f"{x.max():.2g}")})
    return {"tickmode": "array", "tickvals": inside, "ticktext": [f"{t:g}" for t in inside]}


def integer_ticks(n: float) -> dict:
    """Tick settings of an axis of whole numbers from 0 to about ``n``: a 1-2-5 step, at most about eight ticks.

    Examples
    --------
    >>> integer_ticks(3), integer_ticks(128)
    ({'dtick': 1, 'tick0': 0}, {'dtick': 20, 'tick0': 0})
    """
    step = max(1, int(math.ceil(float(n) / 8)))
    step = next(m * 10 ** e for e in range(0, 12) for m in (1, 2, 5) if m * 10 ** e >= step)
    return {"dtick": step, "tick0": 0}
