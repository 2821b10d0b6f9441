"""WeightWatcher's Marchenko-Pastur fit of the bulk scale, re-derived so its numbers can be compared.

WeightWatcher (0.7.x, ``analyze(mp_fit=True)``) estimates the bulk scale
``s`` of the mean-1 eigenvalues ``x`` (``lambda M / sum lambda``) as follows;
this module follows the same written rules, so that on the same eigenvalues
``sigma_mp``, ``bulk_max``, ``mp_softrank`` and ``num_spikes`` agree with it:

1. a kernel density of the fitted values, linear (triangular) kernel of
   bandwidth 0.1, ``f(t) = sum_i max(0, 1 - |t - v_i| / 0.1) / (0.1 n)``,
   evaluated on 1000 evenly spaced points of ``[0, max v + 0.5]``; points where
   ``f <= 0.01`` are dropped;
2. the residual of a candidate ``s`` is ``sum (rho_s(t) - f(t))^2`` over those
   points, with ``rho_s`` the Marchenko-Pastur density of ratio ``1/Q`` and
   scale ``s`` (NaN outside its support counts as 0), set to ``1000`` per point
   when the law's upper edge ``b`` falls below the density's mode or beyond the
   grid, or its lower edge ``a`` above the mode. For a square matrix (``Q = 1``)
   the values fitted are the singular values ``v = sqrt(x)`` and ``rho_s(t) =
   sqrt(4 - t^2) / (pi s^2)`` (WeightWatcher's quarter-circle form, in which
   ``s`` only scales the height);
3. ``s`` minimises the residual over the grid ``c (0.05, 0.06, ..., 1.99)``,
   ``c = sqrt(max x) / (1 + 1/sqrt(Q))``, polished by Nelder-Mead
   (``scipy.optimize.brute`` with its default ``fmin`` finish).

The edge, margin, spikes and soft rank then follow :mod:`~workbench.spectra.mp`.
The fit is a numerical recipe, not a consistent estimator: the median
estimator is the default for that reason.

Examples
--------
>>> import numpy as np
>>> G = np.random.default_rng(0).standard_normal((600, 200))
>>> x = np.linalg.svd(G, compute_uv=False) ** 2
>>> s = weightwatcher_sigma(x * x.size / x.sum(), Q=3.0)
>>> bool(0.9 < s < 1.1)
True
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize

BANDWIDTH = 0.1
DENSITY_FLOOR = 0.01
GRID_POINTS = 1000
PENALTY = 1000.0


def linear_kde(values: np.ndarray, points: np.ndarray, bandwidth: float = BANDWIDTH) -> np.ndarray:
    """Density at ``points`` of a linear-kernel KDE of ``values`` (scikit-learn's ``kernel='linear'``).

    Examples
    --------
    >>> float(linear_kde(np.array([0.0]), np.array([0.0, 0.05, 0.2]), 0.1)[1])
    5.0
    """
    v = np.asarray(values, dtype=np.float64)
    weights = np.clip(1.0 - np.abs(points[:, None] - v[None, :]) / bandwidth, 0.0, None)
    return weights.sum(axis=1) / (v.size * bandwidth)


def _law(t: np.ndarray, s: float, Q: float) -> tuple[np.ndarray, float, float]:
    """WeightWatcher's bulk density at ``t`` for scale ``s``, and the MP edges (0, 0 for the quarter circle)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if Q == 1:
            return np.nan_to_num(np.sqrt(4.0 - t ** 2) / (np.pi * s * s)), 0.0, 0.0
        y = 1.0 / Q
        b, a = (s * (1 + np.sqrt(1 / Q))) ** 2, (s * (1 - np.sqrt(1 / Q))) ** 2
        return np.nan_to_num(np.sqrt((b - t) * (t - a)) / (2 * np.pi * s * s * t * y)), a, b


def _residual(params: np.ndarray, t: np.ndarray, density: np.ndarray, n_dropped: int, Q: float) -> float:
    s = float(np.asarray(params).ravel()[0])
    law, a, b = _law(t, s, Q)
    mode = t[np.argmax(density == density.max())]
    if Q != 1 and (b < mode or b > t.max() or a > mode):
        resid = np.full(t.size, PENALTY)
    else:
        resid = law - density
    resid = np.concatenate([resid, np.zeros(n_dropped)])
    return float(np.sum(resid ** 2))


def weightwatcher_sigma(scaled: np.ndarray, Q: float) -> float:
    """WeightWatcher's bulk scale ``s`` of mean-1 eigenvalues ``scaled`` of aspect ratio ``Q = N/M``.

    Examples
    --------
    >>> x = np.random.default_rng(1).standard_normal((300, 100))
    >>> lam = np.linalg.svd(x, compute_uv=False) ** 2
    >>> round(weightwatcher_sigma(lam * lam.size / lam.sum(), 3.0), 1)
    1.0
    """
    x = np.asarray(scaled, dtype=np.float64)
    c = np.sqrt(x.max() / (1.0 + 1.0 / np.sqrt(Q)) ** 2)
    fitted = np.sqrt(x) if Q == 1 else x
    t = np.linspace(0.0, fitted.max() + 0.5, GRID_POINTS)
    density = linear_kde(fitted, t)
    keep = density > DENSITY_FLOOR
    n_dropped = int((density < DENSITY_FLOOR).sum())
    grid = (slice(0.05 * c, 2.0 * c, 0.01 * c),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = optimize.brute(_residual, grid, args=(t[keep], density[keep], n_dropped, Q), full_output=True)
    return float(np.asarray(best[0]).ravel()[0])


def weightwatcher_scale(lam: np.ndarray) -> float:
    """WeightWatcher's factor to mean-1 units, ``(sqrt(n) / sqrt(sum lambda))^2``, summed in ascending order."""
    ascending = np.sort(np.asarray(lam, dtype=np.float64))
    w = np.sqrt(ascending.size) / np.sqrt(np.sum(ascending))
    return float(w * w)
