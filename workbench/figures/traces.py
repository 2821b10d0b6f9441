"""Figures of calcium traces (:mod:`workbench.connectome` input), in the paper template.

Neuron identities (NeuroPAL labels) label the rows; a numbering of neurons
(``N000``, ``roi3``) is not mistaken for them. Long recordings are binned
for display only.
"""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
import xarray as xr

from workbench.figures.template import FULL_WIDTH_PX, SEQUENTIAL, new_figure


#: Names that only number the neurons: plain indices, the synthetic generator's ``N000``, Suite2p's ``roi12``.
NUMBERING = re.compile(r"(?:n|roi|cell|neuron|unit)?[_-]?\d+", re.IGNORECASE)


def _has_names(neurons: np.ndarray) -> bool:
    """True when the neuron coordinate holds any text beyond bare indices (worth showing on hover)."""
    return neurons.dtype.kind in "USO" and not all(str(n).isdigit() for n in neurons)


def _is_named(neurons: np.ndarray, attrs: dict | None = None) -> bool:
    """True when the neuron names are identities (e.g. NeuroPAL labels), not a numbering of the neurons.

    A recording's ``attrs["neuron_labels"]`` (``"identity"`` or ``"index"``)
    decides when its metadata sets it; otherwise the names are identities
    unless every one only numbers a neuron (:data:`NUMBERING`: ``12``,
    ``N000``, ``roi3``).
    """
    stated = (attrs or {}).get("neuron_labels")
    if stated in ("identity", "index"):
        return stated == "identity"
    return _has_names(neurons) and not all(NUMBERING.fullmatch(str(n)) for n in neurons)


