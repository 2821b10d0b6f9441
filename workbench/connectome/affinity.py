"""Instantaneous pairwise affinities between neuron traces.

``differential`` (default) looks at how two traces *change*: each trace is
smoothed with a Gaussian (``smooth`` frames), differentiated, and its
derivative divided by the derivative's standard deviation, giving ``d_i(t)``.
Two neurons are affine at time ``t`` when they change in the same direction by
a similar amount::

    a_ij(t) = sqrt(max(d_i d_j, 0)) * exp(-(d_i - d_j)^2 / (2 kernel_width^2))

The geometric mean rewards co-activation, the Gaussian kernel penalises
different step sizes. Affinities are then averaged over non-overlapping bins
of ``window`` frames. Because the derivative removes offsets and the
normalisation removes scale, the result is unchanged when a trace ``x`` is
replaced by ``a * x + b`` (``a > 0``).

``correlation`` is the usual baseline: the Pearson correlation inside each
bin, clipped at zero.

Missing samples (NaN) stay missing: smoothing is a normalised convolution over
the observed samples, and a bin with no observed sample is NaN, so a neuron not
identified in an animal gives NaN pairs in that animal.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d

from workbench.connectome.pairs import pair_coords

METHODS = ("differential", "correlation")


def _as_traces(traces) -> xr.DataArray:
    if not isinstance(traces, xr.DataArray):
        raise TypeError(f"traces: expected an xr.DataArray (animal, neuron, time), got {type(traces).__name__}")
    if traces.ndim == 2 and set(traces.dims) == {"neuron", "time"}:
        traces = traces.expand_dims(animal=["animal0"])
    if set(traces.dims) != {"animal", "neuron", "time"}:
        raise ValueError(f"traces: expected dims (animal, neuron, time), got {traces.dims}")
    traces = traces.transpose("animal", "neuron", "time")
    for dim in traces.dims:
        if dim not in traces.coords:
            traces = traces.assign_coords({dim: np.arange(traces.sizes[dim])})
    return traces


def _check_traces(values: np.ndarray, traces: xr.DataArray) -> None:
    if np.isinf(values).any():
        raise ValueError("traces: expected finite values (NaN where not recorded), got inf")
    present = ~np.isnan(values)
    never = ~present.any(axis=(0, 2))
    if never.any():
        names = traces["neuron"].values[never].tolist()
        raise ValueError(f"traces: neurons {names} are NaN in every animal; drop them before computing affinities")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are animals that lack the neuron
        spread = np.nanmax(values, axis=2) - np.nanmin(values, axis=2)
    constant = present.any(axis=2) & (spread == 0)
    if constant.any():
        a, n = np.argwhere(constant)[0]
        raise ValueError(
            f"traces: neuron {traces['neuron'].values[n]!r} is constant in animal "
            f"{traces['animal'].values[a]!r}; expected a varying trace (or NaN where not recorded)"
        )


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time that ignores NaN (normalised convolution)."""
    if sigma <= 0:
        return values.copy()
    observed = ~np.isnan(values)
    num = gaussian_filter1d(np.where(observed, values, 0.0), sigma, axis=-1, mode="nearest")
    den = gaussian_filter1d(observed.astype(float), sigma, axis=-1, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~observed] = np.nan
    return out


