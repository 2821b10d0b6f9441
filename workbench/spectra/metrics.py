"""``rank_metrics``: how many directions a matrix really uses, from its singular values.

Notation: ``sigma_1 >= ... >= sigma_n`` the singular values of an ``m x n'``
matrix, ``n = min(m, n')``, ``N = max(m, n')``, ``lambda_i = sigma_i^2`` (the
eigenvalues of the smaller Gram matrix, WeightWatcher's ``evals``).

=====================  ==================================================================
``stable_rank``        ``sum lambda / lambda_1`` (WeightWatcher's ``stable_rank``)
``effective_rank``     ``exp(-sum p_i ln p_i)``, ``p_i = sigma_i / sum sigma`` (Roy & Vetterli 2007)
``numerical_rank``     ``#{sigma_i > sigma_1 N eps}``, ``eps`` of the input's precision
                       (``np.linalg.matrix_rank``'s rule; WeightWatcher's ``matrix_rank``
                       for float64 input)
``energy_rank_p``      smallest ``k`` with ``sum_{i<=k} lambda_i >= p sum lambda``, p = 50/90/99 %
``alpha``              power-law exponent of the ESD tail (:mod:`~workbench.spectra.powerlaw`); NaN for a
                       matrix with fewer than two eigenvalues above 1e-5 (no tail to fit)
``alpha_weighted``     ``alpha log10 lambda_1``
``ks_distance``        KS distance of that fit (WeightWatcher's ``D``)
``xmin``               start of the fitted tail
``n_tail``             eigenvalues at or above ``xmin`` (WeightWatcher's ``num_pl_spikes``)
``alpha_reliable``     False where the fit is outside WeightWatcher's trustworthy range: ``alpha > 8``
                       (not heavy tailed) or ``n_tail < 10``, or there is no fit
                       (:func:`~workbench.spectra.powerlaw.fit_reliability`)
``alpha_reason``       why not (empty where reliable); read ``alpha`` only where reliable
``log_norm``           ``log10 sum lambda`` (log squared Frobenius norm)
``log_spectral_norm``  ``log10 lambda_1`` (log squared spectral norm)
``mp_softrank``        ``lambda_+ / lambda_1``, Marchenko-Pastur bulk edge over the top eigenvalue
``num_spikes``         eigenvalues above ``lambda_+`` plus the Tracy-Widom margin (a float: NaN where
                       the law does not apply)
``bulk_max``           ``lambda_+`` in the units of ``lambda``
``mp_reason``          why the three above are NaN: a rank-deficient matrix (numerical rank below
                       the smaller dimension) or a per-head circuit product; empty where they apply
=====================  ==================================================================

The bulk edge is estimated from the median eigenvalue by default
(:mod:`~workbench.spectra.mp`); ``mp_fit="weightwatcher"`` uses WeightWatcher's
kernel-density fit instead, whose ``mp_softrank``, ``num_spikes``,
``bulk_max`` match WeightWatcher's on the same matrix.

Examples
--------
>>> import numpy as np
>>> m = rank_metrics(np.diag([2.0, 1.0, 1.0, 0.0]))
>>> float(m.stable_rank), int(m.numerical_rank), int(m.energy_rank_50)
(1.5, 3, 1)
"""

from __future__ import annotations

import warnings

from typing import Any

import numpy as np
import xarray as xr

from workbench.spectra._validate import as_tensor, check_choice, check_finite, source_precision
from workbench.spectra.mp import MP_METHODS, mp_fit as fit_bulk, numerical_rank
from workbench.spectra.powerlaw import power_law_fit
from workbench.spectra.spectrum import spectrum

ENERGY_LEVELS = (50, 90, 99)
#: Relative slack on the energy threshold, so that exactly reaching p percent
#: is not missed by the rounding of a cumulative sum.
_ENERGY_SLACK = 1e-12

METRIC_NAMES = ("stable_rank", "effective_rank", "numerical_rank",
                *(f"energy_rank_{p}" for p in ENERGY_LEVELS),
                "alpha", "alpha_weighted", "ks_distance", "xmin", "log_norm", "log_spectral_norm",
                "mp_softrank", "num_spikes", "bulk_max")
