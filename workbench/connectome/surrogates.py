"""Null models for dynamic connectomes: what a component looks like by chance.

A *surrogate* recording keeps what each neuron does on its own (its values,
hence its autocorrelation and power spectrum) and destroys the timing between
neurons. Fitting the same pipeline to many surrogates gives the distribution
of every statistic when neurons are not coupled, and an observed component is
"more than chance" when it beats that distribution.

* ``shift``: each trace of each animal is rolled circularly by its own random
  offset, uniform over the recording (Harris et al. 2003 style). Shifts of
  shifted data are shifted data, so on a recording that is itself uncoupled
  the surrogates and the data are exchangeable and the p-values below are exact.
* ``phase``: iterated amplitude-adjusted Fourier transform (IAAFT, Schreiber
  & Schmitz 1996): random Fourier phases, then alternately the trace's own
  amplitude spectrum and its own values, so the surrogate has exactly the
  trace's values and nearly its spectrum (autocorrelation). Samples missing
  inside a trace are filled with the trace's mean for the transform and are
  missing again afterwards. It is only approximately a null for calcium
  traces: a spectrum does not keep the fast-rise, slow-decay shape of
  transients, on which the differential affinity depends. Measured on
  uncoupled synthetic calcium traces (``benchmarks/bench_surrogates.py``, 100
  recordings) its family-wise false-positive rate at 0.05 is 9% (95% CI
  4-16%; ``shift``: 6%, CI 2-13%; plain phase randomisation, which also
  loses the values, gave 94%); prefer ``shift``.

Statistics of a component ``r`` with reconstruction ``X_r = w_r a_r (x) b_r (x) c_r``:

* **explained variance** ``EV_r = max(corr(X, X_r), 0)^2`` over the observed
  entries of the affinity tensor ``X``: the R^2 of the best affine fit
  ``X ~ alpha + beta X_r``. Centring matters: every affinity tensor has a
  positive baseline, and a component that only carries the baseline
  explains about nothing.
* **concentration** of the pair factor ``a_r``: the inverse participation
  ratio ``IPR = sum_p a_p^4 / (sum_p a_p^2)^2``, from ``1 / n_pairs`` (all
  pairs equal) to 1 (one pair).

p-values compare each observed component with the *largest* value among the
components of each surrogate fit, ``p = (1 + #{surrogates: max >= observed})
/ (n_surrogates + 1)``, so that on uncoupled data the chance that *any*
component reaches ``p <= alpha`` is at most ``alpha`` (family-wise). The
smallest attainable p-value is ``1 / (n_surrogates + 1)``: a test at level
``alpha`` needs at least :func:`min_surrogates` surrogates (19 at 0.05), and
:func:`significance` warns (:func:`too_few_surrogates`) when it has fewer,
rather than calling every component chance.

>>> import numpy as np, xarray as xr
>>> x = xr.DataArray(np.arange(12.0).reshape(1, 2, 6), dims=("animal", "neuron", "time"))
>>> s = surrogate_traces(x, seed=0)
>>> bool((np.sort(s.values, -1) == np.sort(x.values, -1)).all())  # same values, other timing
True
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import xarray as xr

from workbench.connectome._validate import check_choice, check_count, check_fraction
from workbench.connectome.affinity import _as_traces

METHODS = ("shift", "phase")


def circular_shifts(rng: np.random.Generator, shape: tuple[int, ...], n_time: int) -> np.ndarray:
    """Random circular offsets, uniform on ``0 .. n_time - 1``, one per leading index.

    Examples
    --------
    >>> circular_shifts(np.random.default_rng(0), (2, 3), 10).shape
    (2, 3)
    """
    return rng.integers(0, n_time, size=shape)


def roll_rows(values: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Roll every row of ``values`` (time last) by its own offset, like ``np.roll`` row by row.

    Examples
    --------
    >>> roll_rows(np.arange(8.0).reshape(2, 4), np.array([1, 3])).tolist()
    [[3.0, 0.0, 1.0, 2.0], [5.0, 6.0, 7.0, 4.0]]
    """
    n_time = values.shape[-1]
    index = (np.arange(n_time) - shifts[..., None]) % n_time
    return np.take_along_axis(values, index, axis=-1)


#: Iterations of IAAFT (Schreiber & Schmitz 1996): each imposes the spectrum, then the values.
_IAAFT_ITERATIONS = 20


