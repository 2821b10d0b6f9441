"""Figures for dynamic connectomes (:mod:`workbench.connectome`), in the paper template."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import xarray as xr
from plotly.subplots import make_subplots

from workbench.connectome.pairs import pairs_to_matrix
from workbench.figures.template import (
    FONT_PX,
    FULL_WIDTH_PX,
    PALETTE,
    SEQUENTIAL,
    SINGLE_COLUMN_PX,
    TITLE_FONT_PX,
    TOP_MARGIN_WITH_TITLE,
    apply_paper_style,
    new_figure,
)
from workbench.figures.traces import robust_range, time_binned, traces_heatmap  # noqa: F401 (their former home)


def _check_result(result, needed: tuple[str, ...]) -> None:
    if not isinstance(result, xr.Dataset):
        raise TypeError(f"result: expected the xr.Dataset of dynamic_connectome, got {type(result).__name__}")
    missing = [v for v in needed if v not in result]
    if missing:
        raise ValueError(f"result: expected variables {list(needed)}, missing {missing}")


def _component(result: xr.Dataset, component: int) -> int:
    n = result.sizes["component"]
    if not isinstance(component, (int, np.integer)) or not 0 <= component < n:
        raise ValueError(f"component: expected an integer in [0, {n}), got {component!r}")
    return int(component)


def _surrogate_test(result: xr.Dataset) -> tuple[int, float, str]:
    """``(n_surrogates, alpha, reason)`` of the result's surrogate test; ``reason`` is '' when it can
    reach ``p <= alpha`` (see :func:`~workbench.connectome.surrogates.too_few_surrogates`)."""
    from workbench.connectome.surrogates import too_few_surrogates

    attrs = result["explained_variance_p"].attrs
    n = int(result.attrs.get("n_surrogates", attrs.get("n_surrogates", 0)))
    alpha = float(result.attrs.get("alpha", attrs.get("alpha", 0.05)))
    return n, alpha, too_few_surrogates(n, alpha) if n >= 1 else ""


def _significance_label(result: xr.Dataset, c: int) -> str:
    """``EV 0.33, p = 0.05 (more than chance)`` when the result carries a surrogate test, else ''.

    With too few surrogates to reach ``p <= alpha`` it says so instead of a verdict.
    """
    if "explained_variance_p" not in result:
        return ""
    p = float(result["explained_variance_p"][c])
    n, alpha, reason = _surrogate_test(result)
    if reason:
        from workbench.connectome.surrogates import min_surrogates

        verdict = f"too few to test at {alpha:g}: need {min_surrogates(alpha)}"
    else:
        verdict = "more than chance" if p <= alpha else f"not above chance at {alpha:g}"
    return f" · EV {float(result['explained_variance'][c]):.2f}, p = {p:.2g} vs {n} surrogates ({verdict})"


def _covariate_overlay(fig: go.Figure, result: xr.Dataset, c: int, covariate: str, row: int = 1,
                       col: int = 2) -> str:
    """Draw ``covariate`` as binned for component ``c`` on the time panel's second y-axis; its label."""
    if "covariate_binned" not in result:
        raise ValueError("covariate: the result has no covariates (pass covariates= to dynamic_connectome, "
                         "or traces that carry them)")
    names = [str(n) for n in result["covariate"].values]
    if covariate not in names:
        raise ValueError(f"covariate: expected one of {names}, got {covariate!r}")
    binned = result["covariate_binned"].sel(covariate=covariate)[c]
    units = str(result["covariate_units"].sel(covariate=covariate).item())
    title = f"{covariate} ({units})" if units else f"{covariate} (units unknown)"
    fig.add_trace(go.Scatter(x=binned["time"].values, y=binned.values, mode="lines", name=covariate,
                             line=dict(color=PALETTE[3], width=1.0, dash="dot")), row=row, col=col, secondary_y=True)
    fig.update_yaxes(title_text=title, secondary_y=True, nticks=4, tickformat=".2g", showgrid=False,
                     title_font_color=PALETTE[3], tickfont_color=PALETTE[3], title_standoff=2, row=row, col=col)
    r = float(result["covariate_correlation"].sel(covariate=covariate)[c])
    p = float(result["covariate_p"].sel(covariate=covariate)[c])
    return f"time vs {covariate}: r = {r:.2f}, p = {p:.2g}"