def _bin_mean(values: np.ndarray, window: int) -> np.ndarray:
    n_bins = values.shape[-1] // window
    shaped = values[..., : n_bins * window].reshape(*values.shape[:-1], n_bins, window)
    count = (~np.isnan(shaped)).sum(-1)
    total = np.nansum(shaped, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bin_centres(time: np.ndarray, window: int) -> np.ndarray:
    """Time of each bin of ``window`` frames (mean of its frames; the first one for non-numeric times).

    Examples
    --------
    >>> bin_centres(np.arange(10.0), 4).tolist()
    [1.5, 5.5]
    """
    n_bins = len(time) // window
    centres = np.asarray(time)[: n_bins * window].reshape(n_bins, window)
    return centres.mean(1) if np.issubdtype(centres.dtype, np.number) else centres[:, 0]


def _differential(values: np.ndarray, ia, ib, window: int, smooth: float, kernel_width: float) -> np.ndarray:
    deriv = np.gradient(_smooth(values, smooth), axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: neurons an animal lacks
        scale = np.nanstd(deriv, axis=-1, keepdims=True)
    d = deriv / scale
    di, dj = d[:, ia], d[:, ib]
    with np.errstate(invalid="ignore"):
        aff = np.sqrt(np.maximum(di * dj, 0.0)) * np.exp(-((di - dj) ** 2) / (2 * kernel_width**2))
    return _bin_mean(aff, window)


def _correlation(values: np.ndarray, ia, ib, window: int, smooth: float) -> np.ndarray:
    x = _smooth(values, smooth)
    n_bins = x.shape[-1] // window
    x = x[..., : n_bins * window].reshape(*x.shape[:-1], n_bins, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - np.nanmean(x, -1, keepdims=True)) / np.nanstd(x, -1, keepdims=True)
        corr = np.nanmean(z[:, ia] * z[:, ib], axis=-1)
    # A bin where a trace is flat has no defined correlation: call it unrelated.
    flat = np.isnan(corr) & ~np.isnan(x[:, ia]).all(-1) & ~np.isnan(x[:, ib]).all(-1)
    return np.clip(np.where(flat, 0.0, corr), 0.0, None)


def affinity(traces: xr.DataArray, *, method: str = "differential", window: int = 4, smooth: float = 1.0,
             kernel_width: float = 1.0) -> xr.DataArray:
    """Pairwise, time-resolved, non-negative affinities: the tensor an NTF factorises.

    Parameters
    ----------
    traces : xr.DataArray (animal, neuron, time) or (neuron, time)
        Activity traces; NaN marks samples (or whole neurons) not recorded.
    method : {"differential", "correlation"}
        ``differential``: co-change of normalised derivatives (see module
        docstring); ``correlation``: Pearson correlation per bin, clipped at 0.
    window : int
        Frames per output time bin (non-overlapping); the output has
        ``n_time // window`` time points.
    smooth : float
        Gaussian smoothing width in frames before differentiating (0: none).
    kernel_width : float
        Width of the derivative-difference kernel, in derivative SD units.

    Returns
    -------
    xr.DataArray (pair, time, animal)
        Symmetric by construction (one value per unordered pair), non-negative,
        with ``neuron_a``/``neuron_b`` coords on ``pair`` and bin-centre times.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = xr.DataArray(np.random.default_rng(0).normal(size=(1, 3, 40)), dims=("animal", "neuron", "time"))
    >>> affinity(x, window=4).sizes == {"pair": 3, "time": 10, "animal": 1}
    True
    """
    traces = _as_traces(traces)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window: expected a positive integer number of frames, got {window!r}")
    if traces.sizes["time"] < 2 * window:
        raise ValueError(
            f"traces: the time axis ({traces.sizes['time']} frames) is too short for window={window}; "
            f"expected at least {2 * window} frames (two bins)"
        )
    if not (smooth >= 0 and kernel_width > 0):  # also refuses NaN
        raise ValueError(f"smooth/kernel_width: expected smooth >= 0 and kernel_width > 0, got {smooth}, {kernel_width}")
    if traces.sizes["neuron"] < 2:
        raise ValueError(f"traces: expected at least 2 neurons, got {traces.sizes['neuron']}")
    values = traces.values.astype(np.float64)
    _check_traces(values, traces)
    ia, ib = np.triu_indices(values.shape[1], k=1)
    if method == "differential":
        aff = _differential(values, ia, ib, window, smooth, kernel_width)
    else:
        aff = _correlation(values, ia, ib, window, smooth)
    out = xr.DataArray(
        aff.transpose(1, 2, 0),
        dims=("pair", "time", "animal"),
        coords={"time": bin_centres(traces["time"].values, window), "animal": traces["animal"].values, **pair_coords(traces["neuron"].values)},
        name="affinity",
        attrs={**traces.attrs, "method": method, "window": int(window), "smooth": float(smooth),
               "kernel_width": float(kernel_width)},
    )
    return out
