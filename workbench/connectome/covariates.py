"""Behaviour and other covariates against the time factors of a dynamic connectome.

A *covariate* is anything sampled on the traces' time axis: velocity, head
curvature, reversal state, stimulus intensity. It travels with the traces
(:func:`~workbench.connectome.load_traces` keeps the ones a file holds as
time coords; ``.reset_coords()`` turns them into data variables) or is given
to :func:`~workbench.connectome.dynamic_connectome` directly.

To compare a covariate with a component's time factor it is binned exactly as
the affinity tensor is (:func:`~workbench.connectome.affinity.bin_centres` and
the same bin means, NaN ignored), and, when it was recorded per animal,
averaged over animals with the component's animal loadings as weights (the
animals where the component lives count most). The statistic is Pearson's
``r`` over the bins where the covariate is defined; its p-value is two-sided
against circular shifts of the covariate (each animal's by its own offset),
which keep the covariate's autocorrelation and break its alignment with the
neurons: ``p = (1 + #{|r_shift| >= |r|}) / (n_shifts + 1)``. p-values are per
component and covariate, not corrected for how many were tested.

>>> import numpy as np, xarray as xr
>>> t = np.arange(40.0)
>>> traces = xr.DataArray(np.zeros((1, 2, 40)), dims=("animal", "neuron", "time"), coords={"time": t})
>>> cov = as_covariates({"speed": np.sin(t / 5)}, traces)
>>> cov["speed"].dims
('animal', 'time')
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from workbench.connectome._validate import check_count
from workbench.connectome.affinity import _bin_mean
from workbench.connectome.surrogates import circular_shifts, roll_rows

#: Shifts drawn at once when building the null of a covariate (memory: this x animals x frames floats).
_SHIFT_CHUNK = 128


def find_covariates(traces: xr.DataArray | xr.Dataset) -> dict[str, xr.DataArray]:
    """Covariates that travel with ``traces``: variables (Dataset) or coords (DataArray) on ``time`` and maybe ``animal``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = xr.DataArray(np.zeros((1, 2, 5)), dims=("animal", "neuron", "time"))
    >>> sorted(find_covariates(x.assign_coords(speed=("time", np.arange(5.0)))))
    ['speed']
    """
    if isinstance(traces, xr.Dataset):
        items = {k: v for k, v in traces.data_vars.items() if k != "traces"}
    else:
        items = {k: v for k, v in traces.coords.items() if k not in traces.dims}
    return {str(k): v for k, v in items.items() if "time" in v.dims and set(v.dims) <= {"animal", "time"}}


def as_covariates(covariates, traces: xr.DataArray) -> dict[str, xr.DataArray]:
    """Check covariates against the traces and return them as ``(animal, time)`` DataArrays.

    Parameters
    ----------
    covariates : dict of name -> array-like or DataArray, or xr.Dataset
        Each ``(time,)`` (shared by all animals) or ``(animal, time)``, on the
        traces' time axis; NaN where not recorded.
    traces : xr.DataArray (animal, neuron, time)

    Returns
    -------
    dict of xr.DataArray (animal, time)
        ``attrs`` kept (``units``, ``long_name``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> tr = xr.DataArray(np.zeros((2, 3, 6)), dims=("animal", "neuron", "time"))
    >>> as_covariates({"odor": np.ones(6)}, tr)["odor"].shape
    (2, 6)
    """
    if isinstance(covariates, xr.Dataset):
        covariates = dict(covariates.data_vars)
    if not isinstance(covariates, dict):
        raise TypeError(f"covariates: expected a dict of name -> array or an xr.Dataset, got {type(covariates).__name__}")
    n_animals, n_time = traces.sizes["animal"], traces.sizes["time"]
    out = {}
    for name, value in covariates.items():
        attrs = dict(value.attrs) if isinstance(value, xr.DataArray) else {}
        if isinstance(value, xr.DataArray):
            if "time" not in value.dims or not set(value.dims) <= {"animal", "time"}:
                raise ValueError(f"covariates: expected {name!r} on dims (time,) or (animal, time), got {value.dims}")
            value = value.transpose(*[d for d in ("animal", "time") if d in value.dims]).values
        values = np.asarray(value)
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise TypeError(f"covariates: expected numbers in {name!r}, got dtype {values.dtype}")
        values = values.astype(np.float64)
        if values.ndim == 1:
            values = np.broadcast_to(values, (n_animals, values.size))
        if values.ndim != 2 or values.shape != (n_animals, n_time):
            raise ValueError(f"covariates: expected {name!r} to have {n_time} time points (the traces' time axis), "
                             f"as (time,) or ({n_animals} animals, time), got shape {np.shape(value)}")
        if np.isinf(values).any():
            raise ValueError(f"covariates: expected finite values in {name!r} (NaN where not recorded), got inf")
        if np.isnan(values).all():
            raise ValueError(f"covariates: {name!r} is NaN everywhere; expected recorded values "
                             f"(drop it, or pass covariates={{}} to ignore those the traces carry)")
        out[str(name)] = xr.DataArray(values, dims=("animal", "time"), attrs=attrs)
    return out


def _weighted_over_animals(binned: np.ndarray, animal_factor: np.ndarray) -> np.ndarray:
    """(..., animal, bin) covariate -> (..., component, bin), averaged with the animal loadings, NaN ignored."""
    weights = np.where(animal_factor.sum(0) > 0, animal_factor, 1.0)  # (animal, component)
    present = ~np.isnan(binned)
    total = np.einsum("...at,ac->...ct", np.where(present, binned, 0.0), weights)
    norm = np.einsum("...at,ac->...ct", present.astype(float), weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, total / norm, np.nan)


def _masked_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of x (..., component, bin; NaN = left out) with y (bin, component), per component."""
    y = np.moveaxis(y, -1, 0)  # (component, bin)
    present = ~np.isnan(x)
    n = present.sum(-1)
    xs, ys = np.where(present, x, 0.0), np.where(present, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm, ym = xs.sum(-1, keepdims=True) / n[..., None], ys.sum(-1, keepdims=True) / n[..., None]
        xc, yc = np.where(present, x - xm, 0.0), np.where(present, y - ym, 0.0)
        r = (xc * yc).sum(-1) / np.sqrt((xc**2).sum(-1) * (yc**2).sum(-1))
    return np.where(n > 2, r, np.nan)


def covariate_correlation(time_factor: xr.DataArray, animal_factor: xr.DataArray, covariates: dict[str, xr.DataArray],
                          window: int, *, n_shifts: int = 999, seed: int = 0) -> dict[str, xr.DataArray]:
    """Correlation of every component's time factor with every covariate, and its shift p-value.

    Parameters
    ----------
    time_factor : xr.DataArray (time, component)
        On the affinity bins (``n_time // window`` of them).
    animal_factor : xr.DataArray (animal, component)
    covariates : dict of xr.DataArray (animal, time)
        From :func:`as_covariates`, on the traces' frames.
    window : int
        The affinity window (frames per bin).
    n_shifts : int
        Circular shifts of each covariate for the p-value.
    seed : int

    Returns
    -------
    dict of xr.DataArray
        ``covariate_correlation`` and ``covariate_p`` (covariate, component);
        ``covariate_binned`` (covariate, component, time): the binned
        covariate each component was compared with; coord ``covariate_units``
        ('' when unknown). A covariate constant over the bins has NaN ``r`` and ``p``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> t = np.arange(200)
    >>> drive = (np.sin(t / 10) > 0).astype(float)
    >>> tf = xr.DataArray(drive.reshape(50, 4).mean(1)[:, None], dims=("time", "component"))
    >>> af = xr.DataArray(np.ones((1, 1)), dims=("animal", "component"))
    >>> cov = {"drive": xr.DataArray(drive[None], dims=("animal", "time"))}
    >>> out = covariate_correlation(tf, af, cov, 4, n_shifts=99)
    >>> round(float(out["covariate_correlation"][0, 0]), 3), float(out["covariate_p"][0, 0]) <= 0.05
    (1.0, True)
    """
    n_shifts = check_count("n_shifts", n_shifts)
    tf, af = time_factor.transpose("time", "component").values, animal_factor.transpose("animal", "component").values
    rng = np.random.default_rng(seed)
    names, corr, pvals, binned_all, units = [], [], [], [], []
    for name, cov in covariates.items():
        raw = cov.values
        binned = _weighted_over_animals(_bin_mean(raw, window), af)  # (component, bin)
        if binned.shape[-1] != tf.shape[0]:
            raise ValueError(f"time_factor: expected {binned.shape[-1]} bins for window={window}, got {tf.shape[0]}")
        r = _masked_corr(binned, tf)
        exceed = np.zeros(r.shape)
        for start in range(0, n_shifts, _SHIFT_CHUNK):
            size = min(_SHIFT_CHUNK, n_shifts - start)
            shifted = roll_rows(np.broadcast_to(raw, (size, *raw.shape)),
                                circular_shifts(rng, (size, raw.shape[0]), raw.shape[-1]))
            null = _masked_corr(_weighted_over_animals(_bin_mean(shifted, window), af), tf)
            exceed += (np.abs(null) >= np.abs(r) - 1e-12).sum(0)
        names.append(name)
        corr.append(r)
        pvals.append(np.where(np.isnan(r), np.nan, (1 + exceed) / (n_shifts + 1)))
        binned_all.append(binned)
        units.append(str(cov.attrs.get("units", "")))
    component = time_factor["component"].values if "component" in time_factor.coords else np.arange(tf.shape[1])
    coords = {"covariate": names, "covariate_units": ("covariate", units), "component": component}
    attrs = {"n_shifts": int(n_shifts), "window": int(window)}
    time = time_factor["time"].values if "time" in time_factor.coords else np.arange(tf.shape[0])
    return {
        "covariate_correlation": xr.DataArray(np.array(corr).reshape(len(names), -1), dims=("covariate", "component"),
                                              coords=coords, attrs=attrs),
        "covariate_p": xr.DataArray(np.array(pvals).reshape(len(names), -1), dims=("covariate", "component"),
                                    coords=coords, attrs=attrs),
        "covariate_binned": xr.DataArray(np.array(binned_all).reshape(len(names), tf.shape[1], -1),
                                         dims=("covariate", "component", "time"), coords={**coords, "time": time},
                                         attrs={"window": int(window)}),
    }