#: Room (px) kept beside a panel for what sits there, at the template's 11 px font: the pair colorbar (pad,
#: bar, tick labels like 0.25, vertical title) and a y-axis (ticks, tick labels, title, air).
COLORBAR_PX = 4 + 8 + 30 + 18
YAXIS_PX = 3 + 32 + 18 + 8
#: Below this width the component panel stacks its three panels instead of setting them side by side.
STACK_BELOW_PX = 520


def _row_domains(width: int, margin: tuple[int, int], gaps: tuple[int, int], shares=(0.38, 0.42, 0.2)) -> list:
    """x domains (paper fractions) of three panels side by side with ``gaps`` px between them."""
    plot = width - sum(margin)
    free = plot - sum(gaps)
    edges, x = [], 0.0
    for i, share in enumerate(shares):
        edges.append([x / plot, (x + share * free) / plot])
        x += share * free + (gaps[i] if i < len(gaps) else 0)
    edges[-1][1] = 1.0
    return edges


def component_panel(result: xr.Dataset, component: int = 0, *, covariate: str | None = None,
                    mark_significant: bool = True, width: int = FULL_WIDTH_PX) -> go.Figure:
    """Pair matrix ordered by community, time factor with stimulus windows, animal loadings.

    Parameters
    ----------
    result : xr.Dataset
        Output of :func:`workbench.connectome.dynamic_connectome`.
    component : int
    covariate : str, optional
        A covariate of ``result`` (``result.covariate``) drawn over the time
        factor on a second y-axis, binned as the factor is and titled with its
        units; the time panel's title gives its correlation and shift p-value.
    mark_significant : bool
        When ``result`` holds a surrogate test (``n_surrogates``), say in the
        title whether the component is more than chance, and draw the time
        factor of one that is not in grey. With too few surrogates for any
        p-value to reach ``alpha`` (fewer than 19 at 0.05) the title says so
        and nothing is greyed.
    width : int
        Width in px: the panels sit side by side, spaced so that the pair
        colorbar and every axis title keep clear of each other (paper width,
        691 px, by default); below 520 px (one column, 336 px) they stack.

    Examples
    --------
    >>> import numpy as np
    >>> from workbench.connectome import synthetic, dynamic_connectome
    >>> out = dynamic_connectome(synthetic(16, 3, 240, 2).traces, rank=2, n_restarts=2, device="cpu")
    >>> len(component_panel(out, 0).data)
    3
    >>> out = dynamic_connectome(synthetic(16, 3, 240, 2).traces, rank=1, n_restarts=1, max_iter=30,
    ...                          covariates={"speed": np.arange(240.0)}, device="cpu")
    >>> [t.name for t in component_panel(out, 0, covariate="speed").data]
    ['pairs', 'time', 'speed', 'animals']
    >>> component_panel(out, 0, width=336).layout.height > component_panel(out, 0).layout.height  # stacked
    True
    """
    _check_result(result, ("pair_factor", "time_factor", "animal_factor", "community"))
    c = _component(result, component)
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 200:
        raise ValueError(f"width: expected an integer number of px >= 200, got {width!r}")
    matrix = pairs_to_matrix(result["pair_factor"][:, c])
    labels = result["community"][c].values
    order = np.lexsort((np.arange(labels.size), labels))
    names = matrix["neuron"].values[order].astype(str)
    few = names.size <= 24  # more neuron names than that do not fit a third of the width at a legible size
    left = max(56, 18 + 7 * max(len(n) for n in names)) if few else 56  # room for the neuron names and title
    stacked = width < STACK_BELOW_PX
    verdict = _significance_label(result, c) if mark_significant else ""
    if stacked:  # a column's width holds about 45 characters of title: one line per part
        verdict = verdict.replace(" · ", "<br>", 1).replace(" (", "<br>(", 1)
    titles = ("pairs (by community)", "time", "animals")
    if stacked:
        heights = (220, 120, 100)  # px of each panel; between them room for tick labels, axis and subplot titles
        gaps = (36 + 8 * max(len(n) for n in names) if few else 40, 70)
        top, bottom = TOP_MARGIN_WITH_TITLE + verdict.count("<br>") * 2 * (TITLE_FONT_PX + 4), 60  # title centred in t
        height = top + bottom + sum(heights) + sum(gaps)
        plot = height - top - bottom
        fig = make_subplots(rows=3, cols=1, row_heights=list(heights), vertical_spacing=float(np.mean(gaps)) / plot,
                            specs=[[{}], [{"secondary_y": True}], [{}]], subplot_titles=titles)
        y, domains = 1.0, []
        for i, h in enumerate(heights):  # unequal gaps: set the domains by hand
            domains.append([y - h / plot, y])
            y -= (h + (gaps[i] if i < len(gaps) else 0)) / plot
        for i, (axis, domain) in enumerate(zip(("yaxis", "yaxis2", "yaxis4"), domains)):
            fig.layout[axis].domain = domain
            fig.layout.annotations[i].y = domain[1]
        fig.layout.yaxis3.domain = domains[1]  # the covariate's axis overlays the time panel
        rows, cols = (1, 2, 3), (1, 1, 1)
        bar = dict(x=1.0, y=float(np.mean(domains[0])), len=(domains[0][1] - domains[0][0]) * 0.9)
        margin = dict(l=left, r=12 + (YAXIS_PX if covariate is not None else 0), t=top, b=bottom)
    else:
        gaps = (COLORBAR_PX + YAXIS_PX, YAXIS_PX + (YAXIS_PX if covariate is not None else 0))
        height = 300
        fig = make_subplots(rows=1, cols=3, specs=[[{}, {"secondary_y": True}, {}]], subplot_titles=titles)
        domains = _row_domains(width, (left, 12), gaps)
        for i, (axis, domain) in enumerate(zip(("xaxis", "xaxis2", "xaxis3"), domains)):
            fig.layout[axis].domain = domain
            fig.layout.annotations[i].x = float(np.mean(domain))
        rows, cols = (1, 1, 1), (1, 2, 3)
        bar = dict(x=domains[0][1], y=0.5, len=0.8)
        margin = dict(l=left, r=12, t=TOP_MARGIN_WITH_TITLE)
    fig.update_annotations(font_size=FONT_PX)
    fig.add_trace(go.Heatmap(z=matrix.values[np.ix_(order, order)], x=names, y=names, colorscale=SEQUENTIAL,
                             colorbar=dict(title=dict(text="pair loading", side="right"), thickness=8, xanchor="left",
                                           xpad=4, nticks=4, **bar),
                             name="pairs", hovertemplate="%{y}–%{x}: %{z:.3g}<extra></extra>"), row=rows[0], col=cols[0])
    fig.update_yaxes(title_text="neuron", autorange="reversed", showticklabels=few, row=rows[0], col=cols[0])
    fig.update_xaxes(title_text="neuron", showticklabels=few, tickangle=-90, row=rows[0], col=cols[0])
    time = result["time_factor"]
    chance = (mark_significant and "significant" in result and not bool(result["significant"][c])
              and not _surrogate_test(result)[2])  # too few surrogates to test: no verdict, no grey
    fig.add_trace(go.Scatter(x=time["time"].values, y=time[:, c].values, mode="lines", name="time",
                             line=dict(color="#999999" if chance else PALETTE[0], width=1.2)), row=rows[1], col=cols[1])
    if "stimulus_response" in result:
        for start, end in zip(result["stim_start"].values, result["stim_end"].values):
            fig.add_vrect(x0=float(start), x1=float(end), fillcolor=PALETTE[1], opacity=0.2, line_width=0,
                          row=rows[1], col=cols[1])
    if covariate is not None:
        fig.layout.annotations[1].text = _covariate_overlay(fig, result, c, covariate, rows[1], cols[1])
    frames = "frame" in str(result.attrs.get("time_units", ""))
    fig.update_xaxes(title_text="time (frames)" if frames else "time (s)", row=rows[1], col=cols[1])
    fig.update_yaxes(title_text="loading", secondary_y=False, row=rows[1], col=cols[1])
    animal = result["animal_factor"]
    fig.add_trace(go.Bar(x=animal["animal"].values.astype(str), y=animal[:, c].values, marker_color=PALETTE[2],
                         name="animals"), row=rows[2], col=cols[2])
    fig.update_xaxes(title_text="animal", type="category", row=rows[2], col=cols[2])
    fig.update_yaxes(title_text="loading", row=rows[2], col=cols[2])
    fig.update_layout(title=f"component {c}{verdict}", showlegend=False, margin=margin)
    return apply_paper_style(fig, width=int(width), height=int(height))


