"""Power-law tails of eigenvalue spectra: Clauset maximum likelihood with a KS-chosen xmin.

Heavy-tailed self-regularisation (Martin & Mahoney) reads a trained layer off
the tail of its empirical spectral density: the eigenvalues ``lambda`` of
``W^T W`` above some ``xmin`` follow ``p(lambda) ~ lambda^(-alpha)``. For a
candidate ``xmin`` the continuous maximum-likelihood exponent (Clauset,
Shalizi & Newman 2009) is

    alpha = 1 + n_tail / sum_{lambda_i >= xmin} ln(lambda_i / xmin)

and ``xmin`` is the candidate whose fitted CDF is closest to the empirical one
in Kolmogorov-Smirnov distance. Conventions follow WeightWatcher (0.7.x) so the
numbers agree with the tool users know:

* candidates are every eigenvalue but the largest; eigenvalues at or below
  ``1e-5`` (absolute) are dropped first;
* the KS distance compares ``1 - (x / xmin)^(1 - alpha)`` with the empirical
  CDF ``j / n_tail`` at the sorted tail points; a candidate with
  ``alpha <= 1`` gets distance 1; ties go to the smallest ``xmin``;
* with fewer than 20 eigenvalues the small-sample variant is used: the
  bias-corrected ``alpha = 1 + (n_tail - 1) / sum ln(lambda_i / xmin)`` and
  tails of at least 8 points. WeightWatcher 0.7.7 computes a tail-size
  bonus ``D - 0.868 / sqrt(n_tail)`` for this case but then selects ``xmin``
  by plain ``D``; we follow the selection it actually makes.

A fit is *unreliable* (:func:`fit_reliability`) outside WeightWatcher's
trustworthy range: ``alpha > 8`` (WeightWatcher's README: such an ESD is not
heavy tailed, the fit is spurious and "I usually throw away results where
alpha > 8.0"), or fewer than 10 eigenvalues at or above ``xmin``
(WeightWatcher's ``MIN_NUM_EVALS``; its README asks for 50 eigenvalues in
all). The fit is still returned, with ``reliable`` False and the reason.

The whole search is vectorised: ``O(n)`` for all the exponents (suffix sums of
logs), ``O(n^2)`` numpy for the KS distances, in row blocks.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> fit = power_law_fit(rng.pareto(2.0, 4000) + 1.0)   # density exponent 3
>>> round(fit["alpha"], 1)
3.0
"""

from __future__ import annotations

import warnings

import numpy as np

#: WeightWatcher drops eigenvalues at or below this before the fit (absolute).
EVALS_THRESHOLD = 1e-5
#: Below this many eigenvalues the small-sample fit is used.
SMALL_N = 20
#: Above this exponent a fit is unreliable: the ESD is not heavy tailed (WeightWatcher's README).
MAX_RELIABLE_ALPHA = 8.0
#: Below this many eigenvalues at or above xmin a fit is unreliable (WeightWatcher's MIN_NUM_EVALS).
MIN_TAIL = 10
_SMALL_N_MIN_TAIL = 8
_BLOCK = 1024


