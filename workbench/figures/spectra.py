"""Figure builders for :mod:`workbench.spectra` results, in the paper template.

Examples
--------
>>> import numpy as np
>>> from workbench.spectra import spectrum, rank_metrics
>>> G = np.random.default_rng(0).standard_normal((300, 100))
>>> fig = esd_figure(spectrum(G), rank_metrics(G))
>>> fig.layout.xaxis.type
'log'
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import xarray as xr

from workbench.figures.template import (
    FULL_WIDTH_PX,
    MIN_FIT_POINTS,
    PALETTE,
    SEQUENTIAL,
    SINGLE_COLUMN_PX,
    integer_ticks,
    log_ticks,
    new_figure,
)
from workbench.spectra.powerlaw import MAX_RELIABLE_ALPHA, MIN_TAIL, fit_reliability


def _require(obj, names: tuple[str, ...], arg: str) -> None:
    missing = [n for n in names if n not in obj.variables and n not in obj.coords] \
        if isinstance(obj, xr.Dataset) else [n for n in names if n not in obj.dims]
    if missing:
        raise ValueError(f"{arg}: expected {names}, missing {missing}")


def esd_figure(spectrum: xr.DataArray, metrics: xr.Dataset | None = None, *, bins: int = 60) -> go.Figure:
    """Empirical spectral density of ``lambda = sigma^2`` on log-log axes, with the power-law
    fit above ``xmin`` and the Marchenko-Pastur bulk edge when ``metrics`` are given.

    A fit outside WeightWatcher's trustworthy range
    (:func:`~workbench.spectra.powerlaw.fit_reliability`) is drawn grey and
    dotted, named "(unreliable)", with the reason written on the plot;
    ``fig.layout.meta["alpha_reliable"]`` holds the verdict (None without a fit).

    Examples
    --------
    >>> import numpy as np
    >>> from workbench.spectra import spectrum
    >>> len(esd_figure(spectrum(np.random.default_rng(0).standard_normal((50, 20)))).data)
    1
    """
    if not isinstance(spectrum, xr.DataArray) or spectrum.dims != ("index",):
        raise ValueError(f"spectrum: expected one spectrum over 'index', got {getattr(spectrum, 'dims', type(spectrum))}")
    lam = spectrum.values.astype(np.float64) ** 2
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins: expected an int >= 1, got {bins!r}")
    lam = lam[np.isfinite(lam) & (lam > 0)]
    if lam.size == 0:
        raise ValueError("spectrum: expected some finite positive singular values to draw on log axes, got none "
                         "(an all-zero, all-NaN or empty spectrum)")
    edges = np.logspace(np.log10(lam.min()), np.log10(lam.max()), bins + 1)
    density, _ = np.histogram(lam, bins=edges, density=True)
    centres = np.sqrt(edges[1:] * edges[:-1])
    keep = density > 0
    fig = new_figure(width=SINGLE_COLUMN_PX, height=300, xaxis_title="eigenvalue λ = σ²", yaxis_title="density",
                     xaxis_type="log", yaxis_type="log",
                     legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    fig.add_trace(go.Scatter(x=centres[keep], y=density[keep], mode="markers", name="ESD",
                             marker=dict(color=PALETTE[0], size=4)))
    shown_y = [density[keep]]
    reliable = None  # no fit to judge
    if metrics is not None and np.isfinite(float(metrics.alpha)):
        alpha, xmin = float(metrics.alpha), float(metrics.xmin)
        tail = lam[lam >= xmin]
        reliable, reason = fit_reliability(alpha, tail.size)
        if tail.size >= MIN_FIT_POINTS:
            x = np.logspace(np.log10(xmin), np.log10(lam.max()), 50)
            # Power-law density normalised to the tail's share of all eigenvalues.
            y = (tail.size / lam.size) * (alpha - 1) / xmin * (x / xmin) ** (-alpha)
            name = f"power law α={alpha:.2f}" + ("" if reliable else " (unreliable)")
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, meta={"fit_points": int(tail.size)},
                                     line=dict(color=PALETTE[3] if reliable else "#999999",
                                               dash="dash" if reliable else "dot")))
            shown_y.append(y[y >= density[keep].min() / 10])
        if not reliable:
            fig.add_annotation(text="unreliable fit:<br>" + reason.replace("; ", "<br>"), xref="paper",
                               yref="paper", x=0.98, y=0.98, xanchor="right", yanchor="top", showarrow=False,
                               align="right", font=dict(color="#666666"), bgcolor="rgba(255,255,255,0.85)")
        if np.isfinite(float(metrics.bulk_max)):
            edge = float(metrics.bulk_max)
            fig.add_vline(x=edge, line=dict(color=PALETTE[2], dash="dot"))
            fig.add_annotation(x=np.log10(edge), y=0.02, xref="x", yref="y domain", text="MP edge λ₊ ",
                               xanchor="right", yanchor="bottom", showarrow=False, font=dict(color=PALETTE[2]))
    low = min(centres[keep].min(), lam.max())  # the range is fixed to what is drawn: annotations do not stretch it
    pad = 0.05 * max(np.log10(lam.max() / low), 1.0)
    fig.update_xaxes(range=[np.log10(low) - pad, np.log10(lam.max()) + pad], **log_ticks([low, lam.max()]))
    fig.update_yaxes(**log_ticks(np.concatenate(shown_y)))
    fig.update_layout(meta={"alpha_reliable": reliable})
    return fig


def metric_heatmap(ds: xr.Dataset, metric: str = "alpha", *, kinds: tuple[str, ...] | None = None) -> go.Figure:
    """A metric of :func:`layer_spectra` as a (matrix kind x layer) heatmap of whole matrices.

    For ``alpha`` and ``alpha_weighted``, cells whose power-law fit is
    unreliable (``alpha_reliable`` False) are left off the colour scale:
    grey, with the value and a "?" written in the cell and the reason on hover.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"alpha": ("matrix", [2.0, 3.0])}, coords={"matrix": ["a", "b"],
    ...     "kind": ("matrix", ["q", "q"]), "layer": ("matrix", [0, 1]), "head": ("matrix", [-1, -1])})
    >>> metric_heatmap(ds).data[0].z.tolist()
    [[2.0, 3.0]]
    """
    _require(ds, (metric, "kind", "layer", "head"), "ds")
    whole = ds.where((ds["head"] == -1) & (ds["layer"] >= 0), drop=True)
    kinds = kinds or tuple(dict.fromkeys(whole["kind"].values.tolist()))
    layers = sorted(set(int(v) for v in whole["layer"].values))
    z = np.full((len(kinds), len(layers)), np.nan)
    for kind, layer, value in zip(whole["kind"].values, whole["layer"].values, whole[metric].values):
        if kind in kinds:
            z[kinds.index(kind), layers.index(int(layer))] = value
    fig = new_figure(width=SINGLE_COLUMN_PX, xaxis_title="layer", yaxis_title="matrix")
    unreliable = np.zeros_like(z, dtype=bool)
    if metric in ("alpha", "alpha_weighted") and "alpha_reliable" in whole:
        for kind, layer, ok in zip(whole["kind"].values, whole["layer"].values, whole["alpha_reliable"].values):
            if kind in kinds and not bool(ok):
                unreliable[kinds.index(kind), layers.index(int(layer))] = True
    shown = np.where(unreliable, np.nan, z)  # an unreliable fit is no colour on the scale: grey, its value marked '?'
    fig.add_trace(go.Heatmap(z=shown, x=layers, y=list(kinds), colorscale=SEQUENTIAL, name=metric,
                             colorbar=dict(title=dict(text=metric, side="right")),
                             hovertemplate="%{y} layer %{x}: %{z:.3g}<extra></extra>"))
    if unreliable.any():
        rows, cols = np.nonzero(unreliable)
        for r, c in zip(rows, cols):
            fig.add_shape(type="rect", x0=layers[c] - 0.5, x1=layers[c] + 0.5, y0=r - 0.5, y1=r + 0.5,
                          fillcolor="#DDDDDD", line=dict(width=0), layer="below")
        fig.add_trace(go.Scatter(x=[layers[c] for c in cols], y=[kinds[r] for r in rows], mode="text",
                                 text=[f"{z[r, c]:.3g}?" for r, c in zip(rows, cols)], textposition="middle center",
                                 textfont=dict(color="#444444"), name="unreliable α", showlegend=False,
                                 hovertext=[f"unreliable fit: {r}" for r in _reasons(whole, kinds, layers, rows, cols)],
                                 hoverinfo="text"))
        fig.add_annotation(text=f"grey, value?: power-law fit unreliable<br>(alpha > {MAX_RELIABLE_ALPHA:g} or "
                                f"< {MIN_TAIL} tail eigenvalues)",
                           xref="paper", yref="paper", x=0, y=-0.28, xanchor="left", yanchor="top", showarrow=False,
                           align="left", font=dict(color="#444444"))
        fig.update_layout(height=320, margin=dict(b=90))
    fig.update_xaxes(dtick=1, tick0=0, showgrid=False)
    fig.update_yaxes(showgrid=False)
    return fig


def _reasons(whole: xr.Dataset, kinds, layers, rows, cols) -> list[str]:
    if "alpha_reason" not in whole:
        return ["" for _ in rows]
    lookup = {(k, int(la)): str(r) for k, la, r in zip(whole["kind"].values, whole["layer"].values,
                                                       whole["alpha_reason"].values)}
    return [lookup.get((kinds[r], layers[c]), "") for r, c in zip(rows, cols)]


def head_spectra_figure(ds: xr.Dataset, kind: str = "ov", *, layer: int | None = None) -> go.Figure:
    """Singular values of every head's OV or QK circuit, one line per head (log y).

    Lines are coloured by layer, or by head when one ``layer`` is shown.

    Examples
    --------
    >>> import xarray as xr, numpy as np
    >>> ds = xr.Dataset({"singular_value": (("matrix", "index"), np.ones((2, 3)))},
    ...     coords={"matrix": ["x", "y"], "kind": ("matrix", ["ov", "ov"]), "layer": ("matrix", [0, 0]),
    ...             "head": ("matrix", [0, 1])})
    >>> len(head_spectra_figure(ds).data)
    2
    """
    _require(ds, ("singular_value", "kind", "layer", "head"), "ds")
    keep = ds["kind"].values == kind
    if layer is not None:
        keep &= ds["layer"].values == layer
    if not keep.any():
        raise ValueError(f"kind: no {kind!r} circuits in ds" + (f" at layer {layer}" if layer is not None else ""))
    fig = new_figure(width=FULL_WIDTH_PX, xaxis_title="index (singular values in decreasing order)",
                     yaxis_title="singular value", yaxis_type="log")
    shown = []
    for i in np.flatnonzero(keep):
        s = ds["singular_value"].values[i]
        s = s[np.isfinite(s)]
        head, at = int(ds["head"].values[i]), int(ds["layer"].values[i])
        colour = head if layer is not None else at
        shown.append(s)
        fig.add_trace(go.Scatter(y=s, mode="lines", name=f"L{at}H{head}",
                                 line=dict(color=PALETTE[colour % len(PALETTE)], width=1)))
    fig.update_yaxes(**log_ticks(np.concatenate(shown)))
    fig.update_xaxes(**integer_ticks(max(len(v) for v in shown)))
    return fig



def truncation_figure(curves: dict[str, xr.DataArray], *, relative: bool = True) -> go.Figure:
    """Loss-vs-rank curves of :func:`truncation_curve`, one per method.

    Examples
    --------
    >>> import numpy as np
    >>> from workbench.spectra import truncation_curve
    >>> len(truncation_figure({"svd": truncation_curve(np.eye(3))}).data)
    1
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError(f"curves: expected a non-empty dict {{method: DataArray over rank}}, got {type(curves).__name__}")
    fig = new_figure(width=SINGLE_COLUMN_PX, xaxis_title="rank k",
                     yaxis_title="relative loss (loss / loss at k = 0)" if relative else "loss")
    for i, (name, curve) in enumerate(curves.items()):
        y = curve.values / curve.values[0] if relative and curve.values[0] > 0 else curve.values
        fig.add_trace(go.Scatter(x=curve["rank"].values, y=y, mode="lines", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_xaxes(**integer_ticks(max(len(c["rank"]) for c in curves.values())))
    return fig


def compression_frontier(ds: xr.Dataset) -> go.Figure:
    """Held-out loss against the fraction of parameters kept, one line per method.

    Examples
    --------
    >>> import xarray as xr, numpy as np
    >>> ds = xr.Dataset({"loss": (("method", "ratio"), [[5.0, 4.0]]), "params_kept": (("method", "ratio"), [[0.3, 0.6]])},
    ...                 coords={"method": ["svd"], "ratio": [0.3, 0.6]}, attrs={"baseline_loss": 3.9})
    >>> compression_frontier(ds).data[0].x.tolist()
    [0.3, 0.6]
    """
    _require(ds, ("loss", "params_kept", "method"), "ds")
    fig = new_figure(width=SINGLE_COLUMN_PX, xaxis_title="parameters kept (fraction)",
                     yaxis_title="held-out loss (nats/token)")
    for i, method in enumerate(ds.method.values):
        row = ds.sel({"method": method})  # sel(method=...) would be read as sel's own lookup option
        fig.add_trace(go.Scatter(x=row.params_kept.values, y=row.loss.values, mode="lines+markers",
                                 name=str(method), line=dict(color=PALETTE[i % len(PALETTE)])))
    if "baseline_loss" in ds.attrs:
        fig.add_hline(y=float(ds.attrs["baseline_loss"]), line=dict(color="grey", dash="dot"),
                      annotation_text="uncompressed")
    return fig