def top_pairs_plot(result: xr.Dataset, component: int = 0, *, k: int = 15) -> go.Figure:
    """The ``k`` strongest pairs of a component's pair factor as bars labelled ``A–B`` by neuron name.

    A readable companion of the pair matrix when there are too many neurons
    for its axes to carry names (e.g. 100+ NeuroPAL labels).

    Examples
    --------
    >>> from workbench.connectome import synthetic, dynamic_connectome
    >>> out = dynamic_connectome(synthetic(12, 2, 160, 2).traces, rank=1, n_restarts=1, max_iter=30, device="cpu")
    >>> fig = top_pairs_plot(out, 0, k=3)
    >>> len(fig.data[0].y), "–" in fig.data[0].y[0]
    (3, True)
    """
    _check_result(result, ("pair_factor",))
    c = _component(result, component)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a positive integer number of pairs, got {k!r}")
    factor = result["pair_factor"][:, c]
    top = np.argsort(-factor.values, kind="stable")[: int(k)]
    labels = [f"{a}–{b}" for a, b in zip(factor["neuron_a"].values[top], factor["neuron_b"].values[top])]
    fig = new_figure(xaxis_title="pair loading",
                     width=SINGLE_COLUMN_PX, height=int(120 + 16 * len(top)))
    fig.add_bar(x=factor.values[top], y=labels, orientation="h", marker_color=PALETTE[0], name="pairs",
                hovertemplate="%{y}: %{x:.3g}<extra></extra>")
    fig.update_yaxes(title_text="pair", autorange="reversed", automargin=True)
    fig.update_layout(title=f"component {c}: strongest {len(top)} pairs (neuron–neuron)")
    return fig