def _phase_randomise(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """IAAFT surrogates: random Fourier phases, then alternately the original spectrum and values."""
    n_time = values.shape[-1]
    missing = np.isnan(values)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(missing.all(-1, keepdims=True), 0.0, values), -1, keepdims=True)
    filled = np.where(missing, mean, values)
    spectrum = np.fft.rfft(filled, axis=-1)
    amplitude, ordered = np.abs(spectrum), np.sort(filled, axis=-1)
    phases = rng.uniform(0, 2 * np.pi, spectrum.shape)
    phases[..., 0] = 0.0  # the mean stays
    if n_time % 2 == 0:
        phases[..., -1] = 0.0  # the Nyquist term is real
    out = np.fft.irfft(spectrum * np.exp(1j * phases), n=n_time, axis=-1)
    for _ in range(_IAAFT_ITERATIONS):
        out = np.take_along_axis(ordered, np.argsort(np.argsort(out, axis=-1), axis=-1), axis=-1)
        current = np.fft.rfft(out, axis=-1)
        out = np.fft.irfft(amplitude * np.exp(1j * np.angle(current)), n=n_time, axis=-1)
    out = np.take_along_axis(ordered, np.argsort(np.argsort(out, axis=-1), axis=-1), axis=-1)
    out[missing] = np.nan
    return out


def surrogate_traces(traces: xr.DataArray, *, method: str = "shift", seed: int = 0) -> xr.DataArray:
    """Traces with each neuron's own dynamics kept and the timing between neurons destroyed.

    Parameters
    ----------
    traces : xr.DataArray (animal, neuron, time) or (neuron, time)
        NaN marks samples or neurons not recorded; a neuron missing in an
        animal stays missing.
    method : {"shift", "phase"}
        ``shift``: circular shift of every (animal, neuron) trace by its own
        offset, uniform on the recording (exact null); ``phase``: IAAFT, the
        trace's values in a new order with nearly its spectrum (approximate;
        see the module docstring).
    seed : int

    Returns
    -------
    xr.DataArray
        Same dims, coords and attrs as ``traces`` (as ``(animal, neuron, time)``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = xr.DataArray(np.sin(np.arange(40.0))[None, None].repeat(3, 1), dims=("animal", "neuron", "time"))
    >>> p = surrogate_traces(x, method="phase", seed=1)
    >>> bool(np.allclose(np.sort(p.values), np.sort(x.values)))  # the same values
    True
    """
    traces = _as_traces(traces)
    check_choice("method", method, METHODS)
    values = traces.values.astype(np.float64)
    rng = np.random.default_rng(seed)
    if method == "shift":
        out = roll_rows(values, circular_shifts(rng, values.shape[:-1], values.shape[-1]))
    else:
        out = _phase_randomise(values, rng)
    return traces.copy(data=out)


