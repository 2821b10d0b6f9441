"""Marchenko-Pastur bulk of a weight spectrum: scale, bulk edge, spikes and soft rank.

A random ``N x M`` matrix (``N >= M``, i.i.d. entries of variance ``s^2``) has
the eigenvalues of ``W^T W / N`` spread over the Marchenko-Pastur law with
ratio ``y = M / N = 1 / Q`` and edges ``s^2 (1 -+ sqrt(y))^2``. Eigenvalues
beyond the upper edge ``lambda_+`` are *spikes*: structure learned on top of
the random bulk.

Units follow WeightWatcher: the eigenvalues are rescaled to mean 1
(``lambda * M / sum lambda``); the bulk edge is ``(s (1 + 1/sqrt(Q)))^2``, a
spike must clear it by WeightWatcher's Tracy-Widom margin
``sqrt(Q^(-1/2) lambda_+^(2/3) M^(-2/3))``, and ``mp_softrank = lambda_+ /
lambda_max``.

The scale ``s`` is where this module departs from WeightWatcher (which fits a
kernel density by brute-force grid search): ``s^2`` is the median eigenvalue
divided by the median of the unit Marchenko-Pastur law. Spikes are a minority,
so they barely move the median; the estimate is exact in distribution for a
pure random matrix and needs no bandwidth.

Examples
--------
>>> import numpy as np
>>> G = np.random.default_rng(0).standard_normal((800, 200))
>>> fit = mp_fit(np.linalg.svd(G, compute_uv=False) ** 2, shape=G.shape)
>>> round(fit["mp_softrank"], 1), fit["num_spikes"]
(1.0, 0)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=256)
def mp_median(y: float, n_grid: int = 4001) -> float:
    """Median of the Marchenko-Pastur law with ratio ``y = M / N`` in (0, 1] and unit scale.

    The density ``sqrt((b - x)(x - a)) / (2 pi y x)`` on ``[a, b] = [(1 - sqrt y)^2, (1 + sqrt y)^2]``
    is integrated in the angle ``x = a + (b - a)(1 - cos t) / 2``, which absorbs
    the square-root edges (and the ``1/sqrt(x)`` pole at ``y = 1``).

    Examples
    --------
    >>> round(mp_median(1.0), 3)   # quarter-circle law of squared singular values
    0.653
    """
    if not 0.0 < y <= 1.0:
        raise ValueError(f"y: expected a ratio M/N in (0, 1], got {y!r}")
    a, b = (1.0 - np.sqrt(y)) ** 2, (1.0 + np.sqrt(y)) ** 2
    t = np.linspace(0.0, np.pi, n_grid)
    x = a + (b - a) * (1.0 - np.cos(t)) / 2.0
    half = (b - a) / 2.0
    # rho(x) dx with sqrt((b - x)(x - a)) = half sin t and dx = half sin t dt
    with np.errstate(divide="ignore", invalid="ignore"):
        integrand = np.where(x > 0, (half * np.sin(t)) ** 2 / (2.0 * np.pi * y * x), 0.0)
    if y == 1.0:
        integrand[0] = half / np.pi  # limit: sin^2 t / (1 - cos t) -> 2 as t -> 0
    cdf = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) / 2.0 * np.diff(t))])
    cdf /= cdf[-1]
    return float(np.interp(0.5, cdf, x))


def mp_fit(eigenvalues: np.ndarray, *, shape: tuple[int, int]) -> dict:
    """Marchenko-Pastur bulk of ``eigenvalues`` of a matrix of ``shape``.

    Parameters
    ----------
    eigenvalues : array_like
        ``sigma^2`` of the matrix (NaN padding ignored).
    shape : (int, int)
        The matrix shape, in either order.

    Returns
    -------
    dict
        ``bulk_max`` (upper edge ``lambda_+`` in the input's units),
        ``sigma_mp`` (bulk scale ``s`` in mean-1 units), ``mp_softrank``
        (``lambda_+ / lambda_max``) and ``num_spikes`` (eigenvalues above the
        edge plus the Tracy-Widom margin).

    Examples
    --------
    >>> lam = np.r_[np.linspace(0.5, 1.5, 99), 50.0]
    >>> mp_fit(lam, shape=(400, 100))["num_spikes"]
    1
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    lam = lam[np.isfinite(lam)]
    N, M = max(shape), min(shape)
    if lam.size == 0 or lam.max() <= 0:
        return {"bulk_max": np.nan, "sigma_mp": np.nan, "mp_softrank": np.nan, "num_spikes": 0}
    Q = N / M
    scale = lam.size / lam.sum()      # WeightWatcher's mean-1 units
    scaled = lam * scale
    s2 = np.median(scaled) / mp_median(1.0 / Q)
    bulk_max = s2 * (1.0 + 1.0 / np.sqrt(Q)) ** 2
    tw = np.sqrt(bulk_max ** (2.0 / 3.0) * M ** (-2.0 / 3.0) / np.sqrt(Q))
    return {"bulk_max": float(bulk_max / scale), "sigma_mp": float(np.sqrt(s2)),
            "mp_softrank": float(bulk_max / scaled.max()), "num_spikes": int((scaled > bulk_max + tw).sum())}