def _ks_distances(x: np.ndarray, logx: np.ndarray, alphas: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """KS distance of the power law with ``alphas[i]`` and ``xmin = x[i]`` to the tail ``x[i:]``."""
    n = x.size
    D = np.ones(n - 1)
    j = np.arange(n)
    for start in range(0, n - 1, _BLOCK):
        rows = np.arange(start, min(start + _BLOCK, n - 1))
        rows = rows[valid[rows]]
        if rows.size == 0:
            continue
        i = rows[:, None]
        n_tail = (n - rows)[:, None].astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            fitted = 1.0 - np.exp((1.0 - alphas[rows, None]) * (logx[None, :] - logx[i]))
            gap = np.abs(fitted - (j[None, :] - i) / n_tail)
        gap[j[None, :] < i] = 0.0
        D[rows] = np.nanmax(gap, axis=1)
    return D


def fit_reliability(alpha: float, n_tail: int) -> tuple[bool, str]:
    """Whether a power-law fit is in WeightWatcher's trustworthy range, and if not, why.

    Parameters
    ----------
    alpha : float
        The fitted density exponent (NaN: no fit).
    n_tail : int
        Eigenvalues at or above ``xmin``.

    Returns
    -------
    (bool, str)
        ``(True, "")``, or ``(False, reason)`` naming each rule the fit breaks.

    Examples
    --------
    >>> fit_reliability(3.1, 120)
    (True, '')
    >>> fit_reliability(19.5, 6)
    (False, 'alpha 19.5 > 8: not heavy tailed; 6 eigenvalues above xmin < 10')
    """
    if not np.isfinite(alpha):
        return False, "no power-law fit"
    reasons = []
    if alpha > MAX_RELIABLE_ALPHA:
        reasons.append(f"alpha {alpha:.3g} > {MAX_RELIABLE_ALPHA:g}: not heavy tailed")
    if n_tail < MIN_TAIL:
        reasons.append(f"{int(n_tail)} eigenvalues above xmin < {MIN_TAIL}")
    return not reasons, "; ".join(reasons)


def power_law_fit(eigenvalues: np.ndarray) -> dict:
    """Power-law fit of the tail of ``eigenvalues`` (WeightWatcher conventions).

    Parameters
    ----------
    eigenvalues : array_like
        Eigenvalues ``lambda = sigma^2`` (any order). Values ``<= 1e-5`` and
        NaN padding are ignored.

    Returns
    -------
    dict
        ``alpha`` (density exponent), ``xmin``, ``ks_distance``, ``n_tail``
        (eigenvalues >= xmin) and ``sigma`` (standard error ``(alpha - 1) /
        sqrt(n_tail)``). All NaN (``n_tail`` 0) when fewer than two
        eigenvalues remain or no candidate gives ``alpha > 1``. ``reliable``
        and ``reason`` say whether the fit is in WeightWatcher's trustworthy
        range (:func:`fit_reliability`).

    Examples
    --------
    >>> fit = power_law_fit([1.0, 2.0, 4.0, 8.0, 16.0, 32.0] * 5)
    >>> fit["n_tail"] > 0 and fit["alpha"] > 1
    True
    >>> fit["reliable"], fit["reason"]
    (True, '')
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if np.isinf(lam).any():
        raise ValueError(f"eigenvalues: expected finite values (NaN only as padding), got {int(np.isinf(lam).sum())} inf")
    lam = np.sort(lam[np.isfinite(lam) & (lam > EVALS_THRESHOLD)])
    n = lam.size
    if n < 2:
        warnings.warn(f"power_law_fit: {n} eigenvalue(s) above {EVALS_THRESHOLD:g} (the rest NaN or ~0), too few to "
                      "fit a tail; returning NaN", RuntimeWarning, stacklevel=2)
        return _with_reliability({"alpha": np.nan, "xmin": np.nan, "ks_distance": np.nan, "n_tail": 0,
                                  "sigma": np.nan})
    logx = np.log(lam)
    n_tail = (n - np.arange(n - 1)).astype(np.float64)
    suffix = np.cumsum(logx[::-1])[::-1][: n - 1]  # sum_{j >= i} ln x_j
    spread = suffix - n_tail * logx[: n - 1]        # sum_{j >= i} ln(x_j / x_i)
    small = n < SMALL_N
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + ((n_tail - 1.0) if small else n_tail) / spread
    valid = np.isfinite(alphas) & (alphas > 1.0)
    if small:
        valid &= (n_tail >= _SMALL_N_MIN_TAIL) & (spread > 1e-12)
    if not valid.any():  # e.g. all eigenvalues equal: no tail to fit
        return _with_reliability({"alpha": np.nan, "xmin": np.nan, "ks_distance": np.nan, "n_tail": 0,
                                  "sigma": np.nan})
    D = _ks_distances(lam, logx, alphas, valid)
    best = int(np.argmin(D))
    alpha = float(alphas[best])
    return _with_reliability({"alpha": alpha, "xmin": float(lam[best]), "ks_distance": float(D[best]),
                              "n_tail": int(n - best), "sigma": float((alpha - 1.0) / np.sqrt(n - best))})


def _with_reliability(fit: dict) -> dict:
    fit["reliable"], fit["reason"] = fit_reliability(fit["alpha"], fit["n_tail"])
    return fit