def _sweep_variables(sweep: xr.Dataset) -> dict[str, xr.DataArray]:
    """The per-rank curves of a ``rank_sweep`` Dataset, or of a ``dynamic_connectome`` one (``sweep_*``)."""
    if not isinstance(sweep, xr.Dataset):
        raise TypeError(f"sweep: expected the xr.Dataset of rank_sweep or dynamic_connectome, got {type(sweep).__name__}")
    prefix = "sweep_" if "sweep_error" in sweep else ""
    needed = ("error", "heldout_error", "stability")
    missing = [prefix + n for n in needed if prefix + n not in sweep]
    if missing:
        raise TypeError(f"sweep: expected the xr.Dataset of rank_sweep (with {list(needed)}), missing {missing}")
    names = (*needed, "heldout_spread", "stability_low", "stability_high")
    return {n: sweep[prefix + n] for n in names if prefix + n in sweep}


def rank_sweep_plot(sweep: xr.Dataset) -> go.Figure:
    """Training and held-out error (left) and restart stability (right) against rank, chosen rank marked.

    Parameters
    ----------
    sweep : xr.Dataset
        Output of :func:`workbench.connectome.rank_sweep`, or of
        :func:`workbench.connectome.dynamic_connectome` run with ``rank=None``
        (its ``sweep_*`` variables and ``rank`` attribute).

    Examples
    --------
    >>> import xarray as xr
    >>> sweep = xr.Dataset({"error": ("rank", [0.5, 0.3, 0.29]), "heldout_error": ("rank", [0.52, 0.31, 0.32]),
    ...                     "stability": ("rank", [1.0, 0.98, 0.3])}, coords={"rank": [1, 2, 3]},
    ...                    attrs={"suggested_rank": 2, "rule": "heldout_plateau"})
    >>> fig = rank_sweep_plot(sweep)
    >>> [t.name for t in fig.data], fig.layout.annotations[-1].text
    (['training error', 'held-out error', 'stability'], ' chosen: 2')
    """
    curves = _sweep_variables(sweep)
    prefix = "sweep_" if "sweep_error" in sweep else ""
    chosen = sweep.attrs.get(prefix + "suggested_rank", sweep.attrs.get("rank"))
    threshold = sweep.attrs.get(prefix + "threshold")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16,
                        subplot_titles=("reconstruction error", "restart stability"))
    ranks = curves["error"]["rank"].values
    fig.add_trace(go.Scatter(x=ranks, y=curves["error"].values, mode="lines+markers", name="training error",
                             line=dict(color=PALETTE[0])), row=1, col=1)
    spread = curves.get("heldout_spread")
    fig.add_trace(go.Scatter(x=ranks, y=curves["heldout_error"].values, mode="lines+markers", name="held-out error",
                             line=dict(color=PALETTE[1], dash="dash"),
                             error_y=dict(type="data", array=spread.values / 2, visible=True) if spread is not None
                             else None), row=1, col=1)
    low, high = curves.get("stability_low"), curves.get("stability_high")
    stability = curves["stability"].values
    error_y = None
    if low is not None and high is not None:
        error_y = dict(type="data", symmetric=False, array=high.values - stability, arrayminus=stability - low.values)
    fig.add_trace(go.Scatter(x=ranks, y=stability, mode="lines+markers", name="stability", error_y=error_y,
                             line=dict(color=PALETTE[3])), row=1, col=2)
    if threshold is not None:
        fig.add_hline(y=float(threshold), line_dash="dot", line_color="gray", row=1, col=2)
    if chosen is not None:
        for col in (1, 2):
            fig.add_vline(x=int(chosen), line_dash="dot", line_color=PALETTE[2], row=1, col=col)
        fig.add_annotation(x=int(chosen), y=0.97, xref="x", yref="y domain", text=f" chosen: {int(chosen)}",
                           showarrow=False, xanchor="left", yanchor="top", font=dict(color=PALETTE[2]))
    fig.update_xaxes(title_text="rank (components)", dtick=1, tick0=0)
    fig.update_annotations(font_size=FONT_PX)
    fig.update_yaxes(title_text="relative error (||X - model|| / ||X||)", row=1, col=1)
    fig.update_yaxes(title_text="worst-component congruence", range=[0, 1.05], row=1, col=2)
    fig.update_layout(legend=dict(orientation="h", y=-0.3))
    return apply_paper_style(fig, width=FULL_WIDTH_PX, height=280)


