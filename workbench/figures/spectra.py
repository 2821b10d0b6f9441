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

from workbench.figures.template import PALETTE, SEQUENTIAL, SINGLE_COLUMN_PX, FULL_WIDTH_PX, new_figure


def _require(obj, names: tuple[str, ...], arg: str) -> None:
    missing = [n for n in names if n not in obj.variables and n not in obj.coords] \
        if isinstance(obj, xr.Dataset) else [n for n in names if n not in obj.dims]
    if missing:
        raise ValueError(f"{arg}: expected {names}, missing {missing}")


def esd_figure(spectrum: xr.DataArray, metrics: xr.Dataset | None = None, *, bins: int = 60) -> go.Figure:
    """Empirical spectral density of ``lambda = sigma^2`` on log-log axes, with the power-law
    fit above ``xmin`` and the Marchenko-Pastur bulk edge when ``metrics`` are given.

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
    fig = new_figure(width=SINGLE_COLUMN_PX, xaxis_title="eigenvalue λ = σ²", yaxis_title="density",
                     xaxis_type="log", yaxis_type="log")
    fig.add_trace(go.Scatter(x=centres[keep], y=density[keep], mode="markers", name="ESD",
                             marker=dict(color=PALETTE[0], size=4)))
    if metrics is not None and np.isfinite(float(metrics.alpha)):
        alpha, xmin = float(metrics.alpha), float(metrics.xmin)
        tail = lam[lam >= xmin]
        x = np.logspace(np.log10(xmin), np.log10(lam.max()), 50)
        # Power-law density normalised to the tail's share of all eigenvalues.
        y = (tail.size / lam.size) * (alpha - 1) / xmin * (x / xmin) ** (-alpha)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"power law α={alpha:.2f}",
                                 line=dict(color=PALETTE[3], dash="dash")))
        if np.isfinite(float(metrics.bulk_max)):
            fig.add_vline(x=float(metrics.bulk_max), line=dict(color=PALETTE[2], dash="dot"),
                          annotation_text="MP edge λ₊", annotation_font_size=8)
    return fig


def metric_heatmap(ds: xr.Dataset, metric: str = "alpha", *, kinds: tuple[str, ...] | None = None) -> go.Figure:
    """A metric of :func:`layer_spectra` as a (matrix kind x layer) heatmap of whole matrices.

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
    fig.add_trace(go.Heatmap(z=z, x=layers, y=list(kinds), colorscale=SEQUENTIAL,
                             colorbar=dict(title=dict(text=metric, side="right"))))
    fig.update_xaxes(dtick=1, showgrid=False)
    fig.update_yaxes(showgrid=False)
    return fig


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
    fig = new_figure(width=FULL_WIDTH_PX, xaxis_title="index", yaxis_title="singular value", yaxis_type="log")
    for i in np.flatnonzero(keep):
        s = ds["singular_value"].values[i]
        s = s[np.isfinite(s)]
        head, at = int(ds["head"].values[i]), int(ds["layer"].values[i])
        colour = head if layer is not None else at
        fig.add_trace(go.Scatter(y=s, mode="lines", name=f"L{at}H{head}",
                                 line=dict(color=PALETTE[colour % len(PALETTE)], width=1)))
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
                     yaxis_title="relative loss" if relative else "loss")
    for i, (name, curve) in enumerate(curves.items()):
        y = curve.values / curve.values[0] if relative and curve.values[0] > 0 else curve.values
        fig.add_trace(go.Scatter(x=curve["rank"].values, y=y, mode="lines", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
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
                      annotation_text="uncompressed", annotation_font_size=8)
    return fig
