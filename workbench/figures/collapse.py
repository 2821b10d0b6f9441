"""Figure builders for neural-collapse results (:mod:`workbench.collapse`).

Each builder takes the xarray a collapse function returned and gives a plotly
figure in the paper template: NC metrics over epochs (log y), a metric over
layers with a log-linear fit, the class-mean Gram matrix beside its target
(ETF, OF or Dang et al.'s imbalanced optimum), a 3-D projection of class means
and classifier rows with the target overlaid, and minority cosine against the
imbalance ratio.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
import xarray as xr
from plotly.subplots import make_subplots

from workbench.collapse.theory import etf_gram, of_gram
from workbench.figures.template import (
    DIVERGING,
    FONT_PX,
    FULL_WIDTH_PX,
    MIN_FIT_POINTS,
    PALETTE,
    SINGLE_COLUMN_PX,
    TOP_MARGIN_WITH_TITLE,
    apply_paper_style,
    log_ticks,
    new_figure,
)

_LABELS = {"nc1": "NC1", "nc2_etf": "NC2 (ETF)", "nc2_of": "NC2 (OF)", "nc2_equinorm_h": "NC2 equinorm (H)",
           "nc2_equinorm_w": "NC2 equinorm (W)", "nc2_equiangle": "NC2 equiangle", "nc2_max_angle": "NC2 max-angle",
           "nc3": "NC3", "nc4": "NC4"}


def _require(ds: xr.Dataset, names: Sequence[str], dims: Sequence[str] = ()) -> None:
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds: expected an xarray.Dataset from workbench.collapse, got {type(ds).__name__}")
    missing = [n for n in names if n not in ds]
    if missing:
        raise ValueError(f"ds: expected variables {list(names)}, missing {missing}")
    absent = [d for d in dims if d not in ds.dims]
    if absent:
        raise ValueError(f"ds: expected dims {list(dims)}, got {list(ds.dims)}")


def _select(ds: xr.Dataset, dim: str, value: Any) -> xr.Dataset:
    """``ds`` at ``value`` along ``dim`` (the last entry when None), naming the choices when it is not there."""
    if value is None:
        return ds.isel({dim: -1})
    known = ds[dim].values.tolist()
    if value not in known:
        raise ValueError(f"{dim}: expected one of {known}, got {value!r}")
    return ds.sel({dim: value})


def _require_over(ds: xr.Dataset, names: Sequence[str], dim: str, arg: str) -> None:
    """Each variable in ``names`` is one value per ``dim`` entry (after selecting a layer or epoch)."""
    wrong = {n: ds[n].dims for n in names if ds[n].dims != (dim,)}
    if wrong:
        what = "variables" if arg == "metrics" else "a variable"
        raise ValueError(f"{arg}: expected {what} over {(dim,)}, got {wrong}")


def nc_vs_epoch(ds: xr.Dataset, metrics: Sequence[str] = ("nc1", "nc2_etf", "nc3", "nc4"),
                layer: str | None = None) -> go.Figure:
    """NC metrics against epoch on a log y axis, one line per metric.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`~workbench.collapse.run_experiment` or ``track(...).result()``.
    metrics : sequence of str
        Scalar variables to draw; all-NaN ones are left out.
    layer : str, optional
        Which layer when ``ds`` has a ``layer`` dim; default the last.

    Examples
    --------
    >>> ds = xr.Dataset({"nc1": ("epoch", [1.0, 0.1, 0.01])}, coords={"epoch": [0, 10, 20]})
    >>> nc_vs_epoch(ds, metrics=["nc1"]).layout.yaxis.type
    'log'
    """
    if isinstance(metrics, str):
        raise TypeError(f"metrics: expected a sequence of variable names, got the string {metrics!r}; "
                        f"write [{metrics!r}] for one metric")
    _require(ds, metrics, ["epoch"])
    if "layer" in ds.dims:
        ds = _select(ds, "layer", layer)
    _require_over(ds, metrics, "epoch", "metrics")
    fig = new_figure(xaxis_title="epoch", yaxis_title="metric", yaxis_type="log", width=SINGLE_COLUMN_PX,
                     legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    shown = []
    for i, name in enumerate(metrics):
        y = ds[name].values.astype(float)
        keep = np.isfinite(y) & (y > 0)  # a log axis cannot show zeros (e.g. NC4 once training is exact)
        if keep.any():
            shown.append(y[keep])
            fig.add_trace(go.Scatter(x=ds.epoch.values[keep], y=y[keep], mode="lines+markers",
                                     name=_LABELS.get(name, name), line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_yaxes(**log_ticks(np.concatenate(shown) if shown else []))
    if ds.sizes["epoch"] <= 10:
        fig.update_xaxes(tickmode="array", tickvals=ds.epoch.values)
    return fig


def nc_vs_layer(ds: xr.Dataset, metric: str = "nc1", epoch: int | None = None) -> go.Figure:
    """One metric against layer depth (log y) with a least-squares line through log10(metric).

    The fitted slope (decades per layer) is in ``fig.layout.meta["slope"]``
    and in the legend. With fewer than three layers (with a positive value)
    no line is drawn and the slope is NaN: a line through two points fits
    nothing.

    Examples
    --------
    >>> ds = xr.Dataset({"nc1": ("layer", [1.0, 0.1, 0.01])}, coords={"layer": ["a", "b", "c"]})
    >>> round(nc_vs_layer(ds).layout.meta["slope"], 6)
    -1.0
    """
    _require(ds, [metric], ["layer"])
    if "epoch" in ds.dims:
        ds = _select(ds, "epoch", epoch)
    _require_over(ds, [metric], "layer", "metric")
    y = ds[metric].values.astype(float)
    depth = np.arange(1, y.size + 1)
    keep = np.isfinite(y) & (y > 0)
    fig = new_figure(xaxis_title="layer", yaxis_title=_LABELS.get(metric, metric), yaxis_type="log",
                     width=SINGLE_COLUMN_PX)
    fig.add_trace(go.Scatter(x=depth[keep], y=y[keep], mode="markers", name=_LABELS.get(metric, metric),
                             marker=dict(color=PALETTE[0], size=7)))
    slope = np.nan
    if keep.sum() >= MIN_FIT_POINTS:  # a line through two points is no fit: it always passes through both
        slope, intercept = np.polyfit(depth[keep], np.log10(y[keep]), 1)
        fig.add_trace(go.Scatter(x=depth[keep], y=10 ** (intercept + slope * depth[keep]), mode="lines",
                                 name=f"fit: {slope:.2f} decades/layer", meta={"fit_points": int(keep.sum())},
                                 line=dict(color=PALETTE[3], dash="dash")))
    fig.update_xaxes(tickmode="array", tickvals=depth, ticktext=[str(v) for v in ds.layer.values])
    fig.update_yaxes(**log_ticks(y[keep]))
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    fig.update_layout(meta={"slope": float(slope)})
    return fig


def _target_gram(ds: xr.Dataset, target: str | xr.Dataset) -> tuple[np.ndarray, np.ndarray, str]:
    """(observed Gram, target Gram), both unit Frobenius norm, and the target's name."""
    k = ds.sizes["class"]
    if isinstance(target, xr.Dataset):
        _require(target, ["mean_norm"])
        if target.sizes["class"] != k:
            raise ValueError(f"target: expected theory for {k} classes, got {target.sizes['class']}")
        gram, want = ds.gram_uncentred.values, np.diag(target.mean_norm.values ** 2)
        if not want.any():
            raise ValueError("target: every class collapses in this theory (all mean norms are 0), "
                             "so it has no Gram shape to compare with")
        want = want / np.linalg.norm(want)
        name = "imbalanced theory"
    elif target == "etf":
        gram, want, name = ds.gram.values, etf_gram(k), "simplex ETF"
    elif target == "of":
        gram, want, name = ds.gram_uncentred.values, of_gram(k), "orthogonal frame"
    else:
        raise ValueError(f"target: expected 'etf', 'of' or a Dataset from imbalanced_geometry, got {target!r}")
    return gram / np.linalg.norm(gram), want, name