def explained_variance(tensor: np.ndarray, weights: np.ndarray, factors: list[np.ndarray]) -> np.ndarray:
    """``max(corr(X, X_r), 0)^2`` over the observed (non-NaN) entries, for each component ``r``.

    Parameters
    ----------
    tensor : ndarray (I, J, K)
        NaN marks missing entries.
    weights : ndarray (R,)
    factors : three ndarrays (I, R), (J, R), (K, R)

    Examples
    --------
    >>> a, b, c = np.eye(2), np.ones((3, 2)), np.ones((1, 2))
    >>> X = np.einsum("ir,jr,kr->ijk", a[:, :1], b[:, :1], c[:, :1])
    >>> explained_variance(X, np.ones(2), [a, b, c]).round(6).tolist()
    [1.0, 0.0]
    """
    observed = ~np.isnan(tensor)
    X = np.where(observed, tensor, 0.0)
    M = observed.astype(float)
    a, b, c = factors
    n = M.sum()
    sx, sxx = X.sum(), (X**2).sum()
    sr = weights * np.einsum("ijk,ir,jr,kr->r", M, a, b, c)
    srr = weights**2 * np.einsum("ijk,ir,jr,kr->r", M, a**2, b**2, c**2)
    sxr = weights * np.einsum("ijk,ir,jr,kr->r", X, a, b, c)
    cov = n * sxr - sx * sr
    var = (n * sxx - sx**2) * (n * srr - sr**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(var > 0, cov / np.sqrt(np.maximum(var, 1e-300)), 0.0)
    return np.clip(corr, 0.0, None) ** 2


def concentration(pair_factor: np.ndarray) -> np.ndarray:
    """Inverse participation ratio ``sum a^4 / (sum a^2)^2`` of each column (pair factor).

    Examples
    --------
    >>> concentration(np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])).tolist()
    [1.0, 0.25]
    """
    sq = pair_factor**2
    total = sq.sum(0)
    return np.where(total > 0, (sq**2).sum(0) / np.where(total > 0, total, 1.0) ** 2, 0.0)


def empirical_p(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """``(1 + #{null >= observed}) / (len(null) + 1)`` for every observed value.

    Examples
    --------
    >>> empirical_p(np.array([5.0, 0.5]), np.array([1.0, 2.0, 3.0])).tolist()
    [0.25, 1.0]
    """
    null = np.asarray(null, dtype=float)
    return (1 + (null[None, :] >= np.asarray(observed, dtype=float)[:, None]).sum(1)) / (null.size + 1)


def min_surrogates(alpha: float = 0.05) -> int:
    """The fewest surrogates whose smallest attainable p-value, ``1 / (n + 1)``, is at most ``alpha``.

    Examples
    --------
    >>> min_surrogates(0.05), min_surrogates(0.01), min_surrogates(0.5)
    (19, 99, 1)
    """
    alpha = check_fraction("alpha", alpha)
    return max(1, math.ceil(round(1 / alpha, 9)) - 1)  # round: 1 / 0.01 is 100.00000000000001 in floats


def too_few_surrogates(n_surrogates: int, alpha: float = 0.05) -> str:
    """Why ``n_surrogates`` cannot show any component significant at ``alpha``; '' when they can.

    Examples
    --------
    >>> too_few_surrogates(19)
    ''
    >>> too_few_surrogates(2)
    'n_surrogates: 2 surrogates cannot reach p <= 0.05 (the smallest p-value they give is 1/(2+1) = 0.33); use at least 19'
    """
    n_surrogates = check_count("n_surrogates", n_surrogates)
    needed = min_surrogates(alpha)
    if n_surrogates >= needed:
        return ""
    return (f"n_surrogates: {n_surrogates} surrogates cannot reach p <= {alpha:g} (the smallest p-value they give "
            f"is 1/({n_surrogates}+1) = {1 / (n_surrogates + 1):.2g}); use at least {needed}")


def fit_surrogates(traces: xr.DataArray, fit: Callable, n_surrogates: int, *, method: str = "shift",
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Fit ``fit`` to ``n_surrogates`` surrogates of ``traces`` and keep what the null needs.

    Parameters
    ----------
    traces : xr.DataArray (animal, neuron, time)
    fit : callable ``fit(traces, seed) -> (tensor values, NTFResult)``
        The same pipeline as for the observed traces.
    n_surrogates : int >= 1
    method : {"shift", "phase"}
    seed : int
        Surrogate ``n`` is drawn with seed ``(seed, n)`` and fitted with seed ``seed + 1 + n``.

    Returns
    -------
    dict
        ``explained_variance`` and ``concentration`` (surrogate, component),
        each row sorted from largest; ``pair_factor`` (surrogate, pair, component).

    Examples
    --------
    >>> from workbench.connectome import synthetic, affinity, ntf
    >>> def fit(tr, s):
    ...     t = affinity(tr)
    ...     return t.values, ntf(t, 2, n_restarts=1, seed=s, max_iter=50, device="cpu")
    >>> null = fit_surrogates(synthetic(8, 1, 120, 1).traces, fit, 2)
    >>> null["pair_factor"].shape
    (2, 28, 2)
    """
    n_surrogates = check_count("n_surrogates", n_surrogates)
    check_choice("surrogate_method", method, METHODS)
    ev, conc, pairs = [], [], []
    for n in range(n_surrogates):
        surrogate = surrogate_traces(traces, method=method, seed=np.random.SeedSequence([seed, n]).generate_state(1)[0])
        values, result = fit(surrogate, seed + 1 + n)
        factors = [result.factor(d).values for d in ("pair", "time", "animal")]
        ev.append(np.sort(explained_variance(values, result.weights.values, factors))[::-1])
        conc.append(np.sort(concentration(factors[0]))[::-1])
        pairs.append(factors[0])
    return {"explained_variance": np.array(ev), "concentration": np.array(conc), "pair_factor": np.array(pairs)}


def significance(explained: np.ndarray, concentrated: np.ndarray, pair_factor: xr.DataArray, null: dict,
                 alpha: float = 0.05) -> dict[str, xr.DataArray]:
    """Empirical p-values of observed components and per-pair chance thresholds.

    Parameters
    ----------
    explained, concentrated : ndarray (component,)
        Observed explained variance and concentration (see the module docstring).
    pair_factor : xr.DataArray (pair, component)
        Observed pair factor (unit-norm columns, as :func:`ntf` returns them).
    null : dict
        Output of :func:`fit_surrogates`.
    alpha : float in (0, 1)

    Returns
    -------
    dict of xr.DataArray
        ``explained_variance_p`` and ``concentration_p`` (component): each
        component against the largest surrogate component;
        ``significant`` (component): ``explained_variance_p <= alpha``;
        ``pair_threshold`` (pair): the ``1 - alpha`` quantile of the pair's
        loading over every surrogate component (unit-norm pair factors);
        ``pair_above_chance`` (pair, component): loading above that threshold;
        ``surrogate_explained_variance`` / ``surrogate_concentration``
        (surrogate, order): the null itself, largest first. Their attrs hold
        ``alpha``, ``n_surrogates`` and ``min_p = 1 / (n_surrogates + 1)``.

    Warns
    -----
    UserWarning
        When ``min_p > alpha``: no component can be significant, whatever
        the data (:func:`too_few_surrogates` says how many are needed).

    Examples
    --------
    >>> null = {"explained_variance": np.array([[0.2], [0.1]]), "concentration": np.array([[0.5], [0.4]]),
    ...         "pair_factor": np.ones((2, 3, 1)) / np.sqrt(3)}
    >>> pf = xr.DataArray(np.array([[1.0], [0.0], [0.0]]), dims=("pair", "component"))
    >>> out = significance(np.array([0.3]), np.array([1.0]), pf, null, alpha=0.5)
    >>> out["explained_variance_p"].values.round(3).tolist(), out["pair_above_chance"].values[:, 0].tolist()
    ([0.333], [True, False, False])
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     out = significance(np.array([0.3]), np.array([1.0]), pf, null)  # alpha 0.05, 2 surrogates
    >>> print(caught[0].message)
    n_surrogates: 2 surrogates cannot reach p <= 0.05 (the smallest p-value they give is 1/(2+1) = 0.33); use at least 19
    """
    alpha = check_fraction("alpha", alpha)
    n_surrogates = null["explained_variance"].shape[0]
    reason = too_few_surrogates(n_surrogates, alpha)
    if reason:
        warnings.warn(reason, UserWarning, stacklevel=2)
    ev_p = empirical_p(explained, null["explained_variance"][:, 0])
    conc_p = empirical_p(concentrated, null["concentration"][:, 0])
    pooled = null["pair_factor"].transpose(1, 0, 2).reshape(null["pair_factor"].shape[1], -1)
    threshold = np.quantile(pooled, 1 - alpha, axis=1)
    component = pair_factor["component"].values if "component" in pair_factor.coords else np.arange(len(explained))
    pair_coords = {k: v for k, v in pair_factor.coords.items() if v.dims == ("pair",)}
    attrs = {"alpha": alpha, "n_surrogates": int(n_surrogates), "min_p": 1 / (n_surrogates + 1)}
    null_dims, null_coords = ("surrogate", "order"), {"surrogate": np.arange(n_surrogates),
                                                     "order": np.arange(null["explained_variance"].shape[1])}
    return {
        "explained_variance_p": xr.DataArray(ev_p, dims=("component",), coords={"component": component}, attrs=attrs),
        "concentration_p": xr.DataArray(conc_p, dims=("component",), coords={"component": component}, attrs=attrs),
        "significant": xr.DataArray(ev_p <= alpha, dims=("component",), coords={"component": component}, attrs=attrs),
        "pair_threshold": xr.DataArray(threshold, dims=("pair",), coords=pair_coords, attrs=attrs),
        "pair_above_chance": pair_factor > xr.DataArray(threshold, dims=("pair",)),
        "surrogate_explained_variance": xr.DataArray(null["explained_variance"], dims=null_dims, coords=null_coords),
        "surrogate_concentration": xr.DataArray(null["concentration"], dims=null_dims, coords=null_coords),
    }