#: The power-law fit's tail size and trustworthiness, beside the metrics (a bool and a str are no heatmap).
FIT_QUALITY_NAMES = ("n_tail", "alpha_reliable", "alpha_reason", "mp_reason")


def metrics_from_singular_values(sigma: np.ndarray, shape: tuple[int, int], precision: str = "float64", *,
                                  mp_fit: str = "median", product: bool = False) -> dict:
    """Every metric of :func:`rank_metrics` for one spectrum, as a dict of floats and ints.

    ``sigma`` may carry trailing NaN padding (stacks of spectra of different
    lengths); it is dropped. ``mp_fit`` is the Marchenko-Pastur estimator
    (:func:`~workbench.spectra.mp.mp_fit`'s ``method``); ``product`` marks a
    per-head circuit, whose Marchenko-Pastur quantities are NaN.

    Examples
    --------
    >>> metrics_from_singular_values(np.array([3.0, 4.0]), (2, 2))["stable_rank"]
    1.5625
    """
    s = np.sort(np.asarray(sigma, dtype=np.float64)[np.isfinite(sigma)])[::-1]
    N = max(shape)
    lam = s ** 2
    total = lam.sum()
    mp = fit_bulk(lam, shape=shape, method=mp_fit, precision=precision, product=product)
    out: dict = {}
    if s.size == 0 or s[0] <= 0:
        out = {name: np.nan for name in METRIC_NAMES}
        out.update(numerical_rank=0, n_tail=0, alpha_reliable=False, alpha_reason="no power-law fit",
                   mp_reason=mp["mp_reason"])
        return out
    out["stable_rank"] = float(total / lam[0])
    p = s[s > 0] / s.sum()
    out["effective_rank"] = float(np.exp(-(p * np.log(p)).sum()))
    out["numerical_rank"] = numerical_rank(s, N, precision)
    cum = np.cumsum(lam)
    for level in ENERGY_LEVELS:
        out[f"energy_rank_{level}"] = int(np.searchsorted(cum, level / 100 * total * (1 - _ENERGY_SLACK)) + 1)
    with warnings.catch_warnings():  # too few eigenvalues is a NaN alpha in the table (see the module docstring)
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = power_law_fit(lam)
    out["alpha"] = fit["alpha"]
    out["alpha_weighted"] = float(fit["alpha"] * np.log10(lam[0])) if fit["n_tail"] else np.nan
    out["ks_distance"] = fit["ks_distance"]
    out["xmin"] = fit["xmin"]
    out["n_tail"] = int(fit["n_tail"])
    out["alpha_reliable"] = bool(fit["reliable"])
    out["alpha_reason"] = fit["reason"]
    out["log_norm"] = float(np.log10(total))
    out["log_spectral_norm"] = float(np.log10(lam[0]))
    for name in ("mp_softrank", "num_spikes", "bulk_max", "mp_reason"):
        out[name] = mp[name]
    return out


def _check_shape(shape: Any, n: int) -> tuple[int, int]:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape)):
        raise ValueError(f"shape: expected the matrix shape (rows, cols) as two positive ints, got {shape!r}")
    if min(shape) < n:
        raise ValueError(f"shape: a {tuple(shape)} matrix has at most {min(shape)} singular values, got {n}")
    return int(shape[0]), int(shape[1])


def _check_no_negative(values: np.ndarray) -> None:
    if bool((values < 0).any()):
        raise ValueError("W_or_spectrum: expected non-negative singular values, got negative entries")