def gram_heatmap(ds: xr.Dataset, target: str | xr.Dataset = "etf") -> go.Figure:
    """The class-mean Gram matrix (unit Frobenius norm) beside its target.

    ``target="etf"`` uses centred means and the simplex ETF; ``"of"`` uncentred
    means and I/sqrt(K); a Dataset from
    :func:`~workbench.collapse.imbalanced_geometry` the diagonal of squared
    theoretical mean norms. The distance ||G - target||_F is in the title.

    Examples
    --------
    >>> from workbench.collapse import nc_metrics
    >>> m = nc_metrics(np.eye(3).repeat(2, axis=0), np.arange(6) // 2, device="cpu")
    >>> len(gram_heatmap(m, target="of").data)
    2
    """
    _require(ds, ["gram", "gram_uncentred"], ["class"])
    if ds.gram.dims != ("class", "other_class"):
        raise ValueError(f"ds: expected gram over (class, other_class) for one layer (and epoch), got dims "
                         f"{ds.gram.dims}; select one, e.g. ds.sel(layer=..., epoch=...)")
    observed, want, name = _target_gram(ds, target)
    cls = [str(c) for c in ds["class"].values]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("class means", name), horizontal_spacing=0.12)
    limit = float(max(np.abs(observed).max(), np.abs(want).max()))
    for col, mat in enumerate((observed, want), start=1):
        fig.add_trace(go.Heatmap(z=mat, x=cls, y=cls, zmin=-limit, zmax=limit, colorscale=DIVERGING,
                                 showscale=col == 2, colorbar=dict(thickness=10, title=dict(
                                     text="Gram entry<br>(unit norm)", side="right"))), row=1, col=col)
    fig.update_yaxes(autorange="reversed", title_text="class")
    fig.update_yaxes(scaleanchor="x", row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    fig.update_xaxes(title_text="class")
    fig.update_layout(title=f"Gram vs {name}: distance {np.linalg.norm(observed - want):.2e}",
                      margin=dict(t=TOP_MARGIN_WITH_TITLE))
    fig.update_annotations(font_size=FONT_PX)
    return apply_paper_style(fig, width=FULL_WIDTH_PX, height=340)


def _procrustes(target: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``target`` (K, K) rotated into the feature space to best match ``observed`` (K, d)."""
    u, _, vt = np.linalg.svd(target.T @ observed, full_matrices=False)
    return target @ u @ vt


def _layer_geometry(ds: xr.Dataset, W: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Class means (class, dim) and classifier rows (or None) of one layer, without the NaN padding.

    The width is ``layer_dim`` when ``ds`` has it (a slice of a layerwise
    result), else all of ``dim``; ``W`` defaults to a finite ``classifier``.
    """
    if ds.class_means.dims != ("class", "dim"):
        raise ValueError(f"ds: expected class_means over (class, dim) for one layer (and epoch), got dims "
                         f"{ds.class_means.dims}; select one, e.g. ds.sel(layer=..., epoch=...)")
    width = int(ds.layer_dim) if "layer_dim" in ds else ds.sizes["dim"]
    means = ds.class_means.values[:, :width]
    if not np.isfinite(means).all():
        raise ValueError(f"ds: expected finite class means in the layer's first {width} dims, got NaN or inf")
    if W is None and "classifier" in ds and np.isfinite(ds.classifier.values[:, :width]).all():
        W = ds.classifier.values[:, :width]
    rows = None if W is None else np.asarray(W, dtype=float)
    if rows is not None and rows.shape != means.shape:
        raise ValueError(f"W: expected shape {means.shape} (class, dim), got {rows.shape}")
    if rows is not None and not (np.isfinite(rows).all() and rows.any()):
        raise ValueError("W: expected finite rows that are not all zero (they are rescaled to the means' norm)")
    return means, rows


def class_means_3d(ds: xr.Dataset, W: Any = None, target: str | xr.Dataset | None = None) -> go.Figure:
    """Class means and classifier rows projected on their top three principal axes.

    ``ds`` is the result of :func:`~workbench.collapse.nc_metrics`, or one
    layer (and epoch) of :func:`~workbench.collapse.layerwise`,
    :func:`~workbench.collapse.track` or
    :func:`~workbench.collapse.run_experiment`, e.g.
    ``ds.sel(layer="linear1", epoch=200)``: its means are cut to the layer's
    ``layer_dim`` and ``W`` defaults to its stored ``classifier`` rows, when
    the layer has them.

    Means are drawn centred for ``target`` None or ``"etf"``, uncentred for
    ``"of"`` or a theory Dataset. Classifier rows are rescaled to the means'
    average norm (they live in other units). The target geometry (for a theory
    Dataset at its predicted norms, else scaled to the data), rotated onto
    the observed means by orthogonal Procrustes, is drawn as open markers, so
    its distance from the filled ones is the departure from theory.

    Examples
    --------
    >>> from workbench.collapse import nc_metrics
    >>> x, y = np.eye(4).repeat(2, axis=0) * 3, np.arange(8) // 2
    >>> fig = class_means_3d(nc_metrics(x, y, device="cpu"), W=np.eye(4), target="etf")
    >>> [t.name for t in fig.data]
    ['class means', 'classifier rows', 'simplex ETF']

    One layer at one epoch of a training run, classifier rows included:

    >>> from workbench.collapse import run_experiment
    >>> run = run_experiment(hidden=(16,), n_linear=2, epochs=2, record_every=2, progress=False, device="cpu")
    >>> [t.name for t in class_means_3d(run.sel(layer="relu1", epoch=2), target="of").data]
    ['class means', 'classifier rows', 'orthogonal frame']
    """
    _require(ds, ["class_means"], ["class"])
    means, rows = _layer_geometry(ds, W)
    centred = target is None or (isinstance(target, str) and target == "etf")
    points = means - means.mean(axis=0) if centred else means
    if rows is not None:
        rows = rows / np.linalg.norm(rows, axis=1).mean() * np.linalg.norm(points, axis=1).mean()
    overlay = None
    if target is not None:
        _, want, name = _target_gram(ds, target)
        if isinstance(target, xr.Dataset):  # the theory fixes the norms themselves
            shape = np.diag(target.mean_norm.values)
        else:  # a Gram matrix's symmetric square root is a point set with that Gram; match the overall scale
            lam, vec = np.linalg.eigh(want)
            shape = vec * np.sqrt(np.clip(lam, 0, None)) @ vec.T
            shape *= np.linalg.norm(points) / np.linalg.norm(shape)
        overlay = _procrustes(shape, points)
    stacked = np.vstack([p for p in (points, rows) if p is not None])
    _, _, vt = np.linalg.svd(stacked, full_matrices=False)
    basis = vt[:3].T
    if basis.shape[1] < 3:
        basis = np.pad(basis, ((0, 0), (0, 3 - basis.shape[1])))
    fig = go.Figure()
    labels = [str(c) for c in ds["class"].values]

    def add(coords: np.ndarray, name: str, symbol: str, color: str, labelled: bool) -> None:
        p = coords @ basis  # only the means carry class labels: the others sit near them and would overprint
        fig.add_trace(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers+text" if labelled else "markers",
                                   text=labels, name=name, hovertemplate=f"{name}: class %{{text}}<extra></extra>",
                                   marker=dict(size=5, symbol=symbol, color=color)))

    add(points, "class means", "circle", PALETTE[0], True)
    if rows is not None:
        add(rows, "classifier rows", "diamond", PALETTE[3], False)
    if overlay is not None:
        add(overlay, name, "circle-open", PALETTE[7], False)
    fig.update_layout(scene=dict(xaxis_title="PC1", yaxis_title="PC2", zaxis_title="PC3", aspectmode="data",
                                 camera=dict(eye=dict(x=1.6, y=1.6, z=1.0))),
                      legend=dict(x=0.01, xanchor="left", y=0.99, yanchor="top"))
    apply_paper_style(fig, width=SINGLE_COLUMN_PX * 2, height=440)
    return fig.update_layout(margin=dict(l=0, r=0, t=10, b=0))


def minority_collapse_plot(ds: xr.Dataset) -> go.Figure:
    """Minority-class classifier cosine against the imbalance ratio (log x).

    The dotted line is the simplex-ETF cosine -1/(K-1) of balanced data; a
    rise towards 1 is minority collapse.

    Examples
    --------
    >>> ds = xr.Dataset({"minority_cosine": ("ratio", [-0.33, 0.4, 0.8])}, coords={"ratio": [1, 16, 64]},
    ...                 attrs={"k_majority": 2, "k_minority": 2})
    >>> minority_collapse_plot(ds).layout.xaxis.type
    'log'
    """
    _require(ds, ["minority_cosine"], ["ratio"])
    fig = new_figure(xaxis_title="imbalance ratio n_major / n_minor", yaxis_title="minority cosine",
                     xaxis_type="log", width=SINGLE_COLUMN_PX)
    fig.add_trace(go.Scatter(x=ds.ratio.values, y=ds.minority_cosine.values, mode="lines+markers",
                             name="UFM optimum", line=dict(color=PALETTE[0])))
    fig.update_xaxes(**log_ticks(ds.ratio.values))
    k = ds.attrs.get("k_majority", 0) + ds.attrs.get("k_minority", 0)
    if k >= 2:
        fig.add_hline(y=-1.0 / (k - 1), line=dict(color=PALETTE[7], dash="dot"), annotation_text="ETF")
    fig.update_yaxes(range=[-1.05, 1.05])
    return fig
