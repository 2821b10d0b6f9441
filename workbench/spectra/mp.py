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

Two estimators of the scale ``s`` (``method``):

* ``"median"`` (default): ``s^2`` is the median eigenvalue divided by the
  median of the unit Marchenko-Pastur law. Spikes are a minority, so they
  barely move the median; the estimate is exact in distribution for a pure
  random matrix and needs no bandwidth.
* ``"weightwatcher"``: WeightWatcher's own fit (:mod:`~workbench.spectra.mp_weightwatcher`),
  a grid search over ``s`` matching the law to a kernel density of the
  eigenvalues, so that its numbers can be compared like for like.

When the law does not apply
---------------------------
The Marchenko-Pastur law describes a *full-rank* random matrix: all ``M``
eigenvalues in the bulk. A matrix of numerical rank ``r < M`` (a product of
thin factors, such as a per-head OV or QK circuit of rank ``d_head`` inside
``d_model``, or a spectrum listing fewer than ``M`` values) has ``M - r``
zero eigenvalues that no bulk of that shape produces: the median lands on a
zero and every nonzero eigenvalue reads as a spike, while the same ``r``
values alone give a bulk and no spikes. Neither is meaningful, so every
quantity is NaN and ``mp_reason`` says why (empty where the fit applies).

A square random matrix is the one exception the rule must allow: its law
reaches down to 0 (the quarter circle), and its smallest singular value falls
below the numerical-rank tolerance ``sigma_1 N eps`` with probability about
``2 N^2 eps`` (14 % for a 768 x 768 float32 matrix). So up to
``max(1, M // 100)`` numerically zero values are read as the bulk's hard edge;
a deficit larger than that is structural and gives NaN.

Examples
--------
>>> import numpy as np
>>> G = np.random.default_rng(0).standard_normal((800, 200))
>>> fit = mp_fit(np.linalg.svd(G, compute_uv=False) ** 2, shape=G.shape)
>>> round(fit["mp_softrank"], 1), fit["num_spikes"], fit["mp_reason"]
(1.0, 0.0, '')
>>> low_rank = G[:, :20] @ G[:20, :]                      # 800 x 200 of rank 20
>>> fit = mp_fit(np.linalg.svd(low_rank, compute_uv=False) ** 2, shape=low_rank.shape)
>>> fit["num_spikes"], fit["mp_reason"].split(" (")[0]
(nan, 'rank-deficient: numerical rank 20 < min(800, 200) = 200')
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from workbench.spectra.mp_weightwatcher import weightwatcher_scale, weightwatcher_sigma

#: Estimators of the bulk scale (see the module docstring).
MP_METHODS = ("median", "weightwatcher")
#: ``mp_reason`` of a per-head OV/QK circuit, whatever its numerical rank.
PRODUCT_REASON = ("circuit product: a per-head OV/QK map has rank <= d_head inside d_model, "
                  "not the full-rank random matrix the Marchenko-Pastur law describes")


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


def numerical_rank(sigma: np.ndarray, n_max: int, precision: str = "float64") -> int:
    """``#{sigma_i > sigma_1 n_max eps}``: ``np.linalg.matrix_rank``'s rule, ``eps`` of ``precision``.

    Examples
    --------
    >>> numerical_rank(np.array([1.0, 1e-3, 1e-17]), 3)
    2
    """
    s = np.asarray(sigma, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0 or s.max() <= 0:
        return 0
    return int((s > s.max() * n_max * np.finfo(precision).eps).sum())


def _nan_fit(reason: str) -> dict:
    return {"bulk_max": np.nan, "sigma_mp": np.nan, "mp_softrank": np.nan, "num_spikes": np.nan,
            "mp_reason": reason}


def mp_applicability(eigenvalues: np.ndarray, shape: tuple[int, int], *, precision: str = "float64",
                     product: bool = False) -> str:
    """Why the Marchenko-Pastur law does not apply to this spectrum, or ``""`` when it does.

    Examples
    --------
    >>> mp_applicability(np.array([4.0, 1.0]), (5, 2))
    ''
    >>> mp_applicability(np.array([4.0, 1.0]), (5, 4))
    'rank-deficient: numerical rank 2 < min(5, 4) = 4 ...'
    """
    if product:
        return PRODUCT_REASON
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    lam = lam[np.isfinite(lam)]
    if lam.size == 0 or lam.max() <= 0:
        return "no nonzero eigenvalue: no bulk to fit"
    M = min(shape)
    rank = numerical_rank(np.sqrt(np.clip(lam, 0.0, None)), max(shape), precision)
    if M - rank > max(1, M // 100):
        return (f"rank-deficient: numerical rank {rank} < min{tuple(shape)} = {M} (a product of thin factors, "
                f"e.g. a per-head OV/QK circuit, or a truncated spectrum); the Marchenko-Pastur law describes "
                f"a full-rank random matrix")
    return ""


def mp_fit(eigenvalues: np.ndarray, *, shape: tuple[int, int], method: str = "median",
           precision: str = "float64", product: bool = False) -> dict:
    """Marchenko-Pastur bulk of ``eigenvalues`` of a matrix of ``shape``.

    Parameters
    ----------
    eigenvalues : array_like
        ``sigma^2`` of the matrix (NaN padding ignored).
    shape : (int, int)
        The matrix shape, in either order.
    method : {"median", "weightwatcher"}
        Estimator of the bulk scale (see the module docstring).
    precision : {"float64", "float32"}
        Precision the matrix was stored in: the numerical-rank tolerance.
    product : bool
        The matrix is a per-head circuit product: NaN whatever its rank.

    Returns
    -------
    dict
        ``bulk_max`` (upper edge ``lambda_+`` in the input's units),
        ``sigma_mp`` (bulk scale ``s`` in mean-1 units), ``mp_softrank``
        (``lambda_+ / lambda_max``), ``num_spikes`` (eigenvalues above the
        edge plus the Tracy-Widom margin, a float), all NaN where the law does
        not apply, and ``mp_reason`` (why not; empty where it applies).

    Examples
    --------
    >>> lam = np.r_[np.linspace(0.5, 1.5, 99), 50.0]
    >>> mp_fit(lam, shape=(400, 100))["num_spikes"]
    1.0
    """
    if method not in MP_METHODS:
        raise ValueError(f"method: expected one of {MP_METHODS}, got {method!r}")
    reason = mp_applicability(eigenvalues, shape, precision=precision, product=product)
    if reason:
        return _nan_fit(reason)
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    lam = lam[np.isfinite(lam)]
    N, M = max(shape), min(shape)
    Q = N / M
    if method == "weightwatcher":
        scale = weightwatcher_scale(lam)
        scaled = scale * lam
        s2 = weightwatcher_sigma(scaled, Q) ** 2
    else:
        scale = lam.size / lam.sum()      # WeightWatcher's mean-1 units
        scaled = lam * scale
        s2 = np.median(scaled) / mp_median(1.0 / Q)
    bulk_max = s2 * (1.0 + 1.0 / np.sqrt(Q)) ** 2
    tw = np.sqrt(bulk_max ** (2.0 / 3.0) * M ** (-2.0 / 3.0) / np.sqrt(Q))
    return {"bulk_max": float(bulk_max / scale), "sigma_mp": float(np.sqrt(s2)),
            "mp_softrank": float(bulk_max / scaled.max()), "num_spikes": float((scaled > bulk_max + tw).sum()),
            "mp_reason": ""}