def _as_spectrum(x: Any, shape: Any) -> xr.DataArray:
    """A spectrum DataArray from a spectrum, a 1-D array of singular values or matrices."""
    if isinstance(x, xr.DataArray) and "index" in x.dims:
        if shape is None and not {"rows", "cols"} <= set(x.attrs):
            raise ValueError("shape: expected (rows, cols) for a spectrum without 'rows'/'cols' attrs, got None")
        rows, cols = _check_shape((x.attrs["rows"], x.attrs["cols"]) if shape is None else shape, x.sizes["index"])
        values = np.asarray(x.values, dtype=np.float64)
        if bool(np.isinf(values).any()):  # NaN is padding; inf is not
            raise ValueError("W_or_spectrum: expected finite singular values (NaN only as padding), got inf")
        _check_no_negative(values)
        return x.assign_attrs(rows=rows, cols=cols)
    t = as_tensor(x, "W_or_spectrum")
    if t.ndim == 1:
        if t.numel() == 0:
            raise ValueError("W_or_spectrum: expected a non-empty matrix or spectrum, got shape (0,)")
        if shape is None:
            raise ValueError("shape: expected (rows, cols) of the matrix when W_or_spectrum is a 1-D array of "
                             "singular values, got None")
        check_finite(t, "W_or_spectrum")
        values = np.sort(t.cpu().numpy().astype(np.float64))[::-1]
        _check_no_negative(values)
        rows, cols = _check_shape(shape, t.numel())
        return xr.DataArray(values, dims=("index",), coords={"index": np.arange(values.size)},
                            attrs={"rows": rows, "cols": cols, "precision": source_precision(t)})
    return spectrum(x if isinstance(x, xr.DataArray) else t)


def rank_metrics(W_or_spectrum: Any, *, shape: tuple[int, int] | None = None, mp_fit: str = "median") -> xr.Dataset:
    """Rank metrics of a matrix, a stack of matrices, or their spectra.

    Parameters
    ----------
    W_or_spectrum : array_like or xarray.DataArray
        A matrix ``[m, n]`` or stack ``[..., m, n]`` (decomposed with
        :func:`spectrum`); the DataArray :func:`spectrum` returns; or a 1-D
        array of singular values (then ``shape`` is required).
    shape : (int, int), optional
        Shape of the matrix the singular values came from; overrides the
        ``rows``/``cols`` attrs of a spectrum.
    mp_fit : {"median", "weightwatcher"}
        Estimator of the Marchenko-Pastur bulk (:mod:`~workbench.spectra.mp`):
        the median rule, or WeightWatcher's kernel-density fit (slower; its
        numbers match ``WeightWatcher.analyze(mp_fit=True)``).

    Returns
    -------
    xarray.Dataset
        One variable per metric (see the module docstring for every formula),
        and ``n_tail``, ``alpha_reliable``, ``alpha_reason`` (is the power-law
        fit trustworthy, and if not why) and ``mp_reason`` (why the
        Marchenko-Pastur quantities are NaN, if they are), over the
        spectrum's leading dims. ``numerical_rank`` uses the epsilon of the
        spectrum's ``precision`` attr (float32 unless the data were float64).

    Examples
    --------
    >>> import numpy as np
    >>> G = np.random.default_rng(0).standard_normal((400, 100))
    >>> m = rank_metrics(G)
    >>> theory = 400 * 100 / (20 + 10) ** 2            # N M / (sqrt N + sqrt M)^2
    >>> bool(abs(float(m.stable_rank) / theory - 1) < 0.1), int(m.numerical_rank)
    (True, 100)
    >>> float(rank_metrics(np.array([2.0, 1.0]), shape=(2, 5)).log_spectral_norm)
    0.6020599913279624
    """
    check_choice(mp_fit, "mp_fit", MP_METHODS)
    spec = _as_spectrum(W_or_spectrum, shape)
    shape_ = (int(spec.attrs["rows"]), int(spec.attrs["cols"]))
    precision = spec.attrs.get("precision", "float64")
    batch_dims = [d for d in spec.dims if d != "index"]
    stacked = spec.transpose(*batch_dims, "index").values.reshape(-1, spec.sizes["index"])
    rows = [metrics_from_singular_values(s, shape_, precision, mp_fit=mp_fit) for s in stacked]
    batch_shape = tuple(spec.sizes[d] for d in batch_dims)
    coords = {d: spec.coords[d] for d in batch_dims if d in spec.coords}
    data = {}
    for name in METRIC_NAMES + FIT_QUALITY_NAMES:
        values = np.array([r[name] for r in rows]).reshape(batch_shape)
        data[name] = xr.DataArray(values, dims=batch_dims, coords=coords)
    return xr.Dataset(data, attrs={"rows": shape_[0], "cols": shape_[1], "precision": precision})