def robust_range(values, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """The ``low``-th and ``high``-th percentiles of the finite values: a colour range that a few outliers do not set.

    Examples
    --------
    >>> import numpy as np
    >>> robust_range(np.r_[np.arange(100.0), 1e6])
    (1.0, 99.0)
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [low, high])
    return (float(lo), float(hi)) if hi > lo else (float(finite.min()), float(finite.max()) + 1e-12)


def time_binned(one: xr.DataArray, max_columns: int) -> tuple[xr.DataArray, int]:
    """``one`` (neuron x time) averaged over consecutive bins of frames so that at most ``max_columns`` remain.

    For display only: a browser never gets more columns than the figure has
    pixels. Returns the binned traces (each bin at its mean time; the last
    bin may hold fewer frames) and the frames per bin (1: ``one`` unchanged).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> one = xr.DataArray(np.arange(10.0)[None], dims=("neuron", "time"), coords={"time": np.arange(10) / 2})
    >>> binned, frames = time_binned(one, 4)
    >>> frames, binned.values.tolist(), binned["time"].values.tolist()
    (3, [[1.0, 4.0, 7.0, 9.0]], [0.5, 2.0, 3.5, 4.5])
    """
    if max_columns < 1:
        raise ValueError(f"max_columns: expected at least 1, got {max_columns!r}")
    n_time = one.sizes["time"]
    frames = -(-n_time // max_columns)
    if frames <= 1:
        return one, 1
    one = one.transpose("neuron", "time")
    starts = np.arange(0, n_time, frames)
    values = one.values.astype(float)
    finite = np.isfinite(values)
    counts = np.add.reduceat(finite, starts, axis=1)
    sums = np.add.reduceat(np.where(finite, values, 0.0), starts, axis=1)
    means = np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)  # a bin of NaN stays NaN
    times = np.add.reduceat(one["time"].values.astype(float), starts) / np.diff(np.r_[starts, n_time])
    coords = {name: coord for name, coord in one.coords.items() if "time" not in coord.dims}
    return xr.DataArray(means, dims=("neuron", "time"), coords={**coords, "time": times}, attrs=one.attrs), frames


def traces_heatmap(traces: xr.DataArray, animal: int = 0, max_columns: int = FULL_WIDTH_PX) -> go.Figure:
    """Neuron x time heatmap of one animal's traces with its stimulus windows shaded.

    Colours span the 1st to 99th percentile of the values shown (a few bright
    frames do not wash the rest out; the colorbar says so). Identity names
    (e.g. NeuroPAL labels; not the numbering ``N000`` or ``roi3``, see
    :data:`NUMBERING`) label the rows up to 120 neurons, and the axis says
    so; other names up to 60. A recording
    longer than ``max_columns`` frames (default: one per pixel of the
    figure's width) is shown as the mean over bins of consecutive frames
    (:func:`time_binned`); the title and the time axis say so and state the
    bin width. Only the display is binned: analyses use every frame.

    Examples
    --------
    >>> from workbench.connectome import synthetic
    >>> fig = traces_heatmap(synthetic(10, 2, 120, 2).traces, animal=1)
    >>> fig.data[0].type, len(fig.layout.shapes)
    ('heatmap', 2)
    >>> fig = traces_heatmap(synthetic(10, 1, 3000, 2).traces, max_columns=500)
    >>> len(fig.data[0].x), fig.layout.xaxis.title.text
    (500, 'time (s), mean of 6-frame bins (1.5 s)')
    """
    if not 0 <= animal < traces.sizes["animal"]:
        raise ValueError(f"animal: expected an index in [0, {traces.sizes['animal']}), got {animal!r}")
    one, frames = time_binned(traces.isel(animal=animal), max_columns)
    name = str(traces["animal"].values[animal])
    neurons = one["neuron"].values
    n = neurons.size
    # One name per 13 px row at the template's font: named neurons (up to 120) are all labelled, the figure
    # growing to hold them; indices only up to 60, else hover for them.
    named = _is_named(neurons, traces.attrs)
    labelled = n <= (120 if named else 60)
    height = max(300, 120 + 13 * n) if labelled else (int(min(900, 120 + 13 * n)) if n <= 120 else 300)
    title, x_title = f"traces of {name}", "time (s)"
    if frames > 1:
        times = traces["time"].values
        step = float(np.median(np.diff(times))) * frames if times.size > 1 else float("nan")
        title += f" (display: mean over {frames}-frame bins, {one.sizes['time']} of {traces.sizes['time']} columns)"
        x_title = f"time (s), mean of {frames}-frame bins ({step:.3g} s)"
    fig = new_figure(title=title, xaxis_title=x_title, width=FULL_WIDTH_PX, height=height)
    zmin, zmax = robust_range(one.values)
    unit = traces.attrs.get("units", "a.u.")
    texts = _has_names(neurons)  # names ride along per cell only when there are names to show
    fig.add_heatmap(z=one.values, x=one["time"].values, y=np.arange(n), zmin=zmin, zmax=zmax, colorscale=SEQUENTIAL,
                    customdata=np.broadcast_to(neurons.astype(str)[:, None], one.shape) if texts else None,
                    hovertemplate=("%{customdata}" if texts else "neuron %{y}") + " at %{x:.1f} s: %{z:.3g}<extra></extra>",
                    colorbar=dict(title=f"activity ({unit})<br>1st-99th pct"))
    names = traces.attrs.get("stim_names") or []
    starts, ends = np.atleast_1d(traces.attrs.get("stim_start", [])), np.atleast_1d(traces.attrs.get("stim_end", []))
    for start, end in zip(starts, ends):
        fig.add_vrect(x0=float(start), x1=float(end), line=dict(color="white", width=1, dash="dot"))
    if len(names):
        fig.update_layout(meta={"stimuli": list(np.atleast_1d(names))})
    fig.update_yaxes(title_text="neuron (NeuroPAL label)" if named else "neuron (index)",
                     tickvals=list(range(n)), ticktext=neurons.astype(str).tolist(), showticklabels=labelled,
                     range=[n - 0.5, -0.5])
    return fig