def community_graph(result: xr.Dataset, component: int = 0, *, top_fraction: float = 0.1) -> go.Figure:
    """Neurons on a circle grouped and coloured by community, strongest pairs as edges.

    Examples
    --------
    >>> from workbench.connectome import synthetic, dynamic_connectome
    >>> out = dynamic_connectome(synthetic(16, 3, 240, 2).traces, rank=2, n_restarts=2, device="cpu")
    >>> community_graph(out, 1).data[-1].mode
    'markers+text'
    """
    _check_result(result, ("pair_factor", "community"))
    c = _component(result, component)
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction: expected a fraction in (0, 1], got {top_fraction!r}")
    matrix = pairs_to_matrix(result["pair_factor"][:, c]).values
    labels = result["community"][c].values
    names = result["community"]["neuron"].values.astype(str)
    order = np.lexsort((np.arange(labels.size), labels))
    angle = np.empty(labels.size)
    angle[order] = np.linspace(0, 2 * np.pi, labels.size, endpoint=False)
    x, y = np.cos(angle), np.sin(angle)
    iu, ju = np.triu_indices(labels.size, k=1)
    weights = matrix[iu, ju]
    keep = np.argsort(-weights)[: max(1, int(top_fraction * weights.size))]
    ex, ey = [], []
    for k in keep:
        ex += [x[iu[k]], x[ju[k]], None]
        ey += [y[iu[k]], y[ju[k]], None]
    fig = go.Figure(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="rgba(0,0,0,0.25)", width=0.7),
                               hoverinfo="skip"))
    colors = [PALETTE[int(lab) % len(PALETTE)] for lab in labels]
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers+text" if names.size <= 24 else "markers",
                             text=names if names.size <= 24 else None,
                             textposition="top center", marker=dict(color=colors, size=7),
                             hovertext=[f"{n}: community {lab}" for n, lab in zip(names, labels)]))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(showlegend=False, title=f"component {c}: {int(labels.max()) + 1} communities")
    return apply_paper_style(fig, width=SINGLE_COLUMN_PX, height=SINGLE_COLUMN_PX)


def restart_similarity_plot(similarity) -> go.Figure:
    """Heatmap of the factor match score between every two restarts.

    Parameters
    ----------
    similarity : xr.DataArray (restart, restart_), an NTFResult, or a
        dynamic_connectome Dataset (its ``restart_similarity``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> sim = xr.DataArray(np.eye(3), dims=("restart", "restart_"))
    >>> restart_similarity_plot(sim).data[0].type
    'heatmap'
    """
    if isinstance(similarity, xr.Dataset) and "restart_similarity" in similarity:
        similarity = similarity["restart_similarity"]
    elif hasattr(similarity, "similarity") and isinstance(similarity.similarity, xr.DataArray):
        similarity = similarity.similarity
    if not isinstance(similarity, xr.DataArray) or similarity.ndim != 2:
        raise TypeError(f"similarity: expected a (restart, restart_) DataArray or NTFResult, got {type(similarity).__name__}")
    fig = go.Figure(go.Heatmap(z=similarity.values, zmin=0, zmax=1, colorscale=SEQUENTIAL,
                               colorbar=dict(title="FMS")))
    fig.update_xaxes(title_text="restart", dtick=1, tick0=0)
    fig.update_yaxes(title_text="restart", dtick=1, tick0=0, autorange="reversed")
    return apply_paper_style(fig, width=SINGLE_COLUMN_PX, height=SINGLE_COLUMN_PX - 40)
